"""Image training data: random crops from the training photos, packed once into a uint8 tensor file.

Sources (under the shared data folder, ``$VQCODEC_DATA`` or ``../shared/data`` from the working
directory, which is the repository's neighbour when run from the checkout):
``train/bsds500`` and ``train/urban100`` at full size, ``train/sun_hays80`` downscaled 2x and
``train/unsplash`` downscaled 4-8x (its 12-20 megapixel photos are soft and noisy at full size;
downscaling makes them look like the sharp, clean content the codec is judged on).
Kodak (``kodak/``) is evaluation data and is refused outright.

A packed file (``torch.save`` of a dict) holds ``train``: uint8 (N, 3, C, C) crops, ``val``: uint8
(M, 3, V, V) crops taken from held-out images, and ``meta``. Training draws a random
``crop_size`` window (and a random horizontal flip) from each stored crop, so the stored crops
are a little larger than the training crops.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
# sub-folder of <data>/train -> (min, max) downscale factor; the factor brings the long side near 1000 px
TRAIN_SOURCES: dict[str, tuple[int, int]] = {
    "bsds500": (1, 1),
    "urban100": (1, 1),
    "sun_hays80": (2, 2),
    "unsplash": (4, 8),
}
FORBIDDEN_PARTS = ("kodak",)


DEFAULT_DATA_ROOT = Path("..") / "shared" / "data"


def data_root() -> Path:
    """The shared real-media folder: ``$VQCODEC_DATA``, else ``../shared/data`` from the working directory.

    Never found through this file's location, so an installed wheel behaves like the checkout.
    """
    return resolve_path(os.environ.get("VQCODEC_DATA") or DEFAULT_DATA_ROOT)


def resolve_path(path: str | os.PathLike[str]) -> Path:
    """A path from a recipe config: ``~`` expanded; a relative path is relative to the working directory
    (run the bundled recipes from the repository root, where their paths such as ``.data/`` point)."""
    return Path(path).expanduser()


def list_training_images(root: Path | None = None) -> list[tuple[Path, int]]:
    """Sorted ``(path, downscale factor)`` for every training photo; raises if none are found."""
    root = (root or data_root()) / "train"
    found: list[tuple[Path, int]] = []
    for name, (lo, hi) in TRAIN_SOURCES.items():
        folder = root / name
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            if any(part.lower() in FORBIDDEN_PARTS for part in path.parts):
                raise ValueError(f"refusing to train on evaluation data: {path}")
            found.append((path, _factor(path, lo, hi)))
    if not found:
        raise FileNotFoundError(f"no training images under {root}")
    return found


def _factor(path: Path, lo: int, hi: int) -> int:
    if lo == hi:
        return lo
    with Image.open(path) as img:
        long_side = max(img.size)
    return int(min(hi, max(lo, round(long_side / 1000))))


def load_training_image(path: Path, factor: int = 1) -> np.ndarray:
    """RGB uint8 (H, W, 3), box-downscaled by ``factor`` (JPEG DCT scaling makes big files cheap)."""
    with Image.open(path) as img:
        target = (max(1, img.width // factor), max(1, img.height // factor))
        if factor > 1 and img.format == "JPEG":
            img.draft("RGB", target)  # decodes at >= target size, up to 8x faster
        rgb = img.convert("RGB")
        if rgb.size != target:
            rgb = rgb.resize(target, Image.Resampling.BOX)
        return np.asarray(rgb, dtype=np.uint8)


def read_training_clip(path: Path, max_frames: int) -> Iterator[np.ndarray]:
    """RGB uint8 frames (H, W, 3) of a training clip's first ``max_frames`` frames, through PyAV
    (MKV/MP4/WebM and Y4M alike).

    Training data comes from files the user chose, so this reader has none of the decode limits
    and stream handling of ``vqcodec.codec.video_io`` (the codec layer's reader for untrusted
    input), just as training images are read with Pillow directly.
    """
    import av  # a runtime dependency, imported here to keep image-only training light

    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index >= max_frames:
                break
            yield frame.to_ndarray(format="rgb24")


def _is_validation(path: Path, every: int) -> bool:
    """Deterministic hold-out by a hash of the file name, stable when files are added."""
    digest = hashlib.sha256(path.name.encode()).digest()
    return int.from_bytes(digest[:4], "little") % every == 0


def _random_crops(image: np.ndarray, size: int, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    h, w = image.shape[:2]
    if h < size or w < size:
        return []
    crops = []
    for _ in range(count):
        y = int(rng.integers(0, h - size + 1))
        x = int(rng.integers(0, w - size + 1))
        crops.append(np.ascontiguousarray(image[y : y + size, x : x + size].transpose(2, 0, 1)))
    return crops


def pack_crops(
    path: str | os.PathLike[str],
    *,
    crop_size: int = 144,
    num_crops: int = 8000,
    val_crop_size: int = 256,
    val_every: int = 25,
    val_crops_per_image: int = 2,
    seed: int = 0,
    root: Path | None = None,
) -> dict[str, Any]:
    """Sample crops from the training photos and save them to ``path``; returns the packed dict.

    Training crops are spread over the non-held-out images in proportion to their area, so
    each pixel is about equally likely to be seen; about one image in ``val_every`` is held out
    and gives ``val_crops_per_image`` validation crops of ``val_crop_size``.
    """
    rng = np.random.default_rng(seed)
    images = list_training_images(root)
    train_images: list[np.ndarray] = []
    val: list[np.ndarray] = []
    for image_path, factor in images:
        pixels = load_training_image(image_path, factor)
        if _is_validation(image_path, val_every):
            val.extend(_random_crops(pixels, val_crop_size, val_crops_per_image, rng))
        elif min(pixels.shape[:2]) >= crop_size:
            train_images.append(pixels)
    areas = np.array([img.shape[0] * img.shape[1] for img in train_images], dtype=np.float64)
    counts = rng.multinomial(num_crops, areas / areas.sum())
    train: list[np.ndarray] = []
    for img, count in zip(train_images, counts):
        train.extend(_random_crops(img, crop_size, int(count), rng))
    order = rng.permutation(len(train))
    packed = {
        "train": torch.from_numpy(np.stack([train[i] for i in order])),
        "val": torch.from_numpy(np.stack(val))
        if val
        else torch.zeros(0, 3, val_crop_size, val_crop_size, dtype=torch.uint8),
        "meta": json.dumps(
            {
                "crop_size": crop_size,
                "val_crop_size": val_crop_size,
                "seed": seed,
                "sources": sorted(TRAIN_SOURCES),
                "train_images": len(train_images),
                "val_images": sum(1 for p, _ in images if _is_validation(p, val_every)),
            }
        ),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(packed, tmp)
    os.replace(tmp, path)
    return packed


def load_packed(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a packed crop file (memory-mapped: the crops are not copied into RAM up front)."""
    return torch.load(Path(path), mmap=True, weights_only=True)


