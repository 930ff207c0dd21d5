"""Golden vectors of video payload version 2 (motion-compensated Y'CbCr 4:2:0, formats/vqc-v1.md).

``video-mc1.vqc`` (no deblocking) and ``video-mc2.vqc`` (the in-loop deblocking filter): the
first 6 frames of ``vqcodec/samples/orbit.y4m`` cropped to 88 x 56 (not a multiple of 16, so
padding and cropping are covered), key frames at 0 and 4, qp 30 for frames 0-3 and 26 for 4-5
(a later key frame resets the tables; qp changes per frame). ``manifest.json``
records per frame the payload size and the sha256 of the planes Y | Cb | Cr (uint8, C order)
that the *encoder* reconstructed, so decoding the file must reproduce the encoder's reference.

    python formats/vectors/video_mc/build.py            # write those the manifest lacks
    VQCODEC_REGEN=1 python formats/vectors/video_mc/build.py   # rewrite all (a deliberate format change)

The encoder runs with fixed settings (dead-zone rounding, no qp cascade: ``SETTINGS``), so each
frame's qp is the one listed and a rebuild reproduces the files byte for byte whatever the
encoder's defaults become.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
MANIFEST = HERE / "manifest.json"
WIDTH, HEIGHT, FRAMES = 88, 56, 6
KEYS = (0, 4)
QPS = (30, 30, 30, 30, 26, 26)
#: the models with a vector here (video payload version 2)
MODELS = ("video-mc1", "video-mc2")


def source_planes() -> list[list[np.ndarray]]:
    from vqcodec.codec.video_io import Y4MReader

    out = []
    with Y4MReader(str(REPO / "vqcodec" / "samples" / "orbit.y4m")) as reader:
        for planes in reader.planes():
            y, cb, cr = planes
            out.append(
                [
                    y[:HEIGHT, :WIDTH].copy(),
                    cb[: HEIGHT // 2, : WIDTH // 2].copy(),
                    cr[: HEIGHT // 2, : WIDTH // 2].copy(),
                ]
            )
            if len(out) == FRAMES:
                break
    return out


def planes_sha256(planes: list[np.ndarray]) -> str:
    return hashlib.sha256(
        b"".join(np.ascontiguousarray(p, dtype=np.uint8).tobytes() for p in planes)
    ).hexdigest()


def build(model_name: str) -> tuple[bytes, dict[str, Any]]:
    import io

    from vqcodec.container import ContainerWriter, Header
    from vqcodec.models import video_mc as vm
    from vqcodec.models.zoo import load_model

    model = load_model(model_name)
    settings = vm.EncoderSettings(rdoq=False, key_qp_offset=0, p_qp_offsets=(0,))
    codec = model.codec(settings)
    params = {"gop": KEYS[1] - KEYS[0], "temporal": vm.MC_TEMPORAL_MODE, "v": vm.MC_CODEC_PARAMS_VERSION}
    header = Header(
        media="video",
        width=WIDTH,
        height=HEIGHT,
        channels=3,
        pixel_format="yuv420p",
        fps_num=24,
        fps_den=1,
        frame_count=FRAMES,
        matrix=6,
        full_range=False,
        model_name=model.name,
        model_sha256=bytes(model.sha256),
        quality=QPS[0],
        codec_params=json.dumps(params, sort_keys=True, separators=(",", ":")).encode(),
    )
    out = io.BytesIO()
    frames = []
    state = None
    with ContainerWriter(out, header) as writer:
        for i, planes in enumerate(source_planes()):
            payload, state = codec.compress(planes, WIDTH, HEIGHT, state, QPS[i], key=i in KEYS)
            writer.write_frame(payload, key=i in KEYS)
            recon = vm.crop_planes(state.planes, WIDTH, HEIGHT)
            frames.append(
                {
                    "key": i in KEYS,
                    "qp": QPS[i],
                    "payload_bytes": len(payload),
                    "planes_sha256": planes_sha256(recon),
                }
            )
    return out.getvalue(), {"file": f"{model_name}.vqc", "width": WIDTH, "height": HEIGHT, "frames": frames}


def main() -> int:
    regen = os.environ.get("VQCODEC_REGEN") == "1"
    vectors = {} if regen or not MANIFEST.exists() else json.loads(MANIFEST.read_text())["vectors"]
    for name in MODELS:
        if name in vectors:
            print(f"{name}: in {MANIFEST.name}; set VQCODEC_REGEN=1 to rewrite it")
            continue
        data, vectors[name] = build(name)
        (HERE / vectors[name]["file"]).write_bytes(data)
        print(f"wrote {vectors[name]['file']} ({len(data)} bytes)")
    MANIFEST.write_text(json.dumps({"vectors": vectors}, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
