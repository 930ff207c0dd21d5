"""Grouped residual quantizers: the channels split into G equal groups, each with its own residual quantizer.

GroupedResidualVQ / GroupedResidualFSQ / GroupedResidualLFQ follow vector-quantize-pytorch's modules of the
same names.  Group g quantizes channels [g * C/G, (g + 1) * C/G) with its own ResidualVQ / ResidualFSQ /
ResidualLFQ (``groups[g]``; each keeps its own DDP-synchronised state).  Codes are (B, *S, G * Q),
group-major (``codes.unflatten(-1, (G, Q))[..., g, q]`` is group g's stage q; upstream stacks the groups
first, (G, B, *S, Q)), so every stream stays on the trailing axis like the other quantizers.  Loss terms
are summed over groups; metrics are per group ("group{g}/...") plus their means.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from vqcodec.quantize.base import (
    Quantizer,
    QuantizerOutput,
    TypedModuleList,
    flatten_latents,
    flatten_mask,
    unflatten_latents,
)
from vqcodec.quantize.residual import ResidualVQ, ResidualVQConfig
from vqcodec.quantize.residual_scalar import ResidualFSQ, ResidualFSQConfig, ResidualLFQ, ResidualLFQConfig


def _check_groups(groups: int, dim: int | None) -> None:
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups}")
    if dim is not None and dim % groups:
        raise ValueError(f"dim={dim} must be divisible by groups={groups}")


@dataclass(frozen=True, kw_only=True)
class GroupedResidualVQConfig(ResidualVQConfig):
    groups: int = 1

    def __post_init__(self) -> None:
        _check_groups(self.groups, self.dim)
        super().__post_init__()


@dataclass(frozen=True, kw_only=True)
class GroupedResidualFSQConfig(ResidualFSQConfig):
    groups: int = 1

    def __post_init__(self) -> None:
        _check_groups(self.groups, self.dim)
        super().__post_init__()


@dataclass(frozen=True, kw_only=True)
class GroupedResidualLFQConfig(ResidualLFQConfig):
    groups: int = 1

    def __post_init__(self) -> None:
        _check_groups(self.groups, self.dim)
        super().__post_init__()


class _Grouped(Quantizer[GroupedResidualVQConfig | GroupedResidualFSQConfig | GroupedResidualLFQConfig]):
    """Shared split / merge; subclasses fill ``self.groups`` (one residual quantizer per group)."""

    group_quantizers: TypedModuleList[ResidualVQ | ResidualFSQ | ResidualLFQ]

    def _build(
        self,
        config: Any,
        inner: type[ResidualVQ] | type[ResidualFSQ] | type[ResidualLFQ],
        inner_config: type[ResidualVQConfig] | type[ResidualFSQConfig] | type[ResidualLFQConfig],
        group_dim: int | None,
    ) -> None:
        names = {f.name for f in dataclasses.fields(inner_config)}
        values = {name: getattr(config, name) for name in names}
        values["dim"] = group_dim
        values["channel_first"] = False
        quantizers = []
        for g in range(config.groups):
            if "seed" in values:
                values["seed"] = config.seed + 1000 * g
            quantizers.append(inner.from_config(inner_config(**values)))
        self.group_quantizers = TypedModuleList(quantizers)
        self.num_groups = config.groups
        self.group_dim = quantizers[0].dim
        self.dim = self.group_dim * config.groups
        self.num_quantizers = config.num_quantizers

    @property
    def alphabet(self) -> tuple[int, ...]:
        """Each group's stage alphabets, group-major: (G * Q,) entries."""
        return tuple(a for q in self.group_quantizers for a in q.alphabet)

    def forward(
        self, latents: torch.Tensor, mask: torch.Tensor | None = None, **kwargs: Any
    ) -> QuantizerOutput:
        """latents (B, C, *S) or (B, *S, C), mask (B, *S) bool -> QuantizerOutput(quantized like latents,
        codes (B, *S, G * Q)).  Keywords (``freeze_codebook``) go to every group's quantizer."""
        vectors, lead = flatten_latents(latents, self.dim, self._config.channel_first)
        flat_mask = flatten_mask(mask, lead)
        parts, codes = [], []
        loss: dict[str, torch.Tensor] = {}
        metrics: dict[str, torch.Tensor] = {}
        for g, quantizer in enumerate(self.group_quantizers):
            chunk = vectors[:, g * self.group_dim : (g + 1) * self.group_dim]
            out = quantizer(chunk[None], mask=None if flat_mask is None else flat_mask[None], **kwargs)
            parts.append(out.quantized[0])
            codes.append(out.codes[0])
            for name, value in out.loss.items():
                loss[name] = loss[name] + value if name in loss else value
            for name, value in out.metrics.items():
                metrics[f"group{g}/{name}"] = value
        for name in ("usage", "perplexity"):
            keys = [f"group{g}/{name}" for g in range(self.num_groups)]
            if all(k in metrics for k in keys):
                metrics[name] = torch.stack([metrics[k] for k in keys]).mean()
        quantized = torch.cat(parts, dim=1)
        return QuantizerOutput(
            unflatten_latents(quantized, lead, self._config.channel_first),
            torch.cat(codes, dim=1).reshape(*lead, -1),
            loss,
            metrics,
        )

    def encode(self, latents: torch.Tensor, num_stages: int | None = None) -> torch.Tensor:
        """latents -> codes (B, *S, G * k), k = num_stages (default Q), group-major.  No state changes."""
        vectors, lead = flatten_latents(latents, self.dim, self._config.channel_first)
        codes = [
            q.encode(vectors[None, :, g * self.group_dim : (g + 1) * self.group_dim], num_stages=num_stages)[
                0
            ]
            for g, q in enumerate(self.group_quantizers)
        ]
        return torch.cat(codes, dim=1).reshape(*lead, -1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, *S, G * k) group-major, k <= Q -> latents (B, C, *S) or (B, *S, C) float32."""
        if codes.ndim < 2 or codes.shape[-1] % self.num_groups:
            raise ValueError(f"codes need a trailing axis of groups x stages, got shape {tuple(codes.shape)}")
        lead = tuple(codes.shape[:-1])
        per_group = codes.reshape(-1, self.num_groups, codes.shape[-1] // self.num_groups)
        parts = [q.decode(per_group[None, :, g])[0] for g, q in enumerate(self.group_quantizers)]
        return unflatten_latents(torch.cat(parts, dim=1), lead, self._config.channel_first)

    def group(self, index: int) -> Quantizer:
        """Group ``index``'s residual quantizer."""
        quantizer = self.group_quantizers[index]
        assert isinstance(quantizer, Quantizer)
        return quantizer


