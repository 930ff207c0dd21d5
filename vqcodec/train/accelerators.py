"""Accelerators: which device a process trains on, and the few device calls the trainer needs.

CPU and CUDA are tested. MPS and XLA are registered behind the same interface but UNTESTED here
(no such hardware in CI): MPS covers one Apple GPU; XLA expects ``torch_xla`` to be installed and
the process launched by its own launcher. Add another accelerator by subclassing ``Accelerator``
and calling ``register_accelerator``.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from vqcodec.registry import Registry


class Accelerator:
    name = "base"
    backend = "gloo"  # torch.distributed backend used with this device

    @classmethod
    def is_available(cls) -> bool:
        raise NotImplementedError

    def device(self, local_rank: int) -> torch.device:
        raise NotImplementedError

    def setup_device(self, device: torch.device) -> None:
        """Make ``device`` current for this process (CUDA: set_device)."""

    def synchronize(self, device: torch.device) -> None:
        """Wait for queued work (timings)."""

    def rng_state(self) -> Any:
        return None

    def set_rng_state(self, state: Any) -> None:
        pass


class CPUAccelerator(Accelerator):
    name = "cpu"
    backend = "gloo"

    @classmethod
    def is_available(cls) -> bool:
        return True

    def device(self, local_rank: int) -> torch.device:
        return torch.device("cpu")


class CUDAAccelerator(Accelerator):
    name = "cuda"
    backend = "nccl"

    @classmethod
    def is_available(cls) -> bool:
        return torch.cuda.is_available()

    def device(self, local_rank: int) -> torch.device:
        return torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))

    def setup_device(self, device: torch.device) -> None:
        torch.cuda.set_device(device)

    def synchronize(self, device: torch.device) -> None:
        torch.cuda.synchronize(device)

    def rng_state(self) -> Any:
        return torch.cuda.get_rng_state()

    def set_rng_state(self, state: Any) -> None:
        if state is not None:
            torch.cuda.set_rng_state(state)


class MPSAccelerator(Accelerator):
    """Apple GPUs (untested here)."""

    name = "mps"
    backend = "gloo"

    @classmethod
    def is_available(cls) -> bool:
        return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()

    def device(self, local_rank: int) -> torch.device:
        return torch.device("mps")

    def synchronize(self, device: torch.device) -> None:
        torch.mps.synchronize()

    def rng_state(self) -> Any:
        return torch.mps.get_rng_state()

    def set_rng_state(self, state: Any) -> None:
        if state is not None:
            torch.mps.set_rng_state(state)


class XLAAccelerator(Accelerator):
    """TPUs through torch_xla (untested here; needs ``torch_xla``)."""

    name = "xla"
    backend = "xla"

    @classmethod
    def is_available(cls) -> bool:
        try:
            import torch_xla  # noqa: F401
        except ImportError:
            return False
        return True

    def device(self, local_rank: int) -> torch.device:
        import torch_xla.core.xla_model as xm

        return xm.xla_device()

    def synchronize(self, device: torch.device) -> None:
        import torch_xla.core.xla_model as xm

        xm.mark_step()


ACCELERATORS: Registry[type[Accelerator]] = Registry("accelerator")


def register_accelerator(cls: type[Accelerator]) -> type[Accelerator]:
    """Add an Accelerator subclass under its ``name`` (usable as a class decorator)."""
    return ACCELERATORS.register(cls.name, cls)


for _cls in (CPUAccelerator, CUDAAccelerator, MPSAccelerator, XLAAccelerator):
    register_accelerator(_cls)


def make_accelerator(name: str | Accelerator = "auto") -> Accelerator:
    """ "auto" picks CUDA when available (unless ``CUDA_VISIBLE_DEVICES`` is empty), else CPU."""
    if isinstance(name, Accelerator):
        return name
    if name in ("auto", None):
        if os.environ.get("CUDA_VISIBLE_DEVICES") != "" and CUDAAccelerator.is_available():
            return CUDAAccelerator()
        return CPUAccelerator()
    if name == "gpu":
        name = "cuda"
    cls = ACCELERATORS.get(name)
    if not cls.is_available():
        raise RuntimeError(f"accelerator {name!r} is not available on this machine")
    return cls()


__all__ = [
    "ACCELERATORS",
    "Accelerator",
    "CPUAccelerator",
    "CUDAAccelerator",
    "MPSAccelerator",
    "XLAAccelerator",
    "make_accelerator",
    "register_accelerator",
]
