"""The catalogue of bundled models: one ``ModelInfo`` per file shipped in ``vqcodec/models/weights/``.

Data only (no torch, no loading): ``vqcodec.models.zoo`` loads and caches the models it lists,
``vqcodec.models.bundle`` finds here the bundled model a video bundle references, and the
``vqcodec models`` command prints it without importing torch. Each entry pins the sha256 of its
file; a bundled file whose bytes differ is refused when loaded, so a ``.vqc`` file's recorded
sha256 always names the weights that decode it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vqcodec.errors import UnknownModelError

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

    @property
    def weightless(self) -> bool:
        """A model with no weights file (``file`` ""): ``load_model`` builds it from its ``kind``."""
        return not self.file


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


# image-sq20's transform, steps and prior layout with a 4x wider refinement
# (train/configs/image_sq20b.toml)
_IMAGE_SQ20B_CONFIG: dict[str, Any] = dict(
    _IMAGE_SQ20_CONFIG, decoder_channels=[128, 64, 32], decoder_blocks=[2, 1, 0]
)
# image-sq20d: image-sq20b's network with 35 levels (vqcodec/train/configs/image_sq20d.toml [export])
_IMAGE_SQ20D_CONFIG: dict[str, Any] = dict(
    _IMAGE_SQ20B_CONFIG,
    steps=[
        2.4,
        2.098,
        1.851,
        1.653,
        1.474,
        1.313,
        1.172,
        1.047,
        0.9412,
        0.856,
        0.7445,
        0.6538,
        0.5729,
        0.5017,
        0.4395,
        0.3858,
        0.3382,
        0.296,
        0.2701,
        0.2464,
        0.2242,
        0.2037,
        0.1847,
        0.167,
        0.1508,
        0.1357,
        0.1221,
        0.1097,
        0.09801,
        0.0869,
        0.0767,
        0.06755,
        0.05914,
        0.05165,
        0.045,
    ],
)


REGISTRY: tuple[ModelInfo, ...] = (
    ModelInfo(
        name="image-rvq8",
        file="image-rvq8.safetensors",
        sha256="6e4a618d400c4d0669fb835cec4c193bc9332f297a76d7065493ab2817629edf",
        description="Stride-8 block-PCA encoder + conv decoder, 14-stage RVQ (K=512), 8 quality levels",
        media="image",
        default=False,
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
        name="image-sq20b",
        file="image-sq20b.safetensors",
        sha256="766592317845245ca894d27cde4ea0c78e127e2d8af6e10d15083cff921994e9",
        description="image-sq20's block KLT and dead-zone scalar quantization with a 4x wider conv "
        "refinement (16,000 steps), 20 quality levels up to 40+ dB",
        media="image",
        default=False,
        config=_IMAGE_SQ20B_CONFIG,
    ),
    ModelInfo(
        name="image-sq20c",
        file="image-sq20c.safetensors",
        sha256="8999d144a036bdbfdb28795b50c363ac3c228d3fcdc2de24d89d65abcae60d0f",
        description="image-sq20b's network trained 20,000 more steps, with a 5-pass context prior "
        "(layout 3: same-channel context for 15/16 of the positions), 20 quality levels up to 40+ dB",
        media="image",
        default=False,
        config=_IMAGE_SQ20B_CONFIG,
    ),
    ModelInfo(
        name="image-sq20d",
        file="image-sq20d.safetensors",
        sha256="9d5f7a6355607a6274a9bf09109d29a727ea780b994bc5436c6c2bb875a9ad4b",
        description="image-sq20c's network trained 22,000 more steps; the 5-pass prior with "
        "context-coded signs and predicted low-order coefficients; 35 quality levels up to 40+ dB",
        media="image",
        default=True,
        config=_IMAGE_SQ20D_CONFIG,
    ),
    ModelInfo(
        name="video-rvq8",
        file="video-rvq8.safetensors",
        sha256="0548082a1a2f303ff1e3c623d98ae8ecd30a67499a2e5ee0b326fadaec5abfea",
        description="image-rvq8 key frames + latent-residual P frames (6-stage RVQ, K=512), DAVIS-trained",
        media="video",
        default=False,
        config={
            "gop": 32,
            "image": _IMAGE_RVQ8_CONFIG,
            "kind": "video",
            "residual_codebook_size": 512,
            "residual_init_stage": 2,
            "residual_stages": 6,
        },
    ),
    # weightless (file ""): the codec is integer arithmetic with no trained part; the sha256 is
    # that of b"vqcodec video payload 2" (MC_MODEL_SHA256), load_model checks it like a file's
    ModelInfo(
        name="video-mc1",
        file="",
        sha256="7f318ff92998214b57e85465192194d6d8a1d49cee0261c0fb215d89c03abb38",
        description="Motion-compensated Y'CbCr 4:2:0 (quarter-pel blocks, integer transform, adaptive "
        "tables; video payload 2), no weights",
        media="video",
        default=False,
        config={
            "gop": 64,
            "kind": "video-mc",
            "quality_qp": [46, 43, 40, 37, 34, 31, 28, 25, 22, 19, 16, 13],
        },
    ),
    # video-mc1 with the in-loop deblocking filter; sha256 of b"vqcodec video payload 2 deblocked"
    # (MC2_MODEL_SHA256)
    ModelInfo(
        name="video-mc2",
        file="",
        sha256="cf89a6a8e9fbefbed62a0e5c2a75e8846e47a42d6d00a95d753c67d51821f403",
        description="video-mc1 with an in-loop deblocking filter (video payload 2), no weights",
        media="video",
        default=True,
        config={
            "deblock": True,
            "gop": 64,
            "kind": "video-mc",
            "quality_qp": [46, 43, 40, 37, 34, 31, 28, 25, 22, 19, 16, 13],
        },
    ),
)

DEFAULT_IMAGE_MODEL = next((m.name for m in REGISTRY if m.media == "image" and m.default), "")
DEFAULT_VIDEO_MODEL = next((m.name for m in REGISTRY if m.media == "video" and m.default), "")


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


__all__ = [
    "DEFAULT_IMAGE_MODEL",
    "DEFAULT_VIDEO_MODEL",
    "REGISTRY",
    "WEIGHTS_DIR",
    "ModelInfo",
    "list_models",
    "model_info",
]
