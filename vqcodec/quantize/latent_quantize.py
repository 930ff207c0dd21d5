"""LatentQuantize (Hsu et al. 2023, disentanglement via latent quantization): learned per-channel grids.

Each of the L codebook-space channels has its own grid of ``levels[i]`` values (learned when
``optimize_values``, initialised evenly in [-0.5, 0.5] with 0 in the middle for odd levels, as upstream).
A channel is quantized to its nearest grid value (|z - v|, ties to the lowest index, elementwise, so codes
never depend on the batch).  Codes are per channel like FSQ: (B, *S, L), ``codes[..., i]`` in
[0, levels[i]); ``codes_to_indices`` packs them first channel least significant, as upstream.

Losses (upstream's names and weights): "quantization" = quantization_loss_weight * mse(z, sg(zhat)) (pulls
the encoder onto the grid) and "commitment" = commitment_loss_weight * mse(sg(z), zhat) (moves the grid
values onto the data).  The grid values are Parameters, kept identical across ranks by DDP itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vqcodec.quantize.base import (
    Quantizer,
    QuantizerOutput,
    codebook_health,
    flatten_latents,
    full_precision,
    stable_linear,
    unflatten_latents,
)
from vqcodec.quantize.fsq import MAX_METRIC_CODEBOOK
from vqcodec.quantize.vq import exact_straight_through


@dataclass(frozen=True, kw_only=True)
class LatentQuantizeConfig:
    levels: tuple[int, ...]
    dim: int | None = None
    commitment_loss_weight: float = 0.1
    quantization_loss_weight: float = 0.1
    optimize_values: bool = True
    channel_first: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "levels", tuple(int(v) for v in self.levels))
        if not self.levels or min(self.levels) < 2:
            raise ValueError(f"levels must be a non-empty sequence of ints >= 2, got {self.levels}")
        if self.dim is not None and self.dim < 1:
            raise ValueError(f"dim must be positive, got {self.dim}")


class LatentQuantize(Quantizer[LatentQuantizeConfig]):
    """Latent quantizer.  Args: ``levels`` (grid size per channel), ``dim`` (latent channels; learned
    projections when it differs from len(levels)), ``commitment_loss_weight``, ``quantization_loss_weight``,
    ``optimize_values`` (learn the grids), ``channel_first``.

    Shapes: latents (B, C, *S) or (B, *S, C); codes (B, *S, L) int64.
    """

    config_class = LatentQuantizeConfig

    values: torch.Tensor  # (L, max level) grid per channel, +inf padded: a Parameter or a buffer
    _basis: torch.Tensor  # (L,) int64 mixed-radix place values (non-persistent buffer)
    _levels_t: torch.Tensor  # (L,) int64 (non-persistent buffer)

    def __init__(
        self,
        levels: tuple[int, ...] | list[int],
        dim: int | None = None,
        *,
        commitment_loss_weight: float = 0.1,
        quantization_loss_weight: float = 0.1,
        optimize_values: bool = True,
        channel_first: bool = True,
    ) -> None:
        config = LatentQuantizeConfig(
            levels=tuple(levels),
            dim=dim,
            commitment_loss_weight=commitment_loss_weight,
            quantization_loss_weight=quantization_loss_weight,
            optimize_values=optimize_values,
            channel_first=channel_first,
        )
        super().__init__(config)
        self.levels = config.levels
        self.codebook_dim = len(self.levels)
        self.dim = dim if dim is not None else self.codebook_dim
        self.codebook_size = math.prod(self.levels)
        self.project_in: nn.Linear | None = None
        self.project_out: nn.Linear | None = None
        if self.dim != self.codebook_dim:
            self.project_in = nn.Linear(self.dim, self.codebook_dim)
            self.project_out = nn.Linear(self.codebook_dim, self.dim)
        grids = [
            torch.linspace(-0.5, 0.5, n) if n % 2 == 1 else torch.arange(n, dtype=torch.float32) / n - 0.5
            for n in self.levels
        ]
        # one (L, max_level) table padded with +inf, so a padded slot is never the nearest value
        width = max(self.levels)
        table = torch.full((self.codebook_dim, width), math.inf)
        for i, grid in enumerate(grids):
            table[i, : len(grid)] = grid
        if optimize_values:
            self.values = nn.Parameter(table)
        else:
            self.register_buffer("values", table)
        basis = [math.prod(self.levels[:i]) for i in range(self.codebook_dim)]
        self.register_buffer("_basis", torch.tensor(basis, dtype=torch.long), persistent=False)
        self.register_buffer("_levels_t", torch.tensor(self.levels, dtype=torch.long), persistent=False)

    @property
    def alphabet(self) -> tuple[int, ...]:
        """levels: one stream per channel."""
        return self.levels

    def _project(self, x: torch.Tensor, layer: nn.Linear | None) -> torch.Tensor:
        return x if layer is None else stable_linear(x, layer.weight, layer.bias)

    def _codes(self, z: torch.Tensor) -> torch.Tensor:
        """(M, L) -> nearest grid index per channel (M, L)."""
        # +inf padding gives |z - inf| = inf, never chosen; argmin returns the first minimum on ties
        return (z.detach()[:, :, None] - self.values.detach()[None]).abs().argmin(-1)

    def _values_of(self, codes: torch.Tensor) -> torch.Tensor:
        """(M, L) codes -> (M, L) grid values (with gradient to learned grids)."""
        return self.values.float().gather(1, codes.t()).t()

    def forward(self, latents: torch.Tensor) -> QuantizerOutput:
        """latents (B, C, *S) or (B, *S, C) -> QuantizerOutput(quantized like latents, codes (B, *S, L))."""
        cfg = self._config
        vectors, lead = flatten_latents(latents, self.dim, cfg.channel_first)
        with full_precision(vectors.device):
            z = self._project(vectors, self.project_in)
            codes = self._codes(z)
            zhat = self._values_of(codes)
            loss: dict[str, torch.Tensor] = {}
            if z.shape[0]:
                if cfg.quantization_loss_weight > 0:
                    loss["quantization"] = cfg.quantization_loss_weight * F.mse_loss(z, zhat.detach())
                if cfg.commitment_loss_weight > 0 and cfg.optimize_values:
                    loss["commitment"] = cfg.commitment_loss_weight * F.mse_loss(zhat, z.detach())
            quantized = self._project(exact_straight_through(zhat.detach(), z), self.project_out)
        metrics: dict[str, torch.Tensor] = {}
        if self.codebook_size <= MAX_METRIC_CODEBOOK:
            with torch.no_grad():
                counts = torch.bincount(self.codes_to_indices(codes), minlength=self.codebook_size)
                health = codebook_health(counts, torch.zeros(1, dtype=torch.bool))
                metrics = {"usage": health["usage"], "perplexity": health["perplexity"]}
        return QuantizerOutput(
            unflatten_latents(quantized, lead, cfg.channel_first),
            codes.reshape(*lead, self.codebook_dim),
            loss,
            metrics,
        )

    def encode(self, latents: torch.Tensor) -> torch.Tensor:
        """latents -> codes (B, *S, L) int64.  No state changes."""
        vectors, lead = flatten_latents(latents, self.dim, self._config.channel_first)
        with torch.no_grad(), full_precision(vectors.device):
            return self._codes(self._project(vectors, self.project_in)).reshape(*lead, self.codebook_dim)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, *S, L) -> latents (B, C, *S) or (B, *S, C) float32."""
        if codes.ndim < 2 or codes.shape[-1] != self.codebook_dim:
            raise ValueError(f"codes need a trailing axis of {self.codebook_dim}, got {tuple(codes.shape)}")
        if codes.dtype.is_floating_point or codes.dtype == torch.bool:
            raise TypeError(f"codes must be an integer tensor, got {codes.dtype}")
        flat = codes.reshape(-1, self.codebook_dim).long()
        if flat.numel() and (bool((flat < 0).any()) or bool((flat >= self._levels_t).any())):
            raise ValueError(f"codes out of range for levels {self.levels}")
        with full_precision(codes.device):
            vectors = self._project(self._values_of(flat), self.project_out)
        return unflatten_latents(vectors, tuple(codes.shape[:-1]), self._config.channel_first)

    def codes_to_indices(self, codes: torch.Tensor) -> torch.Tensor:
        """Per-channel codes (..., L) -> packed index (...), first channel least significant (upstream)."""
        return (codes.long() * self._basis).sum(-1)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """Inverse of ``codes_to_indices``: (...) -> (..., L) int64."""
        return torch.div(indices.long()[..., None], self._basis, rounding_mode="floor") % self._levels_t
