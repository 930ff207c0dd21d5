"""vqcodec: learned vector-quantized image and video codecs in one .vqc container.

The public names below are loaded lazily, so ``import vqcodec.container`` (or
``vqcodec info``) works without importing torch.
"""

from __future__ import annotations

from vqcodec._lazy import lazy_exports
from vqcodec.errors import (
    ChecksumError,
    FormatError,
    LimitError,
    ModelMismatchError,
    TruncatedError,
    UnknownModelError,
    UnsupportedVersionError,
    VQCError,
)

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "ContainerReader": "vqcodec.container",
    "ContainerWriter": "vqcodec.container",
    "encode_image": "vqcodec.codec.image",
    "decode_image": "vqcodec.codec.image",
    "VideoEncoder": "vqcodec.codec.video",
    "VideoDecoder": "vqcodec.codec.video",
    "load_model": "vqcodec.models.zoo",
    "list_models": "vqcodec.models.zoo",
}


def _register_pillow_plugin() -> None:
    """Let ``PIL.Image.open``/``save`` handle ``.vqc`` (vqcodec/pillow.py; no torch until decoding)."""
    try:
        from vqcodec.pillow import register
    except ImportError:  # Pillow missing: the codec still works for raw arrays
        return
    register()


_register_pillow_plugin()


__getattr__, __dir__ = lazy_exports("vqcodec", _LAZY, globals())


__all__ = [
    "VQCError",
    "FormatError",
    "TruncatedError",
    "ChecksumError",
    "UnsupportedVersionError",
    "ModelMismatchError",
    "UnknownModelError",
    "LimitError",
    *_LAZY,
]
