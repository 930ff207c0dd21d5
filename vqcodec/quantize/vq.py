"""VectorQuantizer: one codebook, Euclidean or cosine, EMA or learned, k-means init, dead-code revival.

Shapes follow the layout rules in ``vqcodec.quantize.base``: latents (B, C, *S) (``channel_first=True``)
or (B, *S, C); codes (B, *S).  Training-time state changes (k-means init, EMA, dead-code revival) happen
only in ``forward`` while ``self.training``; they are synchronised across DDP ranks (all-reduced counts and
sums, rank 0's random draws broadcast), so ``state_dict()`` is identical on every rank after every step.

State (all in ``state_dict``): ``codebook`` (K, codebook_dim) float32 (a buffer with EMA, a Parameter
without), ``embed_avg`` (K, codebook_dim) EMA sums (EMA only), ``cluster_size`` (K,) EMA of code counts,
``steps_unused`` (K,) steps since each code was last used, ``initted`` (k-means done), ``num_updates``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vqcodec.quantize.base import (
    Quantizer,
    QuantizerOutput,
    TypedModuleList,
    codebook_health,
    flatten_latents,
    flatten_mask,
    full_precision,
    stable_linear,
    unflatten_latents,
)
from vqcodec.quantize.distributed import all_gather_rows, all_reduce_sum_, batch_mean, broadcast_, world_rank
from vqcodec.quantize.kmeans import DISTANCE_CHUNK_ELEMENTS, kmeans, nearest_codes

# When no revival criterion is configured, the ``dead_codes`` metric counts codes unused this many steps.
DEAD_CODE_METRIC_STEPS = 100


@dataclass(frozen=True, kw_only=True)
class VectorQuantizerConfig:
    """Everything needed to rebuild a VectorQuantizer (see the class docstring for each field)."""

    dim: int
    codebook_size: int
    codebook_dim: int | None = None
    use_cosine_sim: bool = False
    ema_update: bool = True
    decay: float = 0.99
    eps: float = 1e-5
    commitment_weight: float = 0.25
    kmeans_init: bool = False
    kmeans_iters: int = 10
    kmeans_max_samples: int = 32768
    kmeans_init_vectors: int = 0
    threshold_ema_dead_code: float = 0.0
    dead_code_after_steps: int = 0
    revive_by_error: bool = False
    rotation_trick: bool = False
    distance_chunk_rows: int | None = None
    channel_first: bool = True
    seed: int = 0
    sync_codebook: bool = True
    orthogonal_reg_weight: float = 0.0
    orthogonal_reg_active_codes_only: bool = False
    sample_codebook_temp: float = 0.0
    layernorm_after_project_in: bool = False
    codebook_diversity_loss_weight: float = 0.0
    codebook_diversity_temperature: float = 100.0
    affine_param: bool = False
    affine_param_batch_decay: float = 0.99
    affine_param_codebook_decay: float = 0.9
    heads: int = 1
    separate_codebook_per_head: bool = False

    def __post_init__(self) -> None:
        if self.dim < 1 or self.codebook_size < 1:
            raise ValueError(f"dim and codebook_size must be positive, got {self.dim}, {self.codebook_size}")
        if self.codebook_dim is not None and self.codebook_dim < 1:
            raise ValueError(f"codebook_dim must be positive, got {self.codebook_dim}")
        if not 0.0 <= self.decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {self.decay}")
        if self.threshold_ema_dead_code < 0 or self.dead_code_after_steps < 0:
            raise ValueError("threshold_ema_dead_code and dead_code_after_steps must be >= 0")
        if self.distance_chunk_rows is not None and self.distance_chunk_rows < 1:
            raise ValueError(f"distance_chunk_rows must be positive, got {self.distance_chunk_rows}")
        for name in ("orthogonal_reg_weight", "sample_codebook_temp", "codebook_diversity_loss_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.heads < 1:
            raise ValueError(f"heads must be >= 1, got {self.heads}")
        if self.affine_param and self.use_cosine_sim:
            raise ValueError("affine_param needs a Euclidean codebook (use_cosine_sim=False)")
        for name in ("affine_param_batch_decay", "affine_param_codebook_decay"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")


def rotation_trick(z: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Rotate-and-rescale z onto q with a constant (detached) linear map (Fifty et al., 2024).

    z: (M, d) with gradient, q: (M, d) detached -> (M, d) whose value is ~q and whose gradient w.r.t. z is
    the rotation R scaled by |q|/|z|, so the encoder sees the angle between z and its codeword.
    """
    z_norm = z.detach().norm(dim=1, keepdim=True).clamp_min(1e-12)
    q_norm = q.norm(dim=1, keepdim=True).clamp_min(1e-12)
    z_hat = z.detach() / z_norm
    q_hat = q / q_norm
    r = F.normalize(z_hat + q_hat, dim=1)
    rotated = z - 2.0 * r * (r * z).sum(1, keepdim=True) + 2.0 * q_hat * (z_hat * z).sum(1, keepdim=True)
    return (q_norm / z_norm) * rotated


