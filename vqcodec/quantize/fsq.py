"""FSQ: finite scalar quantization (Mentzer et al., 2023) with per-channel levels.

Each of the L = len(levels) channels is squashed by tanh into ``levels[i]`` values and rounded; there is no
codebook to learn or collapse.  Codes are (B, *S, L): one stream per channel, ``codes[..., i]`` in
[0, levels[i]) (see ``vqcodec.quantize.base``), so the entropy layer models each channel separately.
``codes_to_indices`` packs them into one mixed-radix index when a single stream is preferred.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
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
from vqcodec.quantize.vq import exact_straight_through

# Implicit codebooks up to this size get usage/perplexity metrics (one bincount over this many bins).
MAX_METRIC_CODEBOOK = 1 << 20


@dataclass(frozen=True, kw_only=True)
class FSQConfig:
    levels: tuple[int, ...]
    dim: int | None = None
    channel_first: bool = True
    eps: float = 1e-3
    num_codebooks: int = 1
    preserve_symmetry: bool = False
    noise_dropout: float = 0.0
    scale: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "levels", tuple(int(v) for v in self.levels))
        if not self.levels or min(self.levels) < 2:
            raise ValueError(f"levels must be a non-empty sequence of ints >= 2, got {self.levels}")
        if self.dim is not None and self.dim < 1:
            raise ValueError(f"dim must be positive, got {self.dim}")
        if self.num_codebooks < 1:
            raise ValueError(f"num_codebooks must be >= 1, got {self.num_codebooks}")
        if not 0.0 <= self.noise_dropout <= 1.0:
            raise ValueError(f"noise_dropout must be in [0, 1], got {self.noise_dropout}")
        if self.noise_dropout > 0 and not self.preserve_symmetry:
            raise ValueError("noise_dropout needs preserve_symmetry=True (as upstream)")
        if self.scale <= 0:
            raise ValueError(f"scale must be > 0, got {self.scale}")


class FSQ(Quantizer[FSQConfig]):
    """Finite scalar quantizer.

    Args: ``levels`` (values per channel, e.g. (8, 5, 5, 5)); ``dim`` (latent channels C; when it differs
    from num_codebooks * len(levels) learned in/out projections are added; default that product);
    ``channel_first``; ``eps`` widens the tanh range slightly so the extreme levels are reachable;
    ``num_codebooks`` (G): the codebook space holds G groups of len(levels) channels, each with ``levels``;
    ``preserve_symmetry``: levels spread symmetrically over [-1, 1], ``2 k / (L - 1) - 1`` (upstream's
    symmetry-preserving bound, any level count incl. 2); ``noise_dropout`` (needs preserve_symmetry): in
    training each quantized value is, with this probability, offset by U(-0.5, 0.5) (clamped to [-1, 1]);
    ``scale``: codeword values are multiplied by it (ResidualFSQ uses one scale per stage).

    Shapes: latents (B, C, *S) or (B, *S, C); codes (B, *S, G * L) int64, one stream per channel.
    quantized values are ``(code - levels // 2) / (levels // 2)`` per channel (then projected out).
    No loss terms.
    """

    config_class = FSQConfig

    # non-persistent buffers, one entry per channel (G * L)
    _levels_f: torch.Tensor
    _half_l: torch.Tensor
    _offset: torch.Tensor
    _shift: torch.Tensor
    _half_width: torch.Tensor
    _basis: torch.Tensor  # (L,) int64 mixed-radix place values

    def __init__(
        self,
        levels: tuple[int, ...] | list[int],
        dim: int | None = None,
        *,
        channel_first: bool = True,
        eps: float = 1e-3,
        num_codebooks: int = 1,
        preserve_symmetry: bool = False,
        noise_dropout: float = 0.0,
        scale: float = 1.0,
    ) -> None:
        config = FSQConfig(
            levels=tuple(levels),
            dim=dim,
            channel_first=channel_first,
            eps=eps,
            num_codebooks=num_codebooks,
            preserve_symmetry=preserve_symmetry,
            noise_dropout=noise_dropout,
            scale=scale,
        )
        super().__init__(config)
        self.levels = config.levels
        self.num_codebooks = num_codebooks
        self.channel_levels = self.levels * num_codebooks
        self.codebook_dim = len(self.channel_levels)
        self.dim = dim if dim is not None else self.codebook_dim
        self.project_in: nn.Linear | None = None
        self.project_out: nn.Linear | None = None
        if self.dim != self.codebook_dim:
            self.project_in = nn.Linear(self.dim, self.codebook_dim)
            self.project_out = nn.Linear(self.codebook_dim, self.dim)
        levels_t = torch.tensor(self.channel_levels, dtype=torch.float32)
        half_l = (levels_t - 1) * (1 + eps) / 2
        offset = torch.where(levels_t.remainder(2) == 0, 0.5, 0.0)
        self.register_buffer("_levels_f", levels_t, persistent=False)
        self.register_buffer("_half_l", half_l, persistent=False)
        self.register_buffer("_offset", offset, persistent=False)
        self.register_buffer("_shift", torch.atanh(offset / half_l), persistent=False)
        self.register_buffer("_half_width", torch.floor(levels_t / 2), persistent=False)
        # first channel least significant, as vector-quantize-pytorch packs FSQ indices
        basis = [math.prod(self.levels[:i]) for i in range(len(self.levels))]
        self.register_buffer("_basis", torch.tensor(basis, dtype=torch.long), persistent=False)
        self.codebook_size = math.prod(self.levels)

    @property
    def alphabet(self) -> tuple[int, ...]:
        """levels * num_codebooks: one stream per channel."""
        return self.channel_levels

    def forward(self, latents: torch.Tensor) -> QuantizerOutput:
        """latents (B, C, *S) or (B, *S, C) -> QuantizerOutput(quantized like latents, codes (B, *S, G*L))."""
        cfg = self._config
        vectors, lead = flatten_latents(latents, self.dim, cfg.channel_first)
        with full_precision(vectors.device):
            bounded = self._bound(self._project(vectors, self.project_in))
            rounded = torch.round(bounded)
            codes = self._codes_from_rounded(rounded)
            values = self._values(exact_straight_through(rounded.detach(), bounded))
            if self.training and cfg.noise_dropout > 0:
                hit = torch.rand_like(values) < cfg.noise_dropout
                values = torch.where(hit, values + torch.rand_like(values) - 0.5, values).clamp(-1.0, 1.0)
            quantized = self._project(values * cfg.scale if cfg.scale != 1.0 else values, self.project_out)
        metrics: dict[str, torch.Tensor] = {}
        if self.codebook_size <= MAX_METRIC_CODEBOOK:
            with torch.no_grad():
                packed = self.codes_to_indices(codes).reshape(codes.shape[0], self.num_codebooks)
                per_group = [
                    codebook_health(
                        torch.bincount(packed[:, g], minlength=self.codebook_size),
                        torch.zeros(1, dtype=torch.bool),
                    )
                    for g in range(self.num_codebooks)
                ]
                metrics = {
                    name: torch.stack([h[name] for h in per_group]).mean() for name in ("usage", "perplexity")
                }
        return QuantizerOutput(
            unflatten_latents(quantized, lead, cfg.channel_first),
            codes.reshape(*lead, self.codebook_dim),
            {},
            metrics,
        )

    def encode(self, latents: torch.Tensor) -> torch.Tensor:
        """latents (B, C, *S) or (B, *S, C) -> codes (B, *S, G*L) int64."""
        vectors, lead = flatten_latents(latents, self.dim, self._config.channel_first)
        with torch.no_grad(), full_precision(vectors.device):
            rounded = torch.round(self._bound(self._project(vectors, self.project_in)))
            return self._codes_from_rounded(rounded).reshape(*lead, self.codebook_dim)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, *S, G*L) -> latents (B, C, *S) or (B, *S, C) float32."""
        if codes.ndim < 2 or codes.shape[-1] != self.codebook_dim:
            raise ValueError(
                f"FSQ codes need a trailing axis of {self.codebook_dim}, got {tuple(codes.shape)}"
            )
        if codes.dtype.is_floating_point or codes.dtype == torch.bool:
            raise TypeError(f"codes must be an integer tensor, got {codes.dtype}")
        lead = tuple(codes.shape[:-1])
        flat = codes.reshape(-1, self.codebook_dim).long()
        if flat.numel() and ((flat < 0).any() or (flat >= self._levels_f.long()).any()):
            raise ValueError(f"FSQ codes out of range for levels {self.levels}")
        with full_precision(codes.device):
            values = self._code_values(flat)
            if self._config.scale != 1.0:
                values = values * self._config.scale
            vectors = self._project(values, self.project_out)
        return unflatten_latents(vectors, lead, self._config.channel_first)

    def codes_to_indices(self, codes: torch.Tensor) -> torch.Tensor:
        """Per-channel codes (..., G*L) -> one mixed-radix index per codebook (..., G) in
        [0, prod(levels)), first channel least significant (upstream's packing, so indices match
        vector-quantize-pytorch's); a single codebook (G = 1) gives (...), as upstream."""
        grouped = codes.long().reshape(*codes.shape[:-1], self.num_codebooks, len(self.levels))
        packed = (grouped * self._basis).sum(-1)
        return packed[..., 0] if self.num_codebooks == 1 else packed

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """Inverse of ``codes_to_indices``: (...) or (..., G) -> per-channel level codes (..., G*L) int64.

        vqcodec's "codes" are always integer symbols; upstream's ``indices_to_codes`` (the float
        codewords) is ``indices_to_values`` here."""
        grouped = indices.long()[..., None] if self.num_codebooks == 1 else indices.long()
        levels = self._basis.new_tensor(self.levels)
        codes = torch.div(grouped[..., None], self._basis, rounding_mode="floor") % levels
        return codes.reshape(*grouped.shape[:-1], self.codebook_dim)

    def indices_to_values(self, indices: torch.Tensor, project_out: bool = True) -> torch.Tensor:
        """Packed indices (...) (or (..., G)) -> codewords (..., C) float32: the level values in [-1, 1]
        per channel (times ``scale``), through ``project_out`` when there is one and ``project_out``
        (upstream's indices_to_codes)."""
        codes = self.indices_to_codes(indices)
        lead = tuple(codes.shape[:-1])
        with full_precision(codes.device):
            values = self._code_values(codes.reshape(-1, self.codebook_dim)) * self._config.scale
            if project_out:
                values = self._project(values, self.project_out)
        return values.reshape(*lead, values.shape[-1])

    def _code_values(self, codes: torch.Tensor) -> torch.Tensor:
        """Integer level codes (M, G*L) -> values in [-1, 1] (M, G*L)."""
        if self._config.preserve_symmetry:
            return codes.float() * (2.0 / (self._levels_f - 1)) - 1.0
        return (codes.float() - self._half_width) / self._half_width

    def _values(self, rounded: torch.Tensor) -> torch.Tensor:
        """Rounded bounded values (on the code grid, with gradient) -> level values in [-1, 1]."""
        if self._config.preserve_symmetry:
            return rounded * (2.0 / (self._levels_f - 1)) - 1.0
        return rounded / self._half_width

    def _project(self, x: torch.Tensor, layer: nn.Linear | None) -> torch.Tensor:
        return x if layer is None else stable_linear(x, layer.weight, layer.bias)

    def _bound(self, z: torch.Tensor) -> torch.Tensor:
        """(M, G*L) -> values that round to the level grid: (-levels/2, levels/2) around 0, or with
        preserve_symmetry [0, L - 1] + 0.5 (upstream's bracket) rounded down, shifted by -0.5 to round."""
        if self._config.preserve_symmetry:
            return (self._levels_f - 1) * (torch.tanh(z) + 1) / 2
        return torch.tanh(z + self._shift) * self._half_l - self._offset

    def _codes_from_rounded(self, rounded: torch.Tensor) -> torch.Tensor:
        # in place after the one conversion: no (M, G*L) int64 temporaries beside the codes
        if self._config.preserve_symmetry:
            codes = rounded.detach().long()
        else:
            codes = torch.add(rounded.detach(), self._half_width).long()
        codes.clamp_(min=0)
        return torch.minimum(codes, self._levels_f.long() - 1, out=codes)
