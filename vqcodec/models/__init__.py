"""Codec networks, their configs, the bundle format and the registry of bundled models.

Names are loaded lazily so that ``vqcodec.models.zoo.list_models()`` needs no torch import.
"""

from __future__ import annotations

from vqcodec._lazy import lazy_exports

_LAZY = {
    "ImageCodecConfig": "vqcodec.models.config",
    "ImageCodec": "vqcodec.models.image",
    "CodecModel": "vqcodec.models.bundle",
    "save_bundle": "vqcodec.models.bundle",
    "load_bundle": "vqcodec.models.bundle",
    "ModelInfo": "vqcodec.models.zoo",
    "list_models": "vqcodec.models.zoo",
    "load_model": "vqcodec.models.zoo",
    "DEFAULT_IMAGE_MODEL": "vqcodec.models.zoo",
    "DEFAULT_VIDEO_MODEL": "vqcodec.models.zoo",
}


__getattr__, __dir__ = lazy_exports("vqcodec.models", _LAZY, globals())


__all__ = list(_LAZY)
