"""The codec layer: pictures and clips to and from ``.vqc`` (above container/, below cli/).

- ``image``: ``encode_image`` / ``decode_image`` for still images;
- ``media``: PIL / numpy / torch conversions, padding to the model stride, latent tiling;
- ``limits``: configurable safety limits on decoded pixels, frames and bytes;
- ``video`` / ``video_io``: the video codec and its streaming API.

Names are loaded lazily so that importing one piece does not import the others.
"""

from __future__ import annotations

from vqcodec._lazy import lazy_exports

_LAZY = {
    "encode_image": "vqcodec.codec.image",
    "encode_image_result": "vqcodec.codec.image",
    "decode_image": "vqcodec.codec.image",
    "decode_image_result": "vqcodec.codec.image",
    "VideoEncoder": "vqcodec.codec.video",
    "VideoDecoder": "vqcodec.codec.video",
}


__getattr__, __dir__ = lazy_exports("vqcodec.codec", _LAZY, globals())


__all__ = list(_LAZY)
