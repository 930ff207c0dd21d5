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

import torch
from torch import nn

from vqcodec.quantize.base import (
    Quantizer,
    QuantizerOutput,
    flatten_latents,
    full_precision,
    unflatten_latents,
)
from vqcodec.quantize.distributed import broadcast_int
from vqcodec.quantize.kmeans import penalised_codes
from vqcodec.quantize.vq import VectorQuantizer, VectorQuantizerConfig


@dataclass(frozen=True, kw_only=True)
class ResidualVQConfig(VectorQuantizerConfig):
    """VectorQuantizerConfig fields (shared by every stage) plus the residual-specific ones."""

    num_quantizers: int
    shared_codebook: bool = False
    quantize_dropout: bool = False
    quantize_dropout_cutoff_index: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
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
        return VectorQuantizerConfig(**values)


class ResidualVQ(Quantizer):
    """Residual vector quantizer.

    Args: ``dim``, ``num_quantizers`` (Q), ``codebook_size`` (K per stage), ``shared_codebook`` (one
    codebook for all stages, updated once per step from all stages' residuals), ``quantize_dropout``,
    ``quantize_dropout_cutoff_index``; every other keyword is a VectorQuantizer option applied to each stage.

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
        )
        super().__init__(config)
        self.dim = dim
        self.num_quantizers = num_quantizers
        self.codebook_size = codebook_size
        num_modules = 1 if shared_codebook else num_quantizers
        self.layers = nn.ModuleList(
            [VectorQuantizer.from_config(config.stage_config(i)) for i in range(num_modules)]
        )

    @property
    def alphabet(self) -> tuple[int, ...]:
        """(codebook_size,) * num_quantizers: one stream per stage."""
        return (self.codebook_size,) * self.num_quantizers

    def stage(self, index: int) -> VectorQuantizer:
        """The VectorQuantizer used by stage ``index`` (the same module for all with a shared codebook)."""
        layer = self.layers[0 if self._config.shared_codebook else index]
        assert isinstance(layer, VectorQuantizer)
        return layer

    def forward(self, latents: torch.Tensor) -> QuantizerOutput:
        """latents (B, C, *S) or (B, *S, C) -> QuantizerOutput(quantized like latents, codes (B, *S, Q)).

        loss: per-name sums over the active stages; metrics: per stage ("stage{i}/usage", ...), their
        means ("usage", "perplexity"), the total "dead_codes" and "active_stages".
        """
        cfg = self._config
        vectors, lead = flatten_latents(latents, self.dim, cfg.channel_first)
        active = self.num_quantizers
        if self.training and cfg.quantize_dropout:
            draw = int(
                torch.randint(cfg.quantize_dropout_cutoff_index + 1, self.num_quantizers + 1, ()).item()
            )
            active = broadcast_int(draw)
        shared_update = self.training and cfg.shared_codebook
        with full_precision(vectors.device):
            if shared_update and not bool(self.stage(0).initted):
                shared_update = self.stage(0)._collect_for_kmeans(
                    self.stage(0)._to_codebook_space(vectors).detach()
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
            for i in range(active):
                stage_out, stage_codes, stage_loss, stage_metrics, z = self.stage(i).quantize_vectors(
                    residual, update=self.training and not cfg.shared_codebook and ready
                )
                ready = ready and bool(self.stage(i).initted)
                residual = residual - stage_out.detach()
                quantized = quantized + stage_out
                codes[:, i] = stage_codes
                for name, value in stage_loss.items():
                    loss[name] = loss[name] + value if name in loss else value
                for name, value in stage_metrics.items():
                    metrics[f"stage{i}/{name}"] = value
                if shared_update:
                    shared_z.append(z)
                    shared_codes.append(stage_codes)
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
        return QuantizerOutput(
            unflatten_latents(quantized, lead, cfg.channel_first),
            codes.reshape(*lead, self.num_quantizers),
            loss,
            metrics,
        )

    def encode(
        self,
        latents: torch.Tensor,
        num_stages: int | None = None,
        *,
        code_bits: Sequence[torch.Tensor] | None = None,
        rate_weight: float = 0.0,
    ) -> torch.Tensor:
        """latents (B, C, *S) or (B, *S, C) -> codes (B, *S, k), k = num_stages (default Q).

        With ``code_bits`` (one (K,) tensor per stage: what each code costs the entropy coder, in
        bits) and ``rate_weight`` > 0, stage i picks ``argmin |r - c|^2 + lambda_i * bits(c)``
        instead of the nearest code, with ``lambda_i = rate_weight * mean |r_i|^2 / log2(K)``: the
        squared error a bit is worth scales with the residual left at that stage, so one weight
        serves every stage and quality level. Euclidean codebooks only. No state changes.
        """
        k = self.num_quantizers if num_stages is None else int(num_stages)
        if not 1 <= k <= self.num_quantizers:
            raise ValueError(f"num_stages must be in [1, {self.num_quantizers}], got {num_stages}")
        bits = list(code_bits[:k]) if code_bits is not None and rate_weight > 0 else None
        if bits is not None:
            if len(bits) < k or any(b.shape != (self.codebook_size,) for b in bits):
                raise ValueError(f"code_bits needs one ({self.codebook_size},) tensor per stage (>= {k})")
            if any(
                self.stage(i).project_in is not None or self.stage(i)._config.use_cosine_sim for i in range(k)
            ):
                raise ValueError("rate-distortion code choice needs Euclidean codebooks without projection")
        vectors, lead = flatten_latents(latents, self.dim, self._config.channel_first)
        with torch.no_grad(), full_precision(vectors.device):
            residual = vectors
            codes = []
            for i in range(k):
                stage = self.stage(i)
                if bits is not None and residual.shape[0]:
                    lam = (
                        rate_weight
                        * float((residual * residual).sum(1).mean())
                        / math.log2(self.codebook_size)
                    )
                    stage_codes = penalised_codes(
                        residual,
                        stage.vectors_from_codes(torch.arange(self.codebook_size, device=residual.device)),
                        lam * bits[i],
                    )
                else:
                    stage_codes = stage.codes_from_vectors(residual)
                codes.append(stage_codes)
                if i + 1 < k:
                    residual = residual - stage.vectors_from_codes(stage_codes)
        return torch.stack(codes, dim=-1).reshape(*lead, k)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, *S, k) for the first k <= Q stages -> latents (B, C, *S) or (B, *S, C) float32."""
        if codes.ndim < 2:
            raise ValueError(f"ResidualVQ codes need a trailing stage axis, got shape {tuple(codes.shape)}")
        k = codes.shape[-1]
        if not 1 <= k <= self.num_quantizers:
            raise ValueError(f"codes have {k} stages, this ResidualVQ has {self.num_quantizers}")
        lead = tuple(codes.shape[:-1])
        flat = codes.reshape(-1, k)
        with full_precision(codes.device):
            quantized = torch.zeros(flat.shape[0], self.dim, dtype=torch.float32, device=codes.device)
            for i in range(k):
                quantized = quantized + self.stage(i).vectors_from_codes(flat[:, i])
        return unflatten_latents(quantized, lead, self._config.channel_first)
