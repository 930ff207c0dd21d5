"""Would a second reference frame help payload 2? Prediction error of one, two and averaged references.

    .venv/bin/python benchmarks/video_biprediction_probe.py   # foreman, mobile, bus; qp 34, 28, 22
    .venv/bin/python benchmarks/video_biprediction_probe.py --clips mobile_cif_30f --qps 28

A probe for a future payload (nothing here changes the format). The default model (video-mc2)
codes each clip; for every frame t >= 2 its luma is predicted from the decoded frames t - 1 and
t - 2 with the encoder's own motion search (``motion_search``, quarter-pel 16 x 16 blocks, priced
at the frame's lambda), and per macroblock the probe keeps the smallest squared error among

- ``one``: the previous frame only (what payload 2 does),
- ``either``: the better of the previous frame and the one before it (multiple references),
- ``bi``: also the rounded mean of both predictions (bi-prediction from two past frames).

The numbers are prediction errors before any residual coding, with the choice made by an oracle
that pays no bits for it or for the second vector: an upper bound on what the tool could save,
to decide whether it is worth a payload version. Writes benchmarks/results/video_biprediction_probe.json.
"""

from __future__ import annotations

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
    lam_sad = math.sqrt(vm.rd_lambda(settings.frame_qp(qp, False, 0)))
    sse = {"one": 0.0, "either": 0.0, "bi": 0.0}
    second = bi = blocks = 0
    before = None  # the decoded frame two back
    for source, state in coded_frames(clip, qp):
        if state is not None and before is not None:
            predictions = []
            for planes in (state.planes, before):
                ref = vm.Reference.from_planes(planes)
                vectors = vm.motion_search(source, ref, lam_sad, settings)
                predictions.append(vm.predict_planes(ref, vectors, vm.MB)[0])
            p1, p2 = predictions
            mean = (p1 + p2 + 1) >> 1
            errors = [vm.to_blocks((source - p) ** 2, vm.MB).sum((2, 3)) for p in (p1, p2, mean)]
            sse["one"] += float(errors[0].sum())
            sse["either"] += float(np.minimum(errors[0], errors[1]).sum())
            sse["bi"] += float(np.minimum.reduce(errors).sum())
            blocks += int(errors[0].size)
            second += int((errors[1] < errors[0]).sum())
            bi += int(((errors[2] < errors[0]) & (errors[2] < errors[1])).sum())
        if state is not None:
            before = state.planes
    return {
        "sse": sse,
        "db_gain_either": 10 * math.log10(sse["one"] / sse["either"]),
        "db_gain_bi": 10 * math.log10(sse["one"] / sse["bi"]),
        "share_second_reference": second / blocks,
        "share_bi": bi / blocks,
    }


def describe(row: dict[str, Any]) -> str:
    return (
        f"prediction error vs one reference: either of two {row['db_gain_either']:+.2f} dB "
        f"({100 * row['share_second_reference']:.0f} % of MBs), with bi-prediction "
        f"{row['db_gain_bi']:+.2f} dB ({100 * row['share_bi']:.0f} % bi)"
    )


if __name__ == "__main__":
    raise SystemExit(run(None, __doc__, "video_biprediction_probe", probe, describe))
