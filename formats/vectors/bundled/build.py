"""Golden vectors of the *bundled* models: one small `.vqc` per registered image model.

The tiny-model vectors beside this folder pin the format; these pin the released weights: a
`.vqc` written by a released model must decode to the same codes in every later version. Each
vector is a fixed crop of ``samples/scene.png`` encoded at one quality level; ``manifest.json``
records the codes' sha256 (int32 little-endian, C order) computed from the codes the encoder
produced, not by decoding the file.

    python formats/vectors/bundled/build.py            # write vectors missing from the manifest
    VQCODEC_REGEN=1 python formats/vectors/bundled/build.py   # rewrite all (a deliberate change)

A released model's vector is never rewritten without VQCODEC_REGEN=1, so a new model only adds one.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
MANIFEST = HERE / "manifest.json"
#: crop of samples/scene.png (left, top, right, bottom): 60 x 44, not a multiple of 8 on purpose
CROP = (32, 24, 92, 68)


def source_pixels() -> np.ndarray:
    with Image.open(REPO / "samples" / "scene.png") as image:
        return np.asarray(image.convert("RGB").crop(CROP), dtype=np.uint8)


def build(name: str) -> tuple[bytes, dict[str, Any]]:
    from vqcodec.codec import image, media
    from vqcodec.models.zoo import load_model

    model = load_model(name)
    quality = image.default_quality(model.quality_levels)
    pixels = source_pixels()
    codes = media.encode_tiled(model, media.pad_to_stride(pixels, model.stride), quality)
    data = image.write_image_file(model, pixels.shape[1], pixels.shape[0], "rgb24", quality, codes)
    expect = {
        "model": name,
        "model_sha256": bytes(model.sha256).hex(),
        "quality": quality,
        "codes_shape": [int(x) for x in codes.shape],
        "codes_sha256": hashlib.sha256(np.ascontiguousarray(codes, dtype="<i4").tobytes()).hexdigest(),
    }
    return data, expect


def load_manifest() -> dict[str, Any]:
    return json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {"vectors": {}}


def main() -> int:
    from vqcodec.models.zoo import list_models

    manifest = load_manifest()
    regen = os.environ.get("VQCODEC_REGEN") == "1"
    for info in list_models():
        if info.media != "image" or (info.name in manifest["vectors"] and not regen):
            continue
        data, expect = build(info.name)
        (HERE / f"{info.name}.vqc").write_bytes(data)
        manifest["vectors"][info.name] = {"file": f"{info.name}.vqc", **expect}
        print(f"wrote {info.name}.vqc ({len(data)} bytes)")
    MANIFEST.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
