"""Training recipe for the image codec (``vqcodec.models.image.ImageCodec``).

A config (TOML, see ``vqcodec/train/configs/image_rvq8.toml``) names this module's ``build``
as ``[recipe] builder`` and holds:

- ``[model]``: ImageCodecConfig fields;
- ``[data]``: ``packed`` (crop file, relative paths are relative to the repo; packed on first
  use), ``stored_crop_size``, ``num_crops``, ``crop_size`` (training window), ``batch_size``,
  ``val_crops`` (how many validation crops to use), ``seed``;
- ``[optim]``: ``lr``, ``min_lr_ratio``, ``warmup_steps``, ``schedule_steps`` (length of the cosine
  schedule, default ``trainer.max_steps``), ``weight_decay``, ``distortion_weight``, ``init_from``
  (optional bundle or trainer checkpoint to start from: weights and codebooks, not the optimizer);
- ``[validation]``: ``qualities`` evaluated at each validation;
- ``[trainer]``: Trainer keyword arguments; ``[export]``: bundle path, name, description,
  ``fit_crops`` (crops whose codes fit the entropy prior), ``prior`` (prior class name).

The loss is ``distortion_weight * MSE + quantizer losses`` (commitment): pixels are in [0, 1],
so the weight keeps the commitment term small next to the distortion term.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from vqcodec.models.bundle import load_bundle
from vqcodec.models.config import ImageCodecConfig
from vqcodec.models.image import ImageCodec
from vqcodec.train.checkpoint import module_state_dict
from vqcodec.train.config import RECIPES, Recipe
from vqcodec.train.data import ensure_packed, resolve_path, split_datasets
from vqcodec.train.export import export_image_bundle, image_config_from
from vqcodec.train.module import TrainingModule


def psnr_from_mse(mse: torch.Tensor) -> torch.Tensor:
    """PSNR in dB for pixels in [0, 1]."""
    return -10.0 * torch.log10(mse.clamp_min(1e-10))


class ImageCodecModule(TrainingModule):
    """Trains ImageCodec for MSE with quantizer dropout; validation reports PSNR per quality level."""

    def __init__(
        self,
        model_config: ImageCodecConfig,
        *,
        lr: float = 5e-4,
        min_lr_ratio: float = 0.05,
        warmup_steps: int = 200,
        total_steps: int = 10_000,
        weight_decay: float = 0.0,
        distortion_weight: float = 1000.0,
        distortion: str = "mse",
        encoder_lr_scale: float = 1.0,
        val_qualities: tuple[int, ...] = (),
    ):
        super().__init__()
        self.model_config = model_config
        self.model = ImageCodec(model_config)
        self.lr = lr
        self.min_lr_ratio = min_lr_ratio
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.weight_decay = weight_decay
        self.distortion_weight = distortion_weight
        if distortion not in ("mse", "log_mse"):
            raise ValueError(f"[optim] distortion must be 'mse' or 'log_mse', got {distortion!r}")
        self.distortion = distortion
        self.encoder_lr_scale = encoder_lr_scale
        if encoder_lr_scale == 0:
            self.model.analysis.requires_grad_(False)
        self.val_qualities = tuple(val_qualities) or tuple(range(1, model_config.quality_levels + 1))

    def forward(self, pixels: torch.Tensor):  # noqa: D102 - the trainer's strategy wraps forward
        return self.model(pixels)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        pixels = batch.contiguous(memory_format=torch.channels_last)
        out = self(pixels)
        mse = out.loss["mse"]
        quantizer_loss = sum((v.float() for k, v in out.loss.items() if k != "mse"), torch.zeros(()))
        if self.distortion == "log_mse":
            # -PSNR: quantizer dropout mixes batches of 1 and of all stages, whose MSEs differ ~10x; on
            # plain MSE the coarse batches dominate the gradient and the fine levels lose quality
            loss = 10.0 * torch.log10(mse.float().clamp_min(1e-10)) + quantizer_loss
        else:
            loss = self.distortion_weight * mse + quantizer_loss
        stages = (out.codes >= 0).sum(dim=1).float().mean()
        self.log("train/loss", loss.detach())
        self.log("train/psnr", psnr_from_mse(mse.detach()))
        self.log("train/stages", stages)
        self.log("train/quantizer_loss", quantizer_loss.detach())
        for name, value in out.metrics.items():
            if value.numel() == 1:
                self.log(f"codebook/{name}", value.detach().float())
        return loss

    @torch.no_grad()
    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        pixels = batch.contiguous(memory_format=torch.channels_last)
        latents = self.model.analyse(pixels)
        for quality in self.val_qualities:
            stages = self.model_config.stages_for_quality(quality)
            codes = self.model.quantizer.encode(latents, num_stages=stages)
            reconstruction = self.model.synthesise(self.model.quantizer.decode(codes)).clamp(0, 1)
            mse = torch.mean((reconstruction.float() - pixels.float()) ** 2)
            self.log(f"val/psnr_q{quality}", psnr_from_mse(mse))

    def configure_optimizers(self) -> Any:
        # the EMA codebooks of the later RVQ stages (updated only in batches that reach them) cannot
        # follow a fast-moving encoder: a slower analysis transform keeps the fine levels sharp
        encoder = [p for p in self.model.analysis.parameters() if p.requires_grad]
        ids = {id(p) for p in encoder}
        rest = [p for p in self.model.parameters() if p.requires_grad and id(p) not in ids]
        groups = [{"params": rest, "lr": self.lr}]
        if encoder:  # empty when frozen (encoder_lr_scale = 0)
            groups.append({"params": encoder, "lr": self.lr * self.encoder_lr_scale})
        optimizer = torch.optim.AdamW(groups, lr=self.lr, weight_decay=self.weight_decay, betas=(0.9, 0.99))

        def schedule(step: int) -> float:
            if step < self.warmup_steps:
                return (step + 1) / self.warmup_steps
            progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
            return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def load_initial_weights(model: ImageCodec, source: str | Path) -> None:
    """Start from a bundle (``.safetensors``) or a trainer checkpoint of the same architecture."""
    source = resolve_path(source)
    if source.suffix == ".safetensors":
        network, _, config, _ = load_bundle(source)
        if config != model.config:
            raise ValueError(f"{source.name} has a different model config")
        model.load_state_dict(network.state_dict(), strict=False)
        return
    model.load_state_dict(module_state_dict(source, prefix="model."))  # EMA weights when the run had them


@torch.no_grad()
def initialise_codebooks(
    model: ImageCodec, crops: torch.Tensor, crop_size: int, batch_size: int, count: int
) -> None:
    """Initialise the RVQ codebooks from the (untrained) encoder's latents of ``count`` training crops."""
    pixels = crops[-count:, :, :crop_size, :crop_size].float().div(255.0)
    latents = model.analyse(pixels.contiguous(memory_format=torch.channels_last)).float()
    vectors_per_step = batch_size * (crop_size // model.stride) ** 2
    model.initialise_codebooks(latents, vectors_per_step)


def build(config: dict[str, Any]) -> tuple[ImageCodecModule, tuple[DataLoader, DataLoader]]:
    """Recipe builder: (module, (train_loader, val_loader)) from the parsed config dict."""
    data: dict[str, Any] = dict(config.get("data", {}))
    optim: dict[str, Any] = dict(config.get("optim", {}))
    trainer: dict[str, Any] = dict(config.get("trainer", {}))
    model_config = image_config_from(config)
    module = ImageCodecModule(
        model_config,
        lr=float(optim.get("lr", 5e-4)),
        min_lr_ratio=float(optim.get("min_lr_ratio", 0.05)),
        warmup_steps=int(optim.get("warmup_steps", 200)),
        total_steps=int(optim.get("schedule_steps", trainer.get("max_steps", 10_000))),
        weight_decay=float(optim.get("weight_decay", 0.0)),
        distortion_weight=float(optim.get("distortion_weight", 1000.0)),
        distortion=str(optim.get("distortion", "mse")),
        encoder_lr_scale=float(optim.get("encoder_lr_scale", 1.0)),
        val_qualities=tuple(config.get("validation", {}).get("qualities", ())),
    )
    # nn.Module.to takes memory_format (documented), which its overloads leave out
    module.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    packed = ensure_packed(
        resolve_path(data.get("packed", ".data/image_crops_144.pt")),
        crop_size=int(data.get("stored_crop_size", 144)),
        num_crops=int(data.get("num_crops", 8000)),
        seed=int(data.get("seed", 0)),
    )
    crop_size = int(data.get("crop_size", 128))
    batch_size = int(data.get("batch_size", 16))
    if optim.get("init_from"):
        load_initial_weights(module.model, optim["init_from"])
    else:
        if model_config.linear_path:
            linear_crops = packed["train"][
                : int(data.get("linear_init_crops", 512)), :, :crop_size, :crop_size
            ]
            module.model.initialise_linear_path(linear_crops.float().div(255.0))
        initialise_codebooks(
            module.model, packed["train"], crop_size, batch_size, int(data.get("init_crops", 128))
        )
    num_val = int(data.get("val_crops", 32))
    packed = dict(packed, val=packed["val"][:num_val])
    train_set, val_set = split_datasets(packed, crop_size, data.get("val_crop_size"))
    train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=0)
    val_loader = DataLoader(
        val_set, batch_size=int(data.get("val_batch_size", 8)), shuffle=False, num_workers=0
    )
    return module, (train_loader, val_loader)


def export(module: ImageCodecModule, config: dict[str, Any], trainer: Any) -> Path:
    """Export hook called after fit: fit the entropy prior and write the bundle named in ``[export]``."""
    extra: dict[str, Any] = {}
    if trainer is not None:
        extra["global_step"] = int(trainer.global_step)
        metrics = getattr(trainer, "callback_metrics", {}) or {}
        extra["val"] = {k: round(float(v), 3) for k, v in metrics.items() if str(k).startswith("val/")}
    return export_image_bundle(module.model, config, extra=extra)


RECIPES.register("image", Recipe(build, export))

__all__ = ["ImageCodecModule", "build", "export", "load_initial_weights", "psnr_from_mse"]
