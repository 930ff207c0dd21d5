"""Would a longer sub-sample filter help payload 2's motion compensation? Prediction error, two filters.

    .venv/bin/python benchmarks/video_interpolation_probe.py                 # foreman, mobile, bus at qp 28

A probe for a future payload (nothing here changes the format). The default model (video-mc2)
codes each clip; for every predicted frame the encoder's own motion search (quarter-pel 16 x 16
blocks, on payload 2's reference) gives the vectors, and the luma prediction from the decoded
previous frame is formed twice with those same vectors:

- ``payload 2``: the format's filter (6-tap half samples, quarter samples the mean of two),
- ``8-tap``: HEVC's separable luma filters (quarter (-1, 4, -10, 58, 17, -5, 1, 0) / 64, half
  (-1, 4, -11, 40, 40, -11, 4, -1) / 64, three quarters the mirror), rounded once to 8 bits.

Prediction error before residual coding, vectors searched for the format's filter (so the 8-tap
row is, if anything, handicapped). Writes benchmarks/results/video_interpolation_probe.json.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from video_rd import DATA, RESULTS, load_clip  # noqa: E402

TAPS = np.array(
    [
        [0, 0, 0, 64, 0, 0, 0, 0],
        [-1, 4, -10, 58, 17, -5, 1, 0],
        [-1, 4, -11, 40, 40, -11, 4, -1],
        [0, 1, -5, 17, 58, -10, 4, -1],
    ],
    dtype=np.float64,
) / 64.0


def eight_tap_prediction(luma: np.ndarray, vectors: np.ndarray, block: int = 16) -> np.ndarray:
    """Luma (H, W) reference, vectors (R, C, 2) quarter-pel -> prediction (H, W) uint8."""
    rows, cols = vectors.shape[:2]
    pad = 64 + block + 8
    ref = np.pad(luma.astype(np.float64), pad, mode="edge")
    out = np.zeros((rows * block, cols * block))
    window = block + 7
    for r in range(rows):
        for c in range(cols):
            vy, vx = (int(v) for v in vectors[r, c])
            y0, x0 = r * block + (vy >> 2) - 3 + pad, c * block + (vx >> 2) - 3 + pad
            w = ref[y0 : y0 + window, x0 : x0 + window]
            horizontal = np.stack([w[:, i : i + 8] @ TAPS[vx & 3] for i in range(block)], 1)
            out[r * block : (r + 1) * block, c * block : (c + 1) * block] = np.stack(
                [TAPS[vy & 3] @ horizontal[i : i + 8] for i in range(block)], 0
            )
    return np.clip(np.round(out), 0, 255)


def probe(clip: dict[str, Any], qp: int) -> dict[str, Any]:
    from vqcodec.models import video_mc as vm
    from vqcodec.models.zoo import load_model

    info = clip["info"]
    codec = load_model(None, media="video").codec()
    settings = vm.EncoderSettings()
    state = None
    sse = {"payload 2": 0.0, "8-tap": 0.0}
    for planes in clip["planes"]:
        if state is not None:
            source = vm.pad_planes(planes, info.width, info.height)[0].astype(np.float64)
            lam_sad = math.sqrt(vm.rd_lambda(settings.frame_qp(qp, False, 0)))
            vectors = vm.motion_search(source.astype(np.int32), state.reference, lam_sad, settings)
            ours = vm.predict_planes(state.reference, vectors, vm.MB)[0]
            sse["payload 2"] += float(((source - ours) ** 2).sum())
            sse["8-tap"] += float(((source - eight_tap_prediction(state.planes[0], vectors)) ** 2).sum())
        _, state = codec.compress(planes, info.width, info.height, state, qp=qp)
    return {"base_qp": qp, "sse": sse, "db_gain_8_tap": 10 * math.log10(sse["payload 2"] / sse["8-tap"])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", default="foreman_cif_30f,mobile_cif_30f,bus_cif_17f")
    parser.add_argument("--qps", default="28")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--out", type=Path, default=RESULTS / "video_interpolation_probe.json")
    args = parser.parse_args(argv)
    report: dict[str, Any] = {"machine": {"platform": platform.platform()}, "clips": {}}
    for name in args.clips.split(","):
        path = DATA / "video" / f"{name}.y4m"
        if not path.exists():
            print(f"skipping {name}: {path} not found")
            continue
        clip = load_clip(path, args.frames)
        report["clips"][name] = {}
        for qp in (int(q) for q in args.qps.split(",")):
            row = probe(clip, qp)
            report["clips"][name][str(qp)] = row
            gain = row["db_gain_8_tap"]
            print(f"{name:18s} qp {qp:2d}  8-tap vs payload 2 filter: {gain:+.2f} dB", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
