"""The user-facing halves of a training run: ``TrainingModule`` (model + steps + optimizers) and
``DataModule`` (where the data loaders come from).

A ``TrainingModule`` is an ``nn.Module`` that owns the networks it trains. The trainer calls its hooks:

- ``training_step(batch, batch_idx)`` -> loss tensor, or a dict with a ``"loss"`` entry, or None (skip);
- ``validation_step(batch, batch_idx)`` / ``test_step(batch, batch_idx)``: log metrics with ``self.log``;
  with several loaders (a list or a dict) the step takes ``dataloader_idx`` too, and each loader's values
  are reduced on their own (``name/dataloader_idx_<i>`` for a list, ``name/<key>`` for a dict);
- ``configure_optimizers()`` -> an optimizer, a list of them, or dicts (one per optimizer) of the form
  ``{"optimizer": opt, "lr_scheduler": sched | {"scheduler": sched, "interval": "step"|"epoch",
  "frequency": 1, "monitor": "val/loss"}, "gradient_clip_val": 1.0, "gradient_clip_algorithm": "norm"}``;
  a per-optimizer clipping setting overrides the trainer's ``gradient_clip_val``;
- ``on_train_start/end``, ``on_train_epoch_start/end``, ``on_validation_epoch_start/end``,
  ``on_test_epoch_end``.

``forward`` is what the strategy wraps (DDP/FSDP): call the network through ``self(...)`` inside the
steps so gradients are synchronised. With ``automatic_optimization = False`` the module drives its
own updates (GAN-style alternation): ``opt_g, opt_d = self.optimizers()``, ``self.manual_backward(loss)``,
``opt_g.step()``, ``opt_g.zero_grad()``. As in Lightning: each ``step()`` applies the grad scaler
(16-mixed) and counts one ``global_step``; schedulers are the module's to step (``self.lr_schedulers()``,
``sch.step()``: the trainer never steps them in manual mode); clipping is ``self.clip_gradients(opt,
gradient_clip_val=...)``. The trainer's ``gradient_clip_val`` / ``accumulate_grad_batches`` and a
per-optimizer ``gradient_clip_val`` raise a ValueError in manual mode instead of being ignored.

State-dict keys never contain ``_orig_mod.``: a submodule wrapped by ``torch.compile`` saves and loads
under its plain name, so checkpoints of compiled and uncompiled runs are interchangeable.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from vqcodec.train.checkpoint import COMPILED_PREFIX, clean_state_key, load_checkpoint

if TYPE_CHECKING:
    from vqcodec.train.trainer import Trainer


@dataclass
class SchedulerConfig:
    """One LR scheduler and when it steps (``interval`` "step" = per optimizer step, "epoch" = per epoch)."""

    scheduler: Any
    interval: str = "step"
    frequency: int = 1
    monitor: str | None = None


@dataclass
class OptimizerConfig:
    """One optimizer, its optional scheduler and its own clipping (None = the trainer's setting)."""

    optimizer: torch.optim.Optimizer
    scheduler: SchedulerConfig | None = None
    gradient_clip_val: float | None = None
    gradient_clip_algorithm: str | None = None


def _scheduler_config(value: Any) -> SchedulerConfig | None:
    if value is None:
        return None
    if isinstance(value, SchedulerConfig):
        return value
    if isinstance(value, dict):
        unknown = set(value) - {"scheduler", "interval", "frequency", "monitor", "name"}
        if unknown:
            raise ValueError(f"unknown lr_scheduler keys: {sorted(unknown)}")
        interval = value.get("interval", "step")
        if interval not in ("step", "epoch"):
            raise ValueError(f"lr_scheduler interval must be 'step' or 'epoch', got {interval!r}")
        return SchedulerConfig(
            value["scheduler"], interval, int(value.get("frequency", 1)), value.get("monitor")
        )
    return SchedulerConfig(value)


def normalize_optimizers(value: Any) -> list[OptimizerConfig]:
    """``configure_optimizers()``'s return value -> a list of OptimizerConfig (see the module docstring).

    Also accepts Lightning's ``([optimizers], [schedulers])`` pair (schedulers matched by position).
    """
    if isinstance(value, torch.optim.Optimizer):
        return [OptimizerConfig(value)]
    if isinstance(value, OptimizerConfig):
        return [value]
    if isinstance(value, dict):
        unknown = set(value) - {"optimizer", "lr_scheduler", "gradient_clip_val", "gradient_clip_algorithm"}
        if unknown:
            raise ValueError(f"unknown optimizer config keys: {sorted(unknown)}")
        algorithm = value.get("gradient_clip_algorithm")
        if algorithm is not None and algorithm not in ("norm", "value"):
            raise ValueError(f"gradient_clip_algorithm must be 'norm' or 'value', got {algorithm!r}")
        return [
            OptimizerConfig(
                value["optimizer"],
                _scheduler_config(value.get("lr_scheduler")),
                value.get("gradient_clip_val"),
                algorithm,
            )
        ]
    if (
        isinstance(value, tuple)
        and len(value) == 2
        and isinstance(value[0], (list, tuple))
        and isinstance(value[1], (list, tuple))
    ):
        optimizers, schedulers = value
        configs = [OptimizerConfig(o) for o in optimizers]
        for config, scheduler in zip(configs, schedulers):
            config.scheduler = _scheduler_config(scheduler)
        return configs
    if isinstance(value, (list, tuple)):
        return [c for item in value for c in normalize_optimizers(item)]
    raise TypeError(f"configure_optimizers() returned an unsupported value: {type(value).__name__}")


class ManagedOptimizer:
    """What ``self.optimizers()`` returns in manual mode: the optimizer plus the trainer's machinery.

    ``step()`` reduces gradients (DDP), unscales (16-mixed), steps (skipped by the scaler on inf/nan),
    updates the scaler and counts one ``global_step``. It does not step schedulers (Lightning's manual
    optimisation leaves them to the module) and does not clip (use ``self.clip_gradients``).
    """

    def __init__(self, trainer: Trainer, index: int):
        self._trainer = trainer
        self.index = index

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self._trainer.optimizer_configs[self.index].optimizer

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.optimizer.param_groups

    def step(self, closure: Any = None) -> None:
        if closure is not None:
            closure()
        self._trainer._optimizer_step(self.index)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def toggle(self) -> None:
        """Freeze every trainable parameter that this optimizer does not own (GAN alternation helper)."""
        self._trainer._toggle_optimizer(self.index)

    def untoggle(self) -> None:
        self._trainer._untoggle_optimizer()


class TrainingModule(nn.Module):
    """Base class of everything the Trainer trains; see the module docstring for the hooks."""

    automatic_optimization: bool = True

    def __init__(self) -> None:
        super().__init__()
        # plain attributes (not registered), so they never reach state_dict or parameters()
        object.__setattr__(self, "_trainer_ref", None)
        self.register_state_dict_post_hook(_strip_compiled_keys)
        self.register_load_state_dict_pre_hook(_restore_compiled_keys)

    # ------------------------------------------------------------------ trainer link
    @property
    def trainer(self) -> Trainer:
        trainer = self.__dict__.get("_trainer_ref")
        if trainer is None:
            raise RuntimeError(f"{type(self).__name__} is not attached to a Trainer")
        return trainer

    def _attach(self, trainer: Trainer | None) -> None:
        object.__setattr__(self, "_trainer_ref", trainer)

    def __getstate__(self) -> dict[str, Any]:
        # copies and pickles of the module leave the trainer (and a strategy's forward wrapper) behind
        from vqcodec.train.strategies.base import ForwardRedirect

        state = dict(self.__dict__)
        state["_trainer_ref"] = None
        if isinstance(state.get("forward"), ForwardRedirect):
            del state["forward"]
        return state

    @property
    def global_step(self) -> int:
        trainer = self.__dict__.get("_trainer_ref")
        return trainer.progress.global_step if trainer is not None else 0

    @property
    def current_epoch(self) -> int:
        trainer = self.__dict__.get("_trainer_ref")
        return trainer.progress.epoch if trainer is not None else 0

    @property
    def device(self) -> torch.device:
        for tensor in self.parameters():
            return tensor.device
        for buffer in self.buffers():
            return buffer.device
        return torch.device("cpu")

    # ------------------------------------------------------------------ hyperparameters
    def save_hyperparameters(self, *names: str, ignore: Iterable[str] = ()) -> None:
        """Record the calling ``__init__``'s arguments (all, or ``names``) as ``self.hparams`` (a dict;
        also in ``hparams.json`` and every checkpoint), so ``load_from_checkpoint`` can rebuild the module.
        Values should be plain data (numbers, strings, lists, dicts): modules and tensors belong in
        ``ignore``."""
        frame = inspect.currentframe()
        caller = frame.f_back if frame is not None else None
        if caller is None:
            raise RuntimeError("save_hyperparameters must be called from __init__")
        info = inspect.getargvalues(caller)
        values: dict[str, Any] = {n: info.locals[n] for n in info.args if n != "self"}
        if info.keywords:
            values.update(info.locals[info.keywords])
        unknown = [n for n in names if n not in values]
        if unknown:
            raise ValueError(f"save_hyperparameters: {unknown[0]!r} is not an argument of __init__")
        skip = set(ignore)
        chosen = {k: v for k, v in values.items() if (not names or k in names) and k not in skip}
        self.hparams = dict(chosen)
        object.__setattr__(self, "hparams_initial", dict(chosen))

    @classmethod
    def load_from_checkpoint(
        cls, checkpoint_path: str | os.PathLike[str], *, strict: bool = True, **overrides: Any
    ) -> TrainingModule:
        """A module of this class built from the checkpoint's ``save_hyperparameters`` arguments (updated
        by ``overrides``) with the checkpoint's ``state_dict`` loaded (EMA runs: the averaged weights),
        on the CPU, in eval mode."""
        checkpoint = load_checkpoint(checkpoint_path)
        arguments = {**(checkpoint.get("init_args") or {}), **overrides}
        try:
            module = cls(**arguments)
        except TypeError as error:
            raise TypeError(
                f"cannot build {cls.__name__} from {checkpoint_path}: {error} (call "
                "self.save_hyperparameters() in __init__, or pass the arguments to load_from_checkpoint)"
            ) from error
        module.load_state_dict(checkpoint["state_dict"], strict=strict)
        return module.eval()

    # ------------------------------------------------------------------ hooks to override
    def training_step(self, batch: Any, batch_idx: int) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement training_step")

    def validation_step(self, batch: Any, batch_idx: int) -> Any:
        return None

    def test_step(self, batch: Any, batch_idx: int) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not implement test_step")

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Any:
        """What ``trainer.predict`` returns per batch; by default ``self(batch)`` (as Lightning)."""
        return self(batch)

    def configure_optimizers(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement configure_optimizers")

    def on_train_start(self) -> None: ...

    def on_train_end(self) -> None: ...

    def on_train_epoch_start(self) -> None: ...

    def on_train_epoch_end(self) -> None: ...

    def on_validation_epoch_start(self) -> None: ...

    def on_validation_epoch_end(self) -> None: ...

    def on_test_epoch_end(self) -> None: ...

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Add entries to a checkpoint being written (keys other than the trainer's own)."""

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Read entries added by ``on_save_checkpoint`` when resuming."""

    # ------------------------------------------------------------------ utilities for the steps
    def log(
        self,
        name: str,
        value: Any,
        *,
        prog_bar: bool = False,
        batch_size: int | None = None,
        reduce: str = "mean",
        on_step: bool | None = None,
        on_epoch: bool | None = None,
        sync_dist: bool | None = None,
        reduce_fx: Any = None,
    ) -> None:
        """Record a scalar, with Lightning's keywords.

        Training (defaults ``on_step=True, on_epoch=False``): ``on_step`` values reach the loggers every
        ``log_every_n_steps`` steps, ``on_epoch`` values at the end of the epoch (reduced over it);
        with both, the names get ``_step`` / ``_epoch`` suffixes. Validation/test values are reduced
        over the epoch (weighted by ``batch_size``, default the batch's size); ``on_step=True`` there
        raises. ``prog_bar`` shows the value in the progress output. ``reduce`` (or Lightning's
        ``reduce_fx``: "mean", "sum", "max", "min" or torch.mean/sum/max/min) combines values.

        Deliberate differences from Lightning: an ``on_step`` value is the mean over the logging window
        (Lightning logs the latest step's value), and ``sync_dist`` defaults to True: values are reduced
        over ranks (one packed all-reduce per window); ``sync_dist=False`` keeps each rank's own value,
        and rank 0's reaches the loggers."""
        trainer = self.__dict__.get("_trainer_ref")
        if trainer is None:
            return
        if reduce_fx is not None:
            reduce = getattr(reduce_fx, "__name__", reduce_fx)
        trainer._log(
            name,
            value,
            prog_bar=prog_bar,
            batch_size=batch_size,
            reduce=reduce,
            on_step=on_step,
            on_epoch=on_epoch,
            sync_dist=sync_dist,
        )

    def log_dict(self, values: dict[str, Any], **kwargs: Any) -> None:
        for name, value in values.items():
            self.log(name, value, **kwargs)

    def optimizers(self) -> ManagedOptimizer | list[ManagedOptimizer]:
        managed = [ManagedOptimizer(self.trainer, i) for i in range(len(self.trainer.optimizer_configs))]
        return managed[0] if len(managed) == 1 else managed

    def lr_schedulers(self) -> Any:
        schedulers = [
            c.scheduler.scheduler for c in self.trainer.optimizer_configs if c.scheduler is not None
        ]
        if not schedulers:
            return None
        return schedulers[0] if len(schedulers) == 1 else schedulers

    def manual_backward(self, loss: torch.Tensor) -> None:
        """Backward with the trainer's precision (grad scaler) and accumulation scaling."""
        self.trainer._backward(loss)

    def clip_gradients(
        self, optimizer: Any, gradient_clip_val: float | None = None, gradient_clip_algorithm: str = "norm"
    ) -> torch.Tensor | None:
        """Clip the gradients of ``optimizer``'s parameters now (manual mode); under 16-mixed the
        gradients are unscaled first, so ``gradient_clip_val`` is in true gradient units."""
        if isinstance(optimizer, ManagedOptimizer):
            optimizer = optimizer.optimizer
        if not gradient_clip_val:
            return None
        trainer = self.__dict__.get("_trainer_ref")
        if trainer is not None and trainer.precision_plugin is not None:
            trainer.precision_plugin.unscale_(optimizer)
        return clip_gradients(_optimizer_params(optimizer), gradient_clip_val, gradient_clip_algorithm)


def _strip_compiled_keys(module: nn.Module, state: dict[str, Any], prefix: str, metadata: Any) -> None:
    for key in [k for k in state if COMPILED_PREFIX in k and k.startswith(prefix)]:
        state[prefix + clean_state_key(key[len(prefix) :])] = state.pop(key)


def _restore_compiled_keys(module: nn.Module, state: dict[str, Any], prefix: str, *args: Any) -> None:
    """Load-time inverse of ``_strip_compiled_keys``: plain keys go to compiled submodules' real names."""
    names = [n for n, _ in module.named_parameters()] + [n for n, _ in module.named_buffers()]
    actual = [k for k in names if COMPILED_PREFIX in k]
    if not actual:
        return
    for real in actual:
        plain = prefix + clean_state_key(real)
        if plain in state and prefix + real not in state:
            state[prefix + real] = state.pop(plain)


def _optimizer_params(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]


def clip_gradients(
    params: Iterable[torch.Tensor], value: float, algorithm: str = "norm"
) -> torch.Tensor | None:
    """Clip by total norm (returns the norm before clipping) or elementwise by value."""
    params = [p for p in params if p.grad is not None]
    if not params:
        return None
    if algorithm == "norm":
        return torch.nn.utils.clip_grad_norm_(params, value, foreach=True)
    if algorithm == "value":
        torch.nn.utils.clip_grad_value_(params, value, foreach=True)
        return None
    raise ValueError(f"gradient_clip_algorithm must be 'norm' or 'value', got {algorithm!r}")


class DataModule:
    """Optional home for a recipe's data: ``setup(stage)`` then ``train/val/test_dataloader()``.

    ``stage`` is "fit", "validate" or "test". A loader method returning None means "none".
    """

    def setup(self, stage: str) -> None: ...

    def train_dataloader(self) -> DataLoader | None:
        return None

    def val_dataloader(self) -> DataLoader | None:
        return None

    def test_dataloader(self) -> DataLoader | None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


__all__ = [
    "DataModule",
    "ManagedOptimizer",
    "OptimizerConfig",
    "SchedulerConfig",
    "TrainingModule",
    "clean_state_key",
    "clip_gradients",
    "normalize_optimizers",
]
