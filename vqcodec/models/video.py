"""The temporal part of the video codec: latent-residual coding on top of an image codec.

A video model is an image codec (``ImageCodec``: analysis -> residual VQ -> synthesis) plus:

- ``residual``: a ResidualVQ over latent residuals. A predicted (P) frame codes
  ``r = y_t - yhat_{t-1}`` (``y_t`` the analysis latents of frame t, ``yhat_{t-1}`` the latents
  the decoder reconstructed for the previous frame), with a per-position number of stages
  ``n`` in 0..R (0 = skip: copy the previous latents). The decoder forms
  ``yhat_t = yhat_{t-1} + sum_{j < n} residual_stage_j(code_j)`` (see :meth:`apply_residual`),
  so prediction always starts from what the decoder has: no drift.
- an intra mode per position (mode symbol R + 1): where the content changed too much to
  predict, the position is coded afresh with the image RVQ's first S stages (S of the quality
  level), ``yhat_t = sum_{s < S} image_stage_s(code_s)``, like a key frame locally.
- integer frequency tables (buffers, stored in the bundle as int tensors):
  ``count_freqs`` (NUM_COUNT_CONTEXTS, R + 2) for the per-position mode (0..R stage counts, R + 1
  intra), selected by a context of the previous frame's modes (:func:`count_contexts`),
  ``residual_freqs`` (R, K_r) for the residual codes of each stage and ``intra_freqs`` (Q, K) for
  the intra codes of each image stage. Rows sum to ``2 ** TABLE_PRECISION``.

Shapes: pixels (B, 3, H, W) in [0, 1]; latents (B, C, h, w); image codes (B, S, h, w);
residual codes (B, h, w, R) (ResidualVQ layout), counts (B, h, w) int64 in 0..R.

Its default tables are built here with plain integer arithmetic; the training recipe fits real
ones. The frame bitstream that uses them is ``vqcodec.models.video_latent.TemporalCoder``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from vqcodec.models.config import ImageCodecConfig
from vqcodec.models.image import ImageCodec
from vqcodec.quantize import ResidualVQ

TABLE_PRECISION = 16


@dataclass(frozen=True)
class VideoCodecConfig:
    """An image codec config plus the temporal residual quantizer's shape.

    ``residual_stages`` (R) and ``residual_codebook_size`` (K_r) shape the residual VQ;
    ``residual_init_stage`` is the image RVQ stage whose codebook initialises residual stage 0
    (stage j copies image stage ``residual_init_stage + j`` when the sizes agree), a good start
    because later image stages already quantize small residuals. ``gop`` is the default
    key-frame interval of encoders using this model.
    """

    image: ImageCodecConfig = field(default_factory=ImageCodecConfig)
    residual_stages: int = 6
    residual_codebook_size: int = 1024
    residual_init_stage: int = 1
    gop: int = 32
    kind: str = field(default="video", init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.image, ImageCodecConfig):
            raise ValueError("image must be an ImageCodecConfig")
        if not 1 <= self.residual_stages <= 32:
            raise ValueError(f"residual_stages must be in 1..32, got {self.residual_stages}")
        if not 2 <= self.residual_codebook_size <= 1 << TABLE_PRECISION:
            raise ValueError(f"residual_codebook_size must be in 2..{1 << TABLE_PRECISION}")
        if self.gop < 1:
            raise ValueError(f"gop must be >= 1, got {self.gop}")

    # the image-model interface CodecModel relies on
    @property
    def stride(self) -> int:
        return self.image.stride

    @property
    def quality_levels(self) -> int:
        return self.image.quality_levels

    @property
    def codebook_size(self) -> int:
        return self.image.codebook_size

    @property
    def num_quantizers(self) -> int:
        return self.image.num_quantizers

    @property
    def latent_dim(self) -> int:
        return self.image.latent_dim

    def stages_for_quality(self, quality: int) -> int:
        return self.image.stages_for_quality(quality)

    @property
    def num_count_contexts(self) -> int:
        return (self.residual_stages + 2) ** 2

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["image"] = self.image.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VideoCodecConfig:
        data = dict(data)
        kind = data.pop("kind", "video")
        if kind != "video":
            raise ValueError(f"not a video codec config: kind={kind!r}")
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown VideoCodecConfig fields: {sorted(unknown)}")
        image = data.pop("image", None)
        return cls(
            image=ImageCodecConfig.from_dict(image) if isinstance(image, dict) else ImageCodecConfig(), **data
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> VideoCodecConfig:
        return cls.from_dict(json.loads(text))


def _rows_from_weights(weights: list[list[int]]) -> torch.Tensor:
    """Integer rows summing to 2**TABLE_PRECISION, proportional to positive integer ``weights``."""
    total = 1 << TABLE_PRECISION
    rows = []
    for w in weights:
        s = sum(w)
        row = [max(1, (x * total) // s) for x in w]
        row[0] += total - sum(row)  # the first symbol absorbs the rounding
        rows.append(row)
    return torch.tensor(rows, dtype=torch.int32)


def default_count_freqs(stages: int) -> torch.Tensor:
    """(NUM_CONTEXTS, R + 2): before training, skip is likely, more stages rarer, intra rare."""
    weights = [[1 << (stages + 2 - n) if n else 1 << (stages + 3) for n in range(stages + 1)] + [2]]
    return _rows_from_weights(weights * (stages + 2) ** 2)


def default_residual_freqs(stages: int, size: int) -> torch.Tensor:
    """(R, K_r) uniform tables."""
    return _rows_from_weights([[1] * size] * stages)


def count_contexts(previous: torch.Tensor, stages: int) -> torch.Tensor:
    """Context index (B, h, w) of each position from the previous frame's counts (B, h, w).

    ``previous`` holds 0..R, or R + 1 where the previous frame coded the position intra (key
    frames: everywhere). Context =
    previous count here * (R + 2) + the largest previous count among the 3x3 neighbourhood.
    Integer operations only, so encoder and decoder agree exactly.
    """
    p = previous.to(torch.int64)
    padded = nn.functional.pad(p[:, None].float(), (1, 1, 1, 1), mode="replicate")
    neighbourhood = nn.functional.max_pool2d(padded, 3, stride=1)[:, 0].to(torch.int64)
    return p * (stages + 2) + neighbourhood


class VideoCodec(nn.Module):
    """Image codec + latent-residual quantizer + temporal tables; see the module docstring."""

    # frequency tables of the temporal entropy coder (buffers)
    count_freqs: torch.Tensor
    residual_freqs: torch.Tensor
    intra_freqs: torch.Tensor

    def __init__(self, config: VideoCodecConfig):
        super().__init__()
        self.config = config
        self.image = ImageCodec(config.image)
        self.residual = ResidualVQ(
            dim=config.image.latent_dim,
            num_quantizers=config.residual_stages,
            codebook_size=config.residual_codebook_size,
            # codebooks learned by gradient on the codebook loss (the recipe trains nothing else);
            # rarely used codes are re-seeded from residuals of the batch
            ema_update=False,
            commitment_weight=0.0,
            kmeans_init=False,
            dead_code_after_steps=20,
            channel_first=True,
        )
        self.register_buffer("count_freqs", default_count_freqs(config.residual_stages))
        self.register_buffer(
            "residual_freqs", default_residual_freqs(config.residual_stages, config.residual_codebook_size)
        )
        self.register_buffer(
            "intra_freqs", default_residual_freqs(config.image.num_quantizers, config.image.codebook_size)
        )

    # -- image interface -------------------------------------------------------------------
    @property
    def stride(self) -> int:
        return self.config.stride

    @property
    def quality_levels(self) -> int:
        return self.config.quality_levels

    def to_codes(self, pixels: torch.Tensor, quality: int) -> torch.Tensor:
        return self.image.to_codes(pixels, quality)

    def from_codes(self, codes: torch.Tensor) -> torch.Tensor:
        return self.image.from_codes(codes)

    # -- temporal part ---------------------------------------------------------------------
    @classmethod
    def from_image(cls, image: ImageCodec, **options: Any) -> VideoCodec:
        """A video model around a copy of ``image``'s weights, residual VQ initialised from it.

        Deterministic: the same image weights always give the same video model, so a file coded
        with an image model alone can be decoded from that model alone.
        """
        config = VideoCodecConfig(
            image=image.config,
            residual_codebook_size=options.pop("residual_codebook_size", image.config.codebook_size),
            **options,
        )
        video = cls(config)
        video.image.load_state_dict(image.state_dict())
        video.init_residual_from_image()
        return video.eval()

    @torch.no_grad()
    def init_residual_from_image(self) -> None:
        """Copy image RVQ stage codebooks into the residual stages where the sizes agree."""
        cfg = self.config
        q = self.image.quantizer
        for j in range(cfg.residual_stages):
            source = min(cfg.residual_init_stage + j, q.num_quantizers - 1)
            src, dst = q.stage(source), self.residual.stage(j)
            if src.codebook.shape == dst.codebook.shape:
                dst.codebook.copy_(src.codebook)
                if hasattr(dst, "embed_avg"):
                    dst.embed_avg.copy_(src.codebook)
                    dst.cluster_size.fill_(1.0)
                dst.initted.fill_(True)

    def stage_vectors(self, codes: torch.Tensor) -> torch.Tensor:
        """Residual codes (B, h, w, R') -> per-stage vectors (R', B, C, h, w) float32."""
        b, h, w, k = codes.shape
        out = []
        for j in range(k):
            v = self.residual.stage(j).vectors_from_codes(codes[..., j].reshape(-1))
            out.append(v.reshape(b, h, w, -1).permute(0, 3, 1, 2))
        return torch.stack(out) if out else torch.zeros(0, b, self.config.latent_dim, h, w)

    def apply_residual(
        self,
        previous: torch.Tensor,
        codes: torch.Tensor,
        counts: torch.Tensor,
        intra_codes: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``yhat_t`` from ``yhat_{t-1}`` (B, C, h, w), residual codes (B, h, w, R), modes (B, h, w)
        and image codes (B, h, w, S) for the intra positions (mode R + 1; other rows ignored).

        Stage j adds its vector where ``j < mode <= R``; the additions run in stage order in fp32
        and intra positions take the image RVQ reconstruction, so encoder and decoder compute the
        same latents.
        """
        big_r = self.config.residual_stages
        out = previous.float().clone()
        vectors = self.stage_vectors(codes)
        predicted = counts <= big_r
        for j in range(vectors.shape[0]):
            mask = ((counts > j) & predicted)[:, None].to(out.dtype)
            out = out + vectors[j] * mask
        intra = ~predicted
        if intra_codes is not None and bool(intra.any()):
            fresh = self.image.quantizer.decode(intra_codes)
            out = torch.where(intra[:, None], fresh, out)
        return out


__all__ = [
    "TABLE_PRECISION",
    "VideoCodec",
    "VideoCodecConfig",
    "count_contexts",
    "default_count_freqs",
    "default_residual_freqs",
]
