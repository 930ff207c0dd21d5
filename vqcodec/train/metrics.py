"""Logging connector: what ``self.log`` records, its reduction over windows, epochs and ranks, and the
hand-off to the loggers. ``LoggingConnector`` is a part of ``Trainer`` (it uses the strategy, buffers
and loggers its ``TrainerState`` declares)."""

from __future__ import annotations

import math
from typing import Any

import torch

from vqcodec.train.state import TrainerState


class MetricBuffer:
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


class LoggingConnector(TrainerState):
    """``Trainer``'s logging half (see ``trainer.py`` for the meanings of logged values)."""

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
            keys: tuple[tuple[str, MetricBuffer | None], ...] = ((name, None),)
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
        buffer: MetricBuffer | None = None,
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

    def _reduce_buffer(self, buffer: MetricBuffer) -> dict[str, float]:
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


__all__ = ["LoggingConnector", "MetricBuffer"]
