"""Checkpoint files: layout, atomic writing, RNG state capture.

A checkpoint is one ``torch.save`` file (a dict) with:

- ``format``: ``"vqcodec-train-checkpoint"``, ``version``: 1;
- ``state_dict``: the TrainingModule's full state dict (keys as ``module.state_dict()``, never with
  ``_orig_mod.``, CPU tensors); with an EMA callback validating on the averages, the averaged weights
  (what validation scored) and ``train_state_dict`` the live ones, which a resume loads;
- ``optimizers``: one state per optimizer, keyed by parameter *name* (strategy-neutral);
- ``schedulers``: one state per optimizer (None where it has no scheduler);
- ``precision``: grad scaler state (16-mixed), else empty;
- ``loop``: ``global_step``, ``epoch``, ``batch_in_epoch`` (batches of the epoch already consumed),
  ``total_batches``, ``micro_step`` and ``data_seed`` (the seed of the data order, which a resume
  reuses so the sampler rebuilds the same epoch order and skips to the saved position);
- ``rng``: python, numpy, torch CPU and accelerator RNG states, per rank (``rng[rank]``);
- ``callbacks``: each stateful callback's state by its ``state_key``; the EMA callback also writes
  ``ema_state_dict`` (full module state dict with averaged weights) at the top level;
- ``hyper_parameters``: the module's ``hparams`` dict when it has one; ``trainer``: a few Trainer settings.

Files are written to a temporary name in the same folder, fsynced and renamed, so a crash never leaves
a partial checkpoint under the final name.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_FORMAT = "vqcodec-train-checkpoint"
CHECKPOINT_VERSION = 1
COMPILED_PREFIX = "_orig_mod."


def clean_state_key(key: str) -> str:
    """A state-dict key without the ``_orig_mod.`` segments ``torch.compile`` wrappers add."""
    return key.replace(COMPILED_PREFIX, "") if COMPILED_PREFIX in key else key


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; checkpoints are ordinary files
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with _suppress():
            os.unlink(tmp)
        raise
    return path


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> bool:
        return True


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a trainer checkpoint onto the CPU; raises ValueError for files of another kind."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a vqcodec training checkpoint")
    if int(checkpoint.get("version", 0)) > CHECKPOINT_VERSION:
        raise ValueError(f"{path}: checkpoint version {checkpoint['version']} is newer than this trainer")
    return checkpoint


def module_state_dict(
    checkpoint: str | os.PathLike[str] | dict[str, Any], *, use_ema: bool = True, prefix: str = ""
) -> dict[str, Any]:
    """The TrainingModule weights inside a checkpoint (a path or an already loaded dict).

    ``use_ema=True``: the averaged weights of an EMA run (``ema_state_dict``), else ``state_dict``.
    ``use_ema=False``: the live weights, which an EMA run that validated on the averages keeps in
    ``train_state_dict`` (its ``state_dict`` holds the averages then), else ``state_dict``. A dict
    without ``state_dict`` (a plain ``torch.save(module.state_dict())`` file) is the state itself.

    Keys lose ``torch.compile``'s ``_orig_mod.`` segments (a compiled or FSDP-wrapped run's file loads
    into a plain network) and, with ``prefix`` ("model."), keep only that submodule's entries, without
    the prefix.
    """
    if not isinstance(checkpoint, dict):
        checkpoint = torch.load(Path(checkpoint), map_location="cpu", weights_only=False)
        if not isinstance(checkpoint, dict):
            raise ValueError("not a checkpoint: the file does not hold a dict")
    keys = ("ema_state_dict", "state_dict") if use_ema else ("train_state_dict", "state_dict")
    state = next((checkpoint[k] for k in keys if isinstance(checkpoint.get(k), dict) and checkpoint[k]), None)
    if state is None:
        state = checkpoint
    cleaned = {clean_state_key(k): v for k, v in state.items()}
    if not prefix:
        return cleaned
    selected = {k[len(prefix) :]: v for k, v in cleaned.items() if k.startswith(prefix)}
    if not selected:
        raise ValueError(f"the checkpoint holds no {prefix!r} weights")
    return selected


def capture_rng_state(accelerator_state: Any = None) -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "accelerator": accelerator_state,
    }


def restore_rng_state(state: dict[str, Any]) -> Any:
    """Restore python/numpy/torch CPU RNGs; returns the accelerator part for the accelerator to apply."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    return state.get("accelerator")


__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "COMPILED_PREFIX",
    "atomic_save",
    "capture_rng_state",
    "clean_state_key",
    "load_checkpoint",
    "module_state_dict",
    "restore_rng_state",
]
