"""Golden image vectors (kind "image"), made with the fixed model models/tiny-image.safetensors.

Each vector is built from integer inputs only, so the builder reproduces it byte for byte on
any machine: codes drawn from a seeded numpy generator (PCG64, stable across platforms), the
model's integer entropy tables, the container writer, and alpha planes stored as a hand-made
zstd frame with one raw block (independent of the zstd library version).

``expect`` (besides ``"error": null``) holds, under ``"image"``: the header fields, the codes'
shape and sha256 (int32 little-endian, C order) — decoding must give exactly these codes on every
machine — and the decoded picture (what ``decode_image(..., output="numpy")`` returns) as
zlib+base64 with its sha256, computed here from the codes with the model's synthesis transform,
not by decoding the file. Pixels are exact on the platform and torch build recorded in
``pixels_exact_on`` and within 1 grey level elsewhere (formats/vqc-v1.md, Image frame payload).
A vector with metadata (section "Image metadata") adds ``icc_sha256`` and ``exif_sha256``: the
decoder must hand back exactly those chunk bytes.
"""

from __future__ import annotations

import base64
import hashlib
import platform
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
MODEL = HERE / "models" / "tiny-image.safetensors"
ZSTD_MAGIC = 0xFD2FB528


def raw_zstd_frame(data: bytes) -> bytes:
    """One zstd frame holding ``data`` in a single raw block (RFC 8878): no compression library involved.

    Frame header descriptor 0xA0: 4-byte content size, single segment, no checksum, no dictionary.
    """
    if len(data) > 128 * 1024:
        raise ValueError("one raw block holds at most 128 KiB")
    block_header = (len(data) << 3) | 0b001  # raw block, last block
    return (
        struct.pack("<IB", ZSTD_MAGIC, 0xA0)
        + struct.pack("<I", len(data))
        + block_header.to_bytes(3, "little")
        + data
    )


def minimal_icc_profile() -> bytes:
    """A 132-byte ICC profile from integers: the 128-byte header (ICC.1 v4.3, display class, RGB data,
    XYZ connection space, D50 illuminant, ``acsp`` signature) and an empty tag table."""
    header = struct.pack(
        ">I4sI4s4s4s12s4s4sI4s4sQI12s4s16s28s",
        132,  # profile size
        b"\0\0\0\0",  # preferred CMM: none
        0x04300000,  # version 4.3
        b"mntr",
        b"RGB ",
        b"XYZ ",
        bytes(12),  # date and time: unset
        b"acsp",
        b"\0\0\0\0",  # primary platform: none
        0,  # flags
        b"\0\0\0\0",  # device manufacturer
        b"\0\0\0\0",  # device model
        0,  # device attributes
        0,  # rendering intent: perceptual
        struct.pack(">iii", 0x0000F6D6, 0x00010000, 0x0000D32D),  # D50 in s15Fixed16
        b"\0\0\0\0",  # creator
        bytes(16),  # profile ID: not computed
        bytes(28),  # reserved
    )
    assert len(header) == 128
    return header + struct.pack(">I", 0)  # tag count


def minimal_exif() -> bytes:
    """A little-endian TIFF structure with one IFD entry, Software = "vqcodec" (34 bytes)."""
    text = b"vqcodec\0"
    ifd = struct.pack("<H", 1) + struct.pack("<HHII", 0x0131, 2, len(text), 26) + struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + text


