"""Would a longer sub-sample filter help payload 2's motion compensation? Prediction error, two filters.

    .venv/bin/python benchmarks/video_interpolation_probe.py   # foreman, mobile, bus; qp 34, 28, 22

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

import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from video_probe import coded_frames, run  # noqa: E402

TAPS = (
    np.array(
        [
            [0, 0, 0, 64, 0, 0, 0, 0],
            [-1, 4, -10, 58, 17, -5, 1, 0],
            [-1, 4, -11, 40, 40, -11, 4, -1],
            [0, 1, -5, 17, 58, -10, 4, -1],
        ],
        dtype=np.float64,
    )
    / 64.0
)


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

    settings = vm.EncoderSettings()
    lam_sad = math.sqrt(vm.rd_lambda(settings.frame_qp(qp, False, 0)))
    sse = {"payload 2": 0.0, "8-tap": 0.0}
    for source, state in coded_frames(clip, qp):
        if state is None:
            continue
        vectors = vm.motion_search(source, state.reference, lam_sad, settings)
        ours = vm.predict_planes(state.reference, vectors, vm.MB)[0]
        sse["payload 2"] += float(((source - ours) ** 2).sum())
        sse["8-tap"] += float(((source - eight_tap_prediction(state.planes[0], vectors)) ** 2).sum())
    return {"sse": sse, "db_gain_8_tap": 10 * math.log10(sse["payload 2"] / sse["8-tap"])}


def describe(row: dict[str, Any]) -> str:
    return f"8-tap vs payload 2 filter: {row['db_gain_8_tap']:+.2f} dB"


if __name__ == "__main__":
    raise SystemExit(run(None, __doc__, "video_interpolation_probe", probe, describe))
