"""The seam between ``models/`` and ``codec/``: what the image codec asks of a model.

``CodecModel`` (``models/bundle.py``) is the implementation the package ships; anything with
these members codes pictures the same way (a test double, a model of another kind). The codec
layer is typed against this Protocol, never against a network's internals: the model turns
pixels into codes and back, and owns its bitstream (``compress``/``decompress``, as in
CompressAI); the codec does media conversion, tiling and the container.

Shapes: pixels (B, 3, H, W) float in [0, 1], H and W multiples of ``stride``; codes
(B, S, H / stride, W / stride) int64 as tensors, (S, h, w) int32 as arrays; S is the number of
code streams of a quality level (``stages_for_quality``).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch
from torch import nn


class ModelIdentity(Protocol):
    """What a file's header records of the model that coded it (and a decoder checks)."""

    @property
    def name(self) -> str: ...

    @property
    def sha256(self) -> bytes: ...


class PixelCodesModel(ModelIdentity, Protocol):
    """What tiling needs: identity, the stride grid, and pixels <-> codes for one tile."""

    #: the torch module whose parameters say the device, and whose ``analyse``/``synthesise``
    #: (when present) give the receptive field that tiling overlaps by
    network: nn.Module
    config: Any

    @property
    def stride(self) -> int: ...

    def to_codes(self, pixels: torch.Tensor, quality: int) -> torch.Tensor:
        """Pixels (B, 3, H, W) -> codes (B, S, H / stride, W / stride) of level ``quality``."""
        ...

    def from_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, S, h, w) -> pixels (B, 3, h * stride, w * stride) in [0, 1]."""
        ...


class ImageCodecModel(PixelCodesModel, Protocol):
    """What the image codec needs: levels, the payload, and a view bound to one level."""

    media: str

    @property
    def quality_levels(self) -> int: ...

    def stages_for_quality(self, quality: int) -> int:
        """S, the code streams of level ``quality``."""
        ...

    def compress(self, codes: np.ndarray, quality: int) -> bytes:
        """Codes (S, h, w) of level ``quality`` -> the FRAM payload (entropy-coded)."""
        ...

    def decompress(self, payload: bytes, shape: tuple[int, int, int], quality: int) -> np.ndarray:
        """The payload -> codes (S, h, w) int32; FormatError / TruncatedError when damaged."""
        ...

    def at_quality(self, quality: int) -> PixelCodesModel:
        """A model whose ``from_codes`` decodes codes of level ``quality`` (scalar models need it)."""
        ...


__all__ = ["ImageCodecModel", "ModelIdentity", "PixelCodesModel"]
