"""MultiScaleVQ: VAR-style multi-scale residual VQ (Tian et al. 2024; upstream's HierarchicalVQ).

Level l average-pools the current residual to ``scales[l]`` (a size per spatial axis), quantizes every
pooled vector with a VectorQuantizer (one shared codebook, or one per level), upsamples the codewords back
to the full resolution (linear / bilinear / trilinear) and passes them through phi, a 3x3 convolution
mixed in with weight ``quant_resi`` (``x.lerp(conv(x), quant_resi)``; 0 disables it), as upstream.  The
result is added to the reconstruction and subtracted from the residual.

Codes are one token sequence per item, coarse to fine: (B, T) with T = sum over levels of prod(scales[l]),
level l's tokens in row-major order of its grid (upstream returns a tuple of per-level grids;
``split_codes`` gives those).  ``decode(codes, full_shape)`` rebuilds latents of spatial size
``full_shape`` (default: the last scale); ``decode(encode(x))`` equals ``forward(x).quantized`` in eval
mode for the same batch.  Every VectorQuantizer option (``decay``, ``kmeans_init``,
``threshold_ema_dead_code``, ``commitment_weight``, ``sync_codebook``, ...) is passed to the level
quantizers, which keep their own DDP-synchronised state.  Distances run in float32; the pooling,
interpolation and phi run in float32 with autocast disabled.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vqcodec.quantize.base import Quantizer, QuantizerOutput, TypedModuleList, full_precision
from vqcodec.quantize.vq import VectorQuantizer, VectorQuantizerConfig


@dataclass(frozen=True, kw_only=True)
class MultiScaleVQConfig(VectorQuantizerConfig):
    scales: tuple[tuple[int, ...], ...]
    spatial_dims: int = 2
    shared_codebook: bool = True
    quant_resi: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.spatial_dims not in (1, 2, 3):
            raise ValueError(f"spatial_dims must be 1, 2 or 3, got {self.spatial_dims}")
        shapes = tuple(
            (int(s),) * self.spatial_dims if isinstance(s, int) else tuple(int(v) for v in s)
            for s in self.scales
        )
        object.__setattr__(self, "scales", shapes)
        if not shapes or any(len(s) != self.spatial_dims or min(s) < 1 for s in shapes):
            raise ValueError(f"scales need {self.spatial_dims} positive sizes per level, got {self.scales}")
        if any(any(a > b for a, b in zip(p, c)) for p, c in zip(shapes, shapes[1:])):
            raise ValueError(f"scales must not decrease from level to level, got {shapes}")
        if not self.channel_first:
            raise ValueError("MultiScaleVQ takes channel-first latents (B, C, *S) (channel_first=True)")


class MultiScaleVQ(Quantizer[MultiScaleVQConfig]):
    """Multi-scale residual VQ.  Args: ``dim``, ``codebook_size``, ``scales`` (per level an int or a size
    per spatial axis, non-decreasing), ``spatial_dims`` (1, 2 or 3), ``shared_codebook``, ``quant_resi``,
    and VectorQuantizer options.  Shapes: latents (B, C, *S); codes (B, T) int64."""

    config_class = MultiScaleVQConfig

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        scales: Sequence[int | Sequence[int]],
        *,
        spatial_dims: int = 2,
        shared_codebook: bool = True,
        quant_resi: float = 0.5,
        **options: Any,
    ) -> None:
        config = MultiScaleVQConfig(
            dim=dim,
            codebook_size=codebook_size,
            scales=tuple(s if isinstance(s, int) else tuple(s) for s in scales),  # type: ignore[misc]
            spatial_dims=spatial_dims,
            shared_codebook=shared_codebook,
            quant_resi=quant_resi,
            **options,
        )
        super().__init__(config)
        self.dim = dim
        self.codebook_size = codebook_size
        self.scales = config.scales
        self.num_levels = len(config.scales)
        names = {f.name for f in dataclasses.fields(VectorQuantizerConfig)}
        values = {name: getattr(config, name) for name in names}
        values["channel_first"] = False
        count = 1 if shared_codebook else self.num_levels
        self.levels = TypedModuleList(
            [
                VectorQuantizer.from_config(VectorQuantizerConfig(**{**values, "seed": config.seed + i}))
                for i in range(count)
            ]
        )
        conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[spatial_dims - 1]
        self.phi = conv(dim, dim, 3, padding=1) if quant_resi > 0 else None
        self.tokens_per_level = [math.prod(s) for s in config.scales]

    @property
    def alphabet(self) -> tuple[int, ...]:
        """(codebook_size,): one token stream."""
        return (self.codebook_size,)

    def level(self, index: int) -> VectorQuantizer:
        return self.levels[0 if self._config.shared_codebook else index]

    def split_codes(self, codes: torch.Tensor) -> list[torch.Tensor]:
        """(B, T) -> per-level grids [(B, *scales[l])] (upstream's layout)."""
        parts = torch.split(codes, self.tokens_per_level, dim=1)
        return [p.reshape(codes.shape[0], *s) for p, s in zip(parts, self.scales)]

    def _upsample(self, q: torch.Tensor, full_shape: tuple[int, ...]) -> torch.Tensor:
        """Level codewords (B, C, *scale) -> (B, C, *full_shape) through interpolation and phi."""
        if tuple(q.shape[2:]) != full_shape:
            mode = ("linear", "bilinear", "trilinear")[self._config.spatial_dims - 1]
            q = F.interpolate(q, size=full_shape, mode=mode, align_corners=False)
        if self.phi is not None:
            q = q.lerp(self.phi(q), self._config.quant_resi)
        return q

    def _check(self, latents: torch.Tensor) -> None:
        if latents.ndim != 2 + self._config.spatial_dims or latents.shape[1] != self.dim:
            raise ValueError(
                f"latents must be (B, {self.dim}, *S) with {self._config.spatial_dims} spatial axes, "
                f"got {tuple(latents.shape)}"
            )

    def _pool(self, residual: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
        """(B, C, *S) -> (B, C, *size), ``len(size) == spatial_dims``."""
        if self._config.spatial_dims == 1:
            return F.adaptive_avg_pool1d(residual, size[0])
        if self._config.spatial_dims == 2:
            return F.adaptive_avg_pool2d(residual, (size[0], size[1]))
        return F.adaptive_avg_pool3d(residual, (size[0], size[1], size[2]))

    def forward(self, latents: torch.Tensor, *, freeze_codebook: bool = False) -> QuantizerOutput:
        """latents (B, C, *S) -> QuantizerOutput(quantized (B, C, *S), codes (B, T))."""
        self._check(latents)
        full_shape = tuple(latents.shape[2:])
        with full_precision(latents.device):
            x = latents.float()
            residual, reconstruction = x, torch.zeros_like(x)
            codes: list[torch.Tensor] = []
            loss: dict[str, torch.Tensor] = {}
            metrics: dict[str, torch.Tensor] = {}
            for i, size in enumerate(self.scales):
                pooled = self._pool(residual, size)
                vectors = pooled.movedim(1, -1).reshape(-1, self.dim)
                q, level_codes, level_loss, level_metrics, _ = self.level(i).quantize_vectors(
                    vectors, update=self.training and not freeze_codebook, freeze=freeze_codebook
                )
                grid = q.reshape(x.shape[0], *size, self.dim).movedim(-1, 1)
                up = self._upsample(grid, full_shape)
                reconstruction = reconstruction + up
                residual = residual - up
                codes.append(level_codes.reshape(x.shape[0], -1))
                for name, value in level_loss.items():
                    loss[name] = (
                        loss[name] + value / self.num_levels if name in loss else value / self.num_levels
                    )
                for name, value in level_metrics.items():
                    metrics[f"level{i}/{name}"] = value
        for name in ("usage", "perplexity"):
            metrics[name] = torch.stack([metrics[f"level{i}/{name}"] for i in range(self.num_levels)]).mean()
        return QuantizerOutput(reconstruction, torch.cat(codes, dim=1), loss, metrics)

    def encode(self, latents: torch.Tensor) -> torch.Tensor:
        """latents (B, C, *S) -> codes (B, T) int64.  No state changes."""
        self._check(latents)
        full_shape = tuple(latents.shape[2:])
        with torch.no_grad(), full_precision(latents.device):
            residual = latents.float()
            codes = []
            for i, size in enumerate(self.scales):
                vectors = self._pool(residual, size).movedim(1, -1).reshape(-1, self.dim)
                level_codes = self.level(i).codes_from_vectors(vectors)
                grid = self.level(i).vectors_from_codes(level_codes)
                grid = grid.reshape(residual.shape[0], *size, self.dim).movedim(-1, 1)
                residual = residual - self._upsample(grid, full_shape)
                codes.append(level_codes.reshape(residual.shape[0], -1))
        return torch.cat(codes, dim=1)

    def decode(self, codes: torch.Tensor, full_shape: Sequence[int] | None = None) -> torch.Tensor:
        """codes (B, T) (-1 = token unused) -> latents (B, C, *full_shape) float32 (default: last scale)."""
        total = sum(self.tokens_per_level)
        if codes.ndim != 2 or codes.shape[1] != total:
            raise ValueError(f"codes must be (B, {total}) for scales {self.scales}, got {tuple(codes.shape)}")
        shape = tuple(full_shape) if full_shape is not None else self.scales[-1]
        with full_precision(codes.device):
            out = torch.zeros(codes.shape[0], self.dim, *shape, device=codes.device)
            for i, (part, size) in enumerate(
                zip(torch.split(codes, self.tokens_per_level, dim=1), self.scales)
            ):
                flat = part.reshape(-1)
                vectors = self.level(i).vectors_from_codes(flat.clamp_min(0))
                vectors = vectors.masked_fill((flat == -1)[:, None], 0.0)
                grid = vectors.reshape(codes.shape[0], *size, self.dim).movedim(-1, 1)
                out = out + self._upsample(grid, shape)
        return out
