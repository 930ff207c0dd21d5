"""Trainer callbacks: checkpointing, early stopping, LR monitor, EMA of weights, codebook health,
reconstruction images (``ImageLogger``, built in code: it needs an image batch).

``make_callback(name, **options)`` builds one by its config name (``checkpoint``, ``early_stopping``,
``lr_monitor``, ``ema``, ``codebook_health``), which is how ``[callbacks.<name>]`` tables in a recipe
config become callbacks.
"""

from __future__ import annotations

from typing import Any

from vqcodec.train.callbacks.base import Callback
from vqcodec.train.callbacks.checkpoint import ModelCheckpoint
from vqcodec.train.callbacks.codebook import CodebookHealth
from vqcodec.train.callbacks.early_stopping import EarlyStopping
from vqcodec.train.callbacks.ema import EMA
from vqcodec.train.callbacks.images import ImageLogger
from vqcodec.train.callbacks.lr_monitor import LearningRateMonitor

CALLBACKS: dict[str, type[Callback]] = {
    "checkpoint": ModelCheckpoint,
    "early_stopping": EarlyStopping,
    "lr_monitor": LearningRateMonitor,
    "ema": EMA,
    "codebook_health": CodebookHealth,
}


def make_callback(name: str, **options: Any) -> Callback:
    if name not in CALLBACKS:
        raise ValueError(f"unknown callback {name!r}; known: {', '.join(sorted(CALLBACKS))}")
    return CALLBACKS[name](**options)


__all__ = [
    "CALLBACKS",
    "EMA",
    "Callback",
    "CodebookHealth",
    "EarlyStopping",
    "ImageLogger",
    "LearningRateMonitor",
    "ModelCheckpoint",
    "make_callback",
]
