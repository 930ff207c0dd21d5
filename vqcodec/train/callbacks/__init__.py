"""Trainer callbacks: checkpointing, early stopping, LR monitor, EMA of weights, codebook health,
reconstruction images (``ImageLogger``, built in code: it needs an image batch).

``make_callback(name, **options)`` builds one by its config name (``checkpoint``, ``early_stopping``,
``lr_monitor``, ``ema``, ``codebook_health``), which is how ``[callbacks.<name>]`` tables in a recipe
config become callbacks.
"""

from __future__ import annotations

from typing import Any

from vqcodec.registry import Registry
from vqcodec.train.callbacks.base import Callback
from vqcodec.train.callbacks.checkpoint import ModelCheckpoint
from vqcodec.train.callbacks.codebook import CodebookHealth
from vqcodec.train.callbacks.early_stopping import EarlyStopping
from vqcodec.train.callbacks.ema import EMA
from vqcodec.train.callbacks.images import ImageLogger
from vqcodec.train.callbacks.lr_monitor import LearningRateMonitor

# config name -> Callback class (ImageLogger is not here: it needs an image batch, so it is built in code)
CALLBACKS: Registry[type[Callback]] = Registry("callback")
CALLBACKS.register("checkpoint", ModelCheckpoint)
CALLBACKS.register("early_stopping", EarlyStopping)
CALLBACKS.register("lr_monitor", LearningRateMonitor)
CALLBACKS.register("ema", EMA)
CALLBACKS.register("codebook_health", CodebookHealth)


def make_callback(name: str, **options: Any) -> Callback:
    return CALLBACKS.get(name)(**options)


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