def ensure_packed(path: str | os.PathLike[str], **pack_options: Any) -> dict[str, Any]:
    """Load ``path``, packing it first when it does not exist yet."""
    if not Path(path).exists():
        pack_crops(path, **pack_options)
    return load_packed(path)


class CropDataset(Dataset):
    """Float pixels (3, crop_size, crop_size) in [0, 1] from uint8 crops (N, 3, C, C), C >= crop_size.

    With ``augment`` a random window and a random horizontal flip are drawn from torch's global
    RNG (the trainer seeds and checkpoints it); without, the centre window is returned.
    """

    def __init__(self, crops: torch.Tensor, crop_size: int, *, augment: bool = True):
        if crops.dtype != torch.uint8 or crops.ndim != 4 or crops.shape[1] != 3:
            raise ValueError(f"crops must be uint8 (N, 3, C, C), got {tuple(crops.shape)} {crops.dtype}")
        if crops.shape[2] < crop_size or crops.shape[3] < crop_size:
            raise ValueError(f"stored crops {tuple(crops.shape[2:])} are smaller than crop_size {crop_size}")
        self.crops = crops
        self.crop_size = crop_size
        self.augment = augment

    def __len__(self) -> int:
        return self.crops.shape[0]

    def __getitem__(self, index: int) -> torch.Tensor:
        crop = self.crops[index]
        h, w = crop.shape[1:]
        c = self.crop_size
        if self.augment:
            y = int(torch.randint(0, h - c + 1, ()))
            x = int(torch.randint(0, w - c + 1, ()))
        else:
            y, x = (h - c) // 2, (w - c) // 2
        window = crop[:, y : y + c, x : x + c]
        if self.augment and bool(torch.rand(()) < 0.5):
            window = window.flip(-1)
        return window.float().div_(255.0)


def split_datasets(packed: dict[str, Any], crop_size: int, val_size: int | None = None) -> Sequence[Dataset]:
    """(train, val) datasets from a packed dict; val uses centre windows of ``val_size`` (default: full)."""
    val = packed["val"]
    return (
        CropDataset(packed["train"], crop_size, augment=True),
        CropDataset(val, val_size or val.shape[-1], augment=False),
    )


__all__ = [
    "CropDataset",
    "data_root",
    "resolve_path",
    "ensure_packed",
    "list_training_images",
    "load_packed",
    "load_training_image",
    "pack_crops",
    "split_datasets",
]
