"""``LearningRateMonitor``: logs every optimizer's learning rate (``lr/opt<i>``, ``lr/opt<i>/group<j>``
when an optimizer has several parameter groups) at each logging step."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vqcodec.train.callbacks.base import Callback

if TYPE_CHECKING:
    from vqcodec.train.module import TrainingModule
    from vqcodec.train.trainer import Trainer


def learning_rates(trainer: Trainer) -> dict[str, float]:
    rates: dict[str, float] = {}
    for i, config in enumerate(trainer.optimizer_configs):
        groups = config.optimizer.param_groups
        for j, group in enumerate(groups):
            name = f"lr/opt{i}" if len(groups) == 1 else f"lr/opt{i}/group{j}"
            rates[name] = float(group["lr"])
    return rates


class LearningRateMonitor(Callback):
    def __init__(self, logging_interval: int | None = None):
        self.logging_interval = logging_interval
        self.last: dict[str, float] = {}

    def on_train_batch_end(
        self, trainer: Trainer, module: TrainingModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        interval = self.logging_interval or trainer.log_every_n_steps
        if not trainer.progress.crossed(interval):
            return
        self.last = learning_rates(trainer)
        trainer.log_metrics(self.last)


__all__ = ["LearningRateMonitor", "learning_rates"]
