"""The codec layer: pictures and clips to and from ``.vqc`` (above container/, below cli/).

- ``image``: ``encode_image`` / ``decode_image`` for still images;
- ``media``: PIL / numpy / torch conversions, padding to the model stride, latent tiling;
- ``limits``: configurable safety limits on decoded pixels, frames and bytes;
- ``video`` / ``video_io``: the video codec and its streaming API.

Names are loaded lazily so that importing one piece does not import the others.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "encode_image": "vqcodec.codec.image",
    "encode_image_result": "vqcodec.codec.image",
    "decode_image": "vqcodec.codec.image",
    "decode_image_result": "vqcodec.codec.image",
    "VideoEncoder": "vqcodec.codec.video",
    "VideoDecoder": "vqcodec.codec.video",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'vqcodec.codec' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))


__all__ = list(_LAZY)
