"""MultiScaleVQ: VAR-style multi-scale residual VQ (Tian et al. 2024; upstream's HierarchicalVQ).

Level l average-pools the current residual to ``scales[l]`` (a size per spatial axis), quantizes every
pooled vector with a VectorQuantizer (one shared codebook, or one per level), upsamples the codewords back
to the full resolution (linear / bilinear / trilinear) and passes them through phi, a 3x3 convolution
mixed in with weight ``quant_resi`` (``x.lerp(conv(x), quant_resi)``; 0 disables it), as upstream.  The
result is added to the reconstruction and subtracted from the residual.  ``share_quant_resi`` picks how
many phi convolutions there are: 1 (default) one shared by every level; k > 1 k of them, level l using
number ``round(l / (L - 1) * (k - 1))`` (its relative position, as upstream); <= 0 one per level.

Codes are one token sequence per item, coarse to fine: (B, T) with T = sum over levels of prod(scales[l]),
level l's tokens in row-major order of its grid (upstream returns a tuple of per-level grids;
``split_codes`` gives those).  ``decode(codes, full_shape)`` rebuilds latents of spatial size
``full_shape`` (default: the last scale) from all T tokens or from the tokens of the first k levels (a
coarse-to-fine prefix); ``decode(encode(x))`` equals ``forward(x).quantized`` in eval mode for the same
batch.  Every VectorQuantizer option (``decay``, ``kmeans_init``, ``threshold_ema_dead_code``,
``commitment_weight``, ``sync_codebook``, ...) is passed to the level quantizers, which keep their own
DDP-synchronised state.  Distances run in float32; the pooling, interpolation and phi run in float32 with
autocast disabled.

Per-level codebook sizes: ``codebook_size=(K_0, ..., K_{L-1})`` (needs ``shared_codebook=False``) gives
level l a codebook of K_l codes; the config stores them as ``codebook_sizes`` with ``codebook_size =
max(K_l)``.  The levels still share one token stream (B, T), so ``alphabet`` is that stream's symbol
range, ``(max(K_l),)`` (ResidualVQ reports one entry per stage because its stages are separate streams
on the trailing code axis; here there is no stream axis).

Padding: ``forward(latents, mask)`` with ``mask`` (B, *S) bool (True = valid), or ``lens`` (B,) for 1-D
sequences.  Each level pools with the mask, ``pool(x * mask) / pool(mask)``; a level cell with no valid
position is masked out of its level quantizer (no EMA, k-means, revival, loss or metric; code -1; zero
codeword), and the reconstruction is zero at padded positions (VectorQuantizer / ResidualVQ give masked
positions their input back instead; upstream's HierarchicalVQ zeroes them, as here).  ``encode`` takes
the same ``mask`` / ``lens`` (-1 at cells without valid positions), so ``decode(encode(x, mask))`` equals
``forward(x, mask).quantized`` at the valid positions in eval mode.

Nested dropout (``nested_dropout`` = p > 0, training only): with probability p a step keeps only levels
0..c, c uniform in [nested_dropout_min_levels - 1, L - 2]: ``quantized`` is the reconstruction summed
up to level c and the loss terms are averaged over levels 0..c only.  As upstream, every level is still
quantized, so the levels after c keep updating their codebooks (their codes are in ``codes`` too); they
just add nothing to the output or the loss.  c is drawn like ResidualVQ's quantize dropout: from a
generator seeded with ``nested_dropout_seed`` (torch's global generator without one) and broadcast from
rank 0 (with ``sync_codebook``), so every DDP rank keeps the same levels.  The output's
``metrics["nested_cutoff"]`` (present whenever nested_dropout > 0) is the last level kept (L - 1 when no
level was dropped).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vqcodec.quantize.base import (
    Quantizer,
    QuantizerOutput,
    TypedModuleList,
    flatten_mask,
    full_precision,
    lengths_to_mask,
)
from vqcodec.quantize.distributed import broadcast_int
from vqcodec.quantize.vq import VectorQuantizer, VectorQuantizerConfig


@dataclass(frozen=True, kw_only=True)
class MultiScaleVQConfig(VectorQuantizerConfig):
    scales: tuple[tuple[int, ...], ...]
    spatial_dims: int = 2
    shared_codebook: bool = True
    quant_resi: float = 0.5
    share_quant_resi: int = 1
    codebook_sizes: tuple[int, ...] | None = None
    nested_dropout: float = 0.0
    nested_dropout_min_levels: int = 1
    nested_dropout_seed: int | None = None

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
        if self.codebook_sizes is not None:
            sizes = tuple(int(k) for k in self.codebook_sizes)
            object.__setattr__(self, "codebook_sizes", sizes)
            if len(sizes) != len(shapes) or min(sizes) < 1:
                raise ValueError(
                    f"codebook_sizes needs {len(shapes)} positive sizes (one per level), got {sizes}"
                )
            if self.shared_codebook:
                raise ValueError("per-level codebook sizes contradict shared_codebook=True")
            if self.codebook_size != max(sizes):
                raise ValueError(
                    f"codebook_size must be the largest per-level size {max(sizes)}, got {self.codebook_size}"
                )
        if not 0.0 <= self.nested_dropout <= 1.0:
            raise ValueError(f"nested_dropout must be in [0, 1], got {self.nested_dropout}")
        if not 1 <= self.nested_dropout_min_levels <= len(shapes):
            raise ValueError(
                f"nested_dropout_min_levels must be in [1, {len(shapes)}] (the number of levels), "
                f"got {self.nested_dropout_min_levels}"
            )


class MultiScaleVQ(Quantizer[MultiScaleVQConfig]):
    """Multi-scale residual VQ (see the module docstring for every option).

    Args: ``dim``, ``codebook_size`` (an int, or one size per level with ``shared_codebook=False``),
    ``scales`` (per level an int or a size per spatial axis, non-decreasing), ``spatial_dims`` (1, 2 or 3),
    ``shared_codebook``, ``quant_resi``, ``share_quant_resi`` (1: one phi, k > 1: k, <= 0: one per level),
    ``nested_dropout`` (probability in [0, 1]), ``nested_dropout_min_levels`` (>= 1 levels always kept),
    ``nested_dropout_seed``, and VectorQuantizer options.

    ``forward(latents, mask=None, *, lens=None, freeze_codebook=False)``; ``encode(latents, mask=None, *,
    lens=None)``.  Shapes: latents (B, C, *S); mask (B, *S) bool; lens (B,) (1-D only); codes (B, T) int64.
    """

    config_class = MultiScaleVQConfig

    def __init__(
        self,
        dim: int,
        codebook_size: int | Sequence[int],
        scales: Sequence[int | Sequence[int]],
        *,
        spatial_dims: int = 2,
        shared_codebook: bool = True,
        quant_resi: float = 0.5,
        share_quant_resi: int = 1,
        codebook_sizes: Sequence[int] | None = None,
        nested_dropout: float = 0.0,
        nested_dropout_min_levels: int = 1,
        nested_dropout_seed: int | None = None,
        **options: Any,
    ) -> None:
        sizes = None if codebook_sizes is None else tuple(int(k) for k in codebook_sizes)
        if not isinstance(codebook_size, int):
            per_level = tuple(int(k) for k in codebook_size)
            if sizes is not None and sizes != per_level:
                raise ValueError(f"codebook_size {per_level} and codebook_sizes {sizes} disagree")
            sizes = per_level
            codebook_size = max(per_level, default=0)
        config = MultiScaleVQConfig(
            dim=dim,
            codebook_size=codebook_size,
            scales=tuple(s if isinstance(s, int) else tuple(s) for s in scales),  # type: ignore[misc]
            spatial_dims=spatial_dims,
            shared_codebook=shared_codebook,
            quant_resi=quant_resi,
            share_quant_resi=share_quant_resi,
            codebook_sizes=sizes,
            nested_dropout=nested_dropout,
            nested_dropout_min_levels=nested_dropout_min_levels,
            nested_dropout_seed=nested_dropout_seed,
            **options,
        )
        super().__init__(config)
        self.dim = dim
        self.codebook_size = config.codebook_size
        self.scales = config.scales
        self.num_levels = len(config.scales)
        self.codebook_sizes = config.codebook_sizes or (config.codebook_size,) * self.num_levels
        names = {f.name for f in dataclasses.fields(VectorQuantizerConfig)}
        values = {name: getattr(config, name) for name in names}
        values["channel_first"] = False
        count = 1 if shared_codebook else self.num_levels
        self.levels = TypedModuleList(
            [
                VectorQuantizer.from_config(
                    VectorQuantizerConfig(
                        **{**values, "seed": config.seed + i, "codebook_size": self.codebook_sizes[i]}
                    )
                )
                for i in range(count)
            ]
        )
        conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[spatial_dims - 1]
        # share_quant_resi == 1 keeps the single ``phi`` (and its state-dict key); otherwise ``phi_levels``
        self.phi: nn.Module | None = None
        self.phi_levels: TypedModuleList[nn.Module] | None = None
        if quant_resi > 0:
            if share_quant_resi == 1:
                self.phi = conv(dim, dim, 3, padding=1)
            else:
                num_phi = self.num_levels if share_quant_resi <= 0 else min(self.num_levels, share_quant_resi)
                self.phi_levels = TypedModuleList([conv(dim, dim, 3, padding=1) for _ in range(num_phi)])
        self.tokens_per_level = [math.prod(s) for s in config.scales]
        self._dropout_generator: torch.Generator | None = None
        if nested_dropout_seed is not None:
            self._dropout_generator = torch.Generator().manual_seed(nested_dropout_seed)

    @property
    def alphabet(self) -> tuple[int, ...]:
        """(codebook_size,): one token stream; with per-level sizes its range, max(codebook_sizes)."""
        return (self.codebook_size,)

    def level(self, index: int) -> VectorQuantizer:
        return self.levels[0 if self._config.shared_codebook else index]

    def level_phi(self, index: int) -> nn.Module | None:
        """The phi convolution level ``index`` uses (None with ``quant_resi=0``)."""
        if self.phi_levels is None:
            return self.phi
        count = len(self.phi_levels)
        position = index / max(self.num_levels - 1, 1)
        return self.phi_levels[round(position * (count - 1))]

    def split_codes(self, codes: torch.Tensor) -> list[torch.Tensor]:
        """(B, T) -> per-level grids [(B, *scales[l])] (upstream's layout)."""
        parts = torch.split(codes, self.tokens_per_level, dim=1)
        return [p.reshape(codes.shape[0], *s) for p, s in zip(parts, self.scales)]

    def _upsample(self, q: torch.Tensor, full_shape: tuple[int, ...], index: int) -> torch.Tensor:
        """Level ``index``'s codewords (B, C, *scale) -> (B, C, *full_shape) through interpolation and phi."""
        if tuple(q.shape[2:]) != full_shape:
            mode = ("linear", "bilinear", "trilinear")[self._config.spatial_dims - 1]
            q = F.interpolate(q, size=full_shape, mode=mode, align_corners=False)
        phi = self.level_phi(index)
        if phi is not None:
            q = q.lerp(phi(q), self._config.quant_resi)
        return q

    def _check(self, latents: torch.Tensor) -> None:
        if latents.ndim != 2 + self._config.spatial_dims or latents.shape[1] != self.dim:
            raise ValueError(
                f"latents must be (B, {self.dim}, *S) with {self._config.spatial_dims} spatial axes, "
                f"got {tuple(latents.shape)}"
            )

    def _resolve_mask(
        self, latents: torch.Tensor, mask: torch.Tensor | None, lens: torch.Tensor | None
    ) -> torch.Tensor | None:
        """``mask`` (B, *S) bool or ``lens`` (B,) -> validity mask (B, *S) on the latents' device, or None."""
        if mask is not None and lens is not None:
            raise ValueError("pass either mask or lens, not both")
        lead = (latents.shape[0], *latents.shape[2:])
        if lens is not None:
            if self._config.spatial_dims != 1:
                raise ValueError("lens needs 1-D sequences (spatial_dims=1); pass a mask (B, *S) instead")
            if lens.dtype.is_floating_point or lens.dtype == torch.bool:
                raise TypeError(f"lens must be an integer tensor, got {lens.dtype}")
            if tuple(lens.shape) != (latents.shape[0],):
                raise ValueError(f"lens must be ({latents.shape[0]},), got {tuple(lens.shape)}")
            mask = lengths_to_mask(lens.to(latents.device), latents.shape[2])
        if mask is None:
            return None
        flatten_mask(mask, lead)  # checks dtype and shape
        return mask.to(latents.device)

    def _pool(
        self, residual: torch.Tensor, size: tuple[int, ...], mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, C, *S) -> (pooled (B, C, *size), valid cells (B * prod(size),) bool or None).

        With a mask (B, *S) the average runs over valid positions only, pool(x * mask) / pool(mask); a
        cell without any valid position is 0 and marked invalid."""
        if mask is None:
            return self._average(residual, size), None
        weight = self._average(mask[:, None].to(residual.dtype), size)
        summed = self._average(torch.where(mask[:, None], residual, torch.zeros_like(residual)), size)
        return summed / weight.clamp_min(1e-6), (weight > 0).reshape(-1)

    def _average(self, t: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
        if self._config.spatial_dims == 1:
            return F.adaptive_avg_pool1d(t, size[0])
        if self._config.spatial_dims == 2:
            return F.adaptive_avg_pool2d(t, (size[0], size[1]))
        return F.adaptive_avg_pool3d(t, (size[0], size[1], size[2]))

    def _draw_cutoff(self) -> int | None:
        """This step's nested-dropout cutoff (keep levels 0..cutoff), or None for all levels.

        The draw follows ResidualVQ's quantize dropout: ``nested_dropout_seed``'s generator (or torch's
        global one), then rank 0's value broadcast with ``sync_codebook``.  Both numbers are drawn every
        step, so a seed gives one fixed sequence whatever the probability."""
        cfg = self._config
        low = cfg.nested_dropout_min_levels - 1
        if not self.training or cfg.nested_dropout <= 0 or low >= self.num_levels - 1:
            return None
        generator = self._dropout_generator
        drop = float(torch.rand((), generator=generator)) < cfg.nested_dropout
        cutoff = int(torch.randint(low, self.num_levels - 1, (), generator=generator))
        draw = cutoff if drop else -1
        draw = broadcast_int(draw) if cfg.sync_codebook else draw
        return None if draw < 0 else draw

    def forward(
        self,
        latents: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        lens: torch.Tensor | None = None,
        freeze_codebook: bool = False,
    ) -> QuantizerOutput:
        """latents (B, C, *S), mask (B, *S) bool or lens (B,) -> QuantizerOutput(quantized (B, C, *S), zero
        at padded positions, codes (B, T), -1 at cells without valid positions).

        loss: per-name means over the kept levels; metrics: per level ("level{i}/usage", ...), the means
        "usage" and "perplexity", and "nested_cutoff" with nested dropout."""
        self._check(latents)
        full_shape = tuple(latents.shape[2:])
        mask = self._resolve_mask(latents, mask, lens)
        cutoff = self._draw_cutoff()
        kept = self.num_levels if cutoff is None else cutoff + 1
        with full_precision(latents.device):
            x = latents.float()
            residual, reconstruction = x, torch.zeros_like(x)
            output = reconstruction
            codes: list[torch.Tensor] = []
            loss: dict[str, torch.Tensor] = {}
            metrics: dict[str, torch.Tensor] = {}
            for i, size in enumerate(self.scales):
                pooled, valid = self._pool(residual, size, mask)
                vectors = pooled.movedim(1, -1).reshape(-1, self.dim)
                q, level_codes, level_loss, level_metrics, _ = self.level(i).quantize_vectors(
                    vectors, update=self.training and not freeze_codebook, mask=valid, freeze=freeze_codebook
                )
                if valid is not None:
                    q = torch.where(valid[:, None], q, torch.zeros_like(q))
                grid = q.reshape(x.shape[0], *size, self.dim).movedim(-1, 1)
                up = self._upsample(grid, full_shape, i)
                reconstruction = reconstruction + up
                residual = residual - up
                codes.append(level_codes.reshape(x.shape[0], -1))
                if i < kept:
                    for name, value in level_loss.items():
                        loss[name] = loss[name] + value / kept if name in loss else value / kept
                if i == kept - 1:
                    output = reconstruction
                for name, value in level_metrics.items():
                    metrics[f"level{i}/{name}"] = value
            if mask is not None:
                output = torch.where(mask[:, None], output, torch.zeros_like(output))
        for name in ("usage", "perplexity"):
            metrics[name] = torch.stack([metrics[f"level{i}/{name}"] for i in range(self.num_levels)]).mean()
        if self._config.nested_dropout > 0:
            metrics["nested_cutoff"] = torch.tensor(float(kept - 1))
        return QuantizerOutput(output, torch.cat(codes, dim=1), loss, metrics)

    def encode(
        self, latents: torch.Tensor, mask: torch.Tensor | None = None, *, lens: torch.Tensor | None = None
    ) -> torch.Tensor:
        """latents (B, C, *S), mask (B, *S) bool or lens (B,) -> codes (B, T) int64 (-1 at cells without
        valid positions).  No state changes."""
        self._check(latents)
        full_shape = tuple(latents.shape[2:])
        mask = self._resolve_mask(latents, mask, lens)
        with torch.no_grad(), full_precision(latents.device):
            residual = latents.float()
            codes = []
            for i, size in enumerate(self.scales):
                pooled, valid = self._pool(residual, size, mask)
                vectors = pooled.movedim(1, -1).reshape(-1, self.dim)
                level_codes = self.level(i).codes_from_vectors(vectors)
                grid = self.level(i).vectors_from_codes(level_codes)
                if valid is not None:
                    level_codes = level_codes.masked_fill(~valid, -1)
                    grid = grid.masked_fill(~valid[:, None], 0.0)
                grid = grid.reshape(residual.shape[0], *size, self.dim).movedim(-1, 1)
                residual = residual - self._upsample(grid, full_shape, i)
                codes.append(level_codes.reshape(residual.shape[0], -1))
        return torch.cat(codes, dim=1)

    def decode(self, codes: torch.Tensor, full_shape: Sequence[int] | None = None) -> torch.Tensor:
        """codes (B, T_k) (-1 = token unused) -> latents (B, C, *full_shape) float32 (default: last scale).

        T_k is the token count of the first k levels (T for all of them): a coarse-to-fine prefix decodes
        to the sum of its k levels.  A -1 token decodes as a zero codeword that is still interpolated and
        mixed by phi (as upstream), so to leave whole levels out pass a prefix rather than -1s."""
        prefixes = list(itertools.accumulate(self.tokens_per_level))
        if codes.ndim != 2 or codes.shape[1] not in prefixes:
            raise ValueError(
                f"codes must be (B, {prefixes[-1]}) for scales {self.scales} (or the first k levels' tokens, "
                f"(B, T_k) with T_k in {prefixes}), got {tuple(codes.shape)}"
            )
        count = prefixes.index(codes.shape[1]) + 1
        shape = tuple(full_shape) if full_shape is not None else self.scales[-1]
        with full_precision(codes.device):
            out = torch.zeros(codes.shape[0], self.dim, *shape, device=codes.device)
            parts = torch.split(codes, self.tokens_per_level[:count], dim=1)
            for i, (part, size) in enumerate(zip(parts, self.scales)):
                flat = part.reshape(-1)
                vectors = self.level(i).vectors_from_codes(flat.clamp_min(0))
                vectors = vectors.masked_fill((flat == -1)[:, None], 0.0)
                grid = vectors.reshape(codes.shape[0], *size, self.dim).movedim(-1, 1)
                out = out + self._upsample(grid, shape, i)
        return out