def _alpha_plane(height: int, width: int, seed: int) -> np.ndarray:
    """A soft disc of opacity with some noise: (H, W) uint8 from integers only."""
    y, x = np.mgrid[0:height, 0:width]
    d2 = (2 * y - height) ** 2 + (2 * x - width) ** 2
    plane = np.clip(255 - (d2 * 255) // max(1, height * height + width * width) * 2, 0, 255)
    noise = np.random.Generator(np.random.PCG64(seed)).integers(0, 8, size=(height, width))
    return np.clip(plane - noise, 0, 255).astype(np.uint8)


def _build(
    name: str,
    width: int,
    height: int,
    pixel_format: str,
    quality: int,
    seed: int,
    alpha_filter: int | None,
    metadata: bool = False,
) -> tuple[bytes, dict[str, Any]]:
    import torch

    from vqcodec.codec import image, media
    from vqcodec.models.zoo import load_model

    model = load_model(MODEL)
    stride = model.stride
    h, w = -(-height // stride), -(-width // stride)
    streams = model.stages_for_quality(quality)
    rng = np.random.Generator(np.random.PCG64(seed))
    codes = rng.integers(0, model.config.codebook_size, size=(streams, h, w)).astype(np.int32)
    alpha = alpha_data = None
    if alpha_filter is not None:
        alpha = _alpha_plane(height, width, seed)
        filtered = image._alpha_filter(alpha, alpha_filter)
        alpha_data = bytes([alpha_filter]) + raw_zstd_frame(filtered.tobytes())
    carried = None
    if metadata:
        from vqcodec.codec.metadata import ImageMetadata

        carried = ImageMetadata(minimal_icc_profile(), minimal_exif())
    data = image.write_image_file(model, width, height, pixel_format, quality, codes, alpha_data, carried)

    with torch.inference_mode():
        rgb = media.from_tensor(model.from_codes(torch.from_numpy(codes).long()[None]))[:height, :width]
    pixels = np.ascontiguousarray(media.make_output(rgb, alpha, pixel_format, "numpy"))
    expect = {
        "error": None,
        "image": {
            "model": model.name,
            "model_sha256": bytes(model.sha256).hex(),
            "width": width,
            "height": height,
            "pixel_format": pixel_format,
            "quality": quality,
            "alpha_filter": alpha_filter,
            "codes_shape": [streams, h, w],
            "codes_sha256": hashlib.sha256(codes.astype("<i4").tobytes()).hexdigest(),
            "alpha_sha256": hashlib.sha256(alpha.tobytes()).hexdigest() if alpha is not None else None,
            "pixels_shape": list(pixels.shape),
            "pixels_sha256": hashlib.sha256(pixels.tobytes()).hexdigest(),
            "pixels_zlib_b64": base64.b64encode(zlib.compress(pixels.tobytes(), 9)).decode("ascii"),
            "pixels_exact_on": {
                "torch": torch.__version__,
                "machine": platform.machine(),
                "system": platform.system(),
            },
        },
    }
    if carried is not None:
        assert carried.icc_profile is not None and carried.exif is not None
        expect["image"]["icc_sha256"] = hashlib.sha256(carried.icc_profile).hexdigest()
        expect["image"]["exif_sha256"] = hashlib.sha256(carried.exif).hexdigest()
    return data, expect


def _vector(name: str, description: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "kind": "image", "description": description, "build": lambda: _build(name, **kw)}


VECTORS = [
    _vector(
        "image_rgb",
        "40x24 rgb24 image, quality 2 of the tiny model (2 code streams on a 2x3 latent grid, padded)",
        width=40,
        height=24,
        pixel_format="rgb24",
        quality=2,
        seed=1,
        alpha_filter=None,
    ),
    _vector(
        "image_gray",
        "33x17 gray8 image, quality 1 (luma of the decoded RGB)",
        width=33,
        height=17,
        pixel_format="gray8",
        quality=1,
        seed=2,
        alpha_filter=None,
    ),
    _vector(
        "image_rgba",
        "36x20 rgba32 image, quality 4, ALPH chunk with the SUB filter",
        width=36,
        height=20,
        pixel_format="rgba32",
        quality=4,
        seed=3,
        alpha_filter=1,
    ),
    _vector(
        "image_graya",
        "16x16 graya16 image, quality 3, ALPH chunk with the UP filter",
        width=16,
        height=16,
        pixel_format="graya16",
        quality=3,
        seed=4,
        alpha_filter=2,
    ),
    _vector(
        "image_alpha_none_filter",
        "7x5 rgba32 image, quality 1, ALPH chunk with no filter",
        width=7,
        height=5,
        pixel_format="rgba32",
        quality=1,
        seed=5,
        alpha_filter=0,
    ),
    _vector(
        "image_metadata",
        "24x16 rgb24 image, quality 2, with an iCCP chunk (a 132-byte ICC header-only profile) and an "
        "eXIf chunk (a 34-byte TIFF structure, Software = vqcodec) before the frame",
        width=24,
        height=16,
        pixel_format="rgb24",
        quality=2,
        seed=6,
        alpha_filter=None,
        metadata=True,
    ),
]
