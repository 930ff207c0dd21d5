"""Would per-macroblock 8 x 8 motion vectors help payload 2? Prediction error with and without them.

    .venv/bin/python benchmarks/video_partition_probe.py                     # foreman, mobile, bus

A probe for a future payload (nothing here changes the format; payload 2 has one vector per
16 x 16 macroblock). The default model (video-mc2) codes each clip at base qps 34, 28, 22; for
every predicted frame the encoder's motion search runs twice on the decoded previous frame, with
16 x 16 and with 8 x 8 blocks (``EncoderSettings(block=8)``), and per macroblock the probe keeps
the four 8 x 8 vectors where their squared prediction error + lambda x their estimated vector bits
(``_mv_bits`` against the median predictor of each field) is below the 16 x 16 vector's. Numbers
are luma prediction errors before residual coding, with the mode choice itself free: an upper
bound to decide whether the tool is worth a payload version. Writes
benchmarks/results/video_partition_probe.json.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from video_probe import coded_frames, run  # noqa: E402


def probe(clip: dict[str, Any], qp: int) -> dict[str, Any]:
    from vqcodec.models import video_mc as vm

    settings = vm.EncoderSettings()
    small = dataclasses.replace(settings, block=8)
    lam = vm.rd_lambda(settings.frame_qp(qp, False, 0))
    whole = split = 0.0
    chosen = blocks = 0
    for source, state in coded_frames(clip, qp):
        if state is None:
            continue
        v16 = vm.motion_search(source, state.reference, math.sqrt(lam), settings)
        v8 = vm.motion_search(source, state.reference, math.sqrt(lam), small)
        e16 = vm.to_blocks((source - vm.predict_planes(state.reference, v16, 16)[0]) ** 2, 16).sum((2, 3))
        e8 = vm.to_blocks((source - vm.predict_planes(state.reference, v8, 8)[0]) ** 2, 16).sum((2, 3))
        rows, cols = e16.shape
        bits16 = vm._mv_bits(v16 - vm.median_predictors(v16))
        bits8 = vm._mv_bits(v8 - vm.median_predictors(v8)).reshape(rows, 2, cols, 2).sum((1, 3))
        pick = e8 + lam * bits8 < e16 + lam * bits16
        whole += float(e16.sum())
        split += float(np.where(pick, e8, e16).sum())
        chosen += int(pick.sum())
        blocks += int(pick.size)
    return {"db_gain": 10 * math.log10(whole / split), "share_split": chosen / blocks}


def describe(row: dict[str, Any]) -> str:
    return (
        f"8 x 8 vectors where they pay: prediction error {row['db_gain']:+.2f} dB "
        f"({100 * row['share_split']:.0f} % of MBs)"
    )


if __name__ == "__main__":
    raise SystemExit(run(None, __doc__, "video_partition_probe", probe, describe))
