"""``Trainer``: owns the loop, the devices, the precision, logging and checkpoints.

    trainer = Trainer(strategy="ddp", precision="bf16-mixed", max_steps=10_000, val_check_interval=500,
                      gradient_clip_val=1.0, callbacks=[EMA(0.999)], default_root_dir="runs/x")
    trainer.fit(module, train_loader, val_loader)          # or fit(module, datamodule=dm)
    trainer.fit(module, train_loader, val_loader, ckpt_path="last")  # resume the newest run

Semantics worth knowing (Lightning's unless said otherwise):

- ``trainer.progress`` holds the loop counters (see ``progress.py``). ``global_step`` counts optimizer
  steps: one per ``accumulate_grad_batches`` batches in automatic mode, every ``opt.step()`` in manual
  mode. ``max_steps`` counts in it.
- ``val_check_interval``: None validates at the end of every ``check_val_every_n_epoch``-th epoch, a
  float in (0, 1] after that fraction of an epoch's batches, an int after that many training *batches*
  (within the epoch; across epochs when it exceeds one or ``check_val_every_n_epoch`` is None, where
  Lightning would raise for the former).
- ``limit_train/val/test_batches`` and ``overfit_batches``: an int is a number of batches, a float a
  fraction of the loader's batches (one that rounds to no batch raises). ``overfit_batches`` repeats the
  first batches unshuffled and validates on as many batches.
- Several optimizers in automatic mode share one loss: after backward each steps its own parameters with
  its own clipping and scheduler, and together they make one ``global_step`` (a vqcodec extension:
  Lightning needs manual optimisation for several optimizers). Per-optimizer losses (GANs) use manual
  optimisation, where ``gradient_clip_val`` / ``accumulate_grad_batches`` raise a ValueError and the
  module steps its schedulers.
- Run folders are versioned: ``log_dir = <default_root_dir>/version_<n>`` (the next free n; ``version=``
  an int or a name pins it, ``version=False`` writes into ``default_root_dir`` itself); logs and
  ``checkpoints/`` go there. Resuming a checkpoint from one of the root's runs continues that run's
  folder; ``ckpt_path="last"`` picks the newest ``last.ckpt`` (unlike Lightning, which makes a new
  version on resume and looks only in the checkpoint callback's folder).
- Data order is a function of (seed, epoch, world size) only (see ``sampling.py``); plain DataLoaders are
  re-sampled per rank automatically. The seed is stored in checkpoints and a resume takes it from there,
  whatever the global RNG, ``$VQCODEC_SEED`` or ``seed=`` say then. Validation runs under a forked RNG,
  so it never shifts training's random streams.
- Logged training values are averaged over ``log_every_n_steps`` steps and over ranks; validation values
  over the epoch (batch-size weighted) and over ranks. Reduced values land in ``callback_metrics``.
- Exact resume: a checkpoint taken at a step boundary holds everything (see ``checkpoint.py``); on CPU,
  N straight steps and k steps + resume + N - k steps give bit-identical weights, also mid-epoch
  (with ``num_workers=0`` loaders, or datasets whose randomness comes from the index).
- ``fit(torch.compile(module))`` trains the original module with a compiled ``forward``; compiled
  submodules save under their plain names (no ``_orig_mod.`` in state-dict or optimizer-state keys).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from vqcodec.train.accelerators import Accelerator, make_accelerator
from vqcodec.train.callbacks import Callback, ModelCheckpoint
from vqcodec.train.checkpoint import load_checkpoint
from vqcodec.train.connectors import CheckpointConnector
from vqcodec.train.loggers import ProgressReporter, make_loggers
from vqcodec.train.loops import EvaluationLoop, FitLoop
from vqcodec.train.metrics import LoggingConnector, MetricBuffer
from vqcodec.train.module import (
    DataModule,
    TrainingModule,
    normalize_optimizers,
)
from vqcodec.train.precision import canonical_precision, make_precision
from vqcodec.train.progress import Progress
from vqcodec.train.sampling import PreparedLoader
from vqcodec.train.strategies import Strategy, make_strategy
from vqcodec.train.utilities import (
    SEED_ENV,
    TrainingInterrupted,
    batch_size_of,
    check_batch_count,
    move_to_device,
    parse_max_time,
    resolve_batch_count,
    seed_everything,
    unwrap_compiled,
)


class Trainer(FitLoop, EvaluationLoop, CheckpointConnector, LoggingConnector):
    """The facade: settings, set-up and ``fit``; the loops, logging and checkpoint I/O live in
    ``loops.py``, ``metrics.py`` and ``connectors.py``, and what those parts share is declared once in
    ``state.py`` (``TrainerState``). See the module docstring for the semantics."""

    def __init__(
        self,
        *,
        strategy: str | Strategy = "single",
        strategy_options: dict[str, Any] | None = None,
        accelerator: str | Accelerator = "auto",
        precision: str | int = "32",
        max_steps: int = -1,
        max_epochs: int | None = None,
        val_check_interval: int | float | None = None,
        check_val_every_n_epoch: int | None = 1,
        limit_train_batches: int | float | None = None,
        limit_val_batches: int | float | None = None,
        limit_test_batches: int | float | None = None,
        accumulate_grad_batches: int = 1,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str = "norm",
        callbacks: Sequence[Callback] | None = None,
        logger: Any = True,
        default_root_dir: str | os.PathLike[str] = "runs",
        log_every_n_steps: int = 50,
        enable_checkpointing: bool = True,
        enable_progress_bar: bool | None = None,
        fast_dev_run: bool | int = False,
        overfit_batches: int | float = 0,
        num_sanity_val_steps: int = 0,
        seed: int | None = None,
        deterministic: bool = False,
        version: int | str | bool | None = None,
        max_time: str | float | dict[str, float] | timedelta | None = None,
    ):
        if accumulate_grad_batches < 1:
            raise ValueError("accumulate_grad_batches must be >= 1")
        if gradient_clip_algorithm not in ("norm", "value"):
            raise ValueError(
                f"gradient_clip_algorithm must be 'norm' or 'value', got {gradient_clip_algorithm!r}"
            )
        self.strategy = make_strategy(strategy, **(strategy_options or {}))
        self._accelerator_choice = accelerator
        self.precision_name = canonical_precision(precision)
        self.max_steps = int(max_steps)
        self.max_epochs = max_epochs if max_epochs is not None else (None if self.max_steps >= 0 else 1000)
        self.val_check_interval = val_check_interval
        self.check_val_every_n_epoch = (
            int(check_val_every_n_epoch) if check_val_every_n_epoch is not None else None
        )
        for name, value in (
            ("limit_train_batches", limit_train_batches),
            ("limit_val_batches", limit_val_batches),
            ("limit_test_batches", limit_test_batches),
            ("overfit_batches", overfit_batches),
        ):
            check_batch_count(name, value)
        if isinstance(val_check_interval, bool) or (
            val_check_interval is not None
            and not (isinstance(val_check_interval, int) and val_check_interval >= 1)
            and not (isinstance(val_check_interval, float) and 0.0 < val_check_interval <= 1.0)
        ):
            raise ValueError(
                "val_check_interval must be an int >= 1 (training batches) or a float in (0, 1] "
                f"(a fraction of an epoch), got {val_check_interval!r}"
            )
        self.limit_train_batches = limit_train_batches
        self.limit_val_batches = limit_val_batches
        self.limit_test_batches = limit_test_batches
        self.accumulate_grad_batches = int(accumulate_grad_batches)
        self.gradient_clip_val = gradient_clip_val
        self.gradient_clip_algorithm = gradient_clip_algorithm
        self.default_root_dir = Path(default_root_dir)
        self.log_every_n_steps = max(1, int(log_every_n_steps))
        self.overfit_batches = overfit_batches
        self.version = version
        self.max_time = parse_max_time(max_time)
        self._time_offset = 0.0
        self._fit_clock = time.monotonic()
        self._signal = None
        self.interrupted_by = None
        self._log_dir = None
        self.num_sanity_val_steps = int(num_sanity_val_steps)
        self.seed = seed
        self.fast_dev_run = int(fast_dev_run) if fast_dev_run else 0
        self._logger_choice: Any = logger
        self.enable_progress_bar = enable_progress_bar
        user_callbacks = list(callbacks or [])
        if self.fast_dev_run:
            n = self.fast_dev_run
            self.max_steps, self.max_epochs = n, 1
            self.val_check_interval = n
            self.limit_val_batches = self.limit_test_batches = n
            self._logger_choice = False
            enable_checkpointing = False
            user_callbacks = [c for c in user_callbacks if not isinstance(c, ModelCheckpoint)]
        if enable_checkpointing and not any(isinstance(c, ModelCheckpoint) for c in user_callbacks):
            user_callbacks.append(ModelCheckpoint())
        # checkpoint writers last, so they see the state the other callbacks left (EMA swapped back, ...)
        self.callbacks = sorted(user_callbacks, key=lambda c: isinstance(c, ModelCheckpoint))
        if deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)

        self.progress = Progress()
        self.should_stop = False
        self.stage = "fit"
        self.sanity_checking = False
        self.callback_metrics = {}
        self.progress_metrics = {}
        self.optimizer_configs = []
        self.module = None
        self.loggers = []
        self.precision_plugin = None
        self.accelerator = None
        self.datamodule = None
        self._micro_step = 0
        self._optimizer_steps = []
        self._train_buffer = MetricBuffer()
        self._eval_buffer = MetricBuffer()
        self._epoch_buffer = MetricBuffer()
        self._active_buffer = None
        self._current_batch_size = 1
        self._reporter = None
        self._environment_ready = False
        self._toggled = None
        self._grad_norms = []
        self._data_seed = 0
        self.train_loader = None
        self.val_loader = None
        self.current_dataloader_idx = 0
        self.current_dataloader_name = None

    # ================================================================== public properties
    # (global_step, current_epoch, is_global_zero, world_size, rank, device, time_elapsed,
    # checkpoint_callback and print are TrainerState's: every part uses them)
    @property
    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [c.optimizer for c in self.optimizer_configs]

    @property
    def lr_schedulers(self) -> list[Any]:
        return [c.scheduler.scheduler for c in self.optimizer_configs if c.scheduler is not None]

    @property
    def lightning_module(self) -> TrainingModule | None:
        """The module being fitted (Lightning's name for it, so ported callbacks keep working)."""
        return self.module

    # ================================================================== set-up
    def _setup_environment(self) -> None:
        if self._environment_ready:
            return
        self.accelerator = make_accelerator(self._accelerator_choice)
        self.strategy.setup_environment(self.accelerator)
        self.precision_plugin = make_precision(self.precision_name, self.strategy.device)
        self._data_seed = self._default_data_seed()
        self._environment_ready = True

    def _default_data_seed(self) -> int:
        if self.seed is None and os.environ.get(SEED_ENV):
            return int(os.environ[SEED_ENV])
        return int(self.seed or 0)

    def _setup_module(self, module: Any, stage: str) -> TrainingModule:
        module = unwrap_compiled(module)
        if not isinstance(module, TrainingModule):
            raise TypeError(f"the trainer trains a TrainingModule, got {type(module).__name__}")
        self.module = module
        self.stage = stage
        module._attach(self)
        self.strategy.manual_optimization = not module.automatic_optimization
        self.strategy.setup_module(module)
        return module

    def _check_manual_settings(self) -> None:
        """Lightning refuses these in manual optimisation; so does vqcodec (silently ignoring or applying
        them would give another run than the one asked for)."""
        if self.gradient_clip_val:
            raise ValueError(
                "gradient_clip_val is not supported with automatic_optimization=False: call "
                "self.clip_gradients(opt, gradient_clip_val=...) in training_step before opt.step()"
            )
        if self.accumulate_grad_batches != 1:
            raise ValueError(
                "accumulate_grad_batches is not supported with automatic_optimization=False: "
                "accumulate in training_step (step the optimizer every N batches yourself)"
            )
        for i, config in enumerate(self.optimizer_configs):
            if config.gradient_clip_val:
                raise ValueError(
                    f"optimizer {i}: gradient_clip_val in configure_optimizers() is not supported with "
                    "automatic_optimization=False: call self.clip_gradients(opt, ...) in training_step"
                )

    def _prepare(self, loader: Any, *, train: bool) -> PreparedLoader | None:
        if loader is None:
            return None
        if isinstance(loader, PreparedLoader):
            return loader
        if not isinstance(loader, DataLoader):
            raise TypeError(f"expected a torch DataLoader, got {type(loader).__name__}")
        overfit = 0
        if train and self.overfit_batches:
            batch = int(loader.batch_size or 1)
            total = None
            try:
                n = len(loader.dataset)  # type: ignore[arg-type]
                per_rank = n // self.world_size if loader.drop_last else math.ceil(n / self.world_size)
                total = per_rank // batch if loader.drop_last else math.ceil(per_rank / batch)
            except TypeError:
                pass
            batches = resolve_batch_count("overfit_batches", self.overfit_batches, total)
            overfit = int(batches or 0) * batch * self.world_size
        return PreparedLoader(
            loader,
            shuffle=None,
            seed=self._data_seed,
            rank=self.rank,
            world_size=self.world_size,
            overfit=overfit,
            force_shuffle_off=not train or bool(overfit),
        )

    def _resolve_data(
        self, train: Any, val: Any, datamodule: DataModule | None, stage: str
    ) -> tuple[Any, Any]:
        if isinstance(train, DataModule):
            datamodule, train = train, None
        if isinstance(train, tuple) and len(train) == 2 and val is None:
            train, val = train
        if datamodule is not None:
            self.datamodule = datamodule
            datamodule.setup(stage)
            if stage == "fit":
                train = train if train is not None else datamodule.train_dataloader()
                val = val if val is not None else datamodule.val_dataloader()
            elif stage == "validate":
                val = val if val is not None else datamodule.val_dataloader()
            else:
                val = val if val is not None else datamodule.test_dataloader()
        return train, val

    # ================================================================== run folder

    def _make_loggers(self) -> None:
        self.loggers = make_loggers(self._logger_choice, self.log_dir) if self.is_global_zero else []
        show = self.enable_progress_bar if self.enable_progress_bar is not None else True
        self._reporter = ProgressReporter(enabled=show and self.is_global_zero)

    # ================================================================== fit
    def fit(
        self,
        module: TrainingModule,
        train_dataloader: Any = None,
        val_dataloader: Any = None,
        ckpt_path: str | os.PathLike[str] | None = None,
        *,
        datamodule: DataModule | None = None,
    ) -> None:
        """Train ``module``; ``train_dataloader`` may be a DataLoader, a DataModule or a (train, val) pair.

        ``module`` may be ``torch.compile(module)``: the trainer trains the original module with a
        compiled ``forward`` (state-dict keys stay clean). ``ckpt_path="last"`` resumes the newest
        ``last.ckpt`` under ``default_root_dir`` (starting from scratch, with a message, when none exists).
        """
        self._setup_environment()
        train, val = self._resolve_data(train_dataloader, val_dataloader, datamodule, "fit")
        if train is None:
            raise ValueError("fit needs a training DataLoader (or a DataModule with train_dataloader())")
        resolved = self._resolve_ckpt_path(ckpt_path)
        checkpoint = load_checkpoint(resolved) if resolved is not None else None
        self._fit_clock = time.monotonic()
        self._time_offset = float(checkpoint["loop"].get("time_elapsed", 0.0)) if checkpoint else 0.0
        self._log_dir = self._resolve_log_dir(resolved)
        self._data_seed = self._default_data_seed()
        if checkpoint is None and self.seed is not None:
            seed_everything(self.seed)
        if checkpoint is not None:
            # the data order is part of the run: take its seed from the checkpoint, whatever the global
            # RNG or $VQCODEC_SEED say now, before the resumed epoch's sampler is built
            saved_seed = checkpoint["loop"].get("data_seed")
            if saved_seed is not None:
                if self.seed is not None and int(self.seed) != int(saved_seed):
                    self.print(
                        f"resuming: data order keeps the checkpoint's seed {saved_seed}, not {self.seed}"
                    )
                self._data_seed = int(saved_seed)
        module = self._setup_module(module, "fit")
        self.optimizer_configs = normalize_optimizers(module.configure_optimizers())
        if not self.optimizer_configs:
            raise ValueError("configure_optimizers() returned no optimizer")
        if not module.automatic_optimization:
            self._check_manual_settings()
        self._optimizer_steps = [0] * len(self.optimizer_configs)
        self._grad_norms = [None] * len(self.optimizer_configs)
        for config in self.optimizer_configs:
            config.optimizer.zero_grad(set_to_none=True)
        self.train_loader = self._prepare(train, train=True)
        self.val_loader = self._prepare_eval(val)
        self._make_loggers()
        for callback in self.callbacks:
            callback.setup(self, module, "fit")
        for callback in self.callbacks:
            callback.on_fit_start(self, module)
        if checkpoint is not None:
            self._restore(module, checkpoint)
        else:
            self.progress.reset()
            self._micro_step = 0
        self.should_stop = False
        try:
            if self.num_sanity_val_steps and self.val_loader is not None and checkpoint is None:
                self._sanity_check()
            if self.is_global_zero and self.loggers and checkpoint is None:
                hparams = getattr(module, "hparams", None)
                for logger in self.loggers:
                    logger.log_hyperparams({"trainer": self._settings(), "module": hparams or {}})
            module.on_train_start()
            for callback in self.callbacks:
                callback.on_train_start(self, module)
            if checkpoint is not None:
                # the very last thing before the loop, so nothing above can shift the random streams
                self._restore_rng(checkpoint)
            with self._stop_on_signals():
                self._fit_loop(module)
        except BaseException as error:
            self._on_exception(module, error)
            raise
        finally:
            self._finish(module)
        if self.interrupted_by is not None:
            checkpointer = self.checkpoint_callback
            raise TrainingInterrupted(
                self.interrupted_by,
                self.global_step,
                checkpointer.last_model_path if checkpointer is not None else None,
            )

    def _on_exception(self, module: TrainingModule, error: BaseException) -> None:
        """Tell the callbacks (``ModelCheckpoint`` writes ``on_exception.ckpt``). Single process only: a
        rank that fails alone cannot join the collectives a save needs, so under DDP/FSDP nothing runs."""
        if self.strategy.is_distributed:
            return
        for callback in self.callbacks:
            try:
                callback.on_exception(self, module, error)
            except Exception as inner:  # the original error is the one to report
                self.print(f"{type(callback).__name__}.on_exception failed: {inner}")

    def _settings(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy.name,
            "precision": self.precision_name,
            "world_size": self.world_size,
            "max_steps": self.max_steps,
            "max_epochs": self.max_epochs,
            "accumulate_grad_batches": self.accumulate_grad_batches,
            "gradient_clip_val": self.gradient_clip_val,
            "gradient_clip_algorithm": self.gradient_clip_algorithm,
            "val_check_interval": self.val_check_interval,
            "seed": self._data_seed,
        }

    def _finish(self, module: TrainingModule) -> None:
        if self._reporter is not None:
            self._reporter.close()
        for logger in self.loggers:
            logger.finalize()
        self.strategy.teardown_module(module)

    # ================================================================== one batch

    # ================================================================== logging

    # ================================================================== evaluation

    # ================================================================== checkpoints

    def full_module(self) -> nn.Module:
        """The trained module with full, plain weights (collective under FSDP; for export)."""
        if self.module is None:
            raise RuntimeError("no module: call fit first")
        return self.strategy.full_module(self.module)


__all__ = [
    "Trainer",
    "TrainingInterrupted",
    "batch_size_of",
    "move_to_device",
    "parse_max_time",
    "resolve_batch_count",
    "seed_everything",
]
