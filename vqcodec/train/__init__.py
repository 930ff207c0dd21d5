"""vqcodec.train: a compact Lightning-style trainer shared by every codec.

Public API::

    from vqcodec.train import TrainingModule, DataModule, Trainer, seed_everything
    from vqcodec.train import ModelCheckpoint, EarlyStopping, LearningRateMonitor, EMA, CodebookHealth

- ``module.py``: TrainingModule (steps, optimizers, self.log, manual optimisation), DataModule;
- ``trainer.py``: Trainer (loop, accumulation, clipping, validation/test, logging, checkpoints, resume);
  ``progress.py``: ``trainer.progress``, the loop counters callbacks read;
- ``strategies/``: ``single``, ``ddp``, ``fsdp`` (FSDP2) in a registry; ``accelerators.py``: CPU, CUDA
  (MPS, XLA pluggable, untested); ``precision.py``: "32", "bf16-mixed", "16-mixed";
- ``callbacks/``, ``loggers.py``, ``checkpoint.py`` (file layout), ``launch.py`` (torchrun env, spawn),
  ``config.py`` (TOML/JSON recipes with ``--set`` overrides), ``sampling.py`` (resumable data order).

Codec recipes live in ``recipes/`` with their configs in ``configs/``; ``vqcodec train CONFIG`` runs them.
"""

from vqcodec.train.callbacks import (
    EMA,
    Callback,
    CodebookHealth,
    EarlyStopping,
    LearningRateMonitor,
    ModelCheckpoint,
)
from vqcodec.train.checkpoint import load_checkpoint
from vqcodec.train.module import DataModule, TrainingModule
from vqcodec.train.progress import Progress
from vqcodec.train.trainer import Trainer, seed_everything

__all__ = [
    "EMA",
    "Callback",
    "CodebookHealth",
    "DataModule",
    "EarlyStopping",
    "LearningRateMonitor",
    "ModelCheckpoint",
    "Progress",
    "Trainer",
    "TrainingModule",
    "load_checkpoint",
    "seed_everything",
]
