"""Every bundled image model has a golden `.vqc` (formats/vectors/bundled) that decodes to its codes
bit-exactly: files written by a released model keep decoding in every later version."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from test_codec.image_helpers import REPO
from vqcodec.codec.image import decode_image_result
from vqcodec.models.zoo import list_models

BUNDLED = REPO / "formats" / "vectors" / "bundled"
MANIFEST = json.loads((BUNDLED / "manifest.json").read_text())["vectors"]
IMAGE_MODELS = [m.name for m in list_models() if m.media == "image"]


def test_every_bundled_image_model_has_a_golden_vector():
    assert sorted(MANIFEST) == sorted(IMAGE_MODELS)


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_golden_vector_decodes_to_the_recorded_codes(name):
    expect = MANIFEST[name]
    decoded = decode_image_result(BUNDLED / expect["file"])
    header = decoded.header
    assert header.model_name == name and header.model_sha256.hex() == expect["model_sha256"]
    assert header.quality == expect["quality"]
    assert list(decoded.codes.shape) == expect["codes_shape"]
    codes = np.ascontiguousarray(decoded.codes, dtype="<i4")
    assert hashlib.sha256(codes.tobytes()).hexdigest() == expect["codes_sha256"]
    assert decoded.rgb.shape == (header.height, header.width, 3) and decoded.rgb.std() > 1.0
