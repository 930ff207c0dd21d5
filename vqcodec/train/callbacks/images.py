"""``ImageLogger``: originals next to their reconstructions, every ``every_n_steps`` optimizer steps.

``images`` is a fixed (N, C, H, W) batch in [0, 1] (C = 1 or 3), chosen once so the pictures of a run
are comparable step to step. At each interval (and at the end of training) the module runs on it in eval
mode, without gradients and under a forked RNG (training's random streams do not move), and one grid
goes to the loggers as ``name``: the originals in the top row, the reconstructions below; the CSV logger
writes it to ``<log_dir>/images/<name>/step=<step>.png``, TensorBoard shows it under ``name``.

``reconstruct(module, images) -> (N, C, H, W)`` says how to get reconstructions; by default the module
is called and the output used as is, or its first element (tuple), its ``"reconstruction"`` entry
(dict) or its ``.reconstruction`` attribute. Every rank runs the forward (a strategy may need all of
them); rank 0 logs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from vqcodec.train.callbacks.base import Callback
from vqcodec.train.loggers import image_grid

if TYPE_CHECKING:
    from vqcodec.train.module import TrainingModule
    from vqcodec.train.trainer import Trainer


def _reconstruction_of(output: Any) -> torch.Tensor:
    if torch.is_tensor(output):
        return output
    if isinstance(output, (tuple, list)) and output and torch.is_tensor(output[0]):
        return output[0]
    if isinstance(output, dict) and torch.is_tensor(output.get("reconstruction")):
        return output["reconstruction"]
    value = getattr(output, "reconstruction", None)
    if torch.is_tensor(value):
        return value
    raise TypeError(
        f"ImageLogger cannot find a reconstruction in a {type(output).__name__}: pass reconstruct="
    )


class ImageLogger(Callback):
    def __init__(
        self,
        images: torch.Tensor,
        *,
        every_n_steps: int = 1000,
        name: str = "images/reconstruction",
        reconstruct: Callable[[Any, torch.Tensor], torch.Tensor] | None = None,
        on_train_end: bool = True,
    ):
        if not torch.is_tensor(images) or images.ndim != 4 or images.shape[1] not in (1, 3):
            shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
            raise ValueError(f"images must be an (N, 1 or 3, H, W) tensor in [0, 1], got {shape}")
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.images = images.detach().float().cpu()
        self.every_n_steps = int(every_n_steps)
        self.name = name
        self.reconstruct = reconstruct
        self.log_on_train_end = on_train_end
        self.logged_steps: list[int] = []

    @torch.no_grad()
    def grid(self, trainer: Trainer, module: TrainingModule) -> torch.Tensor:
        """(C, 2H + 2, W') grid of originals over reconstructions, on the CPU."""
        was_training = module.training
        module.eval()
        devices = [trainer.device.index or 0] if trainer.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices):
                images = self.images.to(trainer.device)
                output = self.reconstruct(module, images) if self.reconstruct else module(images)
                recon = _reconstruction_of(output).float().clamp(0, 1)
        finally:
            if was_training:
                module.train()
        if recon.shape != images.shape:
            raise ValueError(
                f"reconstructions have shape {tuple(recon.shape)}, the images {tuple(images.shape)}"
            )
        return image_grid([images.cpu(), recon.cpu()])

    def _log(self, trainer: Trainer, module: TrainingModule) -> None:
        if trainer.global_step in self.logged_steps:
            return
        grid = self.grid(trainer, module)
        trainer.log_image(self.name, grid)
        self.logged_steps.append(trainer.global_step)

    def on_train_batch_end(
        self, trainer: Trainer, module: TrainingModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.progress.crossed(self.every_n_steps):
            self._log(trainer, module)

    def on_train_end(self, trainer: Trainer, module: TrainingModule) -> None:
        if self.log_on_train_end:
            self._log(trainer, module)


__all__ = ["ImageLogger"]
