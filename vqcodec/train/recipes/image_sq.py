"""Training recipe for the scalar-quantized image codec (``vqcodec.models.image_sq``).

Sample efficiency by construction: the transform is a block KLT fitted in closed form (one SVD)
and the quantizer has no parameters, so codes never change during training and the entropy
prior is fitted afterwards by counting (``export``). Only the refinement network of the
synthesis is trained, by plain supervised learning: each sample of a batch is quantized at a
random quality level exactly as the encoder quantizes it, and the loss is the mean over samples
of 10 log10(MSE) (-PSNR), so every level counts alike.

Config sections (``vqcodec/train/configs/image_sq20.toml``): ``[model]`` ScalarImageCodecConfig
fields; ``[data]`` as the image recipe (packed crops); ``[optim]`` lr, warmup_steps,
schedule_steps, min_lr_ratio; ``[validation]`` qualities; ``[trainer]``; ``[export]`` path
(default inside the run folder: training never writes into the installed package), name,
description, ``fit_crops`` (crops whose codes fit the prior), ``prior_groups`` (table groups, 4),
``prior_layout`` (the prior's pass layout, 1; ``vqcodec.entropy.coefficients.LAYOUT_PASSES``),
``prior_sign_context`` (context-coded sign bits, false: uniform sign bits as released before),
``prior_predict`` (false; true: ``CoefficientContextPrior.fit_with_prediction`` chooses, per table
group, which low-order channels are coded as residuals of their neighbours' mean), ``steps`` (the
bundle's quality levels when they differ from the training's ``[model] steps``).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from vqcodec.entropy.coefficients import CoefficientContextPrior
from vqcodec.models.bundle import load_bundle, save_bundle
from vqcodec.models.image_sq import (
    BLOCK,
    COEFFICIENTS,
    ScalarImageCodec,
    ScalarImageCodecConfig,
    group_for_quality,
)
from vqcodec.train.config import RECIPES, Recipe
from vqcodec.train.data import ensure_packed, resolve_path, split_datasets
from vqcodec.train.module import TrainingModule


class ScalarImageCodecModule(TrainingModule):
    """Trains the refinement of ScalarImageCodec's synthesis; validation logs PSNR per level."""

    steps: torch.Tensor  # (levels,) quantization step of each quality level (buffer)

    def __init__(
        self,
        model_config: ScalarImageCodecConfig,
        *,
        lr: float = 5e-4,
        min_lr_ratio: float = 0.05,
        warmup_steps: int = 100,
        total_steps: int = 4000,
        val_qualities: tuple[int, ...] = (),
    ):
        super().__init__()
        self.model_config = model_config
        self.model = ScalarImageCodec(model_config)
        self.lr = lr
        self.min_lr_ratio = min_lr_ratio
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        levels = model_config.quality_levels
        self.val_qualities = tuple(val_qualities) or (1, (levels + 1) // 2, levels)
        self.register_buffer("steps", torch.tensor(model_config.steps, dtype=torch.float32))

    def forward(self, pixels: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.model(pixels, steps)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        pixels = batch.contiguous(memory_format=torch.channels_last)
        levels = torch.randint(0, self.steps.numel(), (pixels.shape[0],))
        reconstruction = self(pixels, self.steps[levels])
        mse = ((reconstruction.float() - pixels.float()) ** 2).mean(dim=(1, 2, 3))
        loss = (10.0 * torch.log10(mse.clamp_min(1e-10))).mean()
        self.log("train/loss", loss.detach())
        return loss

    @torch.no_grad()
    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        pixels = batch.contiguous(memory_format=torch.channels_last)
        coefficients = self.model.analyse(pixels)
        for quality in self.val_qualities:
            step = self.model_config.step_for_quality(quality)
            dequantized = self.model.quantize(coefficients, step).float() * step
            for name, out in (
                ("psnr", self.model.synthesise(dequantized, step)),
                (
                    "linear_psnr",
                    self.model.synthesise(dequantized, step) - self._refinement(dequantized, step),
                ),
            ):
                mse = torch.mean((out.clamp(0, 1).float() - pixels.float()) ** 2)
                self.log(f"val/{name}_q{quality}", -10.0 * torch.log10(mse.clamp_min(1e-10)))

    def _refinement(self, dequantized: torch.Tensor, step: float) -> torch.Tensor:
        """The refinement network's share of the reconstruction (for the linear baseline)."""
        model = self.model
        b = dequantized.shape[0]
        level = torch.full((b, 1, *dequantized.shape[2:]), math.log2(step), dtype=dequantized.dtype)
        return model.refine(torch.cat([dequantized / model.scale[:, None, None], level], dim=1)).float()

    def configure_optimizers(self) -> Any:
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.lr, weight_decay=0.0, betas=(0.9, 0.99))

        def schedule(step: int) -> float:
            if step < self.warmup_steps:
                return (step + 1) / self.warmup_steps
            progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
            return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def model_config_from(config: dict[str, Any]) -> ScalarImageCodecConfig:
    return ScalarImageCodecConfig.from_dict(dict(config.get("model", {})))


def build(config: dict[str, Any]) -> tuple[ScalarImageCodecModule, tuple[DataLoader, DataLoader]]:
    """Recipe builder: (module, (train_loader, val_loader)); fits the block KLT before training."""
    data: dict[str, Any] = dict(config.get("data", {}))
    optim: dict[str, Any] = dict(config.get("optim", {}))
    trainer: dict[str, Any] = dict(config.get("trainer", {}))
    model_config = model_config_from(config)
    module = ScalarImageCodecModule(
        model_config,
        lr=float(optim.get("lr", 5e-4)),
        min_lr_ratio=float(optim.get("min_lr_ratio", 0.05)),
        warmup_steps=int(optim.get("warmup_steps", 100)),
        total_steps=int(optim.get("schedule_steps", trainer.get("max_steps", 4000))),
        val_qualities=tuple(config.get("validation", {}).get("qualities", ())),
    )
    packed = ensure_packed(
        resolve_path(data.get("packed", ".data/image_crops_144.pt")),
        crop_size=int(data.get("stored_crop_size", 144)),
        num_crops=int(data.get("num_crops", 8000)),
        seed=int(data.get("seed", 0)),
    )
    crop_size = int(data.get("crop_size", 128))
    batch_size = int(data.get("batch_size", 16))
    if optim.get("init_from"):
        network, _, saved, _ = load_bundle(resolve_path(optim["init_from"]))
        if saved != model_config:
            raise ValueError(f"{optim['init_from']} has a different model config")
        module.model.load_state_dict(network.state_dict())
    else:
        pca_crops = packed["train"][: int(data.get("transform_crops", 2000)), :, :crop_size, :crop_size]
        module.model.initialise_transform(pca_crops.float().div(255.0))
    # nn.Module.to takes memory_format (documented), which its overloads leave out
    module.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    num_val = int(data.get("val_crops", 16))
    packed = dict(packed, val=packed["val"][:num_val])
    train_set, val_set = split_datasets(packed, crop_size, data.get("val_crop_size"))
    train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=0)
    val_loader = DataLoader(val_set, batch_size=int(data.get("val_batch_size", 8)), shuffle=False)
    return module, (train_loader, val_loader)


