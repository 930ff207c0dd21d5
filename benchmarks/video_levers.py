"""Encoder levers and the deblocking filter of video payload version 2, one row each, against x264 in one run.

    .venv/bin/python benchmarks/video_levers.py                       # foreman, mobile, bus (30 / 17 frames)
    .venv/bin/python benchmarks/video_levers.py --clips bus_cif_17f --rows released,default

Rows differ in the encoder's choices (``EncoderSettings``: dead-zone rounding or RD-optimised
levels, ``rdoq`` and its lambda factor; the qp cascade, ``key_qp_offset`` / ``p_qp_offsets``), which
every decoder of payload version 2 follows unchanged (each frame records its own qp), and in the
one decoder-side tool, the in-loop deblocking filter of ``video-mc2`` (rows with ``deblock``; row
``deblock+N`` reads its thresholds at the frame's qp + N instead of qp + DEBLOCK_QP_OFFSET, to
show what the offset buys). Rows are coded at the base qps of quality levels 4..9 (37..22);
rate = payload bytes (no container, as x264's bitstream bytes), PSNR-Y = mean over frames of the
decoded luma (the encoder's reconstruction, which the decoder reproduces exactly;
tests/test_models/test_video_mc.py checks that). x264: preset medium, CRF 18..38 through PyAV on
the same planes (video_rd.run_x26x). BD-rate: PCHIP over the common PSNR-Y range (image_rd.bd_rate).

Writes benchmarks/results/video_levers.json and prints the table.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from image_rd import bd_rate  # noqa: E402
from video_probe import evaluation_clips  # noqa: E402
from video_rd import RESULTS, X264_CRF, psnr, run_x26x  # noqa: E402

BASE_QPS = (37, 34, 31, 28, 25, 22)


def rows() -> dict[str, tuple[Any, bool | int]]:
    """name -> (EncoderSettings, deblock: False, True, or the deblocking qp offset to use)."""
    from vqcodec.models.video_mc import EncoderSettings

    released = EncoderSettings(rdoq=False, key_qp_offset=0, p_qp_offsets=(0,))
    cascade4 = {"key_qp_offset": -3, "p_qp_offsets": (1, 0, 1, -1)}
    cascade8 = {"key_qp_offset": -3, "p_qp_offsets": (2, 1, 2, 1, 2, 1, 2, -1)}
    return {
        "released": (released, False),
        "rdoq": (dataclasses.replace(released, rdoq=True), False),
        "cascade4": (dataclasses.replace(released, **cascade4), False),
        "cascade8": (dataclasses.replace(released, **cascade8), False),
        "rdoq+cascade4": (dataclasses.replace(released, rdoq=True, **cascade4), False),
        "rdoq+cascade8": (dataclasses.replace(released, rdoq=True, **cascade8), False),
        "rdoq1.0+cascade8": (
            dataclasses.replace(released, rdoq=True, rdoq_lambda_factor=1.0, **cascade8),
            False,
        ),
        "rdoq1.5+cascade8": (
            dataclasses.replace(released, rdoq=True, rdoq_lambda_factor=1.5, **cascade8),
            False,
        ),
        "released+deblock": (released, True),
        "deblock+0": (EncoderSettings(), 0),
        "deblock+3": (EncoderSettings(), 3),
        "deblock+9": (EncoderSettings(), 9),
        "default": (EncoderSettings(), True),
    }


def run_settings(clip: dict[str, Any], settings: Any, qp: int, deblock: bool | int = False) -> dict[str, Any]:
    from vqcodec.models import video_mc

    if not isinstance(deblock, bool):  # another deblocking qp offset: measurement only
        filtered = video_mc.deblock
        video_mc.deblock = functools.partial(filtered, qp_offset=int(deblock))  # type: ignore[assignment]
        try:
            return run_settings(clip, settings, qp, True)
        finally:
            video_mc.deblock = filtered
    info = clip["info"]
    codec = video_mc.MotionCompensatedCodec(settings, deblock=deblock)
    state, total, scores, qps = None, 0, [], []
    start = time.perf_counter()
    for planes in clip["planes"]:
        payload, state = codec.compress(planes, info.width, info.height, state, qp=qp)
        total += len(payload)
        qps.append(payload[1])
        scores.append(psnr(state.planes[0][: info.height, : info.width], planes[0]))
    seconds = time.perf_counter() - start
    n = len(clip["planes"])
    return {
        "base_qp": qp,
        "kbps": 8.0 * total * float(info.fps) / n / 1000.0,
        "bytes": total,
        "psnr_y": float(np.mean(scores)),
        "encode_fps": n / seconds,
        "qp_range": [int(min(qps)), int(max(qps))],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", default="foreman_cif_30f,mobile_cif_30f,bus_cif_17f")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--rows", default=None, help="comma-separated row names (default: all)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "video_levers.json")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    settings = rows()
    names = list(settings) if args.rows is None else args.rows.split(",")
    unknown = [n for n in names if n not in settings]
    if unknown:
        parser.error(f"unknown rows {unknown}; known: {', '.join(settings)}")
    report: dict[str, Any] = {
        "settings": {"frames": args.frames, "base_qps": list(BASE_QPS), "x264_crf": list(X264_CRF)},
        "rows": {
            n: {
                **{
                    k: (list(v) if isinstance(v, tuple) else v)
                    for k, v in dataclasses.asdict(settings[n][0]).items()
                },
                "deblock": settings[n][1],
            }
            for n in names
        },
        "machine": {"platform": platform.platform(), "threads": args.threads},
        "clips": {},
    }
    for name, clip in evaluation_clips(args.clips, args.frames):
        x264 = [run_x26x(clip, "libx264", crf) for crf in X264_CRF]
        anchor = ([r["kbps"] for r in x264], [r["psnr_y"] for r in x264])
        entry: dict[str, Any] = {"x264": x264, "rows": {}, "bd_rate_vs_x264": {}, "bd_rate_vs_released": {}}
        for n in names:
            points = [run_settings(clip, settings[n][0], qp, settings[n][1]) for qp in BASE_QPS]
            entry["rows"][n] = points
            test = ([r["kbps"] for r in points], [r["psnr_y"] for r in points])
            entry["bd_rate_vs_x264"][n] = bd_rate(anchor, test)["bd_rate_percent"]
            if "released" in entry["rows"]:
                ref = entry["rows"]["released"]
                entry["bd_rate_vs_released"][n] = bd_rate(
                    ([r["kbps"] for r in ref], [r["psnr_y"] for r in ref]), test
                )["bd_rate_percent"]
            fps = np.mean([r["encode_fps"] for r in points])
            vs = entry["bd_rate_vs_released"].get(n)
            print(
                f"{name:18s} {n:18s} vs x264 {entry['bd_rate_vs_x264'][n]:+7.1f} %"
                + (f"  vs released {vs:+6.1f} %" if vs is not None else "")
                + f"  encode {fps:5.1f} fps",
                flush=True,
            )
        report["clips"][name] = entry
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
