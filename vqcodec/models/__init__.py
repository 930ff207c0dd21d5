"""Codec networks, their configs, the bundle format and the registry of bundled models.

Names are loaded lazily so that ``vqcodec.models.zoo.list_models()`` needs no torch import.
"""

from __future__ import annotations

import importlib
from typing import Any

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


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'vqcodec.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))


__all__ = list(_LAZY)
