"""The callback interface: hooks the Trainer calls, all no-ops by default.

A stateful callback returns its state from ``state_dict()``; it is saved in checkpoints under
``state_key`` (class name by default) and given back through ``load_state_dict`` on resume.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vqcodec.train.module import TrainingModule
    from vqcodec.train.trainer import Trainer


class Callback:
    @property
    def state_key(self) -> str:
        return type(self).__name__

    def setup(self, trainer: Trainer, module: TrainingModule, stage: str) -> None: ...

    def on_fit_start(self, trainer: Trainer, module: TrainingModule) -> None: ...

    def on_fit_end(self, trainer: Trainer, module: TrainingModule) -> None: ...

    def on_train_start(self, trainer: Trainer, module: TrainingModule) -> None: ...

    def on_train_end(self, trainer: Trainer, module: TrainingModule) -> None: ...

    def on_train_epoch_start(self, trainer: Trainer, module: TrainingModule) -> None: ...

    def on_train_epoch_end(self, trainer: Trainer, module: TrainingModule) -> None: ...

    def on_train_batch_start(
        self, trainer: Trainer, module: TrainingModule, batch: Any, batch_idx: int
    ) -> None: ...

    def on_before_optimizer_step(
        self, trainer: Trainer, module: TrainingModule, optimizer_index: int
    ) -> None:
        """Gradients are final (unscaled, clipped); the optimizer steps next."""

    def on_train_batch_end(
        self, trainer: Trainer, module: TrainingModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """After the batch; ``trainer.global_step`` already counts its optimizer step, if it made one."""

    def on_validation_start(self, trainer: Trainer, module: TrainingModule) -> None: ...

    def on_validation_end(self, trainer: Trainer, module: TrainingModule) -> None:
        """Validation metrics (reduced over ranks) are in ``trainer.callback_metrics``."""

    def on_test_start(self, trainer: Trainer, module: TrainingModule) -> None: ...

    def on_test_end(self, trainer: Trainer, module: TrainingModule) -> None: ...

    def on_save_checkpoint(
        self, trainer: Trainer, module: TrainingModule, checkpoint: dict[str, Any]
    ) -> None:
        """Add top-level entries to a checkpoint being written (collective-safe: called on every rank)."""

    def on_load_checkpoint(
        self, trainer: Trainer, module: TrainingModule, checkpoint: dict[str, Any]
    ) -> None: ...

    def on_exception(self, trainer: Trainer, module: TrainingModule, exception: BaseException) -> None:
        """``fit`` is failing with ``exception`` (single-process runs only); it is re-raised after."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


__all__ = ["Callback"]
