"""Frozen model configurations, saved as JSON inside checkpoints and bundles.

A model is rebuilt from its config alone: ``ImageCodec(ImageCodecConfig.from_json(text))``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ImageCodecConfig:
    """Shape of an image codec: conv analysis/synthesis transforms around a residual VQ.

    ``encoder_channels[i]`` is the width after the i-th stride-2 downsampling (so the
    stride is ``2 ** len(encoder_channels)``); ``decoder_channels`` lists the synthesis
    widths from the latent resolution up (same length). ``encoder_blocks`` /
    ``decoder_blocks`` give the number of residual blocks at each of those resolutions.
    ``quality_stages[q - 1]`` is the number of RVQ stages quality level ``q`` uses.
    ``linear_path`` adds a per-block linear map beside each conv stack (see
    ``vqcodec.models.blocks.AnalysisTransform``).
    """

    encoder_channels: tuple[int, ...] = (64, 96, 128, 192)
    encoder_blocks: tuple[int, ...] = (0, 0, 1, 1)
    decoder_channels: tuple[int, ...] = (192, 128, 96, 64)
    decoder_blocks: tuple[int, ...] = (1, 1, 0, 0)
    latent_dim: int = 160
    codebook_size: int = 1024
    codebook_dim: int | None = None
    num_quantizers: int = 24
    quality_stages: tuple[int, ...] = (1, 2, 3, 5, 8, 12, 17, 24)
    decay: float = 0.99
    kmeans_init: bool = True
    threshold_ema_dead_code: float = 2.0
    commitment_weight: float = 0.25
    linear_path: bool = False
    kind: str = field(default="image", init=False)

    def __post_init__(self) -> None:
        n = len(self.encoder_channels)
        if n < 1 or len(self.decoder_channels) != n:
            raise ValueError("encoder_channels and decoder_channels need the same non-zero length")
        if len(self.encoder_blocks) != n or len(self.decoder_blocks) != n:
            raise ValueError("encoder_blocks/decoder_blocks need one entry per resolution")
        if not self.quality_stages or list(self.quality_stages) != sorted(set(self.quality_stages)):
            raise ValueError("quality_stages must be strictly increasing")
        if self.quality_stages[0] < 1 or self.quality_stages[-1] > self.num_quantizers:
            raise ValueError(f"quality_stages must lie in 1..num_quantizers={self.num_quantizers}")

    @property
    def stride(self) -> int:
        """Pixels per latent along each axis."""
        return 2 ** len(self.encoder_channels)

    @property
    def quality_levels(self) -> int:
        return len(self.quality_stages)

    def stages_for_quality(self, quality: int) -> int:
        """Number of RVQ stages for quality level ``quality`` in 1..quality_levels."""
        if (
            not isinstance(quality, int)
            or isinstance(quality, bool)
            or not 1 <= quality <= self.quality_levels
        ):
            raise ValueError(f"quality must be an integer in 1..{self.quality_levels}, got {quality!r}")
        return self.quality_stages[quality - 1]

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImageCodecConfig:
        data = dict(data)
        kind = data.pop("kind", "image")
        if kind != "image":
            raise ValueError(f"not an image codec config: kind={kind!r}")
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown ImageCodecConfig fields: {sorted(unknown)}")
        kwargs: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**kwargs)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ImageCodecConfig:
        return cls.from_dict(json.loads(text))


__all__ = ["ImageCodecConfig"]
