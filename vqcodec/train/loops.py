"""The fit loop and the evaluation loop of ``Trainer`` (parts of it: they run on its ``TrainerState``).

``FitLoop``: epochs, batches, accumulation, optimizer and scheduler steps, validation scheduling, the
stop conditions (max_steps/max_epochs/max_time/SIGTERM). ``EvaluationLoop``: validation, test and
predict over one or several loaders.
"""

from __future__ import annotations

import inspect
import signal
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from vqcodec.train.checkpoint import load_checkpoint
from vqcodec.train.module import OptimizerConfig, TrainingModule, clip_gradients
from vqcodec.train.sampling import PreparedLoader
from vqcodec.train.state import TrainerState
from vqcodec.train.utilities import (
    batch_size_of,
    loss_of,
    move_to_device,
    resolve_batch_count,
)


class FitLoop(TrainerState):
    """Training part of ``Trainer`` (see ``trainer.py`` for the semantics)."""

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
                    callback.on_train_epoch_start(self._trainer, module)
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
            callback.on_train_end(self._trainer, module)
        for callback in self.callbacks:
            callback.on_fit_end(self._trainer, module)

    def _end_epoch(self, module: TrainingModule, run_validation: bool) -> None:
        if self._micro_step and module.automatic_optimization:
            self.progress.step_at_batch_start = self.global_step
            self._step_optimizers()  # leftover accumulated micro-batches
            if self.progress.crossed(self.log_every_n_steps):
                self._flush_train_metrics()
        module.on_train_epoch_end()
        for callback in self.callbacks:
            callback.on_train_epoch_end(self._trainer, module)
        self._flush_epoch_metrics()
        epoch = self.current_epoch
        self.current_epoch += 1
        self.progress.batch_in_epoch = 0
        every = self.check_val_every_n_epoch or 1
        if run_validation and (epoch + 1) % every == 0:
            self._run_validation(module)
        if module.automatic_optimization:
            self._step_schedulers("epoch")

    def _run_training_batch(
        self, module: TrainingModule, batch: Any, batch_idx: int, last_in_epoch: bool
    ) -> None:
        batch = move_to_device(batch, self.device)
        self._current_batch_size = batch_size_of(batch)
        self._active_buffer = self._train_buffer
        self.progress.step_at_batch_start = self.global_step
        for callback in self.callbacks:
            callback.on_train_batch_start(self._trainer, module, batch, batch_idx)
        assert self.precision_plugin is not None
        if module.automatic_optimization:
            self._micro_step += 1
            boundary = self._micro_step >= self.accumulate_grad_batches or last_in_epoch
            with self.strategy.no_sync(module, enabled=not boundary):
                with self.precision_plugin.autocast():
                    output = module.training_step(batch, batch_idx)
                loss = loss_of(output)
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
            loss = loss_of(output) if output is not None else None
            if loss is not None:
                self._log_value("loss", loss.detach(), weight=1.0, op="mean", prog_bar=True)
        self.progress.batch_in_epoch += 1
        self.progress.total_batches += 1
        self._active_buffer = None
        for callback in self.callbacks:
            callback.on_train_batch_end(self._trainer, module, output, batch, batch_idx)

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
            callback.on_before_optimizer_step(self._trainer, module, index)
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


class EvaluationLoop(TrainerState):
    """Validation/test/predict part of ``Trainer``."""

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
        trainer = self._trainer
        for callback in self.callbacks:
            start = callback.on_validation_start if hook == "validation" else callback.on_test_start
            start(trainer, module)
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
            (callback.on_validation_end if hook == "validation" else callback.on_test_end)(trainer, module)
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


__all__ = ["EvaluationLoop", "FitLoop"]
