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

import inspect
import math
import os
import random
import signal
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from vqcodec.train.accelerators import Accelerator, make_accelerator
from vqcodec.train.callbacks import Callback, ModelCheckpoint
from vqcodec.train.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    atomic_save,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
)
from vqcodec.train.loggers import Logger, ProgressReporter, make_loggers
from vqcodec.train.module import (
    DataModule,
    OptimizerConfig,
    TrainingModule,
    clip_gradients,
    normalize_optimizers,
)
from vqcodec.train.precision import Precision, canonical_precision, make_precision
from vqcodec.train.progress import Progress
from vqcodec.train.sampling import PreparedLoader
from vqcodec.train.strategies import Strategy, make_strategy

SEED_ENV = "VQCODEC_SEED"


def seed_everything(seed: int) -> int:
    """Seed python, numpy and torch (all devices); also exported as ``$VQCODEC_SEED`` for child processes."""
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ[SEED_ENV] = str(seed)
    return seed


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Tensors anywhere in lists/tuples/dicts moved to ``device`` (non-blocking from pinned memory)."""
    if torch.is_tensor(batch):
        return batch if batch.device == device else batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(move_to_device(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(v, device) for v in batch)
    return batch


def batch_size_of(batch: Any) -> int:
    if torch.is_tensor(batch):
        return int(batch.shape[0]) if batch.ndim else 1
    if isinstance(batch, dict):
        for value in batch.values():
            return batch_size_of(value)
    if isinstance(batch, (list, tuple)) and batch:
        return batch_size_of(batch[0])
    return 1


def _loss_of(output: Any) -> torch.Tensor | None:
    if output is None or torch.is_tensor(output):
        return output
    if isinstance(output, dict):
        if "loss" not in output:
            raise KeyError("training_step returned a dict without a 'loss' entry")
        return output["loss"]
    raise TypeError(
        f"training_step must return a tensor, a dict with 'loss' or None, not {type(output).__name__}"
    )


def _check_batch_count(name: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be an int (batches) or a float in [0, 1] (a fraction), got {value!r}")
    if isinstance(value, float) and not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} as a float is a fraction of the batches, in [0, 1]; got {value}")
    if isinstance(value, int) and value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")


def resolve_batch_count(name: str, value: int | float | None, total: int | None) -> int | None:
    """Lightning's meaning of ``limit_*_batches`` / ``overfit_batches``: an int is a number of batches,
    a float that fraction of the loader's ``total`` batches (1.0 = all; None = no limit)."""
    if value is None:
        return None
    if isinstance(value, float):
        if value == 1.0:
            return total
        if total is None:
            raise ValueError(f"a fractional {name} needs a loader with a length")
        count = int(total * value)
        if count == 0 and value > 0.0:
            raise ValueError(f"{name}={value} of {total} batches is less than one batch")
        return count
    return int(value)


class TrainingInterrupted(RuntimeError):
    """A fit stopped by SIGTERM/SIGINT after writing its checkpoint (``.checkpoint``, ``.signal``)."""

    def __init__(self, signum: int, step: int, checkpoint: str | None):
        self.signal, self.step, self.checkpoint = signum, step, checkpoint
        where = f"; checkpoint {checkpoint} (resume with ckpt_path='last')" if checkpoint else ""
        super().__init__(f"training stopped by {signal.Signals(signum).name} at step {step}{where}")


