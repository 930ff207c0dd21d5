"""Shared by the image codec and CLI tests: the tiny fixed model and small synthetic pictures."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
TINY_MODEL = REPO / "formats" / "vectors" / "models" / "tiny-image.safetensors"


def picture(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """(H, W, C) uint8: smooth gradients plus noise, so codes vary across the grid."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([(x * 255) // max(1, width - 1), (y * 255) // max(1, height - 1), (x + y) % 256], axis=-1)
    base = np.concatenate([base] * 2, axis=-1)[..., :channels]
    noise = rng.integers(-20, 21, size=base.shape)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def png16(array: np.ndarray) -> bytes:
    """A 16-bit PNG (color type 0 gray, 2 RGB or 6 RGBA) of a uint16 (H, W[, C]) array, by hand:
    Pillow cannot write 16-bit RGB."""
    if array.ndim == 2:
        array = array[..., None]
    height, width, channels = array.shape
    color_type = {1: 0, 3: 2, 4: 6}[channels]
    raw = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )
