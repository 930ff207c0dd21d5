"""``CodebookHealth``: logs the quantizers' codebook metrics (usage, perplexity, dead codes).

It hooks the forward of every top-level quantizer in the module (a ``vqcodec.quantize.Quantizer``,
or any submodule whose output carries a ``metrics`` dict of scalars, when ``match_any`` is set),
keeps the metrics of its latest training forward, and logs them every ``log_every_n_steps`` as
``codebook/<module path>/<metric>``. The quantizers compute these from counts already all-reduced
over ranks, so every rank sees the same values. ``warn_usage_below``: print a warning whenever a
quantizer's usage fraction falls below this (collapse early warning).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from vqcodec.quantize import Quantizer
from vqcodec.train.callbacks.base import Callback

if TYPE_CHECKING:
    from vqcodec.train.module import TrainingModule
    from vqcodec.train.trainer import Trainer


class CodebookHealth(Callback):
    def __init__(
        self,
        *,
        log_every_n_steps: int | None = None,
        metrics: tuple[str, ...] | None = None,
        warn_usage_below: float | None = None,
        match_any: bool = False,
    ):
        self.log_every_n_steps = log_every_n_steps
        self.metric_names = tuple(metrics) if metrics else None
        self.warn_usage_below = warn_usage_below
        self.match_any = match_any
        self.latest: dict[str, dict[str, torch.Tensor]] = {}
        self.logged: dict[str, float] = {}
        self._handles: list[Any] = []

    def _targets(self, module: nn.Module) -> list[tuple[str, nn.Module]]:
        found: list[tuple[str, nn.Module]] = []
        for name, sub in module.named_modules():
            if any(name.startswith(prefix + ".") for prefix, _ in found):
                continue  # stages inside a residual quantizer report through their parent
            if isinstance(sub, Quantizer):
                found.append((name, sub))
            elif self.match_any and sub is not module and getattr(sub, "_vqc_reports_metrics", False):
                found.append((name, sub))
        return found

    def setup(self, trainer: Trainer, module: TrainingModule, stage: str) -> None:
        self.teardown()
        for name, sub in self._targets(module):
            self._handles.append(sub.register_forward_hook(self._hook(name or "quantizer")))

    def _hook(self, name: str) -> Any:
        def hook(sub: nn.Module, inputs: Any, output: Any) -> None:
            metrics = getattr(output, "metrics", None)
            if sub.training and isinstance(metrics, dict):
                self.latest[name] = {
                    k: v.detach() for k, v in metrics.items() if torch.is_tensor(v) and v.numel() == 1
                }

        return hook

    def teardown(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def on_train_batch_end(
        self, trainer: Trainer, module: TrainingModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        interval = self.log_every_n_steps or trainer.log_every_n_steps
        if not trainer.progress.crossed(interval) or not self.latest:
            return
        values: dict[str, float] = {}
        for name, metrics in self.latest.items():
            for key, value in metrics.items():
                if self.metric_names is None or key.split("/")[-1] in self.metric_names:
                    values[f"codebook/{name}/{key}"] = float(value)
            usage = metrics.get("usage")
            if (
                self.warn_usage_below is not None
                and usage is not None
                and float(usage) < self.warn_usage_below
            ):
                trainer.print(
                    f"warning: step {trainer.global_step}: codebook usage of {name} is {float(usage):.3f} "
                    f"(< {self.warn_usage_below})"
                )
        self.logged = values
        trainer.log_metrics(values)

    def on_fit_end(self, trainer: Trainer, module: TrainingModule) -> None:
        self.teardown()


__all__ = ["CodebookHealth"]