def orthogonal_loss(codebook: torch.Tensor) -> torch.Tensor:
    """Shin et al. 2021, eq. 2: mean squared cosine similarity between codewords, minus its minimum
    1/K.  codebook (K, d) -> scalar (0 for orthogonal codewords)."""
    unit = F.normalize(codebook, dim=1)
    n = unit.shape[0]
    return (unit @ unit.t()).pow(2).sum() / (n * n) - 1.0 / n


def _mean_sq(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """F.mse_loss that is a zero (with gradient) instead of NaN when every row is masked out."""
    if a.numel() == 0:
        return a.sum() * 0.0
    return F.mse_loss(a, b)


def exact_straight_through(value: torch.Tensor, surrogate: torch.Tensor) -> torch.Tensor:
    """``value`` in the forward pass, ``surrogate``'s gradient in the backward pass.

    ``value + (s - s.detach())`` adds an exact 0.0, so the result equals ``value`` bit for bit (unlike
    ``s + (value - s).detach()``); that is what makes decode(encode(x)) == forward(x).quantized.
    """
    if not (torch.is_grad_enabled() and surrogate.requires_grad):
        return value
    return value + (surrogate - surrogate.detach())


class VectorQuantizer(Quantizer[VectorQuantizerConfig]):
    """Vector quantizer with one codebook of ``codebook_size`` vectors.

    Args (keywords as in vector-quantize-pytorch where the concept is the same):
        dim: channels C of the latents.
        codebook_size: K, number of codes.
        codebook_dim: codebook vector size d; when != dim, latents go through learned in/out projections.
        use_cosine_sim: nearest by cosine similarity (latents and codes l2-normalised, output is the unit
            codeword); otherwise squared Euclidean distance.
        ema_update: codebook follows EMA of assigned latents (decay ``decay``, Laplace smoothing ``eps``);
            False: the codebook is a Parameter trained by the "codebook" loss ``|sg(z) - q|^2``.
        commitment_weight: weight of the "commitment" loss ``|z - sg(q)|^2`` (0 disables it).
        kmeans_init: initialise the codebook by k-means (``kmeans_iters`` Lloyd iterations) on the first
            training batches (all ranks' vectors, at most ``kmeans_max_samples``): the first batch, or with
            ``kmeans_init_vectors`` > 0 as many first batches as it takes to collect that many vectors
            (until then forward quantizes with the random codebook and updates nothing).
        threshold_ema_dead_code: a code whose EMA count falls below this is dead (0 disables).
        dead_code_after_steps: a code unused for this many consecutive training steps is dead (0 disables).
            Dead codes are replaced by random latents of the current batch: drawn uniformly (as
            upstream), or with ``revive_by_error`` with probability proportional to each latent's
            squared quantization error (k-means++-style: a revived code lands where the codebook
            fits worst).
        rotation_trick: pass gradients with the rotation trick instead of the straight-through estimator.
        distance_chunk_rows: rows per distance chunk (default: 4M / K), bounding scratch memory.
        channel_first: latents (B, C, *S) if True, (B, *S, C) if False.
        seed: seeds the generator for k-means and revival draws (mixed with the step count).
        sync_codebook: False keeps every statistic local to the rank (no collectives at all), for
            training-mode forwards that run on a subset of ranks; ranks' codebooks then drift apart.
        orthogonal_reg_weight: weight of the "orthogonal" loss (Shin et al. 2021, eq. 2) on the codebook
            (the codes used this step with ``orthogonal_reg_active_codes_only``); it trains learned
            codebooks (``ema_update=False``) and is a constant for EMA ones.
        sample_codebook_temp: > 0: a training forward samples each code from softmax(-dist / temp)
            (Gumbel-max) instead of taking the nearest; ``encode`` stays deterministic.
        layernorm_after_project_in: LayerNorm(codebook_dim) after ``project_in`` (needs a projection).
        codebook_diversity_loss_weight: weight of the "diversity" loss, minus the entropy of the batch-mean
            soft assignment softmax(-dist * codebook_diversity_temperature) (all-reduced under DDP).
        affine_param: keep running batch and codebook mean/variance per channel (decays
            ``affine_param_batch_decay`` / ``affine_param_codebook_decay``) and search/decode the
            codebook mapped onto the batch statistics (Huh et al. 2023); Euclidean only.

    ``forward(latents, mask=None, freeze_codebook=False)``: ``mask`` (B, *S) bool marks the valid
    positions of a padded batch; padded positions feed no statistic (EMA, k-means, revival, losses,
    metrics), come back unchanged in ``quantized`` and hold code -1.  ``freeze_codebook`` runs a training
    forward without touching the codebook.  The returned loss terms are also computed in eval mode
    (upstream returns 0 there) so validation reports the training objective; they carry no gradient
    under ``torch.no_grad``.
    """

    config_class = VectorQuantizerConfig

    # buffers (state-dict entries); ``codebook`` is a Parameter instead without ``ema_update``
    codebook: torch.Tensor  # (K, codebook_dim)
    embed_avg: torch.Tensor  # (K, codebook_dim) EMA sums, only with ema_update
    cluster_size: torch.Tensor  # (K,) EMA counts
    steps_unused: torch.Tensor  # (K,) int64
    initted: torch.Tensor  # () bool, k-means done
    num_updates: torch.Tensor  # () int64
    # only with affine_param
    affine_initted: torch.Tensor  # () bool
    batch_mean: torch.Tensor  # (codebook_dim,)
    batch_variance: torch.Tensor
    codebook_mean: torch.Tensor
    codebook_variance: torch.Tensor

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        codebook_dim: int | None = None,
        *,
        use_cosine_sim: bool = False,
        ema_update: bool = True,
        decay: float = 0.99,
        eps: float = 1e-5,
        commitment_weight: float = 0.25,
        kmeans_init: bool = False,
        kmeans_iters: int = 10,
        kmeans_max_samples: int = 32768,
        kmeans_init_vectors: int = 0,
        threshold_ema_dead_code: float = 0.0,
        dead_code_after_steps: int = 0,
        revive_by_error: bool = False,
        rotation_trick: bool = False,
        distance_chunk_rows: int | None = None,
        channel_first: bool = True,
        seed: int = 0,
        sync_codebook: bool = True,
        orthogonal_reg_weight: float = 0.0,
        orthogonal_reg_active_codes_only: bool = False,
        sample_codebook_temp: float = 0.0,
        layernorm_after_project_in: bool = False,
        codebook_diversity_loss_weight: float = 0.0,
        codebook_diversity_temperature: float = 100.0,
        affine_param: bool = False,
        affine_param_batch_decay: float = 0.99,
        affine_param_codebook_decay: float = 0.9,
        heads: int = 1,
        separate_codebook_per_head: bool = False,
    ) -> None:
        config = VectorQuantizerConfig(
            dim=dim,
            codebook_size=codebook_size,
            codebook_dim=codebook_dim,
            use_cosine_sim=use_cosine_sim,
            ema_update=ema_update,
            decay=decay,
            eps=eps,
            commitment_weight=commitment_weight,
            kmeans_init=kmeans_init,
            kmeans_iters=kmeans_iters,
            kmeans_max_samples=kmeans_max_samples,
            kmeans_init_vectors=kmeans_init_vectors,
            threshold_ema_dead_code=threshold_ema_dead_code,
            dead_code_after_steps=dead_code_after_steps,
            revive_by_error=revive_by_error,
            rotation_trick=rotation_trick,
            distance_chunk_rows=distance_chunk_rows,
            channel_first=channel_first,
            seed=seed,
            sync_codebook=sync_codebook,
            orthogonal_reg_weight=orthogonal_reg_weight,
            orthogonal_reg_active_codes_only=orthogonal_reg_active_codes_only,
            sample_codebook_temp=sample_codebook_temp,
            layernorm_after_project_in=layernorm_after_project_in,
            codebook_diversity_loss_weight=codebook_diversity_loss_weight,
            codebook_diversity_temperature=codebook_diversity_temperature,
            affine_param=affine_param,
            affine_param_batch_decay=affine_param_batch_decay,
            affine_param_codebook_decay=affine_param_codebook_decay,
            heads=heads,
            separate_codebook_per_head=separate_codebook_per_head,
        )
        super().__init__(config)
        self.dim = dim
        self.codebook_size = codebook_size
        self.codebook_dim = codebook_dim or dim
        self.head_quantizers: TypedModuleList[VectorQuantizer] | None = None
        if heads > 1:
            self._init_heads(config)
            return
        self.project_in: nn.Linear | None = None
        self.project_out: nn.Linear | None = None
        if self.codebook_dim != dim:
            self.project_in = nn.Linear(dim, self.codebook_dim)
            self.project_out = nn.Linear(self.codebook_dim, dim)
        self.norm_in: nn.LayerNorm | None = None
        if layernorm_after_project_in:
            if self.project_in is None:
                raise ValueError("layernorm_after_project_in needs codebook_dim != dim (a projection)")
            self.norm_in = nn.LayerNorm(self.codebook_dim)
        init = torch.randn(codebook_size, self.codebook_dim)
        if use_cosine_sim:
            init = F.normalize(init, dim=1)
        if ema_update:
            self.register_buffer("codebook", init)
            self.register_buffer("embed_avg", init.clone())
        else:
            self.codebook = nn.Parameter(init)
        self.register_buffer("cluster_size", torch.ones(codebook_size))
        self.register_buffer("steps_unused", torch.zeros(codebook_size, dtype=torch.long))
        self.register_buffer("initted", torch.tensor(not kmeans_init))
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))
        if affine_param:  # registered only when used, so default state dicts keep their keys
            self.register_buffer("affine_initted", torch.tensor(False))
            for name in ("batch_mean", "codebook_mean"):
                self.register_buffer(name, torch.zeros(self.codebook_dim))
            for name in ("batch_variance", "codebook_variance"):
                self.register_buffer(name, torch.ones(self.codebook_dim))
        # first batches' vectors waiting for k-means (training-time only, not state)
        self._kmeans_pool: list[torch.Tensor] = []

    # ------------------------------------------------------------------ public interface

    @property
    def alphabet(self) -> tuple[int, ...]:
        """(codebook_size,): one code stream; (codebook_size,) * heads with heads > 1."""
        return (self.codebook_size,) * self._config.heads

    def _init_heads(self, config: VectorQuantizerConfig) -> None:
        """heads > 1: latents are projected to heads * codebook_dim channels (when that differs from dim),
        split into heads vectors of codebook_dim, and each quantized by the shared (or its own) codebook."""
        width = self.codebook_dim * config.heads
        self.project_in = self.project_out = None
        if width != self.dim:
            self.project_in = nn.Linear(self.dim, width)
            self.project_out = nn.Linear(width, self.dim)
        self.norm_in = None
        if config.layernorm_after_project_in:
            if self.project_in is None:
                raise ValueError("layernorm_after_project_in needs heads * codebook_dim != dim")
            self.norm_in = nn.LayerNorm(width)
        count = config.heads if config.separate_codebook_per_head else 1
        self.head_quantizers = TypedModuleList(
            [
                VectorQuantizer.from_config(
                    dataclasses.replace(
                        config,
                        dim=self.codebook_dim,
                        codebook_dim=None,
                        heads=1,
                        separate_codebook_per_head=False,
                        layernorm_after_project_in=False,
                        channel_first=False,
                        seed=config.seed + h,
                    )
                )
                for h in range(count)
            ]
        )

    def head(self, index: int) -> VectorQuantizer:
        """The VectorQuantizer (one codebook) used by head ``index`` (heads > 1 only)."""
        assert self.head_quantizers is not None, "head() needs heads > 1"
        return self.head_quantizers[index if self._config.separate_codebook_per_head else 0]

    def _split_heads(self, vectors: torch.Tensor) -> torch.Tensor:
        """(M, dim) -> (M, heads, codebook_dim) in float32."""
        z = vectors.float()
        if self.project_in is not None:
            z = stable_linear(z, self.project_in.weight, self.project_in.bias)
        if self.norm_in is not None:
            z = self.norm_in(z)
        return z.reshape(z.shape[0], self._config.heads, self.codebook_dim)

    def _merge_heads(self, q: torch.Tensor) -> torch.Tensor:
        """(M, heads, codebook_dim) -> (M, dim)."""
        flat = q.reshape(q.shape[0], -1)
        if self.project_out is not None:
            return stable_linear(flat, self.project_out.weight, self.project_out.bias)
        return flat

    def _forward_heads(
        self, vectors: torch.Tensor, mask: torch.Tensor | None, freeze: bool
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """vectors (M, dim) -> (quantized (M, dim), codes (M, heads), loss, metrics)."""
        heads = self._config.heads
        update = self.training and not freeze
        with full_precision(vectors.device):
            z = self._split_heads(vectors)
            if self._config.separate_codebook_per_head:
                parts = [
                    self.head(h).quantize_vectors(z[:, h], update=update, mask=mask, freeze=freeze)
                    for h in range(heads)
                ]
                quantized = torch.stack([p[0] for p in parts], 1)
                codes = torch.stack([p[1] for p in parts], 1)
                losses = [p[2] for p in parts]
                metric_sets = [p[3] for p in parts]
            else:
                rows_mask = None if mask is None else mask[:, None].expand(-1, heads).reshape(-1)
                q, c, loss_h, metrics_h, _ = self.head(0).quantize_vectors(
                    z.reshape(-1, self.codebook_dim), update=update, mask=rows_mask, freeze=freeze
                )
                quantized, codes = q.reshape(z.shape), c.reshape(-1, heads)
                losses, metric_sets = [loss_h], [metrics_h]
            out = self._merge_heads(quantized)
            if mask is not None:
                out = torch.where(mask[:, None], out, vectors.float())
        loss: dict[str, torch.Tensor] = {}
        for part in losses:
            for name, value in part.items():
                loss[name] = loss[name] + value / len(losses) if name in loss else value / len(losses)
        metrics = {
            name: torch.stack([m[name] for m in metric_sets]).mean() for name in ("usage", "perplexity")
        }
        metrics["dead_codes"] = torch.stack([m["dead_codes"] for m in metric_sets]).sum()
        return out, codes, loss, metrics

    def forward(
        self, latents: torch.Tensor, mask: torch.Tensor | None = None, *, freeze_codebook: bool = False
    ) -> QuantizerOutput:
        """latents (B, C, *S) or (B, *S, C), mask (B, *S) bool or None -> QuantizerOutput(quantized like
        latents, codes (B, *S), -1 where masked)."""
        vectors, lead = flatten_latents(latents, self.dim, self._config.channel_first)
        flat_mask = flatten_mask(mask, lead)
        if self.head_quantizers is not None:
            quantized, codes, loss, metrics = self._forward_heads(vectors, flat_mask, freeze_codebook)
            return QuantizerOutput(
                unflatten_latents(quantized, lead, self._config.channel_first),
                codes.reshape(*lead, self._config.heads),
                loss,
                metrics,
            )
        quantized, codes, loss, metrics, _ = self.quantize_vectors(
            vectors, mask=flat_mask, update=self.training and not freeze_codebook, freeze=freeze_codebook
        )
        return QuantizerOutput(
            unflatten_latents(quantized, lead, self._config.channel_first), codes.reshape(lead), loss, metrics
        )

    def encode(self, latents: torch.Tensor) -> torch.Tensor:
        """latents (B, C, *S) or (B, *S, C) -> codes (B, *S) int64 ((B, *S, heads) with heads > 1).
        No state changes."""
        vectors, lead = flatten_latents(latents, self.dim, self._config.channel_first)
        if self.head_quantizers is not None:
            with torch.no_grad(), full_precision(vectors.device):
                z = self._split_heads(vectors)
                codes = [self.head(h).codes_from_vectors(z[:, h]) for h in range(self._config.heads)]
            return torch.stack(codes, -1).reshape(*lead, self._config.heads)
        return self.codes_from_vectors(vectors).reshape(lead)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, *S) integer ((B, *S, heads) with heads > 1) -> latents (B, C, *S) or (B, *S, C)."""
        if self.head_quantizers is not None:
            heads = self._config.heads
            if codes.ndim < 2 or codes.shape[-1] != heads:
                raise ValueError(f"codes need a trailing axis of heads={heads}, got {tuple(codes.shape)}")
            flat = codes.reshape(-1, heads)
            with full_precision(codes.device):
                q = torch.stack([self.head(h).vectors_from_codes(flat[:, h]) for h in range(heads)], 1)
                vectors = self._merge_heads(q)
            return unflatten_latents(vectors, tuple(codes.shape[:-1]), self._config.channel_first)
        lead = tuple(codes.shape)
        vectors = self.vectors_from_codes(codes.reshape(-1))
        return unflatten_latents(vectors, lead, self._config.channel_first)

    # ------------------------------------------------------------------ flat-vector API (used by ResidualVQ)

    def codes_from_vectors(self, vectors: torch.Tensor) -> torch.Tensor:
        """vectors (M, dim) -> codes (M,) int64, with no side effects."""
        with torch.no_grad(), full_precision(vectors.device):
            z = self._to_codebook_space(vectors.float())
            return nearest_codes(z, self._lookup_table().detach(), self._config.distance_chunk_rows)

    def vectors_from_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (M,) integer -> vectors (M, dim) float32."""
        if codes.dtype.is_floating_point or codes.dtype == torch.bool:
            raise TypeError(f"codes must be an integer tensor, got {codes.dtype}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            low, high = int(codes.min()), int(codes.max())
            raise ValueError(f"codes out of range [0, {self.codebook_size}): min {low}, max {high}")
        with full_precision(codes.device):
            q = self._lookup_table()[codes.long()]
            return self._from_codebook_space(q)

    def quantize_vectors(
        self,
        vectors: torch.Tensor,
        update: bool | None = None,
        mask: torch.Tensor | None = None,
        freeze: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor]:
        """Training/eval quantization of flat vectors.

        vectors (M, dim), mask (M,) bool or None -> (quantized (M, dim) with surrogate gradient, codes (M,)
        (-1 where masked), loss terms, metrics, z (M', codebook_dim) the detached codebook-space inputs of
        the M' valid rows).  ``update`` (default: self.training) runs k-means init before and the codebook
        update after the assignment; ``freeze`` (freeze_codebook) also drops the learned codebook's loss.
        """
        cfg = self._config
        sampling = self.training and cfg.sample_codebook_temp > 0
        diversity = self.training and cfg.codebook_diversity_loss_weight > 0
        update = self.training if update is None else update
        with full_precision(vectors.device):
            z = self._to_codebook_space(vectors.float())
            z_valid = z if mask is None else z[mask]
            if update and cfg.affine_param:
                self._update_affine(z_valid.detach())
            if update and not bool(self.initted):
                update = self._collect_for_kmeans(z_valid.detach())
            table = self._lookup_table()
            if sampling:
                codes = self._sample_codes(z.detach(), table.detach())
            else:
                codes = nearest_codes(z.detach(), table.detach(), cfg.distance_chunk_rows)
            codes_valid = codes if mask is None else codes[mask]
            q_valid = table[codes_valid]
            loss: dict[str, torch.Tensor] = {}
            if cfg.commitment_weight > 0:
                loss["commitment"] = cfg.commitment_weight * _mean_sq(z_valid, q_valid.detach())
            if not cfg.ema_update and not freeze:
                loss["codebook"] = _mean_sq(q_valid, z_valid.detach())
            if cfg.orthogonal_reg_weight > 0:
                rows = table[torch.unique(codes_valid)] if cfg.orthogonal_reg_active_codes_only else table
                loss["orthogonal"] = cfg.orthogonal_reg_weight * orthogonal_loss(rows)
            if diversity:
                # an EMA codebook is updated in place below: the loss's graph needs its own copy
                frozen = table.detach().clone() if cfg.ema_update else table
                loss["diversity"] = cfg.codebook_diversity_loss_weight * self._diversity_loss(z_valid, frozen)
            q = table[codes]
            surrogate = rotation_trick(z, q.detach()) if cfg.rotation_trick else z
            quantized = self._from_codebook_space(exact_straight_through(q.detach(), surrogate))
            if mask is not None:
                quantized = torch.where(mask[:, None], quantized, vectors.float())
                codes = codes.masked_fill(~mask, -1)
            if update:
                metrics = self.update_codebook(z_valid.detach(), codes_valid)
            else:
                with torch.no_grad():
                    counts = torch.bincount(codes_valid, minlength=self.codebook_size)
                    metrics = codebook_health(counts, self._dead_mask(for_metrics=True))
        return quantized, codes, loss, metrics, z_valid.detach()

    @torch.no_grad()
    def expire_codes_(self, latents: torch.Tensor, mask: torch.Tensor | None = None) -> int:
        """Replace the codes the dead-code criteria flag now by vectors of ``latents`` (the batch layout,
        (B, C, *S) or (B, *S, C); ``mask`` (B, *S) selects valid positions).  Returns how many were
        replaced.  A collective under DDP (with ``sync_codebook``): call it on every rank."""
        vectors, lead = flatten_latents(latents, self.dim, self._config.channel_first)
        flat_mask = flatten_mask(mask, lead)
        with full_precision(vectors.device):
            z = self._to_codebook_space(vectors)
            if flat_mask is not None:
                z = z[flat_mask]
            dead = self._dead_mask(for_metrics=False)
            if not bool(dead.any()):
                return 0
            errors = None
            if self._config.revive_by_error:
                table = self._lookup_table()
                nearest = nearest_codes(z.float(), table, self._config.distance_chunk_rows)
                errors = (z.float() - table[nearest]).pow(2).sum(1)
            self._revive(z, dead, errors)
        return int(dead.sum())

    # ------------------------------------------------------------------ state updates (training only)

    @torch.no_grad()
    def _collect_for_kmeans(self, z: torch.Tensor) -> bool:
        """Pool this batch's z (M, codebook_dim) from all ranks; run k-means once the pool is big enough.

        Returns whether the codebook is initialised (and so may be updated this step).  Each batch is
        gathered as it comes, so the pool has the order a single process fed the concatenated batches sees.
        """
        self._kmeans_pool.append(self._gather(z.float()))
        collected = sum(part.shape[0] for part in self._kmeans_pool)
        if collected < max(1, self._config.kmeans_init_vectors):
            return False
        pool = torch.cat(self._kmeans_pool)
        self._kmeans_pool = []
        self.init_codebook(pool, gathered=True)
        return True

    @torch.no_grad()
    def init_codebook(self, z: torch.Tensor, gathered: bool = False) -> None:
        """k-means initialisation from z (M, codebook_dim), on all ranks' vectors, computed on rank 0.

        ``gathered``: z already holds every rank's vectors (no all-gather).
        """
        cfg = self._config
        pool = z.float() if gathered else self._gather(z.float())
        total = pool.shape[0]
        centroids = torch.empty_like(self.codebook, dtype=torch.float32)
        sizes = torch.empty(self.codebook_size, dtype=torch.float32, device=z.device)
        if self._rank() == 0:
            generator = self._generator(salt=1)
            if total > cfg.kmeans_max_samples:
                keep = torch.randperm(total, generator=generator)[: cfg.kmeans_max_samples]
                pool = pool[keep.to(pool.device)]
            centroids, counts = kmeans(
                pool, self.codebook_size, cfg.kmeans_iters, generator, cfg.use_cosine_sim
            )
            # sizes on the scale of one step's counts, so the EMA continues smoothly
            sizes = counts * (total / max(1, pool.shape[0]))
        if cfg.sync_codebook:
            broadcast_(centroids)
            broadcast_(sizes)
        sizes = sizes.clamp_min(1.0)
        self.codebook.data.copy_(centroids)
        if cfg.ema_update:
            self.embed_avg.copy_(centroids * sizes[:, None])
        self.cluster_size.copy_(sizes)
        self.steps_unused.zero_()
        self.initted.fill_(True)

    @torch.no_grad()
    def update_codebook(self, z: torch.Tensor, codes: torch.Tensor) -> dict[str, torch.Tensor]:
        """One training step of codebook statistics from z (M, codebook_dim) and codes (M,).

        Counts (and EMA sums) are all-reduced over ranks before use.  Returns the health metrics.
        """
        cfg = self._config
        num_codes = self.codebook_size
        counts = torch.bincount(codes, minlength=num_codes).float()
        if cfg.affine_param:
            # EMA sums live in the raw codebook space: map the batch back through the affine transform
            z = (z - self.batch_mean) * (self._codebook_std() / self._batch_std()) + self.codebook_mean
        # squared errors under the codebook that assigned the codes (before this step's update)
        errors = (z.float() - self.codebook.float()[codes]).pow(2).sum(1) if cfg.revive_by_error else None
        if cfg.ema_update:
            stats = torch.zeros(num_codes, self.codebook_dim + 1, dtype=torch.float32, device=z.device)
            stats[:, 0] = counts
            stats[:, 1:].index_add_(0, codes, z.float())
            if cfg.sync_codebook:
                all_reduce_sum_(stats)  # one collective for counts and sums
            counts = stats[:, 0]
            self.cluster_size.mul_(cfg.decay).add_(counts, alpha=1.0 - cfg.decay)
            self.embed_avg.mul_(cfg.decay).add_(stats[:, 1:], alpha=1.0 - cfg.decay)
            total = self.cluster_size.sum()
            smoothed = (self.cluster_size + cfg.eps) / (total + num_codes * cfg.eps) * total
            new_codebook = self.embed_avg / smoothed[:, None]
            if cfg.use_cosine_sim:
                new_codebook = F.normalize(new_codebook, dim=1)
            self.codebook.copy_(new_codebook)
        else:
            if cfg.sync_codebook:
                all_reduce_sum_(counts)
            self.cluster_size.mul_(cfg.decay).add_(counts, alpha=1.0 - cfg.decay)
        used = counts > 0
        self.steps_unused.add_(1).masked_fill_(used, 0)
        metrics = codebook_health(counts, self._dead_mask(for_metrics=True))
        dead = self._dead_mask(for_metrics=False)
        if bool(dead.any()):  # identical on all ranks: derived from all-reduced counts only
            self._revive(z, dead, errors)
        self.num_updates.add_(1)
        return metrics

    # ------------------------------------------------------------------ internals

    def _rank(self) -> int:
        return world_rank() if self._config.sync_codebook else 0

    def _gather(self, rows: torch.Tensor) -> torch.Tensor:
        return all_gather_rows(rows) if self._config.sync_codebook else rows

    def _batch_std(self) -> torch.Tensor:
        return self.batch_variance.clamp_min(1e-5).sqrt()

    def _codebook_std(self) -> torch.Tensor:
        return self.codebook_variance.clamp_min(1e-5).sqrt()

    @torch.no_grad()
    def _update_affine(self, z: torch.Tensor) -> None:
        """Running per-channel mean/variance of the batch z (M, d) (all ranks') and of the codebook."""
        cfg = self._config
        stats = torch.stack([z.new_tensor(float(z.shape[0])).expand(z.shape[1]), z.sum(0)])
        if cfg.sync_codebook:
            all_reduce_sum_(stats)
        count = stats[0].clamp_min(1.0)
        mean = stats[1] / count
        spread = ((z - mean) ** 2).sum(0)
        if cfg.sync_codebook:
            all_reduce_sum_(spread)
        variance = spread / count
        raw = self.codebook.detach().float()
        first = not bool(self.affine_initted)
        for name, value, decay in (
            ("batch_mean", mean, cfg.affine_param_batch_decay),
            ("batch_variance", variance, cfg.affine_param_batch_decay),
            ("codebook_mean", raw.mean(0), cfg.affine_param_codebook_decay),
            ("codebook_variance", raw.var(0, unbiased=False), cfg.affine_param_codebook_decay),
        ):
            buffer = getattr(self, name)
            if first:
                buffer.copy_(value)
            else:
                buffer.mul_(decay).add_(value, alpha=1.0 - decay)
        self.affine_initted.fill_(True)

    def _sample_codes(self, z: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """Gumbel-max draw from softmax(-|z - c|^2 / temp): z (M, d), table (K, d) -> (M,)."""
        out = torch.empty(z.shape[0], dtype=torch.long, device=z.device)
        step = self._config.distance_chunk_rows or max(1, DISTANCE_CHUNK_ELEMENTS // self.codebook_size)
        code_sq = (table * table).sum(1)
        for start in range(0, z.shape[0], step):
            chunk = z[start : start + step]
            dist = torch.addmm(code_sq, chunk, table.t(), alpha=-2.0)
            uniform = torch.rand_like(dist).clamp_(1e-20, 1.0)
            gumbel = -torch.log(-torch.log(uniform))
            logits = -dist / self._config.sample_codebook_temp
            out[start : start + chunk.shape[0]] = (logits + gumbel).argmax(1)
        return out

    def _diversity_loss(self, z: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """Minus the entropy of the batch-mean soft assignment: z (M, d), table (K, d) -> scalar."""
        if z.shape[0] == 0:
            return z.sum() * 0.0
        dist = (table * table).sum(1) - 2.0 * z @ table.t()
        probs = (-dist * self._config.codebook_diversity_temperature).softmax(-1)
        mean = batch_mean(probs[:, None], sync=self._config.sync_codebook)[0]
        return (mean * torch.log(mean.clamp_min(1e-9))).sum()

    def _generator(self, salt: int) -> torch.Generator:
        seed = (self._config.seed * 1_000_003 + int(self.num_updates) * 16 + salt) % (2**63)
        return torch.Generator().manual_seed(seed)

    def _dead_mask(self, for_metrics: bool) -> torch.Tensor:
        cfg = self._config
        dead = torch.zeros(self.codebook_size, dtype=torch.bool, device=self.cluster_size.device)
        if cfg.threshold_ema_dead_code > 0:
            dead |= self.cluster_size < cfg.threshold_ema_dead_code
        if cfg.dead_code_after_steps > 0:
            dead |= self.steps_unused >= cfg.dead_code_after_steps
        if for_metrics and cfg.threshold_ema_dead_code == 0 and cfg.dead_code_after_steps == 0:
            dead |= self.steps_unused >= DEAD_CODE_METRIC_STEPS
        return dead

    def _revive(self, z: torch.Tensor, dead: torch.Tensor, errors: torch.Tensor | None = None) -> None:
        """Replace dead codes by latents drawn (on rank 0, broadcast) from all ranks' current batch:
        uniformly, or in proportion to ``errors`` (M,) (their squared quantization errors)."""
        cfg = self._config
        pool = self._gather(z.float())
        weights = None if errors is None else self._gather(errors.float()[:, None])[:, 0]
        num_dead = int(dead.sum())
        replacement = torch.empty(num_dead, self.codebook_dim, dtype=torch.float32, device=z.device)
        if self._rank() == 0 and pool.shape[0] > 0:
            generator = self._generator(salt=2)
            if weights is not None and bool((weights > 0).any()):
                # a tiny floor: once the latents with any error are drawn, the rest come uniformly
                w = weights.cpu().double()
                w = w + float(w.mean()) * 1e-9
                many = num_dead > w.numel()
                pick = torch.multinomial(w, num_dead, replacement=many, generator=generator)
            else:
                pick = torch.randint(pool.shape[0], (num_dead,), generator=generator)
            replacement = pool[pick.to(pool.device)]
        elif pool.shape[0] == 0:
            return
        if cfg.sync_codebook:
            broadcast_(replacement)
        if cfg.affine_param:
            replacement = (replacement - self.batch_mean) * (
                self._codebook_std() / self._batch_std()
            ) + self.codebook_mean
        if cfg.use_cosine_sim:
            replacement = F.normalize(replacement, dim=1)
        reset_size = cfg.threshold_ema_dead_code if cfg.threshold_ema_dead_code > 0 else 1.0
        self.codebook.data[dead] = replacement
        if cfg.ema_update:
            self.embed_avg[dead] = replacement * reset_size
        self.cluster_size[dead] = reset_size
        self.steps_unused[dead] = 0

    def _lookup_table(self) -> torch.Tensor:
        """The codebook as used for lookup: (K, codebook_dim) float32 (unit rows with cosine similarity)."""
        table = self.codebook.float()
        if self._config.use_cosine_sim and not self._config.ema_update:
            table = F.normalize(table, dim=1)
        if self._config.affine_param:
            scale = self._batch_std() / self._codebook_std()
            table = (table - self.codebook_mean) * scale + self.batch_mean
        return table

    def _to_codebook_space(self, vectors: torch.Tensor) -> torch.Tensor:
        z = vectors
        if self.project_in is not None:
            z = stable_linear(z, self.project_in.weight, self.project_in.bias)
        if self.norm_in is not None:
            z = self.norm_in(z)
        if self._config.use_cosine_sim:
            z = F.normalize(z, dim=1)
        return z

    def _from_codebook_space(self, q: torch.Tensor) -> torch.Tensor:
        if self.project_out is not None:
            return stable_linear(q, self.project_out.weight, self.project_out.bias)
        return q
