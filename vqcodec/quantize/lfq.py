"""LFQ: lookup-free quantization (Yu et al., MAGVIT-v2, 2023) with its entropy penalty.

Every codebook-space channel is quantized to its sign (-1 or +1); the implicit codebook is {-1, 1}^d with
d = log2(codebook_size).  The d channels are split into G = num_codebooks groups of b = d / G bits, and
the code of a group is its bits read as a binary number, 1 for a positive channel, first channel of the
group most significant.  Codes are (B, *S, G), each in [0, 2**b) (see ``vqcodec.quantize.base``).

Training losses: "commitment" ``|z - sign(z)|^2`` and "entropy" = mean per-vector entropy of the soft code
assignment minus ``diversity_gamma`` x entropy of the batch-mean assignment (confident codes, all used).
The soft assignment is a softmax over the 2**b codes of each group, so it costs O(M * G * 2**b) memory.
Under DDP the batch-mean assignment is all-reduced over ranks (differentiably), so the penalty is the one
a single process would compute on the concatenated batch.
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
from vqcodec.quantize.distributed import all_reduce_sum_, is_distributed
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

    def __post_init__(self) -> None:
        bits = int(math.log2(self.codebook_size)) if self.codebook_size > 0 else -1
        if bits < 1 or 2**bits != self.codebook_size:
            raise ValueError(f"codebook_size must be a power of 2 >= 2, got {self.codebook_size}")
        if self.num_codebooks < 1 or bits % self.num_codebooks:
            raise ValueError(f"num_codebooks={self.num_codebooks} must divide log2(codebook_size)={bits}")
        if self.dim is not None and self.dim < 1:
            raise ValueError(f"dim must be positive, got {self.dim}")


def _batch_mean(probs: torch.Tensor) -> torch.Tensor:
    """Mean soft assignment over the batch of all DDP ranks: (M, G, K) -> (G, K).

    The codebook-entropy term is about the whole batch, so under DDP it must see every rank's vectors
    (the differentiable all-reduce sends each rank its share of the gradient).
    """
    total = probs.sum(0)
    count = torch.tensor(float(probs.shape[0]), device=probs.device)
    if is_distributed():
        from torch.distributed.nn.functional import all_reduce as differentiable_all_reduce

        total = differentiable_all_reduce(total)
        all_reduce_sum_(count)
    return total / count.clamp_min(1.0)


def _entropy(probs: torch.Tensor) -> torch.Tensor:
    return -(probs * torch.log(probs.clamp_min(1e-9))).sum(-1)


class LFQ(Quantizer):
    """Lookup-free quantizer.

    Args: ``dim`` (latent channels C; default log2(codebook_size); learned projections when different),
    ``codebook_size`` (2**d), ``num_codebooks`` (G code streams), ``entropy_loss_weight``,
    ``commitment_loss_weight``, ``diversity_gamma``, ``inv_temperature`` (of the soft assignment),
    ``channel_first``.

    Shapes: latents (B, C, *S) or (B, *S, C); codes (B, *S, G) int64.
    """

    config_class = LFQConfig

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
        )
        super().__init__(config)
        self.codebook_size = codebook_size
        self.codebook_dim = int(math.log2(codebook_size))
        self.num_codebooks = num_codebooks
        self.bits_per_codebook = self.codebook_dim // num_codebooks
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

    @property
    def alphabet(self) -> tuple[int, ...]:
        """(2**b,) * num_codebooks: one stream per group."""
        return (2**self.bits_per_codebook,) * self.num_codebooks

    def forward(self, latents: torch.Tensor) -> QuantizerOutput:
        """latents (B, C, *S) or (B, *S, C) -> QuantizerOutput(quantized like latents, codes (B, *S, G))."""
        cfg = self._config
        vectors, lead = flatten_latents(latents, self.dim, cfg.channel_first)
        with full_precision(vectors.device):
            z = self._project(vectors, self.project_in)
            groups = z.view(-1, self.num_codebooks, self.bits_per_codebook)  # (M, G, b)
            signs = torch.where(groups.detach() > 0, 1.0, -1.0)
            codes = ((groups.detach() > 0).long() * self._mask).sum(-1)  # (M, G)
            quantized = self._project(
                exact_straight_through(signs, groups).reshape(-1, self.codebook_dim), self.project_out
            )
            loss: dict[str, torch.Tensor] = {}
            if cfg.commitment_loss_weight > 0:
                loss["commitment"] = cfg.commitment_loss_weight * F.mse_loss(groups, signs)
            if self.training and cfg.entropy_loss_weight > 0 and groups.shape[0] > 0:
                # ||z - c||^2 = const - 2 z.c over the +-1 codes, so logits are 2 z.c * inv_temperature
                logits = 2 * cfg.inv_temperature * groups @ self._group_codebook.t()  # (M, G, 2**b)
                probs = logits.softmax(-1)
                per_sample = _entropy(probs).mean()
                codebook_entropy = _entropy(_batch_mean(probs)).mean()
                loss["entropy"] = cfg.entropy_loss_weight * (
                    per_sample - cfg.diversity_gamma * codebook_entropy
                )
        with torch.no_grad():
            per_group = [
                codebook_health(
                    torch.bincount(codes[:, g], minlength=2**self.bits_per_codebook),
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
            z = self._project(vectors, self.project_in)
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
        if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= 2**self.bits_per_codebook):
            raise ValueError(f"LFQ codes out of range [0, {2**self.bits_per_codebook})")
        with full_precision(codes.device):
            signs = torch.where((flat[..., None] & self._mask) != 0, 1.0, -1.0)  # (M, G, b)
            vectors = self._project(signs.reshape(-1, self.codebook_dim), self.project_out)
        return unflatten_latents(vectors, tuple(codes.shape[:-1]), self._config.channel_first)

    def _project(self, x: torch.Tensor, layer: nn.Linear | None) -> torch.Tensor:
        return x if layer is None else stable_linear(x, layer.weight, layer.bias)
