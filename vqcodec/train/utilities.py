"""Helpers of the trainer that need no trainer: seeding, batch handling, Lightning-style batch counts,
``max_time`` parsing, ``torch.compile`` unwrapping and run-folder versions."""

from __future__ import annotations

import os
import random
import signal
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vqcodec.train.module import TrainingModule

SEED_ENV = "VQCODEC_SEED"


def seed_everything(seed: int) -> int:
    """Seed python, numpy and torch (all devices); also exported as ``$VQCODEC_SEED`` for child processes."""
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ[SEED_ENV] = str(seed)
    return seed


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Tensors anywhere in lists/tuples/dicts moved to ``device`` (non-blocking from pinned memory)."""
    if torch.is_tensor(batch):
        return batch if batch.device == device else batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(move_to_device(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(v, device) for v in batch)
    return batch


def batch_size_of(batch: Any) -> int:
    if torch.is_tensor(batch):
        return int(batch.shape[0]) if batch.ndim else 1
    if isinstance(batch, dict):
        for value in batch.values():
            return batch_size_of(value)
    if isinstance(batch, (list, tuple)) and batch:
        return batch_size_of(batch[0])
    return 1


def loss_of(output: Any) -> torch.Tensor | None:
    if output is None or torch.is_tensor(output):
        return output
    if isinstance(output, dict):
        if "loss" not in output:
            raise KeyError("training_step returned a dict without a 'loss' entry")
        return output["loss"]
    raise TypeError(
        f"training_step must return a tensor, a dict with 'loss' or None, not {type(output).__name__}"
    )


def check_batch_count(name: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be an int (batches) or a float in [0, 1] (a fraction), got {value!r}")
    if isinstance(value, float) and not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} as a float is a fraction of the batches, in [0, 1]; got {value}")
    if isinstance(value, int) and value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")


def resolve_batch_count(name: str, value: int | float | None, total: int | None) -> int | None:
    """Lightning's meaning of ``limit_*_batches`` / ``overfit_batches``: an int is a number of batches,
    a float that fraction of the loader's ``total`` batches (1.0 = all; None = no limit)."""
    if value is None:
        return None
    if isinstance(value, float):
        if value == 1.0:
            return total
        if total is None:
            raise ValueError(f"a fractional {name} needs a loader with a length")
        count = int(total * value)
        if count == 0 and value > 0.0:
            raise ValueError(f"{name}={value} of {total} batches is less than one batch")
        return count
    return int(value)


class TrainingInterrupted(RuntimeError):
    """A fit stopped by SIGTERM/SIGINT after writing its checkpoint (``.checkpoint``, ``.signal``)."""

    def __init__(self, signum: int, step: int, checkpoint: str | None):
        self.signal, self.step, self.checkpoint = signum, step, checkpoint
        where = f"; checkpoint {checkpoint} (resume with ckpt_path='last')" if checkpoint else ""
        super().__init__(f"training stopped by {signal.Signals(signum).name} at step {step}{where}")


def parse_max_time(value: Any) -> float | None:
    """``max_time`` as Lightning takes it ("DD:HH:MM:SS", a timedelta, a dict of timedelta fields) or a
    number of seconds -> seconds."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, dict):
        seconds = timedelta(**value).total_seconds()
    elif isinstance(value, str):
        parts = value.split(":")
        if len(parts) != 4 or not all(p.strip().isdigit() for p in parts):
            raise ValueError(f"max_time must look like 'DD:HH:MM:SS', got {value!r}")
        days, hours, minutes, secs = (int(p) for p in parts)
        seconds = timedelta(days=days, hours=hours, minutes=minutes, seconds=secs).total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise ValueError(f"max_time must be 'DD:HH:MM:SS', a timedelta, a dict or seconds, got {value!r}")
    if seconds < 0:
        raise ValueError(f"max_time must be >= 0, got {value!r}")
    return seconds


def unwrap_compiled(module: Any) -> Any:
    """``torch.compile(module)`` -> the original module with its ``forward`` compiled the same way.

    The trainer hooks, wraps (DDP) and checkpoints the original module, so state-dict keys carry no
    ``_orig_mod.`` prefix; only ``forward`` (what ``self(...)`` in the steps runs) goes through dynamo.
    """
    compiled_type = getattr(getattr(torch, "_dynamo", None), "eval_frame", None)
    compiled_type = getattr(compiled_type, "OptimizedModule", None)
    if compiled_type is None or not isinstance(module, compiled_type):
        return module
    original = module._orig_mod
    if isinstance(original, TrainingModule) and "forward" not in original.__dict__:
        object.__setattr__(original, "forward", module.dynamo_ctx(original.forward))
    return original


def version_folders(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    found = [(int(p.name[8:]), p) for p in root.glob("version_*") if p.is_dir() and p.name[8:].isdigit()]
    return [p for _, p in sorted(found)]


def next_version(root: Path) -> int:
    folders = version_folders(root)
    return int(folders[-1].name[8:]) + 1 if folders else 0


__all__ = [
    "SEED_ENV",
    "TrainingInterrupted",
    "batch_size_of",
    "check_batch_count",
    "loss_of",
    "move_to_device",
    "next_version",
    "parse_max_time",
    "resolve_batch_count",
    "seed_everything",
    "unwrap_compiled",
    "version_folders",
]
