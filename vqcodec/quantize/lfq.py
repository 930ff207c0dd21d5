"""LFQ: lookup-free quantization (Yu et al., MAGVIT-v2, 2023) with its entropy penalty; BSQ when spherical.

Every codebook-space channel is quantized to its sign (-1 or +1, times ``codebook_scale``).  As in
vector-quantize-pytorch, ``codebook_size`` is the size of ONE codebook: each of the G = num_codebooks
groups has b = log2(codebook_size) channels, so the codebook space has d = G * b channels and the implicit
codebook is {-1, 1}^d.  The code of a group is its bits read as a binary number, 1 for a positive channel,
first channel of the group most significant.  Codes are (B, *S, G), each in [0, codebook_size).
``spherical`` (BSQ, Zhao et al. 2024) l2-normalises z and uses the codewords sign(z) / sqrt(d).

Training losses: "commitment" ``|z - q|^2`` and "entropy" = mean per-vector entropy of the soft code
assignment (on a random ``frac_per_sample_entropy`` of the vectors when < 1) minus ``diversity_gamma`` x
entropy of the batch-mean assignment (confident codes, all used).  The soft assignment is a softmax over
the 2**b codes of each group, so it costs O(M * G * 2**b) memory.  Under DDP the batch-mean assignment is
all-reduced over ranks (differentiably), so the penalty is the one a single process would compute on the
concatenated batch.  ``forward(latents, mask)`` leaves padded positions out of every loss and metric.
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
    flatten_mask,
    full_precision,
    stable_linear,
    unflatten_latents,
)
from vqcodec.quantize.distributed import batch_mean
from vqcodec.quantize.vq import exact_straight_through


@dataclass(frozen=True, kw_only=True)
class LFQConfig:
    dim: int | None = None
    codebook_size: int
    num_codebooks: int = 1
    entropy_loss_weight: float = 0.1
    commitment_loss_weight: float = 0.25
    diversity_gamma: float = 1.0
    inv_temperature: float = 100.0
    channel_first: bool = True
    spherical: bool = False
    codebook_scale: float = 1.0
    frac_per_sample_entropy: float = 1.0

    def __post_init__(self) -> None:
        bits = int(math.log2(self.codebook_size)) if self.codebook_size > 0 else -1
        if bits < 1 or 2**bits != self.codebook_size:
            raise ValueError(f"codebook_size must be a power of 2 >= 2, got {self.codebook_size}")
        if self.num_codebooks < 1:
            raise ValueError(f"num_codebooks must be >= 1, got {self.num_codebooks}")
        if self.dim is not None and self.dim < 1:
            raise ValueError(f"dim must be positive, got {self.dim}")
        if self.codebook_scale <= 0:
            raise ValueError(f"codebook_scale must be > 0, got {self.codebook_scale}")
        if not 0.0 < self.frac_per_sample_entropy <= 1.0:
            raise ValueError(f"frac_per_sample_entropy must be in (0, 1], got {self.frac_per_sample_entropy}")


def _entropy(probs: torch.Tensor) -> torch.Tensor:
    return -(probs * torch.log(probs.clamp_min(1e-9))).sum(-1)


class LFQ(Quantizer[LFQConfig]):
    """Lookup-free quantizer.

    Args: ``dim`` (latent channels C; default num_codebooks * log2(codebook_size); learned projections
    when different), ``codebook_size`` (2**b, per codebook, as upstream), ``num_codebooks`` (G code
    streams), ``entropy_loss_weight``, ``commitment_loss_weight``, ``diversity_gamma``,
    ``inv_temperature`` (of the soft assignment), ``channel_first``, ``spherical``, ``codebook_scale``,
    ``frac_per_sample_entropy`` (see the module docstring).

    Shapes: latents (B, C, *S) or (B, *S, C); codes (B, *S, G) int64 (-1 at masked positions).
    """

    config_class = LFQConfig

    _mask: torch.Tensor  # (b,) int64 bit weights, most significant first
    _group_codebook: torch.Tensor  # (2**b, b) float32: every group code as a +-1 vector

    def __init__(
        self,
        dim: int | None = None,
        codebook_size: int = 1024,
        *,
        num_codebooks: int = 1,
        entropy_loss_weight: float = 0.1,
        commitment_loss_weight: float = 0.25,
        diversity_gamma: float = 1.0,
        inv_temperature: float = 100.0,
        channel_first: bool = True,
        spherical: bool = False,
        codebook_scale: float = 1.0,
        frac_per_sample_entropy: float = 1.0,
    ) -> None:
        config = LFQConfig(
            dim=dim,
            codebook_size=codebook_size,
            num_codebooks=num_codebooks,
            entropy_loss_weight=entropy_loss_weight,
            commitment_loss_weight=commitment_loss_weight,
            diversity_gamma=diversity_gamma,
            inv_temperature=inv_temperature,
            channel_first=channel_first,
            spherical=spherical,
            codebook_scale=codebook_scale,
            frac_per_sample_entropy=frac_per_sample_entropy,
        )
        super().__init__(config)
        self.codebook_size = codebook_size
        self.num_codebooks = num_codebooks
        self.bits_per_codebook = int(math.log2(codebook_size))
        self.codebook_dim = self.bits_per_codebook * num_codebooks
        self.dim = dim if dim is not None else self.codebook_dim
        self.project_in: nn.Linear | None = None
        self.project_out: nn.Linear | None = None
        if self.dim != self.codebook_dim:
            self.project_in = nn.Linear(self.dim, self.codebook_dim)
            self.project_out = nn.Linear(self.codebook_dim, self.dim)
        b = self.bits_per_codebook
        self.register_buffer("_mask", 2 ** torch.arange(b - 1, -1, -1, dtype=torch.long), persistent=False)
        # all 2**b group codes as +-1 vectors, row j = code j: used by the soft assignment
        table = ((torch.arange(2**b)[:, None] & self._mask) != 0).float() * 2 - 1
        self.register_buffer("_group_codebook", table, persistent=False)
        # magnitude of one codeword channel
        self.code_value = codebook_scale / math.sqrt(self.codebook_dim) if spherical else codebook_scale

    @property
    def alphabet(self) -> tuple[int, ...]:
        """(codebook_size,) * num_codebooks: one stream per group."""
        return (self.codebook_size,) * self.num_codebooks

    def forward(self, latents: torch.Tensor, mask: torch.Tensor | None = None) -> QuantizerOutput:
        """latents (B, C, *S) or (B, *S, C), mask (B, *S) bool or None -> QuantizerOutput(quantized like
        latents, codes (B, *S, G))."""
        cfg = self._config
        vectors, lead = flatten_latents(latents, self.dim, cfg.channel_first)
        flat_mask = flatten_mask(mask, lead)
        with full_precision(vectors.device):
            z = self._to_space(vectors)
            groups = z.view(-1, self.num_codebooks, self.bits_per_codebook)  # (M, G, b)
            signs = torch.where(groups.detach() > 0, self.code_value, -self.code_value)
            codes = ((groups.detach() > 0).long() * self._mask).sum(-1)  # (M, G)
            quantized = self._project(
                exact_straight_through(signs, groups).reshape(-1, self.codebook_dim), self.project_out
            )
            valid = groups if flat_mask is None else groups[flat_mask]
            valid_signs = signs if flat_mask is None else signs[flat_mask]
            loss: dict[str, torch.Tensor] = {}
            if cfg.commitment_loss_weight > 0:
                commit = F.mse_loss(valid, valid_signs) if valid.numel() else valid.sum() * 0.0
                loss["commitment"] = cfg.commitment_loss_weight * commit
            if self.training and cfg.entropy_loss_weight > 0 and valid.shape[0] > 0:
                # ||z - c||^2 = const - 2 z.c over the codes, so logits are 2 z.c * inv_temperature
                logits = 2 * cfg.inv_temperature * valid @ (self._group_codebook * self.code_value).t()
                probs = logits.softmax(-1)  # (M', G, 2**b)
                sample = probs
                if cfg.frac_per_sample_entropy < 1.0:
                    count = max(1, int(probs.shape[0] * cfg.frac_per_sample_entropy))
                    sample = probs[torch.randperm(probs.shape[0], device=probs.device)[:count]]
                per_sample = _entropy(sample).mean()
                codebook_entropy = _entropy(batch_mean(probs)).mean()
                loss["entropy"] = cfg.entropy_loss_weight * (
                    per_sample - cfg.diversity_gamma * codebook_entropy
                )
            if flat_mask is not None:
                quantized = torch.where(flat_mask[:, None], quantized, vectors)
                codes = codes.masked_fill(~flat_mask[:, None], -1)
        with torch.no_grad():
            counted = codes if flat_mask is None else codes[flat_mask]
            per_group = [
                codebook_health(
                    torch.bincount(counted[:, g], minlength=self.codebook_size),
                    torch.zeros(1, dtype=torch.bool),
                )
                for g in range(self.num_codebooks)
            ]
            metrics = {
                name: torch.stack([h[name] for h in per_group]).mean() for name in ("usage", "perplexity")
            }
        return QuantizerOutput(
            unflatten_latents(quantized, lead, cfg.channel_first),
            codes.reshape(*lead, self.num_codebooks),
            loss,
            metrics,
        )

    def encode(self, latents: torch.Tensor) -> torch.Tensor:
        """latents (B, C, *S) or (B, *S, C) -> codes (B, *S, G) int64."""
        vectors, lead = flatten_latents(latents, self.dim, self._config.channel_first)
        with torch.no_grad(), full_precision(vectors.device):
            z = self._to_space(vectors)
            groups = z.view(-1, self.num_codebooks, self.bits_per_codebook)
            return ((groups > 0).long() * self._mask).sum(-1).reshape(*lead, self.num_codebooks)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, *S, G) -> latents (B, C, *S) or (B, *S, C) float32."""
        if codes.ndim < 2 or codes.shape[-1] != self.num_codebooks:
            raise ValueError(
                f"LFQ codes need a trailing axis of {self.num_codebooks}, got {tuple(codes.shape)}"
            )
        if codes.dtype.is_floating_point or codes.dtype == torch.bool:
            raise TypeError(f"codes must be an integer tensor, got {codes.dtype}")
        flat = codes.reshape(-1, self.num_codebooks).long()
        if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= self.codebook_size):
            raise ValueError(f"LFQ codes out of range [0, {self.codebook_size})")
        with full_precision(codes.device):
            signs = torch.where((flat[..., None] & self._mask) != 0, self.code_value, -self.code_value)
            vectors = self._project(signs.reshape(-1, self.codebook_dim), self.project_out)
        return unflatten_latents(vectors, tuple(codes.shape[:-1]), self._config.channel_first)

    def _to_space(self, vectors: torch.Tensor) -> torch.Tensor:
        z = self._project(vectors, self.project_in)
        return F.normalize(z, dim=1) if self._config.spherical else z

    def _project(self, x: torch.Tensor, layer: nn.Linear | None) -> torch.Tensor:
        return x if layer is None else stable_linear(x, layer.weight, layer.bias)
