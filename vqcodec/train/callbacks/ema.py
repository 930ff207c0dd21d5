"""``EMA``: an exponential moving average of the trainable weights, for validation and export.

After each optimizer step (every ``every_n_steps`` steps, from ``start_step`` on):
``ema = ema + (1 - d) * (param - ema)`` with ``d = decay``, or with ``warmup`` ``d = min(decay,
(1 + n) / (10 + n))`` (n = updates so far), which lets the average follow the fast early changes.

Buffers: with ``average_buffers=False`` (default) they are *copied*: the averaged model uses the live
buffers (quantizer codebooks kept by their own EMA, counters), in validation, checkpoints and export
alike. With ``average_buffers=True`` floating-point buffers are averaged like the weights (integer
buffers, e.g. counters, are still copied).

``validate_with_ema``: validation sees the averaged weights; the live weights are restored before
training continues. Checkpoints then hold the weights that were scored: ``state_dict`` and
``ema_state_dict`` are the averaged model (so a best-k checkpoint's weights give the score in its
name), and ``train_state_dict`` holds the live weights, which the trainer loads to resume. Without
``validate_with_ema``, ``state_dict`` is the live model and ``ema_state_dict`` the averaged one. This
callback's own state (the averages) is also saved, to resume. Under FSDP the averages are sharded like
the weights. (Lightning's ``WeightAveraging`` saves the averaged weights in ``state_dict`` too.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from vqcodec.train.callbacks.base import Callback
from vqcodec.train.checkpoint import clean_state_key

if TYPE_CHECKING:
    from vqcodec.train.module import TrainingModule
    from vqcodec.train.trainer import Trainer


class EMA(Callback):
    def __init__(
        self,
        decay: float = 0.999,
        *,
        every_n_steps: int = 1,
        start_step: int = 0,
        warmup: bool = False,
        validate_with_ema: bool = True,
        average_buffers: bool = False,
    ):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.every_n_steps = max(1, int(every_n_steps))
        self.start_step = int(start_step)
        self.warmup = warmup
        self.validate_with_ema = validate_with_ema
        self.average_buffers = average_buffers
        self.names: list[str] = []
        self.shadow: list[torch.Tensor] = []
        self.num_updates = 0
        self._pending_state: dict[str, Any] | None = None
        self._backup: list[torch.Tensor] | None = None

    def _params(self, module: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
        """(clean state-dict name, tensor) of everything averaged: trainable weights (+ float buffers)."""
        found: list[tuple[str, torch.Tensor]] = [
            (clean_state_key(n), p) for n, p in module.named_parameters() if p.requires_grad
        ]
        if self.average_buffers:
            found += [
                (clean_state_key(n), b) for n, b in module.named_buffers() if torch.is_floating_point(b)
            ]
        return found

    def on_fit_start(self, trainer: Trainer, module: TrainingModule) -> None:
        params = self._params(module)
        self.names = [n for n, _ in params]
        with torch.no_grad():
            self.shadow = [p.detach().clone() for _, p in params]
        if self._pending_state is not None:
            self._load_shadow(trainer, module, self._pending_state)
            self._pending_state = None

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        return min(self.decay, (1.0 + self.num_updates) / (10.0 + self.num_updates))

    @torch.no_grad()
    def update(self, module: TrainingModule) -> None:
        params = [p.detach() for _, p in self._params(module)]
        weight = 1.0 - self.current_decay()
        try:
            torch._foreach_lerp_(self.shadow, params, weight)
        except (RuntimeError, NotImplementedError):
            for shadow, param in zip(self.shadow, params):
                shadow.lerp_(param, weight)
        self.num_updates += 1

    def on_train_batch_end(
        self, trainer: Trainer, module: TrainingModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        progress = trainer.progress
        if progress.crossed(self.every_n_steps) and progress.global_step > self.start_step:
            self.update(module)

    @torch.no_grad()
    def swap_in(self, module: TrainingModule) -> None:
        """Put the averaged weights into the module, keeping the live ones aside."""
        params = [p for _, p in self._params(module)]
        self._backup = [p.detach().clone() for p in params]
        for p, s in zip(params, self.shadow):
            p.detach().copy_(s)

    @torch.no_grad()
    def swap_out(self, module: TrainingModule) -> None:
        if self._backup is None:
            return
        for (_, p), b in zip(self._params(module), self._backup):
            p.detach().copy_(b)
        self._backup = None

    @torch.no_grad()
    def copy_to(self, module: torch.nn.Module) -> None:
        """Load the averaged weights into ``module`` for good (e.g. a plain copy before export)."""
        targets = dict(self._params(module))
        for name, s in zip(self.names, self.shadow):
            full = s.full_tensor() if hasattr(s, "full_tensor") else s
            targets[name].detach().copy_(full.to(targets[name].device))

    def on_validation_start(self, trainer: Trainer, module: TrainingModule) -> None:
        if self.validate_with_ema and self.shadow and trainer.stage == "fit":
            self.swap_in(module)

    def on_validation_end(self, trainer: Trainer, module: TrainingModule) -> None:
        self.swap_out(module)

    # ------------------------------------------------------------------ checkpoints
    def _full(self, trainer: Trainer, tensors: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        return {n: trainer.strategy.full_tensor(t).detach().cpu() for n, t in zip(self.names, tensors)}

    def on_save_checkpoint(
        self, trainer: Trainer, module: TrainingModule, checkpoint: dict[str, Any]
    ) -> None:
        if not self.shadow:
            return
        shadow = self._full(trainer, self.shadow)
        # saved while the averages are swapped in: the module's state holds them, the live ones are aside
        live = self._full(trainer, self._backup) if self._backup is not None else {}
        if not trainer.is_global_zero:
            return
        checkpoint.setdefault("callbacks", {})[self.state_key] = {
            "shadow": shadow,
            "num_updates": self.num_updates,
            "decay": self.decay,
        }
        if "state_dict" not in checkpoint:
            return
        train_state = {**checkpoint["state_dict"], **live}
        averaged = {**train_state, **shadow}
        checkpoint["ema_state_dict"] = averaged
        if self.validate_with_ema:
            checkpoint["state_dict"] = averaged  # what validation scored
            checkpoint["train_state_dict"] = train_state  # what training resumes from
        elif live:
            checkpoint["state_dict"] = train_state

    def state_dict(self) -> dict[str, Any]:
        return {}  # written by on_save_checkpoint (needs the strategy to gather shards)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self._pending_state = state
            self.num_updates = int(state.get("num_updates", 0))

    def _load_shadow(self, trainer: Trainer, module: TrainingModule, state: dict[str, Any]) -> None:
        saved = {clean_state_key(k): v for k, v in state["shadow"].items()}
        missing = [n for n in self.names if n not in saved]
        if missing:
            raise ValueError(f"EMA state lacks {len(missing)} averaged tensors, e.g. {missing[0]!r}")
        with torch.no_grad():
            self.shadow = [trainer.strategy.shard_like(saved[n], s) for n, s in zip(self.names, self.shadow)]

    def on_load_checkpoint(
        self, trainer: Trainer, module: TrainingModule, checkpoint: dict[str, Any]
    ) -> None:
        state = checkpoint.get("callbacks", {}).get(self.state_key)
        if state:
            self.load_state_dict(state)
            if self.shadow:
                self._load_shadow(trainer, module, state)
                self._pending_state = None


__all__ = ["EMA"]