class GroupedResidualVQ(_Grouped):
    """``groups`` ResidualVQs over dim / groups channels each; every other keyword is a ResidualVQ option.

    Shapes: latents (B, C, *S) or (B, *S, C); codes (B, *S, groups * num_quantizers).
    """

    config_class = GroupedResidualVQConfig

    def __init__(self, dim: int, num_quantizers: int, codebook_size: int, *, groups: int = 1, **options: Any):
        config = GroupedResidualVQConfig(
            dim=dim, num_quantizers=num_quantizers, codebook_size=codebook_size, groups=groups, **options
        )
        super().__init__(config)
        self._build(config, ResidualVQ, ResidualVQConfig, dim // groups)


class GroupedResidualFSQ(_Grouped):
    """``groups`` ResidualFSQs; ``dim`` defaults to groups * len(levels).  Codes (B, *S, groups * Q)."""

    config_class = GroupedResidualFSQConfig

    def __init__(
        self,
        levels: tuple[int, ...] | list[int],
        num_quantizers: int,
        dim: int | None = None,
        *,
        groups: int = 1,
        **options: Any,
    ):
        config = GroupedResidualFSQConfig(
            levels=tuple(levels), num_quantizers=num_quantizers, dim=dim, groups=groups, **options
        )
        super().__init__(config)
        self._build(config, ResidualFSQ, ResidualFSQConfig, None if dim is None else dim // groups)


class GroupedResidualLFQ(_Grouped):
    """``groups`` ResidualLFQs; ``dim`` defaults to groups * log2(codebook_size).  Codes (B, *S, groups*Q)."""

    config_class = GroupedResidualLFQConfig

    def __init__(
        self,
        codebook_size: int,
        num_quantizers: int,
        dim: int | None = None,
        *,
        groups: int = 1,
        **options: Any,
    ):
        config = GroupedResidualLFQConfig(
            codebook_size=codebook_size, num_quantizers=num_quantizers, dim=dim, groups=groups, **options
        )
        super().__init__(config)
        self._build(config, ResidualLFQ, ResidualLFQConfig, None if dim is None else dim // groups)
