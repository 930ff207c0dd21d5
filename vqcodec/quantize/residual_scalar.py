"""ResidualFSQ and ResidualLFQ: Q scalar quantizers applied in turn to the residual, finer at each stage.

As in vector-quantize-pytorch: the latents are projected once to the codebook space (when ``dim`` differs),
stage i quantizes ``residual / scale_i`` and contributes ``scale_i * q_i``.  ResidualFSQ uses
``scale_i = levels ** -i`` per channel; ResidualLFQ uses ``codebook_scale = 2 ** -i``.

Codes are (B, *S, Q) with the stage last (the RVQ layout of ``vqcodec.quantize.base``): ResidualFSQ's
code of a stage is its packed FSQ index (first channel least significant, as upstream) in
[0, prod(levels)); ResidualLFQ's is the stage's bits read as a binary number in [0, codebook_size).
``decode`` accepts the first k <= Q stages and treats -1 (a dropped stage) as "contributes nothing".
Quantize dropout works as in ResidualVQ (rank 0's draw broadcast under DDP).  These quantizers hold no
state, so there is nothing else to synchronise; LFQ's batch entropy term is all-reduced by LFQ itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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
from vqcodec.quantize.fsq import FSQ
from vqcodec.quantize.lfq import LFQ


@dataclass(frozen=True, kw_only=True)
class ResidualFSQConfig:
    levels: tuple[int, ...]
    num_quantizers: int
    dim: int | None = None
    channel_first: bool = True
    quantize_dropout: bool = False
    quantize_dropout_cutoff_index: int = 0
    preserve_symmetry: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "levels", tuple(int(v) for v in self.levels))
        if not self.levels or min(self.levels) < 2:
            raise ValueError(f"levels must be a non-empty sequence of ints >= 2, got {self.levels}")
        _check_stages(self.num_quantizers, self.quantize_dropout_cutoff_index, self.dim)


@dataclass(frozen=True, kw_only=True)
class ResidualLFQConfig:
    codebook_size: int
    num_quantizers: int
    dim: int | None = None
    channel_first: bool = True
    quantize_dropout: bool = False
    quantize_dropout_cutoff_index: int = 0
    entropy_loss_weight: float = 0.1
    commitment_loss_weight: float = 0.25
    diversity_gamma: float = 1.0

    def __post_init__(self) -> None:
        bits = int(math.log2(self.codebook_size)) if self.codebook_size > 0 else -1
        if bits < 1 or 2**bits != self.codebook_size:
            raise ValueError(f"codebook_size must be a power of 2 >= 2, got {self.codebook_size}")
        _check_stages(self.num_quantizers, self.quantize_dropout_cutoff_index, self.dim)


def _check_stages(num_quantizers: int, cutoff: int, dim: int | None) -> None:
    if num_quantizers < 1:
        raise ValueError(f"num_quantizers must be >= 1, got {num_quantizers}")
    if not 0 <= cutoff < num_quantizers:
        raise ValueError(f"quantize_dropout_cutoff_index must be in [0, {num_quantizers}), got {cutoff}")
    if dim is not None and dim < 1:
        raise ValueError(f"dim must be positive, got {dim}")


class _ResidualScalar(Quantizer[ResidualFSQConfig | ResidualLFQConfig]):
    """Shared residual loop; subclasses build ``layers`` and ``stage_scales`` (Q, codebook_dim)."""

    layers: TypedModuleList[Quantizer]
    stage_scales: torch.Tensor  # non-persistent buffer (Q, codebook_dim)
    codebook_dim: int
    num_quantizers: int
    stage_alphabet: int  # symbols per stage code

    def _init_projection(self, dim: int | None) -> None:
        self.dim = dim if dim is not None else self.codebook_dim
        self.project_in: nn.Linear | None = None
        self.project_out: nn.Linear | None = None
        if self.dim != self.codebook_dim:
            self.project_in = nn.Linear(self.dim, self.codebook_dim)
            self.project_out = nn.Linear(self.codebook_dim, self.dim)

    @property
    def alphabet(self) -> tuple[int, ...]:
        return (self.stage_alphabet,) * self.num_quantizers

    def _stage_codes(self, stage: Quantizer, codes: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def _stage_unpack(self, stage: Quantizer, codes: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def _project(self, x: torch.Tensor, layer: nn.Linear | None) -> torch.Tensor:
        return x if layer is None else stable_linear(x, layer.weight, layer.bias)

    def forward(self, latents: torch.Tensor, mask: torch.Tensor | None = None) -> QuantizerOutput:
        """latents (B, C, *S) or (B, *S, C), mask (B, *S) bool (LFQ losses only) -> QuantizerOutput(
        quantized like latents, codes (B, *S, Q), -1 for dropped stages)."""
        cfg = self._config
        vectors, lead = flatten_latents(latents, self.dim, cfg.channel_first)
        flat_mask = flatten_mask(mask, lead)
        active = self.num_quantizers
        if self.training and cfg.quantize_dropout:
            draw = torch.randint(cfg.quantize_dropout_cutoff_index + 1, self.num_quantizers + 1, ())
            active = broadcast_int(int(draw))
        with full_precision(vectors.device):
            residual = self._project(vectors, self.project_in)
            total = torch.zeros_like(residual)
            codes = torch.full((vectors.shape[0], self.num_quantizers), -1, dtype=torch.long)
            codes = codes.to(vectors.device)
            loss: dict[str, torch.Tensor] = {}
            metrics: dict[str, torch.Tensor] = {}
            for i in range(active):
                stage = self.layers[i]
                scale = self.stage_scales[i]
                stage_mask = None if flat_mask is None else flat_mask.reshape(1, -1)
                if isinstance(stage, LFQ):
                    out = stage((residual / scale)[None], mask=stage_mask)
                else:
                    out = stage((residual / scale)[None])
                part = out.quantized[0] * scale
                residual = residual - part.detach()
                total = total + part
                codes[:, i] = self._stage_codes(stage, out.codes[0])
                for name, value in out.loss.items():
                    loss[name] = loss[name] + value if name in loss else value
                for name, value in out.metrics.items():
                    metrics[f"stage{i}/{name}"] = value
            quantized = self._project(total, self.project_out)
        for name in ("usage", "perplexity"):
            if f"stage0/{name}" in metrics:
                metrics[name] = torch.stack([metrics[f"stage{i}/{name}"] for i in range(active)]).mean()
        metrics["active_stages"] = torch.tensor(float(active))
        return QuantizerOutput(
            unflatten_latents(quantized, lead, cfg.channel_first),
            codes.reshape(*lead, self.num_quantizers),
            loss,
            metrics,
        )

    def encode(self, latents: torch.Tensor, num_stages: int | None = None) -> torch.Tensor:
        """latents (B, C, *S) or (B, *S, C) -> codes (B, *S, k), k = num_stages (default Q).  No state."""
        k = self.num_quantizers if num_stages is None else int(num_stages)
        if not 1 <= k <= self.num_quantizers:
            raise ValueError(f"num_stages must be in [1, {self.num_quantizers}], got {num_stages}")
        vectors, lead = flatten_latents(latents, self.dim, self._config.channel_first)
        with torch.no_grad(), full_precision(vectors.device):
            residual = self._project(vectors, self.project_in)
            codes = []
            for i in range(k):
                stage, scale = self.layers[i], self.stage_scales[i]
                stage_codes = stage.encode((residual / scale)[None])
                codes.append(self._stage_codes(stage, stage_codes[0]))
                residual = residual - stage.decode(stage_codes)[0] * scale
        return torch.stack(codes, -1).reshape(*lead, k)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, *S, k), k <= Q (-1 = stage unused) -> latents (B, C, *S) or (B, *S, C) float32."""
        if codes.ndim < 2 or not 1 <= codes.shape[-1] <= self.num_quantizers:
            raise ValueError(
                f"codes need a trailing stage axis of 1..{self.num_quantizers}, got {codes.shape}"
            )
        if codes.dtype.is_floating_point or codes.dtype == torch.bool:
            raise TypeError(f"codes must be an integer tensor, got {codes.dtype}")
        lead = tuple(codes.shape[:-1])
        flat = codes.reshape(-1, codes.shape[-1]).long()
        if flat.numel() and int(flat.min()) < -1:
            raise ValueError("codes below -1 (only -1 marks an unused stage)")
        with full_precision(codes.device):
            total = torch.zeros(flat.shape[0], self.codebook_dim, device=codes.device)
            for i in range(flat.shape[1]):
                stage, scale = self.layers[i], self.stage_scales[i]
                unused = flat[:, i] == -1
                part = stage.decode(self._stage_unpack(stage, flat[:, i].clamp_min(0))[None])[0] * scale
                total = total + (part.masked_fill(unused[:, None], 0.0) if bool(unused.any()) else part)
            vectors = self._project(total, self.project_out)
        return unflatten_latents(vectors, lead, self._config.channel_first)


