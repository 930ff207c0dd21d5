"""Golden image vectors (formats/vectors, kind "image"): bit-exact codes, pixels exact or within 1.

Pixel guarantee (formats/vqc-v1.md, Image frame payload): exact on the platform and torch build
recorded in the manifest, at most 1 grey level apart elsewhere. The codes are exact everywhere.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import platform
import zlib

import numpy as np
import pytest
import torch

from test_codec.image_helpers import REPO
from vqcodec.codec.image import decode_image, decode_image_result

VECTORS = REPO / "formats" / "vectors"
MANIFEST = json.loads((VECTORS / "manifest.json").read_text())
IMAGE = {e["file"]: e for e in MANIFEST["vectors"] if e["kind"] == "image"}
MODEL = str(VECTORS / "models" / "tiny-image.safetensors")


def _load_builders():
    spec = importlib.util.spec_from_file_location("vqc_vectors_image", VECTORS / "image_vectors.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_there_are_image_vectors_for_every_pixel_format_and_alpha_filter():
    assert {e["expect"]["image"]["pixel_format"] for e in IMAGE.values()} == {
        "rgb24",
        "gray8",
        "rgba32",
        "graya16",
    }
    assert {e["expect"]["image"]["alpha_filter"] for e in IMAGE.values()} == {None, 0, 1, 2}
    assert all(e["valid"] for e in IMAGE.values())
    assert any("icc_sha256" in e["expect"]["image"] for e in IMAGE.values())  # Image metadata


@pytest.mark.parametrize("name", sorted(IMAGE))
def test_image_vector_decodes_to_the_golden_codes_and_pixels(name):
    expect = IMAGE[name]["expect"]["image"]
    decoded = decode_image_result(VECTORS / name, model=MODEL)
    header = decoded.header
    assert (header.width, header.height, header.pixel_format, header.quality) == (
        expect["width"],
        expect["height"],
        expect["pixel_format"],
        expect["quality"],
    )
    assert header.model_name == expect["model"] and header.model_sha256.hex() == expect["model_sha256"]
    assert list(decoded.codes.shape) == expect["codes_shape"]
    assert hashlib.sha256(decoded.codes.astype("<i4").tobytes()).hexdigest() == expect["codes_sha256"]
    if expect["alpha_sha256"] is not None:
        assert hashlib.sha256(decoded.alpha.tobytes()).hexdigest() == expect["alpha_sha256"]
    for field, key in (("icc_profile", "icc_sha256"), ("exif", "exif_sha256")):
        got = getattr(decoded, field)  # the metadata chunks come back byte for byte, or not at all
        assert (hashlib.sha256(got).hexdigest() if got is not None else None) == expect.get(key), field

    pixels = decode_image(VECTORS / name, model=MODEL, output="numpy")
    golden = np.frombuffer(zlib.decompress(base64.b64decode(expect["pixels_zlib_b64"])), np.uint8)
    golden = golden.reshape(expect["pixels_shape"])
    assert hashlib.sha256(golden.tobytes()).hexdigest() == expect["pixels_sha256"]
    assert pixels.shape == golden.shape
    same_build = expect["pixels_exact_on"] == {
        "torch": torch.__version__,
        "machine": platform.machine(),
        "system": platform.system(),
    }
    if same_build:
        assert np.array_equal(pixels, golden)
    else:
        assert np.abs(pixels.astype(int) - golden).max() <= 1
    if expect["alpha_sha256"] is not None:  # alpha is lossless everywhere
        assert np.array_equal(pixels[..., -1], golden[..., -1])


def test_builders_reproduce_the_image_vectors_byte_for_byte():
    for vector in _load_builders().VECTORS:
        data, expect = vector["build"]()
        entry = IMAGE[f"{vector['name']}.vqc"]
        assert data == (VECTORS / entry["file"]).read_bytes(), entry["file"]
        assert expect["image"]["codes_sha256"] == entry["expect"]["image"]["codes_sha256"]


def test_hand_made_zstd_frame_is_a_valid_zstd_frame():
    import zstandard

    frame = _load_builders().raw_zstd_frame(b"alpha" * 100)
    assert zstandard.ZstdDecompressor().decompress(frame) == b"alpha" * 100