@torch.no_grad()
def training_codes(model: ScalarImageCodec, crops: torch.Tensor, batch: int = 64) -> list[list[np.ndarray]]:
    """Codes of uint8 crops (N, 3, C, C) at every level: [level][crop] -> (192, C/8, C/8) int32.

    Each level's codes fill one array allocated up front: appending per-batch arrays left the
    freed int64 intermediates fragmenting the heap: the process held several times the codes' size
    and a 1,000-crop export ran out of 24 GB."""
    n, _, height, width = crops.shape
    shape = (n, COEFFICIENTS, height // BLOCK, width // BLOCK)
    out = [np.empty(shape, dtype=np.int32) for _ in model.config.steps]
    for start in range(0, n, batch):
        pixels = crops[start : start + batch].float().div(255.0)
        coefficients = model.analyse(pixels)
        for level, step in enumerate(model.config.steps):
            codes = model.quantize(coefficients, step)
            out[level][start : start + codes.shape[0]] = codes.numpy()
    return [list(level_codes) for level_codes in out]


def export(module: ScalarImageCodecModule, config: dict[str, Any], trainer: Any) -> Path:
    """Fit the coefficient prior on training crops' codes and write the bundle named in ``[export]``."""
    export_cfg = dict(config.get("export", {}))
    data: dict[str, Any] = dict(config.get("data", {}))
    model = module.model.eval()
    if "steps" in export_cfg:
        # the bundle's quality levels may be finer than the training's: the refinement takes
        # log2(step) as an input plane, so it serves steps between the trained ones
        steps = export_cfg["steps"]
        if not isinstance(steps, list):
            raise ValueError(f"[export] steps must be a list of step sizes, got {steps!r}")
        levels = dataclasses.replace(model.config, steps=tuple(float(v) for v in steps))
        exported = ScalarImageCodec(levels)
        exported.load_state_dict(model.state_dict())
        model = exported.eval()
    packed = ensure_packed(
        resolve_path(data.get("packed", ".data/image_crops_144.pt")),
        crop_size=int(data.get("stored_crop_size", 144)),
        num_crops=int(data.get("num_crops", 8000)),
        seed=int(data.get("seed", 0)),
    )
    count = int(export_cfg.get("fit_crops", 400))
    groups = int(export_cfg.get("prior_groups", 4))
    crops = packed["train"][-count:]
    by_level = training_codes(model, crops)
    by_group: list[list[np.ndarray]] = [[] for _ in range(groups)]
    for level, codes in enumerate(by_level, start=1):
        by_group[group_for_quality(level, len(by_level), groups)].extend(codes)
    layout = int(export_cfg.get("prior_layout", 1))
    sign_context = export_cfg.get("prior_sign_context", False)
    if not isinstance(sign_context, bool):
        raise ValueError(f"[export] prior_sign_context must be true or false, got {sign_context!r}")
    predict = export_cfg.get("prior_predict", False)
    if not isinstance(predict, bool):
        raise ValueError(f"[export] prior_predict must be true or false, got {predict!r}")
    fit = CoefficientContextPrior.fit_with_prediction if predict else CoefficientContextPrior.fit
    prior = fit(by_group, layout=layout, sign_context=sign_context)
    extra: dict[str, Any] = {"fit_crops": count}
    if trainer is not None:
        extra["global_step"] = int(trainer.global_step)
        metrics = getattr(trainer, "callback_metrics", {}) or {}
        extra["val"] = {k: round(float(v), 3) for k, v in metrics.items() if str(k).startswith("val/")}
    root = Path(config.get("trainer", {}).get("default_root_dir", "runs/image_sq"))
    path = resolve_path(export_cfg.get("path", root / "model.safetensors"))
    save_bundle(
        path,
        model,
        prior,
        model.config,
        str(export_cfg.get("description", "scalar-quantized image codec")),
        name=str(export_cfg.get("name", path.stem)),
        media="image",
        extra=extra,
    )
    return path


RECIPES.register("image_sq", Recipe(build, export))

__all__ = ["ScalarImageCodecModule", "build", "export", "model_config_from", "training_codes"]