class ResidualFSQ(_ResidualScalar):
    """Residual FSQ (upstream's ResidualFSQ): ``levels``, ``num_quantizers`` (Q), ``dim`` (default
    len(levels); projected once when different), ``channel_first``, ``quantize_dropout``,
    ``quantize_dropout_cutoff_index``, ``preserve_symmetry`` (see FSQ).

    Shapes: latents (B, C, *S) or (B, *S, C); codes (B, *S, Q), each in [0, prod(levels)).  No losses.
    """

    config_class = ResidualFSQConfig

    def __init__(
        self,
        levels: tuple[int, ...] | list[int],
        num_quantizers: int,
        dim: int | None = None,
        *,
        channel_first: bool = True,
        quantize_dropout: bool = False,
        quantize_dropout_cutoff_index: int = 0,
        preserve_symmetry: bool = False,
    ) -> None:
        config = ResidualFSQConfig(
            levels=tuple(levels),
            num_quantizers=num_quantizers,
            dim=dim,
            channel_first=channel_first,
            quantize_dropout=quantize_dropout,
            quantize_dropout_cutoff_index=quantize_dropout_cutoff_index,
            preserve_symmetry=preserve_symmetry,
        )
        super().__init__(config)
        self.levels = config.levels
        self.num_quantizers = num_quantizers
        self.codebook_dim = len(self.levels)
        self.stage_alphabet = math.prod(self.levels)
        self._init_projection(dim)
        self.layers = TypedModuleList(
            [
                FSQ(self.levels, channel_first=False, preserve_symmetry=preserve_symmetry)
                for _ in range(num_quantizers)
            ]
        )
        levels_t = torch.tensor(self.levels, dtype=torch.float32)
        scales = torch.stack([levels_t ** (-float(i)) for i in range(num_quantizers)])
        self.register_buffer("stage_scales", scales, persistent=False)

    def _stage_codes(self, stage: Quantizer, codes: torch.Tensor) -> torch.Tensor:
        assert isinstance(stage, FSQ)
        return stage.codes_to_indices(codes)

    def _stage_unpack(self, stage: Quantizer, codes: torch.Tensor) -> torch.Tensor:
        assert isinstance(stage, FSQ)
        return stage.indices_to_codes(codes)


