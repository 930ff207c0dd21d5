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
from vqcodec.quantize.distributed import all_gather_rows, all_reduce_sum_, broadcast_, world_rank
from vqcodec.quantize.kmeans import kmeans, nearest_codes

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
    rotation_trick: bool = False
    distance_chunk_rows: int | None = None
    channel_first: bool = True
    seed: int = 0

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


def exact_straight_through(value: torch.Tensor, surrogate: torch.Tensor) -> torch.Tensor:
    """``value`` in the forward pass, ``surrogate``'s gradient in the backward pass.

    ``value + (s - s.detach())`` adds an exact 0.0, so the result equals ``value`` bit for bit (unlike
    ``s + (value - s).detach()``); that is what makes decode(encode(x)) == forward(x).quantized.
    """
    if not (torch.is_grad_enabled() and surrogate.requires_grad):
        return value
    return value + (surrogate - surrogate.detach())


class VectorQuantizer(Quantizer):
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
            Dead codes are replaced by random latents of the current batch.
        rotation_trick: pass gradients with the rotation trick instead of the straight-through estimator.
        distance_chunk_rows: rows per distance chunk (default: 4M / K), bounding scratch memory.
        channel_first: latents (B, C, *S) if True, (B, *S, C) if False.
        seed: seeds the generator for k-means and revival draws (mixed with the step count).
    """

    config_class = VectorQuantizerConfig

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
        rotation_trick: bool = False,
        distance_chunk_rows: int | None = None,
        channel_first: bool = True,
        seed: int = 0,
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
            rotation_trick=rotation_trick,
            distance_chunk_rows=distance_chunk_rows,
            channel_first=channel_first,
            seed=seed,
        )
        super().__init__(config)
        self.dim = dim
        self.codebook_size = codebook_size
        self.codebook_dim = codebook_dim or dim
        self.project_in: nn.Linear | None = None
        self.project_out: nn.Linear | None = None
        if self.codebook_dim != dim:
            self.project_in = nn.Linear(dim, self.codebook_dim)
            self.project_out = nn.Linear(self.codebook_dim, dim)
        init = torch.randn(codebook_size, self.codebook_dim)
        if use_cosine_sim:
            init = F.normalize(init, dim=1)
        self.codebook: torch.Tensor
        if ema_update:
            self.register_buffer("codebook", init)
            self.register_buffer("embed_avg", init.clone())
        else:
            self.codebook = nn.Parameter(init)
        self.register_buffer("cluster_size", torch.ones(codebook_size))
        self.register_buffer("steps_unused", torch.zeros(codebook_size, dtype=torch.long))
        self.register_buffer("initted", torch.tensor(not kmeans_init))
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))
        # first batches' vectors waiting for k-means (training-time only, not state)
        self._kmeans_pool: list[torch.Tensor] = []

    # ------------------------------------------------------------------ public interface

    @property
    def alphabet(self) -> tuple[int, ...]:
        """(codebook_size,): one code stream."""
        return (self.codebook_size,)

    def forward(self, latents: torch.Tensor) -> QuantizerOutput:
        """latents (B, C, *S) or (B, *S, C) -> QuantizerOutput(quantized like latents, codes (B, *S))."""
        vectors, lead = flatten_latents(latents, self.dim, self._config.channel_first)
        quantized, codes, loss, metrics, _ = self.quantize_vectors(vectors)
        return QuantizerOutput(
            unflatten_latents(quantized, lead, self._config.channel_first), codes.reshape(lead), loss, metrics
        )

    def encode(self, latents: torch.Tensor) -> torch.Tensor:
        """latents (B, C, *S) or (B, *S, C) -> codes (B, *S) int64.  No state changes."""
        vectors, lead = flatten_latents(latents, self.dim, self._config.channel_first)
        return self.codes_from_vectors(vectors).reshape(lead)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, *S) integer -> latents (B, C, *S) or (B, *S, C) float32."""
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
        self, vectors: torch.Tensor, update: bool | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor]:
        """Training/eval quantization of flat vectors.

        vectors (M, dim) -> (quantized (M, dim) with surrogate gradient, codes (M,), loss terms, metrics,
        z (M, codebook_dim) the detached codebook-space inputs).  ``update`` (default: self.training) runs
        k-means init before and the codebook update after the assignment.
        """
        update = self.training if update is None else update
        with full_precision(vectors.device):
            z = self._to_codebook_space(vectors.float())
            if update and not bool(self.initted):
                update = self._collect_for_kmeans(z.detach())
            table = self._lookup_table()
            codes = nearest_codes(z.detach(), table.detach(), self._config.distance_chunk_rows)
            q = table[codes]
            loss: dict[str, torch.Tensor] = {}
            if self._config.commitment_weight > 0:
                loss["commitment"] = self._config.commitment_weight * F.mse_loss(z, q.detach())
            if not self._config.ema_update:
                loss["codebook"] = F.mse_loss(q, z.detach())
            surrogate = rotation_trick(z, q.detach()) if self._config.rotation_trick else z
            quantized = self._from_codebook_space(exact_straight_through(q.detach(), surrogate))
            if update:
                metrics = self.update_codebook(z.detach(), codes)
            else:
                with torch.no_grad():
                    counts = torch.bincount(codes, minlength=self.codebook_size)
                    metrics = codebook_health(counts, self._dead_mask(for_metrics=True))
        return quantized, codes, loss, metrics, z.detach()

    # ------------------------------------------------------------------ state updates (training only)

    @torch.no_grad()
    def _collect_for_kmeans(self, z: torch.Tensor) -> bool:
        """Pool this batch's z (M, codebook_dim) from all ranks; run k-means once the pool is big enough.

        Returns whether the codebook is initialised (and so may be updated this step).  Each batch is
        gathered as it comes, so the pool has the order a single process fed the concatenated batches sees.
        """
        self._kmeans_pool.append(all_gather_rows(z.float()))
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
        pool = z.float() if gathered else all_gather_rows(z.float())
        total = pool.shape[0]
        centroids = torch.empty_like(self.codebook, dtype=torch.float32)
        sizes = torch.empty(self.codebook_size, dtype=torch.float32, device=z.device)
        if world_rank() == 0:
            generator = self._generator(salt=1)
            if total > cfg.kmeans_max_samples:
                keep = torch.randperm(total, generator=generator)[: cfg.kmeans_max_samples]
                pool = pool[keep.to(pool.device)]
            centroids, counts = kmeans(
                pool, self.codebook_size, cfg.kmeans_iters, generator, cfg.use_cosine_sim
            )
            # sizes on the scale of one step's counts, so the EMA continues smoothly
            sizes = counts * (total / max(1, pool.shape[0]))
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
        if cfg.ema_update:
            stats = torch.zeros(num_codes, self.codebook_dim + 1, dtype=torch.float32, device=z.device)
            stats[:, 0] = counts
            stats[:, 1:].index_add_(0, codes, z.float())
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
            all_reduce_sum_(counts)
            self.cluster_size.mul_(cfg.decay).add_(counts, alpha=1.0 - cfg.decay)
        used = counts > 0
        self.steps_unused.add_(1).masked_fill_(used, 0)
        metrics = codebook_health(counts, self._dead_mask(for_metrics=True))
        dead = self._dead_mask(for_metrics=False)
        if bool(dead.any()):  # identical on all ranks: derived from all-reduced counts only
            self._revive(z, dead)
        self.num_updates.add_(1)
        return metrics

    # ------------------------------------------------------------------ internals

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

    def _revive(self, z: torch.Tensor, dead: torch.Tensor) -> None:
        """Replace dead codes by latents drawn (on rank 0, broadcast) from all ranks' current batch."""
        cfg = self._config
        pool = all_gather_rows(z.float())
        num_dead = int(dead.sum())
        replacement = torch.empty(num_dead, self.codebook_dim, dtype=torch.float32, device=z.device)
        if world_rank() == 0 and pool.shape[0] > 0:
            pick = torch.randint(pool.shape[0], (num_dead,), generator=self._generator(salt=2))
            replacement = pool[pick.to(pool.device)]
        elif pool.shape[0] == 0:
            return
        broadcast_(replacement)
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
        return table

    def _to_codebook_space(self, vectors: torch.Tensor) -> torch.Tensor:
        z = vectors
        if self.project_in is not None:
            z = stable_linear(z, self.project_in.weight, self.project_in.bias)
        if self._config.use_cosine_sim:
            z = F.normalize(z, dim=1)
        return z

    def _from_codebook_space(self, q: torch.Tensor) -> torch.Tensor:
        if self.project_out is not None:
            return stable_linear(q, self.project_out.weight, self.project_out.bias)
        return q
