"""``ModelCheckpoint``: the last checkpoint, and the best k by a monitored metric, written atomically.

Files under ``dirpath`` (default ``<trainer.log_dir>/checkpoints``, inside the run's versioned folder):
``last.ckpt`` (after every validation, every ``every_n_train_steps`` optimizer steps, when the next
epoch begins after every ``every_n_epochs`` epochs, after ``train_time_interval`` seconds (or a
timedelta) since the last save, at the end of training and when SIGTERM stops it; a single-process
run that fails writes ``on_exception.ckpt``, best effort, beside it) and, with
``monitor``, ``best-step=<step>-<metric>=<value>.ckpt`` for the ``save_top_k`` best values (``mode``
"min"/"max"); worse ones are deleted. ``best_model_path`` / ``best_model_score`` name the best so far.
Every rank calls the save (gathering sharded state is collective); rank 0 writes and deletes.
"""

from __future__ import annotations

import math
import os
import re
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vqcodec.train.callbacks.base import Callback

if TYPE_CHECKING:
    from vqcodec.train.module import TrainingModule
    from vqcodec.train.trainer import Trainer


class ModelCheckpoint(Callback):
    def __init__(
        self,
        dirpath: str | os.PathLike[str] | None = None,
        *,
        monitor: str | None = None,
        mode: str = "min",
        save_top_k: int = 1,
        save_last: bool = True,
        every_n_train_steps: int | None = None,
        every_n_epochs: int | None = None,
        train_time_interval: float | timedelta | None = None,
        save_on_train_end: bool = True,
        save_on_exception: bool = True,
    ):
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if every_n_epochs is not None and every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}")
        if isinstance(train_time_interval, timedelta):
            train_time_interval = train_time_interval.total_seconds()
        if train_time_interval is not None and train_time_interval <= 0:
            raise ValueError(f"train_time_interval must be > 0 seconds, got {train_time_interval}")
        self.save_on_exception = save_on_exception
        self.exception_model_path = ""
        self.every_n_epochs = every_n_epochs
        self.train_time_interval = train_time_interval
        self._last_time = time.monotonic()
        self.dirpath = Path(dirpath) if dirpath is not None else None
        self.monitor = monitor
        self.mode = mode
        self.save_top_k = int(save_top_k)
        self.save_last = save_last
        self.every_n_train_steps = every_n_train_steps
        self.save_on_train_end = save_on_train_end
        self.best_k: dict[str, float] = {}
        self.best_model_path = ""
        self.best_model_score: float | None = None
        self.last_model_path = ""
        self._last_saved_step = -1

    @property
    def state_key(self) -> str:
        return f"ModelCheckpoint[{self.monitor}]"

    def setup(self, trainer: Trainer, module: TrainingModule, stage: str) -> None:
        if self.dirpath is None:
            self.dirpath = Path(trainer.log_dir) / "checkpoints"

    def _better(self, a: float, b: float) -> bool:
        return a < b if self.mode == "min" else a > b

    def save_last_checkpoint(self, trainer: Trainer) -> None:
        if not self.save_last or self.dirpath is None or trainer.global_step == self._last_saved_step:
            return
        self._last_saved_step = trainer.global_step
        self._last_time = time.monotonic()
        path = self.dirpath / "last.ckpt"
        trainer.save_checkpoint(path)
        self.last_model_path = str(path)

    def on_train_batch_end(
        self, trainer: Trainer, module: TrainingModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        n = self.every_n_train_steps
        if n and trainer.progress.crossed(n):
            self.save_last_checkpoint(trainer)
        if self.train_time_interval and trainer.progress.stepped_this_batch:
            due = time.monotonic() - self._last_time >= self.train_time_interval
            if trainer.strategy.is_distributed:  # clocks differ: rank 0 decides for every rank
                due = bool(trainer.strategy.broadcast_object(due))
            if due:
                self._last_saved_step = -1
                self.save_last_checkpoint(trainer)

    def on_train_epoch_start(self, trainer: Trainer, module: TrainingModule) -> None:
        # every_n_epochs saves when the next epoch begins: the finished epoch's validation and epoch
        # schedulers are done and its position is 0, so a resume starts exactly there
        epoch = trainer.progress.epoch
        if (
            self.every_n_epochs
            and epoch
            and epoch % self.every_n_epochs == 0
            and trainer.progress.batch_in_epoch == 0
        ):
            self.save_last_checkpoint(trainer)

    def on_validation_end(self, trainer: Trainer, module: TrainingModule) -> None:
        if trainer.sanity_checking or trainer.stage != "fit":
            return
        if self.monitor is not None and self.save_top_k != 0:
            self._update_best(trainer)
        self._last_saved_step = -1  # best-k state changed: last.ckpt must carry it
        self.save_last_checkpoint(trainer)

    def on_train_end(self, trainer: Trainer, module: TrainingModule) -> None:
        # a run stopped by SIGTERM always leaves last.ckpt, to resume from
        if self.save_on_train_end or trainer.interrupted_by is not None:
            self.save_last_checkpoint(trainer)

    def on_exception(self, trainer: Trainer, module: TrainingModule, exception: BaseException) -> None:
        # best effort, not an exact-resume point (the failed batch was half done): its own file, so
        # last.ckpt (and ckpt_path="last") keep the last clean step boundary
        if not self.save_on_exception or self.dirpath is None or trainer.module is None:
            return
        if trainer.global_step == 0:
            return  # nothing trained yet (typically a bug in the first training_step)
        path = self.dirpath / "on_exception.ckpt"
        trainer.save_checkpoint(path)
        self.exception_model_path = str(path)
        trainer.print(f"{type(exception).__name__} at step {trainer.global_step}: wrote {path}")

    def _update_best(self, trainer: Trainer) -> None:
        assert self.dirpath is not None
        value = trainer.callback_metrics.get(self.monitor)  # type: ignore[arg-type]
        if value is None:
            raise KeyError(
                f"ModelCheckpoint monitors {self.monitor!r}, which was not logged; logged: "
                f"{', '.join(sorted(trainer.callback_metrics)) or 'nothing'}"
            )
        score = float(value)
        if math.isnan(score):
            return
        if self.save_top_k > 0 and len(self.best_k) >= self.save_top_k:
            worst = max(self.best_k.items(), key=lambda kv: kv[1] if self.mode == "min" else -kv[1])
            if not self._better(score, worst[1]):
                return
        metric = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.monitor or "")
        path = self.dirpath / f"best-step={trainer.global_step}-{metric}={score:.6g}.ckpt"
        self.best_k[str(path)] = score
        removed: list[str] = []
        while self.save_top_k > 0 and len(self.best_k) > self.save_top_k:
            worst_path = max(
                self.best_k, key=lambda p: self.best_k[p] if self.mode == "min" else -self.best_k[p]
            )
            del self.best_k[worst_path]
            removed.append(worst_path)
        best_path = min(self.best_k, key=lambda p: self.best_k[p] if self.mode == "min" else -self.best_k[p])
        self.best_model_path, self.best_model_score = best_path, self.best_k[best_path]
        if str(path) in self.best_k:
            trainer.save_checkpoint(path)
        if trainer.is_global_zero:
            for old in removed:
                if old != str(path):
                    Path(old).unlink(missing_ok=True)

    def state_dict(self) -> dict[str, Any]:
        return {
            "best_k": dict(self.best_k),
            "best_model_path": self.best_model_path,
            "best_model_score": self.best_model_score,
            "last_model_path": self.last_model_path,
            "dirpath": str(self.dirpath) if self.dirpath else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_k = dict(state.get("best_k", {}))
        self.best_model_path = state.get("best_model_path", "")
        self.best_model_score = state.get("best_model_score")
        self.last_model_path = state.get("last_model_path", "")


__all__ = ["ModelCheckpoint"]
