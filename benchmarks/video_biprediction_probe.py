"""Would a second reference frame help payload 2? Prediction error of one, two and averaged references.

    .venv/bin/python benchmarks/video_biprediction_probe.py                  # foreman, mobile, bus at qp 28
    .venv/bin/python benchmarks/video_biprediction_probe.py --qps 34,22

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


def probe(clip: dict[str, Any], qp: int) -> dict[str, Any]:
    from vqcodec.models import video_mc as vm
    from vqcodec.models.zoo import load_model

    info = clip["info"]
    codec = load_model(None, media="video").codec()
    settings = vm.EncoderSettings()
    state, decoded = None, []
    sse = {"one": 0.0, "either": 0.0, "bi": 0.0}
    chosen = {"one": 0, "either": 0, "bi": 0}
    for t, planes in enumerate(clip["planes"]):
        source = vm.pad_planes(planes, info.width, info.height)[0].astype(np.int32)
        if t >= 2:
            lam_sad = math.sqrt(vm.rd_lambda(settings.frame_qp(qp, False, 0)))
            predictions = []
            for back in (1, 2):
                ref = vm.Reference.from_planes(decoded[-back])
                vectors = vm.motion_search(source, ref, lam_sad, settings)
                predictions.append(vm.predict_planes(ref, vectors, vm.MB)[0])
            p1, p2 = predictions
            bi = (p1 + p2 + 1) >> 1
            errors = [vm.to_blocks((source - p) ** 2, vm.MB).sum((2, 3)) for p in (p1, p2, bi)]
            one, either, both = errors[0], np.minimum(errors[0], errors[1]), np.minimum.reduce(errors)
            sse["one"] += float(one.sum())
            sse["either"] += float(either.sum())
            sse["bi"] += float(both.sum())
            chosen["one"] += int(one.size)
            chosen["either"] += int((errors[1] < errors[0]).sum())
            chosen["bi"] += int(((errors[2] < errors[0]) & (errors[2] < errors[1])).sum())
        _, state = codec.compress(planes, info.width, info.height, state, qp=qp)
        decoded.append(state.planes)
    blocks = chosen["one"]
    return {
        "base_qp": qp,
        "sse": sse,
        "db_gain_either": 10 * math.log10(sse["one"] / sse["either"]),
        "db_gain_bi": 10 * math.log10(sse["one"] / sse["bi"]),
        "share_second_reference": chosen["either"] / blocks,
        "share_bi": chosen["bi"] / blocks,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", default="foreman_cif_30f,mobile_cif_30f,bus_cif_17f")
    parser.add_argument("--qps", default="28")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--out", type=Path, default=RESULTS / "video_biprediction_probe.json")
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
            print(
                f"{name:18s} qp {qp:2d}  prediction error vs one reference: either of two "
                f"{row['db_gain_either']:+.2f} dB ({100 * row['share_second_reference']:.0f} % of MBs), "
                f"with bi-prediction {row['db_gain_bi']:+.2f} dB ({100 * row['share_bi']:.0f} % bi)",
                flush=True,
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
