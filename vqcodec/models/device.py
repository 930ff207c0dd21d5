"""Where a model runs: ``"auto"``, ``"cpu"`` or ``"cuda"`` (``--device`` in the CLI).

What runs where, and why the bytes of a file never depend on it:

- the **codes** (what the entropy coder writes) are chosen on the CPU in fp32 whatever the
  device: the encoder's analysis transform and its quantizer (VQ distances and argmin, or
  dead-zone rounding) decide the file's bytes, and a float convolution on a GPU rounds
  differently from one on a CPU, so near-ties would flip codes and the same picture would make
  different files on different machines. Both bundled image models analyse with a linear block
  transform, so this costs little (0.01-0.11 s for a Kodak picture on 2 cores);
  ``benchmarks/device_check.py`` counts how many codes a GPU analysis would change;
- decoding is integer entropy decoding on the CPU (bit-exact anywhere), then the **synthesis**
  (codes -> pixels) on the device, in fp32 with TF32 off: pixels stay within the format's
  guarantee (at most 1 per 8-bit value from another platform's);
- the encoder's ``psnr=`` search decodes its trial levels on the device.

Models are cached and shared by :mod:`vqcodec.models.zoo`; :func:`on_device` never moves a
shared model. It returns the model itself for the device it is on, else a per-device copy,
made once under a lock and kept with the model, so threads asking for the same device share
one copy and the CPU model stays usable by everyone else.
"""

from __future__ import annotations

import copy
import functools
import threading
from typing import Any

from vqcodec.errors import VQCError

DEVICES = ("auto", "cpu", "cuda")
_lock = threading.Lock()


class DeviceError(VQCError, ValueError):
    """A device that is unknown, or that this machine or torch build does not have."""


@functools.cache
def cpu_bf16_is_fast() -> bool:
    """Whether this CPU computes bf16 convolutions natively (oneDNN's bf16 path: AVX-512 or AMX).

    Without it (e.g. AVX2-only CPUs) torch emulates bf16 and autocast makes a convolution
    about 15x slower than fp32 (benchmarks/bf16_refine.py on an AVX2-only AMD EPYC: image-sq20c's
    refinement of a 768x512 picture 4.35 s vs 0.29 s), so bf16 is used on the CPU only where this
    is true.
    """
    import torch

    checker = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(checker()) if checker is not None else False


def check_device_name(device: Any) -> str:
    """``device`` as one of :data:`DEVICES` (``cuda:N`` allowed), without importing torch."""
    name = "auto" if device is None else str(device)
    if name in DEVICES or (name.startswith("cuda:") and name[5:].isdigit()):
        return name
    raise DeviceError(f"unknown device {device!r}: use one of {', '.join(DEVICES)} (or cuda:N)")


def cuda_problem(name: str = "cuda") -> str | None:
    """Why ``name`` (``cuda`` or ``cuda:N``) cannot be used here, or None when it can."""
    import torch

    if not torch.cuda.is_available():
        build = torch.version.cuda
        why = "no CUDA GPU is visible" if build else f"torch {torch.__version__} is built without CUDA"
        return f"--device {name}: CUDA is not available ({why}); use --device cpu or auto"
    index = int(name[5:]) if name.startswith("cuda:") else 0
    count = torch.cuda.device_count()
    if index >= count:
        return f"--device {name}: this machine has {count} CUDA device(s)"
    return None


def resolve_device(device: Any = None) -> Any:
    """A ``torch.device`` for ``"auto"`` / None (CUDA when available, else the CPU), ``"cpu"``,
    ``"cuda"`` / ``"cuda:N"`` (DeviceError when missing) or a ``torch.device``.

    Choosing a CUDA device turns TF32 off for matrix products and convolutions (process-wide,
    as torch's settings are): the synthesis then computes in true fp32.
    """
    import torch

    if isinstance(device, torch.device):
        chosen = device
    else:
        name = check_device_name(device)
        if name == "auto":
            name = "cuda" if torch.cuda.is_available() else "cpu"
        elif name.startswith("cuda"):
            problem = cuda_problem(name)
            if problem is not None:
                raise DeviceError(problem)
        chosen = torch.device(name)
    if chosen.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return chosen


def model_device(model: Any) -> Any:
    """The device of ``model.network``'s weights (the CPU for a model without any)."""
    import torch

    network = getattr(model, "network", None)
    if network is not None:
        for parameter in network.parameters():
            return parameter.device
        for buffer in network.buffers():
            return buffer.device
    return torch.device("cpu")


def _same(a: Any, b: Any) -> bool:
    return bool(a.type == b.type and (a.index or 0) == (b.index or 0))


def on_device(model: Any, device: Any = None) -> Any:
    """``model`` (a CodecModel) for running on ``device``: itself when already there, else a copy.

    The copy shares everything but the network (deep-copied and moved): name, sha256, config,
    entropy prior. It is made once per (model, device) under a lock and cached on the model, so
    concurrent callers get the same copy and the original (the zoo's shared model) is never
    moved. The codec uses copies for the synthesis only (settings such as ``rate_weight`` are
    read from the original, on the CPU).
    """
    target = resolve_device(device)
    if _same(model_device(model), target):
        return model
    key = f"{target.type}:{target.index or 0}"
    with _lock:
        copies: dict[str, Any] = model.__dict__.setdefault("_device_copies", {})
        moved = copies.get(key)
        if moved is None:
            moved = copy.copy(model)
            state = moved.__dict__
            for private in ("_device_copies", "_temporal_coder", "_code_bits"):
                state.pop(private, None)
            state["_code_bits"] = None
            state["_code_bits_lock"] = threading.Lock()
            moved.network = copy.deepcopy(model.network).to(target).eval()
            copies[key] = moved
        return moved


__all__ = [
    "DEVICES",
    "DeviceError",
    "check_device_name",
    "cuda_problem",
    "model_device",
    "on_device",
    "resolve_device",
]