def parse_max_time(value: Any) -> float | None:
    """``max_time`` as Lightning takes it ("DD:HH:MM:SS", a timedelta, a dict of timedelta fields) or a
    number of seconds -> seconds."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, dict):
        seconds = timedelta(**value).total_seconds()
    elif isinstance(value, str):
        parts = value.split(":")
        if len(parts) != 4 or not all(p.strip().isdigit() for p in parts):
            raise ValueError(f"max_time must look like 'DD:HH:MM:SS', got {value!r}")
        days, hours, minutes, secs = (int(p) for p in parts)
        seconds = timedelta(days=days, hours=hours, minutes=minutes, seconds=secs).total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise ValueError(f"max_time must be 'DD:HH:MM:SS', a timedelta, a dict or seconds, got {value!r}")
    if seconds < 0:
        raise ValueError(f"max_time must be >= 0, got {value!r}")
    return seconds


def _unwrap_compiled(module: Any) -> Any:
    """``torch.compile(module)`` -> the original module with its ``forward`` compiled the same way.

    The trainer hooks, wraps (DDP) and checkpoints the original module, so state-dict keys carry no
    ``_orig_mod.`` prefix; only ``forward`` (what ``self(...)`` in the steps runs) goes through dynamo.
    """
    compiled_type = getattr(getattr(torch, "_dynamo", None), "eval_frame", None)
    compiled_type = getattr(compiled_type, "OptimizedModule", None)
    if compiled_type is None or not isinstance(module, compiled_type):
        return module
    original = module._orig_mod
    if isinstance(original, TrainingModule) and "forward" not in original.__dict__:
        object.__setattr__(original, "forward", module.dynamo_ctx(original.forward))
    return original


def _version_folders(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    found = [(int(p.name[8:]), p) for p in root.glob("version_*") if p.is_dir() and p.name[8:].isdigit()]
    return [p for _, p in sorted(found)]


def _next_version(root: Path) -> int:
    folders = _version_folders(root)
    return int(folders[-1].name[8:]) + 1 if folders else 0


class _MetricBuffer:
    """Logged values waiting to be reduced: per name, the logged scalars and their weights.

    Adding is two list appends (no tensor math on the hot path); ``summary`` combines them once per
    logging window: a weighted mean, a plain sum, or a max/min.
    """

    def __init__(self) -> None:
        self.values: dict[str, tuple[list[torch.Tensor], list[float]]] = {}
        self.ops: dict[str, str] = {}
        self.prog_bar: set[str] = set()
        self.local: set[str] = set()  # sync_dist=False: not reduced over ranks

    def add(self, name: str, value: torch.Tensor, weight: float, op: str) -> None:
        entry = self.values.get(name)
        if entry is None:
            entry = self.values[name] = ([], [])
            self.ops[name] = op
        entry[0].append(value)
        entry[1].append(weight)

    def summary(self, name: str) -> tuple[torch.Tensor, float]:
        """(combined value, total weight) for ``name`` on this rank."""
        tensors, weights = self.values[name]
        stacked = torch.stack(tensors).float()
        op = self.ops[name]
        if op == "mean":
            if all(w == 1.0 for w in weights):
                return stacked.sum(), float(len(weights))
            return (stacked * torch.tensor(weights, device=stacked.device)).sum(), float(sum(weights))
        if op == "sum":
            return stacked.sum(), float(len(weights))
        return (stacked.max() if op == "max" else stacked.min()), float(len(weights))

    def clear(self) -> None:
        self.values.clear()
        self.ops.clear()
        self.local.clear()


class Trainer:
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
            _check_batch_count(name, value)
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
        self._time_offset = 0.0  # seconds of training before this fit (a resumed run's earlier time)
        self._fit_clock = time.monotonic()
        self._signal: int | None = None
        self.interrupted_by: int | None = None  # the signal that stopped the last fit, if one did
        self._log_dir: Path | None = None
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
        self.callbacks: list[Callback] = sorted(user_callbacks, key=lambda c: isinstance(c, ModelCheckpoint))
        if deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)

        self.progress = Progress()
        self.should_stop = False
        self.stage = "fit"
        self.sanity_checking = False
        self.callback_metrics: dict[str, float] = {}
        self.progress_metrics: dict[str, float] = {}
        self.optimizer_configs: list[OptimizerConfig] = []
        self.module: TrainingModule | None = None
        self.loggers: list[Logger] = []
        self.precision_plugin: Precision | None = None
        self.accelerator: Accelerator | None = None
        self.datamodule: DataModule | None = None
        self._micro_step = 0
        self._optimizer_steps: list[int] = []
        self._train_buffer = _MetricBuffer()
        self._eval_buffer = _MetricBuffer()
        self._epoch_buffer = _MetricBuffer()  # training values logged with on_epoch=True
        self._active_buffer: _MetricBuffer | None = None
        self._current_batch_size = 1
        self._reporter: ProgressReporter | None = None
        self._environment_ready = False
        self._toggled: dict[int, bool] | None = None
        self._grad_norms: list[torch.Tensor | None] = []
        self._data_seed = 0
        self.val_loader: list[tuple[str | None, PreparedLoader]] | None = None
        self.current_dataloader_idx = 0  # the eval loader being run (its dict name, if any)
        self.current_dataloader_name: str | None = None

    # ================================================================== public properties
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
    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [c.optimizer for c in self.optimizer_configs]

    @property
    def lr_schedulers(self) -> list[Any]:
        return [c.scheduler.scheduler for c in self.optimizer_configs if c.scheduler is not None]

    @property
    def checkpoint_callback(self) -> ModelCheckpoint | None:
        return next((c for c in self.callbacks if isinstance(c, ModelCheckpoint)), None)

    @property
    def lightning_module(self) -> TrainingModule | None:
        return self.module

    def print(self, *args: Any) -> None:
        """Print on rank 0 only (through the progress bar when one is shown)."""
        if not self.is_global_zero:
            return
        text = " ".join(str(a) for a in args)
        if self._reporter is not None:
            self._reporter.message(text)
        else:
            print(text, flush=True)

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
        module = _unwrap_compiled(module)
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

    @property
    def time_elapsed(self) -> float:
        """Seconds of training in this run, earlier (resumed) fits included; what ``max_time`` bounds."""
        return self._time_offset + (time.monotonic() - self._fit_clock)

    # ================================================================== run folder
    @property
    def log_dir(self) -> Path:
        """This run's folder: ``<default_root_dir>/version_<n>`` (see ``Trainer``'s ``version``)."""
        if self._log_dir is None:
            self._log_dir = self._resolve_log_dir(None)
        return self._log_dir

    def _resolve_log_dir(self, resumed_from: Path | None) -> Path:
        """Pick the run folder (rank 0 decides, every rank gets the same answer)."""
        root = self.default_root_dir
        if self.version is False or self.version == "":
            return root
        if isinstance(self.version, str) and self.version:
            return root / self.version
        if isinstance(self.version, int) and not isinstance(self.version, bool):
            return root / f"version_{self.version}"
        if resumed_from is not None:
            # resuming a checkpoint of one of this root's runs (<run>/checkpoints/x.ckpt) continues that
            # run's folder: its metrics.csv goes on where the checkpoint left it
            folder, root_abs = resumed_from.resolve().parent.parent, root.resolve()
            if folder == root_abs:
                return root
            if folder.parent == root_abs:
                return root / folder.name
        chosen = root / f"version_{_next_version(root)}" if self.is_global_zero else root
        if self.strategy.is_distributed:
            chosen = Path(self.strategy.broadcast_object(str(chosen)))
        return chosen

    def _resolve_ckpt_path(self, ckpt_path: Any) -> Path | None:
        """``"last"``: the newest ``last.ckpt`` of this root's runs (or of an explicit checkpoint dirpath)."""
        if ckpt_path is None:
            return None
        if str(ckpt_path) != "last":
            return Path(ckpt_path)
        candidates = [self.default_root_dir / "checkpoints" / "last.ckpt"]  # an unversioned run
        candidates += [
            folder / "checkpoints" / "last.ckpt" for folder in _version_folders(self.default_root_dir)
        ]
        callback = self.checkpoint_callback
        if callback is not None and callback.dirpath is not None:
            candidates.append(Path(callback.dirpath) / "last.ckpt")
        found = [c for c in candidates if c.is_file()]
        if not found:
            self.print(f'ckpt_path="last": no last.ckpt under {self.default_root_dir}, starting from scratch')
            return None
        return max(found, key=lambda c: c.stat().st_mtime)

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
        finally:
            self._finish(module)
        if self.interrupted_by is not None:
            callback = self.checkpoint_callback
            raise TrainingInterrupted(
                self.interrupted_by, self.global_step, callback.last_model_path if callback else None
            )

    @contextmanager
    def _stop_on_signals(self) -> Iterator[None]:
        """SIGTERM (a scheduler's pre-emption) stops the loop at the next batch end, which writes
        ``last.ckpt`` and raises ``TrainingInterrupted``; the handler is the previous one again after."""
        self._signal = self.interrupted_by = None
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: Any) -> None:
            self._signal = signum

        previous = signal.signal(signal.SIGTERM, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)

    def _check_stop(self) -> None:
        """max_time and signals, agreed on by every rank (one tiny all-reduce per batch when distributed)."""
        flags = [
            float(self._signal is not None),
            float(self.max_time is not None and self.time_elapsed >= self.max_time),
        ]
        if self.strategy.is_distributed:
            flags = self.strategy.all_reduce(torch.tensor(flags, device=self.device), "max").tolist()
        if flags[0]:
            self.interrupted_by = self._signal if self._signal is not None else int(signal.SIGTERM)
            self.should_stop = True
            self.print(f"{signal.Signals(self.interrupted_by).name}: stopping at step {self.global_step}")
        elif flags[1]:
            self.should_stop = True
            self.print(f"max_time reached: stopping at step {self.global_step}")

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

    def _done(self) -> bool:
        if self.should_stop:
            return True
        if self.max_steps >= 0 and self.global_step >= self.max_steps:
            return True
        return self.max_epochs is not None and self.current_epoch >= self.max_epochs

    def _val_schedule(self, per_epoch: int | None) -> tuple[int | None, int | None]:
        """(validate every N batches of an epoch, validate every N training batches overall).

        A float ``val_check_interval`` is a fraction of the epoch's batches. An int counts training
        batches (as in Lightning): within the epoch when it fits in one, across epochs when it does not or
        when ``check_val_every_n_epoch`` is None (Lightning raises for an int larger than an epoch unless
        ``check_val_every_n_epoch=None``; vqcodec's step-based recipes rely on counting across epochs).
        """
        interval = self.val_check_interval
        if interval is None:
            return None, None
        if isinstance(interval, float):
            if not per_epoch:
                raise ValueError("a fractional val_check_interval needs a loader with a length")
            return max(1, int(per_epoch * interval)), None
        if self.check_val_every_n_epoch is None or not per_epoch or interval > per_epoch:
            return None, int(interval)
        return int(interval), None

    def _fit_loop(self, module: TrainingModule) -> None:
        assert self.train_loader is not None
        module.train()
        progress = self.progress
        per_epoch = self.train_loader.batches_per_epoch()
        limit = resolve_batch_count("limit_train_batches", self.limit_train_batches, per_epoch)
        if self.overfit_batches and limit is None:
            limit = per_epoch  # the repeated first batches are the whole epoch
        if limit is not None:
            if limit == 0:
                raise ValueError("limit_train_batches resolves to 0 batches: nothing to train")
            per_epoch = min(per_epoch, limit) if per_epoch is not None else limit
        total = self.max_steps if self.max_steps >= 0 else None
        if self._reporter is not None:
            self._reporter.start(total, self.global_step)
        val_in_epoch, val_overall = self._val_schedule(per_epoch)
        while not self._done():
            self.train_loader.set_epoch(self.current_epoch, progress.batch_in_epoch)
            if progress.batch_in_epoch == 0:
                module.on_train_epoch_start()
                for callback in self.callbacks:
                    callback.on_train_epoch_start(self, module)
            exhausted = True
            for batch in self.train_loader:
                if per_epoch is not None and progress.batch_in_epoch >= per_epoch:
                    break
                batch_idx = progress.batch_in_epoch
                last_in_epoch = per_epoch is not None and batch_idx + 1 >= per_epoch
                self._run_training_batch(module, batch, batch_idx, last_in_epoch)
                if progress.crossed(self.log_every_n_steps):
                    self._flush_train_metrics()
                if (val_in_epoch and progress.batch_in_epoch % val_in_epoch == 0) or (
                    val_overall and progress.total_batches % val_overall == 0
                ):
                    self._run_validation(module)
                self._check_stop()
                if self._done():
                    exhausted = False
                    break
            if not exhausted:
                break
            self._end_epoch(module, run_validation=self.val_check_interval is None)
        if self.global_step % self.log_every_n_steps:
            self._flush_train_metrics()
        module.on_train_end()
        for callback in self.callbacks:
            callback.on_train_end(self, module)
        for callback in self.callbacks:
            callback.on_fit_end(self, module)

    def _end_epoch(self, module: TrainingModule, run_validation: bool) -> None:
        if self._micro_step and module.automatic_optimization:
            self.progress.step_at_batch_start = self.global_step
            self._step_optimizers()  # leftover accumulated micro-batches
            if self.progress.crossed(self.log_every_n_steps):
                self._flush_train_metrics()
        module.on_train_epoch_end()
        for callback in self.callbacks:
            callback.on_train_epoch_end(self, module)
        self._flush_epoch_metrics()
        epoch = self.current_epoch
        self.current_epoch += 1
        self.progress.batch_in_epoch = 0
        every = self.check_val_every_n_epoch or 1
        if run_validation and (epoch + 1) % every == 0:
            self._run_validation(module)
        if module.automatic_optimization:
            self._step_schedulers("epoch")

    # ================================================================== one batch
    def _run_training_batch(
        self, module: TrainingModule, batch: Any, batch_idx: int, last_in_epoch: bool
    ) -> None:
        batch = move_to_device(batch, self.device)
        self._current_batch_size = batch_size_of(batch)
        self._active_buffer = self._train_buffer
        self.progress.step_at_batch_start = self.global_step
        for callback in self.callbacks:
            callback.on_train_batch_start(self, module, batch, batch_idx)
        assert self.precision_plugin is not None
        if module.automatic_optimization:
            self._micro_step += 1
            boundary = self._micro_step >= self.accumulate_grad_batches or last_in_epoch
            with self.strategy.no_sync(module, enabled=not boundary):
                with self.precision_plugin.autocast():
                    output = module.training_step(batch, batch_idx)
                loss = _loss_of(output)
                if loss is not None:
                    self._log_value("loss", loss.detach(), weight=1.0, op="mean", prog_bar=True)
                    self._backward(
                        loss / self.accumulate_grad_batches if self.accumulate_grad_batches > 1 else loss
                    )
            if boundary:
                self._step_optimizers()
        else:
            with self.precision_plugin.autocast():
                output = module.training_step(batch, batch_idx)
            loss = _loss_of(output) if output is not None else None
            if loss is not None:
                self._log_value("loss", loss.detach(), weight=1.0, op="mean", prog_bar=True)
        self.progress.batch_in_epoch += 1
        self.progress.total_batches += 1
        self._active_buffer = None
        for callback in self.callbacks:
            callback.on_train_batch_end(self, module, output, batch, batch_idx)

    def _backward(self, loss: torch.Tensor) -> None:
        assert self.precision_plugin is not None
        self.precision_plugin.scale(loss).backward()

    def _clip(self, index: int) -> None:
        config = self.optimizer_configs[index]
        value = config.gradient_clip_val if config.gradient_clip_val is not None else self.gradient_clip_val
        algorithm = config.gradient_clip_algorithm or self.gradient_clip_algorithm
        if not value:
            return
        params = [p for group in config.optimizer.param_groups for p in group["params"] if p.grad is not None]
        norm = clip_gradients(params, float(value), algorithm)
        if norm is not None:
            full = getattr(norm, "full_tensor", None)
            self._grad_norms[index] = (full() if full is not None else norm).detach()

    def _optimizer_step(self, index: int) -> None:
        """Reduce (manual DDP), unscale, clip (automatic mode), step one optimizer.

        Manual mode: one call is one ``global_step``; schedulers are the module's to step (``sch.step()``),
        as in Lightning, so the trainer never steps them.
        """
        assert self.precision_plugin is not None
        module = self.module
        assert module is not None
        config = self.optimizer_configs[index]
        manual = not module.automatic_optimization
        if self.strategy.manual_optimization:
            params = [
                p for group in config.optimizer.param_groups for p in group["params"] if p.grad is not None
            ]
            self.strategy.reduce_gradients(params)
        self.precision_plugin.unscale_(config.optimizer)
        if not manual:
            self._clip(index)
        for callback in self.callbacks:
            callback.on_before_optimizer_step(self, module, index)
        self.precision_plugin.step(config.optimizer)
        self._optimizer_steps[index] += 1
        if manual:
            self.precision_plugin.update()
            self.global_step += 1
        norm = self._grad_norms[index]
        if norm is not None:
            self._log_value(f"grad_norm/opt{index}", norm, weight=1.0, op="mean")
            self._grad_norms[index] = None

    def _step_optimizers(self) -> None:
        assert self.precision_plugin is not None
        for index in range(len(self.optimizer_configs)):
            self._optimizer_step(index)
        self.precision_plugin.update()
        for config in self.optimizer_configs:
            config.optimizer.zero_grad(set_to_none=True)
        self._micro_step = 0
        self.global_step += 1
        for config in self.optimizer_configs:
            self._step_scheduler(config, "step", self.global_step)

    def _step_scheduler(self, config: OptimizerConfig, interval: str, count: int) -> None:
        sched = config.scheduler
        if sched is None or sched.interval != interval or count % max(1, sched.frequency):
            return
        with warnings.catch_warnings():
            # a grad-scaler-skipped first step makes torch warn that the scheduler stepped first; the
            # schedule follows global_step on purpose, skipped steps included
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
            if sched.monitor:
                value = self.callback_metrics.get(sched.monitor)
                if value is None:
                    return  # nothing to react to yet
                sched.scheduler.step(value)
            else:
                sched.scheduler.step()

    def _step_schedulers(self, interval: str) -> None:
        for config in self.optimizer_configs:
            self._step_scheduler(config, interval, self.current_epoch)

    def _toggle_optimizer(self, index: int) -> None:
        """requires_grad False on every trainable parameter not owned by optimizer ``index``."""
        assert self.module is not None
        own = {
            id(p) for group in self.optimizer_configs[index].optimizer.param_groups for p in group["params"]
        }
        self._toggled = {}
        for p in self.module.parameters():
            self._toggled[id(p)] = p.requires_grad
            if id(p) not in own:
                p.requires_grad_(False)

    def _untoggle_optimizer(self) -> None:
        if self._toggled is None or self.module is None:
            return
        for p in self.module.parameters():
            if id(p) in self._toggled:
                p.requires_grad_(self._toggled[id(p)])
        self._toggled = None

    # ================================================================== logging
    def _log(
        self,
        name: str,
        value: Any,
        *,
        prog_bar: bool,
        batch_size: int | None,
        reduce: str,
        on_step: bool | None = None,
        on_epoch: bool | None = None,
        sync_dist: bool | None = None,
    ) -> None:
        if reduce not in ("mean", "sum", "max", "min"):
            raise ValueError(f"reduce must be mean, sum, max or min, got {reduce!r}")
        evaluating = self._active_buffer is self._eval_buffer or (
            self._active_buffer is None and self.stage != "fit"
        )
        if evaluating:
            if on_step:
                raise ValueError(
                    f"self.log({name!r}, on_step=True) in validation/test: vqcodec reduces evaluation "
                    "values over the epoch only"
                )
            if on_epoch is False:
                raise ValueError(f"self.log({name!r}, on_epoch=False) in validation/test would log nothing")
            keys: tuple[tuple[str, _MetricBuffer | None], ...] = ((name, None),)
        else:
            step = True if on_step is None else on_step
            epoch = False if on_epoch is None else on_epoch
            if not step and not epoch:
                raise ValueError(f"self.log({name!r}): on_step and on_epoch both False would log nothing")
            both = step and epoch  # Lightning's names: <name>_step and <name>_epoch
            keys = tuple(
                k
                for k in (
                    (name + "_step" if both else name, None) if step else None,
                    (name + "_epoch" if both else name, self._epoch_buffer) if epoch else None,
                )
                if k is not None
            )
        if torch.is_tensor(value):
            if value.numel() != 1:
                raise ValueError(f"self.log({name!r}) needs a scalar, got shape {tuple(value.shape)}")
            value = value.detach().reshape(()).float()
        else:
            value = torch.tensor(float(value), device=self.device)
        weight = (
            float(batch_size)
            if batch_size is not None
            else (float(self._current_batch_size) if self._active_buffer is self._eval_buffer else 1.0)
        )
        local = sync_dist is False
        for key, target in keys:
            self._log_value(
                key, value, weight=weight, op=reduce, prog_bar=prog_bar, buffer=target, local=local
            )

    def _log_value(
        self,
        name: str,
        value: torch.Tensor,
        *,
        weight: float,
        op: str,
        prog_bar: bool = False,
        buffer: _MetricBuffer | None = None,
        local: bool = False,
    ) -> None:
        if buffer is None:
            buffer = self._active_buffer
        if buffer is None:
            buffer = self._eval_buffer if self.stage != "fit" else self._train_buffer
        buffer.add(name, value, weight, op)
        if prog_bar:
            buffer.prog_bar.add(name)
        if local:
            buffer.local.add(name)

    def _reduce_buffer(self, buffer: _MetricBuffer) -> dict[str, float]:
        """Collective when distributed: every rank must call it at the same point. ``sync_dist=False``
        values are this rank's own (no collective; rank 0's reach the loggers)."""
        result: dict[str, float] = {}
        for name in sorted(buffer.local & set(buffer.values)):
            total, weight = buffer.summary(name)
            op = buffer.ops[name]
            result[name] = float(total) / max(weight, 1e-12) if op == "mean" else float(total)
        names = sorted(n for n in buffer.values if n not in buffer.local)
        if self.strategy.is_distributed:
            import torch.distributed as dist

            all_names: list[Any] = [None] * self.world_size
            dist.all_gather_object(all_names, (names, [buffer.ops[n] for n in names]))
            ops: dict[str, str] = {}
            for rank_names, rank_ops in all_names:
                ops.update(zip(rank_names, rank_ops))
            names = sorted(ops)
        else:
            ops = {n: buffer.ops[n] for n in names}
        for op in ("mean", "sum", "max", "min"):
            keys = [n for n in names if ops[n] == op]
            if not keys:
                continue
            fill = torch.tensor({"max": -math.inf, "min": math.inf}.get(op, 0.0), device=self.device)
            summaries = [buffer.summary(k) if k in buffer.values else (fill, 0.0) for k in keys]
            values = torch.stack([v.to(self.device) for v, _ in summaries])
            weights = torch.tensor([w for _, w in summaries], device=values.device)
            if op in ("mean", "sum"):
                packed = self.strategy.all_reduce(torch.cat([values, weights.to(values.dtype)]), "sum")
                sums, counts = packed[: len(keys)], packed[len(keys) :]
                reduced = sums / counts.clamp_min(1e-12) if op == "mean" else sums
            else:
                reduced = self.strategy.all_reduce(values, op)
            result.update(zip(keys, reduced.tolist()))
        return result

    def _flush_train_metrics(self) -> None:
        buffer = self._train_buffer
        if not buffer.values and not self.strategy.is_distributed:
            return
        metrics = self._reduce_buffer(buffer)
        shown = {k: v for k, v in metrics.items() if k in buffer.prog_bar}
        buffer.clear()
        self.callback_metrics.update(metrics)
        self.progress_metrics.update(shown)
        self.log_metrics(metrics)
        if self._reporter is not None and metrics:
            self._reporter.update(
                self.global_step,
                self.current_epoch,
                self.progress_metrics,
                self.max_steps if self.max_steps >= 0 else None,
            )

    def _flush_epoch_metrics(self) -> None:
        buffer = self._epoch_buffer
        if not buffer.values and not self.strategy.is_distributed:
            return
        metrics = self._reduce_buffer(buffer)
        self.progress_metrics.update({k: v for k, v in metrics.items() if k in buffer.prog_bar})
        buffer.clear()
        self.callback_metrics.update(metrics)
        self.log_metrics(metrics)

    def log_image(self, name: str, image: torch.Tensor, step: int | None = None) -> None:
        """Send a (C, H, W) image in [0, 1] to the loggers (rank 0; CSV: a PNG, TensorBoard: add_image)."""
        step = self.global_step if step is None else step
        for logger in self.loggers:
            logger.log_image(name, image, step)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Send already-reduced values to the loggers (rank 0); callbacks use this."""
        if not metrics:
            return
        step = self.global_step if step is None else step
        for logger in self.loggers:
            logger.log_metrics(metrics, step, self.current_epoch)

    # ================================================================== evaluation
    @contextmanager
    def _eval_context(self) -> Iterator[None]:
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            assert self.precision_plugin is not None
            with self.precision_plugin.autocast():
                yield

    def _prepare_eval(self, loaders: Any) -> list[tuple[str | None, PreparedLoader]] | None:
        """One validation/test loader, a list of them or a dict name -> loader -> [(name, loader)]."""
        if loaders is None:
            return None
        if isinstance(loaders, dict):
            if not loaders:
                return None
            items: list[tuple[str | None, Any]] = [(str(k), v) for k, v in loaders.items()]
        elif isinstance(loaders, (list, tuple)):
            if not loaders:
                return None
            items = [(None, v) for v in loaders]
        else:
            items = [(None, loaders)]
        prepared = [(name, self._prepare(loader, train=False)) for name, loader in items]
        return [(name, loader) for name, loader in prepared if loader is not None]

    def _evaluate(
        self,
        module: TrainingModule,
        loaders: list[tuple[str | None, PreparedLoader]],
        stage: str,
        limit: int | float | None,
    ) -> dict[str, float]:
        """Run the eval step over every loader; values logged in loader i get a suffix when there are
        several: ``/dataloader_idx_<i>`` for a list (Lightning's names), ``/<name>`` for a dict (vqcodec's;
        Lightning numbers dict loaders too). Values logged in ``on_*_epoch_end`` keep their names."""
        was_training = module.training
        previous_stage = self.stage
        self.stage = stage
        module.eval()
        self._eval_buffer.clear()
        self._active_buffer = self._eval_buffer
        hook = "validation" if stage in ("validate", "fit") else "test"
        limit_name = f"limit_{'val' if hook == 'validation' else 'test'}_batches"
        step_fn = module.validation_step if hook == "validation" else module.test_step
        several = len(loaders) > 1
        if several and "dataloader_idx" not in inspect.signature(step_fn).parameters:
            raise TypeError(
                f"{len(loaders)} {hook} loaders were given, but {type(module).__name__}.{hook}_step "
                "does not take a dataloader_idx argument"
            )
        for callback in self.callbacks:
            (callback.on_validation_start if hook == "validation" else callback.on_test_start)(self, module)
        metrics: dict[str, float] = {}
        try:
            if hook == "validation":
                module.on_validation_epoch_start()
            with self._eval_context(), self.strategy.eval_context(module):
                for index, (name, loader) in enumerate(loaders):
                    count = resolve_batch_count(limit_name, limit, loader.batches_per_epoch())
                    self.current_dataloader_idx, self.current_dataloader_name = index, name
                    extra = {"dataloader_idx": index} if several else {}
                    loader.set_epoch(0)
                    for batch_idx, batch in enumerate(loader):
                        if count is not None and batch_idx >= count:
                            break
                        batch = move_to_device(batch, self.device)
                        self._current_batch_size = batch_size_of(batch)
                        step_fn(batch, batch_idx, **extra)
                    part = self._reduce_buffer(self._eval_buffer)  # collective: every rank, every loader
                    self._eval_buffer.clear()
                    suffix = (
                        ""
                        if not several
                        else (f"/{name}" if name is not None else f"/dataloader_idx_{index}")
                    )
                    metrics.update({key + suffix: value for key, value in part.items()})
                self._current_batch_size = 1
                self.current_dataloader_idx, self.current_dataloader_name = 0, None
                if hook == "validation":
                    module.on_validation_epoch_end()
                else:
                    module.on_test_epoch_end()
            metrics.update(self._reduce_buffer(self._eval_buffer))
        finally:
            self._active_buffer = None
            self._eval_buffer.clear()
            if was_training:
                module.train()
        self.stage = previous_stage if stage == "fit" else stage
        if not self.sanity_checking:
            self.callback_metrics.update(metrics)
            self.log_metrics(metrics)
        for callback in self.callbacks:
            (callback.on_validation_end if hook == "validation" else callback.on_test_end)(self, module)
        self.stage = previous_stage
        return metrics

    def _run_validation(self, module: TrainingModule) -> None:
        if self.val_loader is None or type(module).validation_step is TrainingModule.validation_step:
            return
        self._flush_train_metrics()
        limit = self.limit_val_batches
        if limit is None and self.overfit_batches:
            limit = self.overfit_batches  # as in Lightning: validate on as many batches as are overfit
        metrics = self._evaluate(module, self.val_loader, "fit", limit)
        if metrics and self.is_global_zero and self._reporter is not None and self._reporter.enabled:
            shown = " ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()))
            self._reporter.message(f"validation step {self.global_step}: {shown}")

    def _sanity_check(self) -> None:
        assert self.module is not None and self.val_loader is not None
        self.sanity_checking = True
        try:
            self._evaluate(self.module, self.val_loader, "fit", self.num_sanity_val_steps)
        finally:
            self.sanity_checking = False

    def _run_eval_stage(
        self, module: TrainingModule, dataloader: Any, datamodule: Any, ckpt_path: Any, stage: str
    ) -> dict[str, float]:
        self._setup_environment()
        _, loader = self._resolve_data(None, dataloader, datamodule, stage)
        if loader is None:
            raise ValueError(f"{stage} needs a DataLoader (or a DataModule providing one)")
        module = self._setup_module(module, stage)
        resolved = self._resolve_ckpt_path(ckpt_path) if ckpt_path else None
        if resolved is not None:
            checkpoint = load_checkpoint(resolved)
            self.strategy.load_model_state_dict(module, checkpoint["state_dict"])
        prepared = self._prepare_eval(loader)
        if not prepared:
            raise ValueError(f"{stage} needs a DataLoader (or a DataModule providing one)")
        if not self.loggers:
            self._make_loggers()
        limit = self.limit_val_batches if stage == "validate" else self.limit_test_batches
        try:
            return self._evaluate(module, prepared, stage, limit)
        finally:
            self.stage = "fit"
            self.strategy.teardown_module(module)

    def validate(
        self, module: TrainingModule, dataloader: Any = None, ckpt_path: Any = None, *, datamodule: Any = None
    ) -> dict[str, float]:
        """Run ``validation_step`` over the loader; returns the reduced metrics."""
        return self._run_eval_stage(module, dataloader, datamodule, ckpt_path, "validate")

    def test(
        self, module: TrainingModule, dataloader: Any = None, ckpt_path: Any = None, *, datamodule: Any = None
    ) -> dict[str, float]:
        """Run ``test_step`` over the loader; returns the reduced metrics."""
        return self._run_eval_stage(module, dataloader, datamodule, ckpt_path, "test")

    def predict(
        self,
        module: TrainingModule,
        dataloaders: Any = None,
        ckpt_path: Any = None,
        *,
        datamodule: Any = None,
    ) -> list[Any]:
        """``predict_step`` over every batch (eval mode, no grad, the trainer's precision), in order.

        Returns the outputs per batch; for a list/dict of loaders, one such list per loader. Under DDP each
        rank predicts its own shard of the data and returns those (as Lightning; nothing is gathered).
        """
        self._setup_environment()
        if dataloaders is None and datamodule is not None:
            datamodule.setup("predict")
            dataloaders = getattr(datamodule, "predict_dataloader", lambda: None)()
        loaders = self._prepare_eval(dataloaders)
        if not loaders:
            raise ValueError("predict needs a DataLoader (or a DataModule with predict_dataloader())")
        module = self._setup_module(module, "predict")
        resolved = self._resolve_ckpt_path(ckpt_path) if ckpt_path else None
        if resolved is not None:
            self.strategy.load_model_state_dict(module, load_checkpoint(resolved)["state_dict"])
        several = len(loaders) > 1
        was_training = module.training
        module.eval()
        outputs: list[list[Any]] = []
        try:
            with self._eval_context(), self.strategy.eval_context(module):
                for index, (_, loader) in enumerate(loaders):
                    extra = {"dataloader_idx": index} if several else {}
                    loader.set_epoch(0)
                    results = []
                    for batch_idx, batch in enumerate(loader):
                        batch = move_to_device(batch, self.device)
                        results.append(module.predict_step(batch, batch_idx, **extra))
                    outputs.append(results)
        finally:
            if was_training:
                module.train()
            self.stage = "fit"
            self.strategy.teardown_module(module)
        return outputs if several else outputs[0]

    # ================================================================== checkpoints
    def _gather_rng(self) -> list[Any]:
        assert self.accelerator is not None
        state = capture_rng_state(self.accelerator.rng_state())
        if not self.strategy.is_distributed:
            return [state]
        import torch.distributed as dist

        states: list[Any] = [None] * self.world_size
        dist.all_gather_object(states, state)
        return states

    def save_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Write a full checkpoint (collective: every rank must call it; rank 0 writes)."""
        module = self.module
        if module is None:
            raise RuntimeError("save_checkpoint needs a module: call fit first")
        assert self.precision_plugin is not None
        checkpoint: dict[str, Any] = {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "state_dict": self.strategy.model_state_dict(module),
            "optimizers": [
                self.strategy.optimizer_state_dict(module, c.optimizer) for c in self.optimizer_configs
            ],
            "schedulers": [
                c.scheduler.scheduler.state_dict() if c.scheduler else None for c in self.optimizer_configs
            ],
            "precision": self.precision_plugin.state_dict(),
            "loop": {
                "global_step": self.global_step,
                "epoch": self.current_epoch,
                "batch_in_epoch": self.progress.batch_in_epoch,
                "micro_step": self._micro_step,
                "optimizer_steps": list(self._optimizer_steps),
                "total_batches": self.progress.total_batches,
                "time_elapsed": self.time_elapsed,
                "data_seed": self._data_seed,
                "world_size": self.world_size,
                "samples_in_epoch": (
                    self.progress.batch_in_epoch * self._samples_per_step()
                    if self._samples_per_step()
                    else None
                ),
            },
            "rng": self._gather_rng(),
            "callbacks": {c.state_key: c.state_dict() for c in self.callbacks},
            "callback_metrics": dict(self.callback_metrics),
            "trainer": self._settings(),
            "hyper_parameters": getattr(module, "hparams", None),
            "init_args": module.__dict__.get("hparams_initial"),  # save_hyperparameters' arguments
            "datamodule": self.datamodule.state_dict() if self.datamodule is not None else None,
        }
        for callback in self.callbacks:
            callback.on_save_checkpoint(self, module, checkpoint)
        module.on_save_checkpoint(checkpoint)
        if self.is_global_zero:
            atomic_save(checkpoint, path)
        self.strategy.barrier()

    def _restore(self, module: TrainingModule, checkpoint: dict[str, Any]) -> None:
        assert self.precision_plugin is not None
        # an EMA run's state_dict holds the scored (averaged) weights; training resumes from the live ones
        self.strategy.load_model_state_dict(
            module, checkpoint.get("train_state_dict") or checkpoint["state_dict"]
        )
        optimizers = checkpoint.get("optimizers", [])
        if len(optimizers) != len(self.optimizer_configs):
            raise ValueError(
                f"checkpoint has {len(optimizers)} optimizers, "
                f"the module configures {len(self.optimizer_configs)}"
            )
        for config, state in zip(self.optimizer_configs, optimizers):
            self.strategy.load_optimizer_state_dict(module, config.optimizer, state)
        for config, state in zip(self.optimizer_configs, checkpoint.get("schedulers", [])):
            if config.scheduler is not None and state is not None:
                config.scheduler.scheduler.load_state_dict(state)
        self.precision_plugin.load_state_dict(checkpoint.get("precision", {}))
        loop = checkpoint["loop"]
        self.global_step = int(loop["global_step"])
        self.current_epoch = int(loop["epoch"])
        self.progress.batch_in_epoch = int(loop["batch_in_epoch"])
        self.progress.total_batches = int(loop.get("total_batches", self.global_step))
        self._micro_step = 0
        self._optimizer_steps = list(
            loop.get("optimizer_steps", [self.global_step] * len(self.optimizer_configs))
        )
        if int(loop.get("world_size", self.world_size)) != self.world_size and self.progress.batch_in_epoch:
            self.progress.batch_in_epoch = self._convert_position(loop)
        self.callback_metrics.update(checkpoint.get("callback_metrics", {}))
        saved = checkpoint.get("callbacks", {})
        for callback in self.callbacks:
            if callback.state_key in saved:
                callback.load_state_dict(saved[callback.state_key])
            callback.on_load_checkpoint(self, module, checkpoint)
        if self.datamodule is not None and checkpoint.get("datamodule"):
            self.datamodule.load_state_dict(checkpoint["datamodule"])
        module.on_load_checkpoint(checkpoint)

    def _samples_per_step(self) -> int | None:
        """Samples of the global data order one batch on every rank consumes (None if unknown)."""
        sampler = self.train_loader.sampler if getattr(self, "train_loader", None) is not None else None
        return sampler.batch_size * self.world_size if sampler is not None else None

    def _convert_position(self, loop: dict[str, Any]) -> int:
        """The epoch position of a checkpoint from another world size, in this run's batches.

        The global data order does not depend on the world size (ranks deal it out round-robin), so a
        position of S consumed samples carries over when S is a whole number of this run's global batches;
        otherwise the epoch restarts.
        """
        consumed = loop.get("samples_in_epoch")
        per_step = self._samples_per_step()
        if consumed is not None and per_step and int(consumed) % per_step == 0:
            return int(consumed) // per_step
        self.print(
            f"resuming with world size {self.world_size} (was {loop.get('world_size')}): epoch restarts"
        )
        return 0

    def _restore_rng(self, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get("rng") or []
        if not states:
            return
        state = states[self.rank] if self.rank < len(states) else states[self.rank % len(states)]
        accelerator_state = restore_rng_state(state)
        assert self.accelerator is not None
        if accelerator_state is not None:
            self.accelerator.set_rng_state(accelerator_state)

    def full_module(self) -> nn.Module:
        """The trained module with full, plain weights (collective under FSDP; for export)."""
        if self.module is None:
            raise RuntimeError("no module: call fit first")
        return self.strategy.full_module(self.module)


__all__ = [
    "Trainer",
    "TrainingInterrupted",
    "parse_max_time",
    "batch_size_of",
    "move_to_device",
    "resolve_batch_count",
    "seed_everything",
]
