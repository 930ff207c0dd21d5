"""The typed contract of the Trainer's parts (``train/state.py``)."""

from __future__ import annotations

import inspect

import pytest

from vqcodec.train import Callback, Trainer
from vqcodec.train.connectors import CheckpointConnector
from vqcodec.train.loops import EvaluationLoop, FitLoop
from vqcodec.train.metrics import LoggingConnector
from vqcodec.train.state import TrainerState

from .helpers import Regression, loaders

PARTS = (FitLoop, EvaluationLoop, CheckpointConnector, LoggingConnector)


def test_every_part_derives_from_the_shared_state():
    for part in PARTS:
        assert issubclass(part, TrainerState)
    assert Trainer.__mro__[1:5] == PARTS and Trainer.__mro__[5] is TrainerState


def test_every_declared_method_is_implemented_once_by_its_part():
    assert not inspect.isabstract(Trainer)
    for name in TrainerState.__abstractmethods__:
        owners = [cls.__name__ for cls in Trainer.__mro__[:5] if name in vars(cls)]  # not TrainerState
        assert len(owners) == 1, (name, owners)
    with pytest.raises(TypeError, match="abstract"):
        FitLoop()  # type: ignore[abstract]


def test_callbacks_are_handed_the_trainer_itself(tmp_path):
    seen = []

    class Probe(Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            seen.append(trainer)

        def on_validation_end(self, trainer, module):
            seen.append(trainer)

    train, val = loaders()
    trainer = Trainer(
        max_steps=2,
        val_check_interval=2,
        callbacks=[Probe()],
        default_root_dir=tmp_path,
        enable_progress_bar=False,
        logger=False,
        enable_checkpointing=False,
    )
    assert trainer.train_loader is None and trainer.checkpoint_callback is None
    trainer.fit(Regression(), train, val)
    assert len(seen) == 3 and all(t is trainer for t in seen)
    assert trainer.global_step == 2 and trainer.time_elapsed > 0
