"""``EarlyStopping``: stop when a validation metric has not improved for ``patience`` validations.

Improvement means beating the best value by more than ``min_delta`` in the ``mode`` direction.
The metric is reduced over ranks before it gets here, so every rank takes the same decision.
A non-finite value stops at once when ``check_finite``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from vqcodec.train.callbacks.base import Callback

if TYPE_CHECKING:
    from vqcodec.train.module import TrainingModule
    from vqcodec.train.trainer import Trainer


class EarlyStopping(Callback):
    def __init__(
        self,
        monitor: str,
        *,
        mode: str = "min",
        patience: int = 3,
        min_delta: float = 0.0,
        check_finite: bool = True,
        strict: bool = True,
    ):
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.monitor = monitor
        self.mode = mode
        self.patience = int(patience)
        self.min_delta = abs(float(min_delta))
        self.check_finite = check_finite
        self.strict = strict
        self.best: float | None = None
        self.wait = 0
        self.stopped_step: int | None = None
        self.reason = ""

    @property
    def state_key(self) -> str:
        return f"EarlyStopping[{self.monitor}]"

    def on_validation_end(self, trainer: Trainer, module: TrainingModule) -> None:
        if trainer.sanity_checking or trainer.stage != "fit":
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            if self.strict:
                raise KeyError(f"EarlyStopping monitors {self.monitor!r}, which was not logged")
            return
        score = float(value)
        if self.check_finite and not math.isfinite(score):
            self._stop(trainer, f"{self.monitor} = {score} is not finite")
            return
        improved = self.best is None or (
            score < self.best - self.min_delta if self.mode == "min" else score > self.best + self.min_delta
        )
        if improved:
            self.best, self.wait = score, 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            self._stop(
                trainer, f"{self.monitor} did not improve for {self.wait} validations (best {self.best:.6g})"
            )

    def _stop(self, trainer: Trainer, reason: str) -> None:
        trainer.should_stop = True
        self.stopped_step = trainer.global_step
        self.reason = reason
        trainer.print(f"early stopping at step {trainer.global_step}: {reason}")

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "wait": self.wait, "stopped_step": self.stopped_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state.get("best")
        self.wait = int(state.get("wait", 0))
        self.stopped_step = state.get("stopped_step")


__all__ = ["EarlyStopping"]
