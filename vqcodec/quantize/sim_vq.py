"""SimVQ (Zhu et al. 2024) and ResidualSimVQ, and the BEST-RQ RandomProjectionQuantizer.

SimVQ: a frozen Gaussian codebook F (K, f) and a learned linear map W: the implicit codebook is W(F),
(K, dim), and the nearest codeword is searched in float32 with the package's batch-independent search.
Because every code moves with W, codes do not collapse.  Losses (as upstream): "codebook" = mse(sg(z), q)
(trains W) and "commitment" = input_to_quantize_commit_loss_weight * mse(z, sg(q)), both times
``commitment_weight``; gradients pass with the rotation trick (default, as upstream) or straight through.
The state is W (a Parameter, kept in sync by DDP like any weight) and the frozen buffer F: nothing to
synchronise by hand.  ``decode(encode(x)) == forward(x).quantized`` in eval mode.

ResidualSimVQ: Q SimVQs on successive residuals; codes (B, *S, Q), -1 = stage unused (see ResidualVQ).

RandomProjectionQuantizer (Chiu et al. 2022, BEST-RQ): a frozen random projection (dim -> codebook_dim)
and frozen random unit codebooks; the code is the nearest codeword by cosine similarity.  It makes
targets for self-supervised training, so nothing is learned and there is no loss.  ``decode`` returns the
codewords in the projected space, (B, *S, G, codebook_dim) or channel-first (B, G * codebook_dim, *S):
the projection is not invertible.
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
from vqcodec.quantize.distributed import broadcast_int
from vqcodec.quantize.kmeans import nearest_codes
from vqcodec.quantize.vq import exact_straight_through, rotation_trick


@dataclass(frozen=True, kw_only=True)
class SimVQConfig:
    dim: int
    codebook_size: int
    frozen_codebook_dim: int | None = None
    rotation_trick: bool = True
    input_to_quantize_commit_loss_weight: float = 0.25
    commitment_weight: float = 1.0
    channel_first: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.dim < 1 or self.codebook_size < 1:
            raise ValueError(f"dim and codebook_size must be positive, got {self.dim}, {self.codebook_size}")
        if self.frozen_codebook_dim is not None and self.frozen_codebook_dim < 1:
            raise ValueError(f"frozen_codebook_dim must be positive, got {self.frozen_codebook_dim}")


class SimVQ(Quantizer[SimVQConfig]):
    """SimVQ.  Args: ``dim``, ``codebook_size`` (K), ``frozen_codebook_dim`` (f, default dim),
    ``rotation_trick``, ``input_to_quantize_commit_loss_weight``, ``commitment_weight``, ``channel_first``,
    ``seed`` (of the frozen codebook).  Shapes: latents (B, C, *S) or (B, *S, C); codes (B, *S)."""

    config_class = SimVQConfig

    frozen_codebook: torch.Tensor  # (K, f) buffer, random and never trained

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        *,
        frozen_codebook_dim: int | None = None,
        rotation_trick: bool = True,
        input_to_quantize_commit_loss_weight: float = 0.25,
        commitment_weight: float = 1.0,
        channel_first: bool = True,
        seed: int = 0,
    ) -> None:
        config = SimVQConfig(
            dim=dim,
            codebook_size=codebook_size,
            frozen_codebook_dim=frozen_codebook_dim,
            rotation_trick=rotation_trick,
            input_to_quantize_commit_loss_weight=input_to_quantize_commit_loss_weight,
            commitment_weight=commitment_weight,
            channel_first=channel_first,
            seed=seed,
        )
        super().__init__(config)
        self.dim = dim
        self.codebook_size = codebook_size
        f = frozen_codebook_dim or dim
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("frozen_codebook", torch.randn(codebook_size, f, generator=generator) * f**-0.5)
        self.code_transform = nn.Linear(f, dim, bias=False)

    @property
    def alphabet(self) -> tuple[int, ...]:
        return (self.codebook_size,)

    @property
    def codebook(self) -> torch.Tensor:
        """The implicit codebook W(F): (K, dim) float32, with gradient to W."""
        return stable_linear(self.frozen_codebook.float(), self.code_transform.weight, None)

    def quantize_vectors(
        self, vectors: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """vectors (M, dim) -> (quantized (M, dim), codes (M,), loss, metrics)."""
        cfg = self._config
        with full_precision(vectors.device):
            z = vectors.float()
            table = self.codebook
            codes = nearest_codes(z.detach(), table.detach())
            q = table[codes]
            loss: dict[str, torch.Tensor] = {}
            if cfg.commitment_weight > 0 and z.shape[0]:
                loss["codebook"] = cfg.commitment_weight * F.mse_loss(q, z.detach())
                commit = cfg.commitment_weight * cfg.input_to_quantize_commit_loss_weight
                if commit > 0:
                    loss["commitment"] = commit * F.mse_loss(z, q.detach())
            surrogate = rotation_trick(z, q.detach()) if cfg.rotation_trick else z
            quantized = exact_straight_through(q.detach(), surrogate)
            with torch.no_grad():
                counts = torch.bincount(codes, minlength=self.codebook_size)
                metrics = codebook_health(counts, torch.zeros(1, dtype=torch.bool))
        return quantized, codes, loss, metrics

    def forward(self, latents: torch.Tensor) -> QuantizerOutput:
        """latents (B, C, *S) or (B, *S, C) -> QuantizerOutput(quantized like latents, codes (B, *S))."""
        vectors, lead = flatten_latents(latents, self.dim, self._config.channel_first)
        quantized, codes, loss, metrics = self.quantize_vectors(vectors)
        return QuantizerOutput(
            unflatten_latents(quantized, lead, self._config.channel_first), codes.reshape(lead), loss, metrics
        )

    def codes_from_vectors(self, vectors: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), full_precision(vectors.device):
            return nearest_codes(vectors.float(), self.codebook.detach())

    def vectors_from_codes(self, codes: torch.Tensor) -> torch.Tensor:
        if codes.dtype.is_floating_point or codes.dtype == torch.bool:
            raise TypeError(f"codes must be an integer tensor, got {codes.dtype}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise ValueError(f"codes out of range [0, {self.codebook_size})")
        with full_precision(codes.device):
            return self.codebook[codes.long()]

    def encode(self, latents: torch.Tensor) -> torch.Tensor:
        """latents -> codes (B, *S) int64.  No state changes."""
        vectors, lead = flatten_latents(latents, self.dim, self._config.channel_first)
        return self.codes_from_vectors(vectors).reshape(lead)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, *S) -> latents (B, C, *S) or (B, *S, C) float32."""
        vectors = self.vectors_from_codes(codes.reshape(-1))
        return unflatten_latents(vectors, tuple(codes.shape), self._config.channel_first)