class ResidualLFQ(_ResidualScalar):
    """Residual LFQ (upstream's ResidualLFQ): ``codebook_size`` (2**b per stage), ``num_quantizers`` (Q),
    ``dim`` (default b; projected once when different), ``channel_first``, ``quantize_dropout``,
    ``quantize_dropout_cutoff_index``, and LFQ's loss weights (summed over stages).

    Shapes: latents (B, C, *S) or (B, *S, C); codes (B, *S, Q), each in [0, codebook_size).
    """

    config_class = ResidualLFQConfig

    def __init__(
        self,
        codebook_size: int,
        num_quantizers: int,
        dim: int | None = None,
        *,
        channel_first: bool = True,
        quantize_dropout: bool = False,
        quantize_dropout_cutoff_index: int = 0,
        entropy_loss_weight: float = 0.1,
        commitment_loss_weight: float = 0.25,
        diversity_gamma: float = 1.0,
    ) -> None:
        config = ResidualLFQConfig(
            codebook_size=codebook_size,
            num_quantizers=num_quantizers,
            dim=dim,
            channel_first=channel_first,
            quantize_dropout=quantize_dropout,
            quantize_dropout_cutoff_index=quantize_dropout_cutoff_index,
            entropy_loss_weight=entropy_loss_weight,
            commitment_loss_weight=commitment_loss_weight,
            diversity_gamma=diversity_gamma,
        )
        super().__init__(config)
        self.codebook_size = codebook_size
        self.num_quantizers = num_quantizers
        self.codebook_dim = int(math.log2(codebook_size))
        self.stage_alphabet = codebook_size
        self._init_projection(dim)
        # stage i quantizes residual / 2**-i to +-1 and contributes +-2**-i (upstream: codebook_scale)
        self.layers = TypedModuleList(
            [
                LFQ(
                    codebook_size=codebook_size,
                    channel_first=False,
                    entropy_loss_weight=entropy_loss_weight,
                    commitment_loss_weight=commitment_loss_weight,
                    diversity_gamma=diversity_gamma,
                )
                for _ in range(num_quantizers)
            ]
        )
        scales = torch.tensor([2.0 ** (-i) for i in range(num_quantizers)])[:, None].expand(
            -1, self.codebook_dim
        )
        self.register_buffer("stage_scales", scales.clone(), persistent=False)

    def _stage_codes(self, stage: Quantizer, codes: torch.Tensor) -> torch.Tensor:
        return codes[..., 0]

    def _stage_unpack(self, stage: Quantizer, codes: torch.Tensor) -> torch.Tensor:
        return codes[..., None]
