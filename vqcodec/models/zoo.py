"""``load_model``: a ready CodecModel for a bundled name (``vqcodec.models.catalog``) or a bundle file.

Loaded models are cached per file (path, size, mtime); loading is thread-safe and two threads
asking for the same model get the same object. A bundled file whose sha256 differs from its
catalogue entry is refused (ModelMismatchError). The catalogue's names are re-exported here.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from vqcodec.errors import ModelMismatchError, UnknownModelError
from vqcodec.models import catalog
from vqcodec.models.catalog import (
    DEFAULT_IMAGE_MODEL,
    DEFAULT_VIDEO_MODEL,
    REGISTRY,
    WEIGHTS_DIR,
    ModelInfo,
    list_models,
    model_info,
)

if TYPE_CHECKING:
    from vqcodec.models.bundle import CodecModel

# What every API that takes a model accepts: a bundled name, a bundle file path, a loaded
# CodecModel, or None for the default model of the media in question.
ModelSpec = Union[str, "os.PathLike[str]", "CodecModel", None]

_cache: dict[tuple[str, int, int], Any] = {}
_lock = threading.Lock()


def load_model(name_or_path: Any = None, *, media: str = "image") -> Any:
    """A ready CodecModel for a bundled name, a bundle path, or None (the default for ``media``).

    A CodecModel passed in is returned unchanged. Raises UnknownModelError for a name that is
    neither registered nor an existing file, ModelMismatchError when a bundled file's sha256
    differs from the registry, FormatError when a file is not a valid bundle.
    """
    from vqcodec.models.bundle import CodecModel, file_sha256, load_codec_model

    if isinstance(name_or_path, CodecModel):
        return name_or_path
    if name_or_path is None:
        # read through the module so that a patched catalogue (tests, tools) is what loads
        name_or_path = catalog.DEFAULT_IMAGE_MODEL if media == "image" else catalog.DEFAULT_VIDEO_MODEL
        if not name_or_path:
            raise UnknownModelError(f"no default {media} model is bundled")
    if getattr(name_or_path, "weightless", False) is True:  # a loaded weightless model
        return name_or_path
    info: ModelInfo | None = None
    if isinstance(name_or_path, str) and any(m.name == name_or_path for m in catalog.REGISTRY):
        info = catalog.model_info(name_or_path)
        if info.weightless:
            return _weightless_model(info)
        path = info.path
    elif isinstance(name_or_path, (str, os.PathLike)) and Path(name_or_path).is_file():
        path = Path(name_or_path).resolve()
    else:
        catalog.model_info(str(name_or_path))  # raises UnknownModelError naming the bundled models
        raise AssertionError("unreachable")
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _lock:
        model = _cache.get(key)
        if model is None:
            if info is not None and file_sha256(path).hex() != info.sha256:
                raise ModelMismatchError(
                    f"bundled model file {info.file} does not match the registry sha256 for {info.name!r}"
                )
            model = load_codec_model(path, name=info.name if info else None)
            _cache[key] = model
    return model


#: config ``kind`` of a weightless catalogue entry -> "module:class", built as cls(name, description, config)
WEIGHTLESS_KINDS = {"video-mc": "vqcodec.models.video_mc:MotionCodecModel"}


def _weightless_model(info: ModelInfo) -> Any:
    """The model of a catalogue entry without a weights file, built once from its ``kind``; its
    sha256 must be the entry's (ModelMismatchError), as a bundled file's must."""
    import importlib

    key = (f"weightless:{info.name}", 0, 0)
    with _lock:
        model = _cache.get(key)
        if model is None:
            kind = str(info.config.get("kind", ""))
            if kind not in WEIGHTLESS_KINDS:
                raise UnknownModelError(
                    f"model {info.name!r} has no weights file and an unknown kind {kind!r}"
                )
            module, _, cls = WEIGHTLESS_KINDS[kind].partition(":")
            model = getattr(importlib.import_module(module), cls)(info.name, info.description, info.config)
            if bytes(model.sha256).hex() != info.sha256:
                raise ModelMismatchError(f"model {info.name!r} does not match the registry sha256")
            _cache[key] = model
    return model


def clear_cache() -> None:
    with _lock:
        _cache.clear()


__all__ = [
    "DEFAULT_IMAGE_MODEL",
    "DEFAULT_VIDEO_MODEL",
    "REGISTRY",
    "WEIGHTS_DIR",
    "ModelInfo",
    "ModelSpec",
    "clear_cache",
    "list_models",
    "load_model",
    "model_info",
]
