"""``TrainerState``: the contract the parts of ``Trainer`` share.

``Trainer`` is put together from four parts, ``FitLoop`` and ``EvaluationLoop`` (``loops.py``),
``CheckpointConnector`` (``connectors.py``) and ``LoggingConnector`` (``metrics.py``), which run on one
object and use each other's state and methods.  They all derive from ``TrainerState``, which declares, with
their types, the attributes ``Trainer.__init__`` sets, holds the read-only views of that state (steps,
epoch, ranks, device, elapsed time), and declares the methods one part calls on another (abstract here,
defined once by the part that owns them), so each part type-checks on its own.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch

from vqcodec.train.callbacks import Callback, ModelCheckpoint

if TYPE_CHECKING:
    from vqcodec.train.accelerators import Accelerator
    from vqcodec.train.loggers import Logger, ProgressReporter
    from vqcodec.train.metrics import MetricBuffer
    from vqcodec.train.module import DataModule, OptimizerConfig, TrainingModule
    from vqcodec.train.precision import Precision
    from vqcodec.train.progress import Progress
    from vqcodec.train.sampling import PreparedLoader
    from vqcodec.train.strategies import Strategy
    from vqcodec.train.trainer import Trainer


class TrainerState(ABC):
    """What the parts of ``Trainer`` share (set in ``Trainer.__init__``; see ``trainer.py``)."""

    # ------------------------------------------------------------------ settings
    strategy: Strategy
    precision_name: str
    max_steps: int
    max_epochs: int | None
    max_time: float | None  # seconds
    val_check_interval: int | float | None
    check_val_every_n_epoch: int | None
    limit_train_batches: int | float | None
    limit_val_batches: int | float | None
    limit_test_batches: int | float | None
    overfit_batches: int | float
    num_sanity_val_steps: int
    accumulate_grad_batches: int
    gradient_clip_val: float | None
    gradient_clip_algorithm: str
    default_root_dir: Path
    version: int | str | bool | None
    log_every_n_steps: int
    seed: int | None
    fast_dev_run: int
    enable_progress_bar: bool | None
    callbacks: list[Callback]

    # ------------------------------------------------------------------ run state
    progress: Progress
    stage: str  # "fit", "validate", "test" or "predict"
    should_stop: bool
    sanity_checking: bool
    interrupted_by: int | None  # the signal that stopped the last fit, if one did
    module: TrainingModule | None
    datamodule: DataModule | None
    optimizer_configs: list[OptimizerConfig]
    accelerator: Accelerator | None
    precision_plugin: Precision | None
    loggers: list[Logger]
    train_loader: PreparedLoader | None
    val_loader: list[tuple[str | None, PreparedLoader]] | None
    current_dataloader_idx: int  # the eval loader being run
    current_dataloader_name: str | None  # its dict name, if any
    callback_metrics: dict[str, float]
    progress_metrics: dict[str, float]
    _signal: int | None  # a SIGTERM received during fit
    _time_offset: float  # seconds of training before this fit (a resumed run's earlier time)
    _fit_clock: float  # time.monotonic() when this fit started
    _log_dir: Path | None
    _data_seed: int
    _micro_step: int  # batches accumulated since the last optimizer step
    _optimizer_steps: list[int]  # steps per optimizer
    _grad_norms: list[torch.Tensor | None]  # per optimizer, the norm of its last clipping, until logged
    _toggled: dict[int, bool] | None  # requires_grad per parameter id while an optimizer is toggled
    _reporter: ProgressReporter | None
    _train_buffer: MetricBuffer
    _eval_buffer: MetricBuffer
    _epoch_buffer: MetricBuffer  # training values logged with on_epoch=True
    _active_buffer: MetricBuffer | None  # where self.log goes now
    _current_batch_size: int

    # ------------------------------------------------------------------ views of the state
    @property
    def global_step(self) -> int:
        """Optimizer steps so far (see ``Progress``)."""
        return self.progress.global_step

    @global_step.setter
    def global_step(self, value: int) -> None:
        self.progress.global_step = int(value)

    @property
    def current_epoch(self) -> int:
        return self.progress.epoch

    @current_epoch.setter
    def current_epoch(self, value: int) -> None:
        self.progress.epoch = int(value)

    @property
    def is_global_zero(self) -> bool:
        return self.strategy.is_global_zero

    @property
    def world_size(self) -> int:
        return self.strategy.world_size

    @property
    def rank(self) -> int:
        return self.strategy.rank

    @property
    def device(self) -> torch.device:
        return self.strategy.device

    @property
    def time_elapsed(self) -> float:
        """Seconds of training in this run, earlier (resumed) fits included; what ``max_time`` bounds."""
        return self._time_offset + (time.monotonic() - self._fit_clock)

    @property
    def checkpoint_callback(self) -> ModelCheckpoint | None:
        return next((c for c in self.callbacks if isinstance(c, ModelCheckpoint)), None)

    @property
    def _trainer(self) -> Trainer:
        """This object as the ``Trainer`` the parts make up: what callbacks and the module are handed
        (the parts never run on their own)."""
        return cast("Trainer", self)

    def print(self, *args: Any) -> None:
        """Print on rank 0 only (through the progress bar when one is shown)."""
        if not self.is_global_zero:
            return
        text = " ".join(str(a) for a in args)
        if self._reporter is not None:
            self._reporter.message(text)
        else:
            print(text, flush=True)

    # ------------------------------------------------------------------ set-up (trainer.py)
    @abstractmethod
    def _setup_environment(self) -> None: ...

    @abstractmethod
    def _setup_module(self, module: Any, stage: str) -> TrainingModule: ...

    @abstractmethod
    def _resolve_data(
        self, train: Any, val: Any, datamodule: DataModule | None, stage: str
    ) -> tuple[Any, Any]: ...

    @abstractmethod
    def _prepare(self, loader: Any, *, train: bool) -> PreparedLoader | None: ...

    @abstractmethod
    def _make_loggers(self) -> None: ...

    @abstractmethod
    def _settings(self) -> dict[str, Any]: ...

    # ------------------------------------------------------------------ evaluation (loops.EvaluationLoop)
    @abstractmethod
    def _run_validation(self, module: TrainingModule) -> None: ...

    # ------------------------------------------------------------------ checkpoints (connectors.py)
    @abstractmethod
    def _resolve_ckpt_path(self, ckpt_path: Any) -> Path | None: ...

    # ------------------------------------------------------------------ logging (metrics.LoggingConnector)
    @abstractmethod
    def _log_value(
        self,
        name: str,
        value: torch.Tensor,
        *,
        weight: float,
        op: str,
        prog_bar: bool = False,
        buffer: MetricBuffer | None = None,
        local: bool = False,
    ) -> None: ...

    @abstractmethod
    def _reduce_buffer(self, buffer: MetricBuffer) -> dict[str, float]: ...

    @abstractmethod
    def _flush_train_metrics(self) -> None: ...

    @abstractmethod
    def _flush_epoch_metrics(self) -> None: ...

    @abstractmethod
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...


__all__ = ["TrainerState"]
