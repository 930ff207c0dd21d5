"""ResidualVQ: Q vector quantizers applied in turn to what the previous stages left over.

Codes are (B, *S, Q) with the stage last (see ``vqcodec.quantize.base``).  With ``quantize_dropout`` a
training step uses a random number of leading stages, uniform in [quantize_dropout_cutoff_index + 1, Q]
(drawn on rank 0 and broadcast, so every DDP rank runs the same stages and the same collectives); the
dropped stages' codes are -1 and they get no update.  One model so serves every rate 1..Q stages, and
``encode(x, num_stages=k)`` / ``decode(codes[..., :k])`` pick the rate at inference.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from vqcodec.quantize.base import (
    Quantizer,
    QuantizerOutput,
    TypedModuleList,
    flatten_latents,
    flatten_mask,
    full_precision,
    stable_linear,
    unflatten_latents,
)
from vqcodec.quantize.distributed import broadcast_int
from vqcodec.quantize.kmeans import DISTANCE_CHUNK_ELEMENTS, penalised_codes
from vqcodec.quantize.vq import VectorQuantizer, VectorQuantizerConfig


@dataclass(frozen=True, kw_only=True)
class ResidualVQConfig(VectorQuantizerConfig):
    """VectorQuantizerConfig fields (shared by every stage) plus the residual-specific ones."""

    num_quantizers: int
    shared_codebook: bool = False
    quantize_dropout: bool = False
    quantize_dropout_cutoff_index: int = 0
    quantize_dropout_multiple_of: int = 1
    quantize_dropout_seed: int | None = None
    codebook_sizes: tuple[int, ...] | None = None
    shared_projection: bool = False
    quant_grad_frac: float = 0.0
    per_stage_losses: bool = False
    return_all_codes: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.heads != 1:
            raise ValueError("ResidualVQ stages have one head (heads=1); use GroupedResidualVQ for groups")
        if self.codebook_sizes is not None:
            object.__setattr__(self, "codebook_sizes", tuple(int(k) for k in self.codebook_sizes))
            sizes = self.codebook_sizes
            if len(sizes) != self.num_quantizers or min(sizes) < 1:
                raise ValueError(f"codebook_sizes needs {self.num_quantizers} positive sizes, got {sizes}")
            if self.shared_codebook:
                raise ValueError("codebook_sizes (one size per stage) contradicts shared_codebook=True")
        if self.quantize_dropout_multiple_of < 1:
            multiple = self.quantize_dropout_multiple_of
            raise ValueError(f"quantize_dropout_multiple_of must be >= 1, got {multiple}")
        if not 0.0 <= self.quant_grad_frac <= 1.0:
            raise ValueError(f"quant_grad_frac must be in [0, 1], got {self.quant_grad_frac}")
        if self.num_quantizers < 1:
            raise ValueError(f"num_quantizers must be >= 1, got {self.num_quantizers}")
        if not 0 <= self.quantize_dropout_cutoff_index < self.num_quantizers:
            raise ValueError(
                f"quantize_dropout_cutoff_index must be in [0, {self.num_quantizers}), "
                f"got {self.quantize_dropout_cutoff_index}"
            )

    def stage_config(self, stage: int) -> VectorQuantizerConfig:
        """The VectorQuantizerConfig of one stage (its own seed, flat-vector layout)."""
        names = {f.name for f in dataclasses.fields(VectorQuantizerConfig)}
        values = {name: getattr(self, name) for name in names}
        values["seed"] = self.seed + stage
        values["channel_first"] = False
        if self.codebook_sizes is not None:
            values["codebook_size"] = self.codebook_sizes[stage]
        if self.shared_projection and self.codebook_dim not in (None, self.dim):
            # the residual is projected once around all stages; stages work in codebook space
            values["dim"] = self.codebook_dim
            values["codebook_dim"] = None
            values["layernorm_after_project_in"] = False
        return VectorQuantizerConfig(**values)


class ResidualVQ(Quantizer[ResidualVQConfig]):
    """Residual vector quantizer.

    Args: ``dim``, ``num_quantizers`` (Q), ``codebook_size`` (K per stage), ``shared_codebook`` (one
    codebook for all stages, updated once per step from all stages' residuals), ``quantize_dropout``,
    ``quantize_dropout_cutoff_index``; every other keyword is a VectorQuantizer option applied to each stage
    (``sync_codebook=False`` also keeps the dropout draw local).  Options (all off by default):

    * ``quantize_dropout_multiple_of``: the number of active stages is rounded up to a multiple of this.
    * ``quantize_dropout_seed``: dropout draws come from a generator with this seed (a reproducible
      sequence of draws) instead of torch's global generator.
    * ``codebook_sizes``: one codebook size per stage (``alphabet`` follows).
    * ``shared_projection``: with ``codebook_dim != dim``, one projection in and out around the whole
      residual stack (upstream's layout) instead of one per stage.
    * ``quant_grad_frac``: fraction of each stage's gradient that also flows through the residual fed to
      later stages (upstream's ``quant_grad_frac``; 0 = residuals are detached).
    * ``per_stage_losses``: loss terms keyed "stage{i}/commitment", ... instead of summed over stages.
    * ``return_all_codes``: the output's ``all_codes`` holds each stage's quantized contribution,
      (Q, *latents.shape) (zeros for dropped stages).

    ``forward(latents, mask=None, freeze_codebook=False)`` as for VectorQuantizer (masked positions get
    code -1 at every stage and their input back in ``quantized``).  ``decode`` treats code -1 as "stage
    not used" (contributes zero), so dropped or masked codes decode.  ``encode(..., beam_size=b)`` keeps
    the b best partial paths (lowest squared error, plus the rate term with ``code_bits``) at each stage
    instead of the greedy choice.

    Shapes: latents (B, C, *S) (``channel_first=True``) or (B, *S, C); codes (B, *S, Q).
    """

    config_class = ResidualVQConfig

    def __init__(
        self,
        dim: int,
        num_quantizers: int,
        codebook_size: int,
        *,
        shared_codebook: bool = False,
        quantize_dropout: bool = False,
        quantize_dropout_cutoff_index: int = 0,
        codebook_dim: int | None = None,
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
        **options: Any,
    ) -> None:
        config = ResidualVQConfig(
            dim=dim,
            num_quantizers=num_quantizers,
            codebook_size=codebook_size,
            shared_codebook=shared_codebook,
            quantize_dropout=quantize_dropout,
            quantize_dropout_cutoff_index=quantize_dropout_cutoff_index,
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
            **options,
        )
        super().__init__(config)
        self.dim = dim
        self.num_quantizers = num_quantizers
        self.codebook_size = codebook_size
        self.codebook_sizes = config.codebook_sizes or (codebook_size,) * num_quantizers
        self.project_in: nn.Linear | None = None
        self.project_out: nn.Linear | None = None
        self.norm_in: nn.LayerNorm | None = None
        if config.shared_projection and config.codebook_dim not in (None, dim):
            self.project_in = nn.Linear(dim, config.codebook_dim)
            self.project_out = nn.Linear(config.codebook_dim, dim)
            if config.layernorm_after_project_in:
                self.norm_in = nn.LayerNorm(config.codebook_dim)
        num_modules = 1 if shared_codebook else num_quantizers
        self.layers = TypedModuleList(
            [VectorQuantizer.from_config(config.stage_config(i)) for i in range(num_modules)]
        )
        self._dropout_generator: torch.Generator | None = None
        if config.quantize_dropout_seed is not None:
            self._dropout_generator = torch.Generator().manual_seed(config.quantize_dropout_seed)

    @property
    def alphabet(self) -> tuple[int, ...]:
        """One stream per stage: (codebook_size,) * Q, or ``codebook_sizes``."""
        return tuple(self.codebook_sizes)

    def stage(self, index: int) -> VectorQuantizer:
        """The VectorQuantizer used by stage ``index`` (the same module for all with a shared codebook)."""
        return self.layers[0 if self._config.shared_codebook else index]

    def forward(
        self, latents: torch.Tensor, mask: torch.Tensor | None = None, *, freeze_codebook: bool = False
    ) -> QuantizerOutput:
        """latents (B, C, *S) or (B, *S, C), mask (B, *S) bool or None -> QuantizerOutput(quantized like
        latents, codes (B, *S, Q)).

        loss: per-name sums over the active stages; metrics: per stage ("stage{i}/usage", ...), their
        means ("usage", "perplexity"), the total "dead_codes" and "active_stages".
        """
        cfg = self._config
        vectors, lead = flatten_latents(latents, self.dim, cfg.channel_first)
        flat_mask = flatten_mask(mask, lead)
        active = self.num_quantizers
        if self.training and cfg.quantize_dropout:
            low = cfg.quantize_dropout_cutoff_index + 1
            draw = int(torch.randint(low, self.num_quantizers + 1, (), generator=self._dropout_generator))
            if cfg.quantize_dropout_multiple_of > 1:
                multiple = cfg.quantize_dropout_multiple_of
                draw = min(self.num_quantizers, -(-draw // multiple) * multiple)
            active = broadcast_int(draw) if cfg.sync_codebook else draw
        updating = self.training and not freeze_codebook
        shared_update = updating and cfg.shared_codebook
        with full_precision(vectors.device):
            inputs = vectors
            vectors = self._project(vectors)
            if shared_update and not bool(self.stage(0).initted):
                pool = self.stage(0)._to_codebook_space(vectors).detach()
                shared_update = self.stage(0)._collect_for_kmeans(
                    pool if flat_mask is None else pool[flat_mask]
                )
            residual = vectors
            quantized = torch.zeros_like(vectors)
            codes = torch.full(
                (vectors.shape[0], self.num_quantizers), -1, dtype=torch.long, device=vectors.device
            )
            loss: dict[str, torch.Tensor] = {}
            metrics: dict[str, torch.Tensor] = {}
            shared_z: list[torch.Tensor] = []
            shared_codes: list[torch.Tensor] = []
            # a stage collects k-means vectors only once the stages before it are initialised, so its
            # pool holds the residuals of trained codebooks, not of random ones
            ready = True
            contributions: list[torch.Tensor] = []
            for i in range(active):
                stage_out, stage_codes, stage_loss, stage_metrics, z = self.stage(i).quantize_vectors(
                    residual,
                    update=updating and not cfg.shared_codebook and ready,
                    mask=flat_mask,
                    freeze=freeze_codebook,
                )
                if flat_mask is not None:
                    # a masked row got its residual back: it must add nothing to the reconstruction
                    stage_out = torch.where(flat_mask[:, None], stage_out, torch.zeros_like(stage_out))
                ready = ready and bool(self.stage(i).initted)
                if cfg.quant_grad_frac > 0:
                    frac = cfg.quant_grad_frac
                    residual = residual - (stage_out * frac + stage_out.detach() * (1.0 - frac))
                else:
                    residual = residual - stage_out.detach()
                quantized = quantized + stage_out
                codes[:, i] = stage_codes
                if cfg.return_all_codes:
                    contributions.append(stage_out)
                for name, value in stage_loss.items():
                    if cfg.per_stage_losses:
                        name = f"stage{i}/{name}"
                    loss[name] = loss[name] + value if name in loss else value
                for name, value in stage_metrics.items():
                    metrics[f"stage{i}/{name}"] = value
                if shared_update:
                    shared_z.append(z)
                    shared_codes.append(stage_codes if flat_mask is None else stage_codes[flat_mask])
            if shared_update:
                shared_metrics = self.stage(0).update_codebook(torch.cat(shared_z), torch.cat(shared_codes))
                metrics["shared/dead_codes"] = shared_metrics["dead_codes"]
        for name in ("usage", "perplexity"):
            metrics[name] = torch.stack([metrics[f"stage{i}/{name}"] for i in range(active)]).mean()
        metrics["dead_codes"] = (
            metrics["shared/dead_codes"]
            if shared_update
            else torch.stack([metrics[f"stage{i}/dead_codes"] for i in range(active)]).sum()
        )
        metrics["active_stages"] = torch.tensor(float(active))
        with full_precision(vectors.device):
            quantized = self._unproject(quantized)
            if flat_mask is not None:
                quantized = torch.where(flat_mask[:, None], quantized, inputs)
            all_codes = None
            if cfg.return_all_codes:
                zeros = torch.zeros_like(quantized)
                per_stage = [self._unproject(c, bias=False) for c in contributions]
                per_stage += [zeros] * (self.num_quantizers - active)
                all_codes = torch.stack([unflatten_latents(c, lead, cfg.channel_first) for c in per_stage])
        return QuantizerOutput(
            unflatten_latents(quantized, lead, cfg.channel_first),
            codes.reshape(*lead, self.num_quantizers),
            loss,
            metrics,
            all_codes,
        )

    def _project(self, vectors: torch.Tensor) -> torch.Tensor:
        """(M, dim) -> (M, codebook_dim) through the shared projection (identity without one)."""
        if self.project_in is None:
            return vectors
        z = stable_linear(vectors, self.project_in.weight, self.project_in.bias)
        return self.norm_in(z) if self.norm_in is not None else z

    def _unproject(self, vectors: torch.Tensor, bias: bool = True) -> torch.Tensor:
        """(M, codebook_dim) -> (M, dim); ``bias=False`` for one stage's share (the bias is added once)."""
        if self.project_out is None:
            return vectors
        return stable_linear(vectors, self.project_out.weight, self.project_out.bias if bias else None)

    def encode(
        self,
        latents: torch.Tensor,
        num_stages: int | None = None,
        *,
        code_bits: Sequence[torch.Tensor] | None = None,
        rate_weight: float = 0.0,
        beam_size: int = 1,
    ) -> torch.Tensor:
        """latents (B, C, *S) or (B, *S, C) -> codes (B, *S, k), k = num_stages (default Q).

        With ``code_bits`` (one (K,) tensor per stage: what each code costs the entropy coder, in
        bits) and ``rate_weight`` > 0, stage i picks ``argmin |r - c|^2 + lambda_i * bits(c)``
        instead of the nearest code, with ``lambda_i = rate_weight * mean |r_i|^2 / log2(K)``: the
        squared error a bit is worth scales with the residual left at that stage, so one weight
        serves every stage and quality level. ``beam_size`` > 1 keeps that many best partial code
        paths per vector (score: residual energy plus the rate terms so far) and returns the best
        full path. Both need Euclidean codebooks without per-stage projection. No state changes.
        """
        k = self.num_quantizers if num_stages is None else int(num_stages)
        if not 1 <= k <= self.num_quantizers:
            raise ValueError(f"num_stages must be in [1, {self.num_quantizers}], got {num_stages}")
        if beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {beam_size}")
        bits = list(code_bits[:k]) if code_bits is not None and rate_weight > 0 else None
        if bits is not None:
            if len(bits) < k or any(b.shape != (self.codebook_sizes[i],) for i, b in enumerate(bits)):
                raise ValueError(f"code_bits needs one (codebook_size,) tensor per stage (>= {k})")
        if bits is not None or beam_size > 1:
            if any(
                self.stage(i).project_in is not None or self.stage(i)._config.use_cosine_sim for i in range(k)
            ):
                raise ValueError(
                    "rate-distortion code choice and beam search need Euclidean codebooks without "
                    "per-stage projection"
                )
        vectors, lead = flatten_latents(latents, self.dim, self._config.channel_first)
        with torch.no_grad(), full_precision(vectors.device):
            vectors = self._project(vectors)
            if beam_size > 1:
                return self._beam_encode(vectors, k, beam_size, bits, rate_weight).reshape(*lead, k)
            residual = vectors
            codes = []
            for i in range(k):
                stage = self.stage(i)
                size = self.codebook_sizes[i]
                if bits is not None and residual.shape[0]:
                    lam = rate_weight * float((residual * residual).sum(1).mean()) / math.log2(size)
                    stage_codes = penalised_codes(
                        residual,
                        stage.vectors_from_codes(torch.arange(size, device=residual.device)),
                        lam * bits[i],
                    )
                else:
                    stage_codes = stage.codes_from_vectors(residual)
                codes.append(stage_codes)
                if i + 1 < k:
                    residual = residual - stage.vectors_from_codes(stage_codes)
        return torch.stack(codes, dim=-1).reshape(*lead, k)

    def _beam_encode(
        self,
        vectors: torch.Tensor,
        k: int,
        beam: int,
        bits: list[torch.Tensor] | None,
        rate_weight: float,
    ) -> torch.Tensor:
        """Beam search over k stages: vectors (M, d) -> codes (M, k) of the best path found."""
        tables = [
            self.stage(i).vectors_from_codes(torch.arange(self.codebook_sizes[i], device=vectors.device))
            for i in range(k)
        ]
        out = torch.empty(vectors.shape[0], k, dtype=torch.long, device=vectors.device)
        rows = max(1, DISTANCE_CHUNK_ELEMENTS // (beam * max(self.codebook_sizes)))
        for start in range(0, vectors.shape[0], rows):
            chunk = vectors[start : start + rows]
            m = chunk.shape[0]
            residual = chunk[:, None, :]  # (m, b, d), b paths alive
            rate = chunk.new_zeros(m, 1)  # (m, b) accumulated rate cost of each path
            paths = torch.zeros(m, 1, 0, dtype=torch.long, device=chunk.device)
            for i in range(k):
                table = tables[i]
                size = table.shape[0]
                dist = (
                    (residual * residual).sum(-1, keepdim=True)
                    - 2.0 * residual @ table.t()
                    + (table * table).sum(1)
                )  # (m, b, K): residual energy after picking each code
                cost = dist + rate[:, :, None]
                if bits is not None:
                    energy = float((residual[:, 0] * residual[:, 0]).sum(1).mean())
                    lam = rate_weight * energy / math.log2(size)
                    cost = cost + lam * bits[i].to(cost)
                keep = min(beam, cost.shape[1] * size)
                best = cost.reshape(m, -1).topk(keep, dim=1, largest=False, sorted=True).indices
                parent, code = best // size, best % size
                residual = residual.gather(1, parent[:, :, None].expand(-1, -1, residual.shape[2]))
                residual = residual - table[code]
                if bits is not None:
                    rate = rate.gather(1, parent) + lam * bits[i].to(rate)[code]
                else:
                    rate = rate.gather(1, parent)
                paths = torch.cat(
                    [paths.gather(1, parent[:, :, None].expand(-1, -1, paths.shape[2])), code[:, :, None]], 2
                )
            out[start : start + m] = paths[:, 0]
        return out

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, *S, k) for the first k <= Q stages -> latents (B, C, *S) or (B, *S, C) float32.

        A code of -1 (a stage dropped by quantize dropout, or a masked position) contributes nothing."""
        if codes.ndim < 2:
            raise ValueError(f"ResidualVQ codes need a trailing stage axis, got shape {tuple(codes.shape)}")
        k = codes.shape[-1]
        if not 1 <= k <= self.num_quantizers:
            raise ValueError(f"codes have {k} stages, this ResidualVQ has {self.num_quantizers}")
        if codes.dtype.is_floating_point or codes.dtype == torch.bool:
            raise TypeError(f"codes must be an integer tensor, got {codes.dtype}")
        lead = tuple(codes.shape[:-1])
        flat = codes.reshape(-1, k)
        width = self.dim if self.project_in is None else self.project_in.out_features
        with full_precision(codes.device):
            quantized = torch.zeros(flat.shape[0], width, dtype=torch.float32, device=codes.device)
            for i in range(k):
                stage_codes = flat[:, i]
                unused = stage_codes == -1
                if bool(unused.any()):
                    # checked only when -1 occurs, so complete codes decode on the unchanged path
                    part = self.stage(i).vectors_from_codes(stage_codes.clamp_min(0))
                    if bool((stage_codes < -1).any()):
                        raise ValueError(f"stage {i} codes below -1 (only -1 marks an unused stage)")
                    quantized = quantized + part.masked_fill(unused[:, None], 0.0)
                else:
                    quantized = quantized + self.stage(i).vectors_from_codes(stage_codes)
            quantized = self._unproject(quantized)
        return unflatten_latents(quantized, lead, self._config.channel_first)
