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

import argparse
import dataclasses
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
    small = dataclasses.replace(settings, block=8)
    state = None
    whole = split = 0.0
    chosen = blocks = 0
    for planes in clip["planes"]:
        if state is not None:
            source = vm.pad_planes(planes, info.width, info.height)[0].astype(np.int32)
            lam = vm.rd_lambda(settings.frame_qp(qp, False, 0))
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
        _, state = codec.compress(planes, info.width, info.height, state, qp=qp)
    return {"base_qp": qp, "db_gain": 10 * math.log10(whole / split), "share_split": chosen / blocks}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", default="foreman_cif_30f,mobile_cif_30f,bus_cif_17f")
    parser.add_argument("--qps", default="34,28,22")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--out", type=Path, default=RESULTS / "video_partition_probe.json")
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
                f"{name:18s} qp {qp:2d}  8 x 8 vectors where they pay: prediction error "
                f"{row['db_gain']:+.2f} dB ({100 * row['share_split']:.0f} % of MBs)",
                flush=True,
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