@dataclass(frozen=True, kw_only=True)
class ResidualSimVQConfig(SimVQConfig):
    num_quantizers: int
    quantize_dropout: bool = False
    quantize_dropout_cutoff_index: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_quantizers < 1:
            raise ValueError(f"num_quantizers must be >= 1, got {self.num_quantizers}")
        if not 0 <= self.quantize_dropout_cutoff_index < self.num_quantizers:
            raise ValueError(f"quantize_dropout_cutoff_index must be in [0, {self.num_quantizers})")


class ResidualSimVQ(Quantizer[ResidualSimVQConfig]):
    """Q SimVQ stages on successive residuals (upstream's ResidualSimVQ).  Args: ``dim``,
    ``num_quantizers``, ``codebook_size``, ``quantize_dropout``, ``quantize_dropout_cutoff_index`` and
    the SimVQ options (stage i's frozen codebook uses seed + i).  Codes (B, *S, Q)."""

    config_class = ResidualSimVQConfig

    def __init__(
        self,
        dim: int,
        num_quantizers: int,
        codebook_size: int,
        *,
        quantize_dropout: bool = False,
        quantize_dropout_cutoff_index: int = 0,
        frozen_codebook_dim: int | None = None,
        rotation_trick: bool = True,
        input_to_quantize_commit_loss_weight: float = 0.25,
        commitment_weight: float = 1.0,
        channel_first: bool = True,
        seed: int = 0,
    ) -> None:
        config = ResidualSimVQConfig(
            dim=dim,
            num_quantizers=num_quantizers,
            codebook_size=codebook_size,
            quantize_dropout=quantize_dropout,
            quantize_dropout_cutoff_index=quantize_dropout_cutoff_index,
            frozen_codebook_dim=frozen_codebook_dim,
            rotation_trick=rotation_trick,
            input_to_quantize_commit_loss_weight=input_to_quantize_commit_loss_weight,
            commitment_weight=commitment_weight,
            channel_first=channel_first,
            seed=seed,
        )
        super().__init__(config)
        self.dim = dim
        self.num_quantizers = num_quantizers
        self.codebook_size = codebook_size
        self.layers = nn.ModuleList(
            [
                SimVQ(
                    dim,
                    codebook_size,
                    frozen_codebook_dim=frozen_codebook_dim,
                    rotation_trick=rotation_trick,
                    input_to_quantize_commit_loss_weight=input_to_quantize_commit_loss_weight,
                    commitment_weight=commitment_weight,
                    channel_first=False,
                    seed=seed + i,
                )
                for i in range(num_quantizers)
            ]
        )

    @property
    def alphabet(self) -> tuple[int, ...]:
        return (self.codebook_size,) * self.num_quantizers

    def stage(self, index: int) -> SimVQ:
        layer = self.layers[index]
        assert isinstance(layer, SimVQ)
        return layer

    def forward(self, latents: torch.Tensor) -> QuantizerOutput:
        """latents -> QuantizerOutput(quantized like latents, codes (B, *S, Q), -1 for dropped stages)."""
        cfg = self._config
        vectors, lead = flatten_latents(latents, self.dim, cfg.channel_first)
        active = self.num_quantizers
        if self.training and cfg.quantize_dropout:
            active = broadcast_int(int(torch.randint(cfg.quantize_dropout_cutoff_index + 1, active + 1, ())))
        with full_precision(vectors.device):
            residual = vectors.float()
            quantized = torch.zeros_like(residual)
            codes = torch.full(
                (vectors.shape[0], self.num_quantizers), -1, dtype=torch.long, device=vectors.device
            )
            loss: dict[str, torch.Tensor] = {}
            metrics: dict[str, torch.Tensor] = {}
            for i in range(active):
                part, stage_codes, stage_loss, stage_metrics = self.stage(i).quantize_vectors(residual)
                residual = residual - part.detach()
                quantized = quantized + part
                codes[:, i] = stage_codes
                for name, value in stage_loss.items():
                    loss[name] = loss[name] + value if name in loss else value
                for name, value in stage_metrics.items():
                    metrics[f"stage{i}/{name}"] = value
        for name in ("usage", "perplexity"):
            metrics[name] = torch.stack([metrics[f"stage{i}/{name}"] for i in range(active)]).mean()
        metrics["active_stages"] = torch.tensor(float(active))
        return QuantizerOutput(
            unflatten_latents(quantized, lead, cfg.channel_first),
            codes.reshape(*lead, self.num_quantizers),
            loss,
            metrics,
        )

    def encode(self, latents: torch.Tensor, num_stages: int | None = None) -> torch.Tensor:
        """latents -> codes (B, *S, k), k = num_stages (default Q).  No state changes."""
        k = self.num_quantizers if num_stages is None else int(num_stages)
        if not 1 <= k <= self.num_quantizers:
            raise ValueError(f"num_stages must be in [1, {self.num_quantizers}], got {num_stages}")
        vectors, lead = flatten_latents(latents, self.dim, self._config.channel_first)
        with torch.no_grad(), full_precision(vectors.device):
            residual = vectors.float()
            codes = []
            for i in range(k):
                stage_codes = self.stage(i).codes_from_vectors(residual)
                codes.append(stage_codes)
                residual = residual - self.stage(i).vectors_from_codes(stage_codes)
        return torch.stack(codes, -1).reshape(*lead, k)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, *S, k), k <= Q, -1 = stage unused -> latents (B, C, *S) or (B, *S, C) float32."""
        if codes.ndim < 2 or not 1 <= codes.shape[-1] <= self.num_quantizers:
            raise ValueError(
                f"codes need a trailing stage axis of 1..{self.num_quantizers}, got {codes.shape}"
            )
        flat = codes.reshape(-1, codes.shape[-1])
        if flat.numel() and int(flat.min()) < -1:
            raise ValueError("codes below -1 (only -1 marks an unused stage)")
        with full_precision(codes.device):
            quantized = torch.zeros(flat.shape[0], self.dim, device=codes.device)
            for i in range(flat.shape[1]):
                unused = flat[:, i] == -1
                part = self.stage(i).vectors_from_codes(flat[:, i].clamp_min(0))
                quantized = quantized + (
                    part.masked_fill(unused[:, None], 0.0) if bool(unused.any()) else part
                )
        return unflatten_latents(quantized, tuple(codes.shape[:-1]), self._config.channel_first)


@dataclass(frozen=True, kw_only=True)
class RandomProjectionQuantizerConfig:
    dim: int
    codebook_size: int
    codebook_dim: int
    num_codebooks: int = 1
    norm: bool = True
    channel_first: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.dim, self.codebook_size, self.codebook_dim, self.num_codebooks) < 1:
            raise ValueError("dim, codebook_size, codebook_dim and num_codebooks must be positive")


class RandomProjectionQuantizer(Quantizer[RandomProjectionQuantizerConfig]):
    """BEST-RQ target quantizer.  Args: ``dim``, ``codebook_size``, ``codebook_dim``, ``num_codebooks``
    (G independent projections and codebooks), ``norm`` (LayerNorm without affine on the input first, as
    upstream), ``channel_first``, ``seed`` (of the frozen projection and codebooks).

    Shapes: latents (B, C, *S) or (B, *S, C); codes (B, *S, G) (upstream returns (B, N) for G = 1)."""

    config_class = RandomProjectionQuantizerConfig

    rand_projs: torch.Tensor  # (G, dim, codebook_dim) frozen projections (buffer)
    codebooks: torch.Tensor  # (G, K, codebook_dim) frozen unit codewords (buffer)

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        codebook_dim: int,
        *,
        num_codebooks: int = 1,
        norm: bool = True,
        channel_first: bool = True,
        seed: int = 0,
    ) -> None:
        config = RandomProjectionQuantizerConfig(
            dim=dim,
            codebook_size=codebook_size,
            codebook_dim=codebook_dim,
            num_codebooks=num_codebooks,
            norm=norm,
            channel_first=channel_first,
            seed=seed,
        )
        super().__init__(config)
        self.dim = dim
        self.codebook_size = codebook_size
        self.codebook_dim = codebook_dim
        self.num_codebooks = num_codebooks
        generator = torch.Generator().manual_seed(seed)
        projection = torch.empty(num_codebooks, dim, codebook_dim)
        for g in range(num_codebooks):
            projection[g] = (
                torch.randn(dim, codebook_dim, generator=generator) * (2.0 / (dim + codebook_dim)) ** 0.5
            )
        codebooks = F.normalize(
            torch.randn(num_codebooks, codebook_size, codebook_dim, generator=generator), dim=-1
        )
        self.register_buffer("rand_projs", projection)
        self.register_buffer("codebooks", codebooks)

    @property
    def alphabet(self) -> tuple[int, ...]:
        return (self.codebook_size,) * self.num_codebooks

    def _project(self, vectors: torch.Tensor) -> torch.Tensor:
        """(M, dim) -> unit vectors (M, G, codebook_dim)."""
        z = vectors.float()
        if self._config.norm:
            z = F.layer_norm(z, (self.dim,))
        projected = torch.stack(
            [stable_linear(z, self.rand_projs[g].t(), None) for g in range(self.num_codebooks)], 1
        )
        return F.normalize(projected, dim=-1)

    def encode(self, latents: torch.Tensor) -> torch.Tensor:
        """latents -> codes (B, *S, G) int64: nearest unit codeword of each projection."""
        vectors, lead = flatten_latents(latents, self.dim, self._config.channel_first)
        with torch.no_grad(), full_precision(vectors.device):
            z = self._project(vectors)
            # on the unit sphere the Euclidean nearest is the cosine nearest, with exact tie handling
            codes = [nearest_codes(z[:, g], self.codebooks[g]) for g in range(self.num_codebooks)]
        return torch.stack(codes, -1).reshape(*lead, self.num_codebooks)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, *S, G) -> codewords (B, *S, G, codebook_dim), or (B, G * codebook_dim, *S) if
        channel_first (the projection is not invertible, so these are not input latents)."""
        if codes.ndim < 2 or codes.shape[-1] != self.num_codebooks:
            raise ValueError(f"codes need a trailing axis of {self.num_codebooks}, got {tuple(codes.shape)}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise ValueError(f"codes out of range [0, {self.codebook_size})")
        flat = codes.reshape(-1, self.num_codebooks).long()
        words = torch.stack([self.codebooks[g][flat[:, g]] for g in range(self.num_codebooks)], 1)
        lead = tuple(codes.shape[:-1])
        if self._config.channel_first:
            return unflatten_latents(words.reshape(flat.shape[0], -1), lead, True)
        return words.reshape(*lead, self.num_codebooks, self.codebook_dim)

    def forward(self, latents: torch.Tensor) -> QuantizerOutput:
        """latents -> QuantizerOutput(quantized = decode(codes), codes (B, *S, G)); no loss."""
        codes = self.encode(latents)
        flat = codes.reshape(-1, self.num_codebooks)
        per_group = [
            codebook_health(
                torch.bincount(flat[:, g], minlength=self.codebook_size), torch.zeros(1, dtype=torch.bool)
            )
            for g in range(self.num_codebooks)
        ]
        metrics = {name: torch.stack([h[name] for h in per_group]).mean() for name in ("usage", "perplexity")}
        return QuantizerOutput(self.decode(codes), codes, {}, metrics)
