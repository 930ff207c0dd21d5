"""The one registry of bundled models, and ``load_model`` for bundled names and user bundle files.

``REGISTRY`` lists every model shipped in ``vqcodec/models/weights/`` with the sha256 of its
file; a bundled file whose bytes do not match is refused (ModelMismatchError), so a ``.vqc``
file's recorded sha256 always names the weights that decode it. ``load_model`` also accepts
the path of a bundle written by ``vqcodec.models.bundle.save_bundle`` (user-trained models).
Loaded models are cached per file (path, size, mtime); loading is thread-safe and two
threads asking for the same model get the same object.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from vqcodec.errors import ModelMismatchError, UnknownModelError

if TYPE_CHECKING:
    from vqcodec.models.bundle import CodecModel

# What every API that takes a model accepts: a bundled name, a bundle file path, a loaded
# CodecModel, or None for the default model of the media in question.
ModelSpec = Union[str, "os.PathLike[str]", "CodecModel", None]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


@dataclass(frozen=True)
class ModelInfo:
    """One registry entry. ``file`` is relative to the weights folder; ``sha256`` is hex."""

    name: str
    file: str
    sha256: str
    description: str
    media: str
    default: bool = False
    config: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def path(self) -> Path:
        return WEIGHTS_DIR / self.file


# the image network of image-rvq8; video-rvq8 runs the same network (it references that bundle)
_IMAGE_RVQ8_CONFIG: dict[str, Any] = {
    "codebook_dim": None,
    "codebook_size": 512,
    "commitment_weight": 0.25,
    "decay": 0.99,
    "decoder_blocks": [2, 1, 0],
    "decoder_channels": [160, 112, 64],
    "encoder_blocks": [0, 0, 0],
    "encoder_channels": [8, 8, 8],
    "kind": "image",
    "kmeans_init": True,
    "latent_dim": 48,
    "linear_path": True,
    "num_quantizers": 14,
    "quality_stages": [1, 2, 3, 4, 6, 8, 11, 14],
    "threshold_ema_dead_code": 0.5,
}


# the scalar-quantized image model (train/configs/image_sq20.toml)
_IMAGE_SQ20_CONFIG: dict[str, Any] = {
    "decoder_blocks": [1, 0, 0],
    "decoder_channels": [64, 32, 16],
    "kind": "image-sq",
    "rounding": 0.35,
    "steps": [
        2.4,
        1.9468,
        1.5791,
        1.2809,
        1.039,
        0.8428,
        0.6837,
        0.5546,
        0.4498,
        0.3649,
        0.296,
        0.2401,
        0.1947,
        0.158,
        0.1281,
        0.1039,
        0.0843,
        0.0684,
        0.0555,
        0.045,
    ],
}


REGISTRY: tuple[ModelInfo, ...] = (
    ModelInfo(
        name="image-rvq8",
        file="image-rvq8.safetensors",
        sha256="6e4a618d400c4d0669fb835cec4c193bc9332f297a76d7065493ab2817629edf",
        description="Stride-8 block-PCA encoder + conv decoder, 14-stage RVQ (K=512), 8 quality levels",
        media="image",
        default=True,
        config=_IMAGE_RVQ8_CONFIG,
    ),
    ModelInfo(
        name="image-sq20",
        file="image-sq20.safetensors",
        sha256="bd2e50b380059ac743969ba052d46817a1449d6a5a7954293f0b548dce67973d",
        description="Stride-8 block KLT (192 coefficients), dead-zone scalar quantization, conv refinement, "
        "20 quality levels up to 40+ dB",
        media="image",
        default=False,
        config=_IMAGE_SQ20_CONFIG,
    ),
    ModelInfo(
        name="video-rvq8",
        file="video-rvq8.safetensors",
        sha256="0548082a1a2f303ff1e3c623d98ae8ecd30a67499a2e5ee0b326fadaec5abfea",
        description="image-rvq8 key frames + latent-residual P frames (6-stage RVQ, K=512), DAVIS-trained",
        media="video",
        default=True,
        config={
            "gop": 32,
            "image": _IMAGE_RVQ8_CONFIG,
            "kind": "video",
            "residual_codebook_size": 512,
            "residual_init_stage": 2,
            "residual_stages": 6,
        },
    ),
)

DEFAULT_IMAGE_MODEL = next((m.name for m in REGISTRY if m.media == "image" and m.default), "")
DEFAULT_VIDEO_MODEL = next((m.name for m in REGISTRY if m.media == "video" and m.default), "")

_cache: dict[tuple[str, int, int], Any] = {}
_lock = threading.Lock()


def list_models() -> list[ModelInfo]:
    """Every bundled model, in registry order."""
    return list(REGISTRY)


def model_info(name: str) -> ModelInfo:
    """The registry entry for ``name``; UnknownModelError when there is none."""
    for info in REGISTRY:
        if info.name == name:
            return info
    known = ", ".join(m.name for m in REGISTRY) or "none"
    raise UnknownModelError(
        f"unknown model {name!r} (bundled models: {known}; or give a .safetensors bundle path)"
    )


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
        name_or_path = DEFAULT_IMAGE_MODEL if media == "image" else DEFAULT_VIDEO_MODEL
        if not name_or_path:
            raise UnknownModelError(f"no default {media} model is bundled")
    info: ModelInfo | None = None
    if isinstance(name_or_path, str) and any(m.name == name_or_path for m in REGISTRY):
        info = model_info(name_or_path)
        path = info.path
    elif isinstance(name_or_path, (str, os.PathLike)) and Path(name_or_path).is_file():
        path = Path(name_or_path).resolve()
    else:
        model_info(str(name_or_path))  # raises UnknownModelError naming the bundled models
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


def clear_cache() -> None:
    with _lock:
        _cache.clear()


def registry_entry(
    name: str, file: str, description: str, media: str = "image", default: bool = False
) -> str:
    """Python source of a REGISTRY entry for a bundle written to the weights folder (used by export)."""
    from vqcodec.models.bundle import file_sha256, read_metadata

    path = WEIGHTS_DIR / file
    config = json.loads(read_metadata(path)["config"])
    return (
        f"    ModelInfo(\n        name={name!r},\n        file={file!r},\n"
        f"        sha256={file_sha256(path).hex()!r},\n        description={description!r},\n"
        f"        media={media!r},\n        default={default!r},\n        config={config!r},\n    ),\n"
    )


__all__ = [
    "DEFAULT_IMAGE_MODEL",
    "DEFAULT_VIDEO_MODEL",
    "REGISTRY",
    "ModelInfo",
    "ModelSpec",
    "clear_cache",
    "list_models",
    "load_model",
    "model_info",
]
