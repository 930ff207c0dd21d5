"""Precision plugins: the autocast context around the steps and, for "16-mixed", the grad scaler.

- ``"32"``: plain float32.
- ``"bf16-mixed"``: ``torch.autocast(dtype=bfloat16)`` on CPU and CUDA; weights, gradients and optimizer
  state stay float32, no scaler (bf16 has float32's exponent range).
- ``"16-mixed"``: float16 autocast with a ``torch.amp.GradScaler``; meant for CUDA (CPU float16 autocast
  works in recent torch but is slow, and is only used by the tests of the scaler bookkeeping).

The quantizers disable autocast around their distances and codebook updates themselves
(``vqcodec.quantize.base.full_precision``); an autocast region entered here does not override that.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any

import torch

from vqcodec.models.device import cpu_bf16_is_fast

PRECISIONS = ("32", "bf16-mixed", "16-mixed")
_ALIASES = {"32-true": "32", "fp32": "32", "bf16": "bf16-mixed", "16": "16-mixed", "fp16": "16-mixed"}


def canonical_precision(value: str | int) -> str:
    name = _ALIASES.get(str(value), str(value))
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {value!r}")
    return name


class Precision:
    """float32 training: no autocast, no scaler."""

    name = "32"

    def __init__(self, device: torch.device):
        self.device = device
        self.scaler: torch.amp.GradScaler | None = None

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        return loss

    def unscale_(self, optimizer: torch.optim.Optimizer) -> None:
        pass

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        optimizer.step()

    def update(self) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class MixedPrecision(Precision):
    """Autocast to ``dtype`` on the device; float16 adds a dynamic loss scaler."""

    def __init__(self, device: torch.device, dtype: torch.dtype):
        super().__init__(device)
        self.dtype = dtype
        self.name = "bf16-mixed" if dtype == torch.bfloat16 else "16-mixed"
        if dtype == torch.float16:
            self.scaler = torch.amp.GradScaler(device.type)
        self._unscaled: set[int] = set()

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        return torch.autocast(self.device.type, dtype=self.dtype)

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        return self.scaler.scale(loss) if self.scaler is not None else loss

    def unscale_(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is not None and id(optimizer) not in self._unscaled:
            self.scaler.unscale_(optimizer)
            self._unscaled.add(id(optimizer))

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is None:
            optimizer.step()
            return
        self.unscale_(optimizer)
        self.scaler.step(optimizer)

    def update(self) -> None:
        if self.scaler is not None:
            self.scaler.update()
        self._unscaled.clear()

    def state_dict(self) -> dict[str, Any]:
        return {"scaler": self.scaler.state_dict()} if self.scaler is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])


def make_precision(name: str, device: torch.device) -> Precision:
    name = canonical_precision(name)
    if name == "32":
        return Precision(device)
    if name == "bf16-mixed":
        if device.type == "cpu" and not cpu_bf16_is_fast():
            warnings.warn(
                "bf16-mixed on a CPU without native bf16 (no AVX-512/AMX bf16): torch emulates it, "
                "much slower than precision 32 (benchmarks/bf16_refine.py: 15x for image-sq's refinement)",
                RuntimeWarning,
                stacklevel=2,
            )
        return MixedPrecision(device, torch.bfloat16)
    return MixedPrecision(device, torch.float16)


__all__ = ["PRECISIONS", "MixedPrecision", "Precision", "canonical_precision", "make_precision"]
