"""The driver the video probes share (video_contexts, video_biprediction_probe,
video_interpolation_probe, video_partition_probe): the default video model codes each evaluation
clip at a base qp, a probe turns that into one row of numbers, and the rows are printed and written
as JSON. Nothing here changes the format: probes measure what a future payload could gain.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from video_rd import DATA, RESULTS, load_clip  # noqa: E402

CLIPS = "foreman_cif_30f,mobile_cif_30f,bus_cif_17f"
QPS = "34,28,22"


def evaluation_clips(names: str, frames: int | None) -> Iterator[tuple[str, dict[str, Any]]]:
    """(name, clip) of each comma-separated clip name found in ../shared/data/video (first
    ``frames`` frames); a missing clip is reported and skipped."""
    for name in names.split(","):
        path = DATA / "video" / f"{name}.y4m"
        if not path.exists():
            print(f"skipping {name}: {path} not found")
            continue
        yield name, load_clip(path, frames)


def coded_frames(clip: dict[str, Any], qp: int) -> Iterator[tuple[np.ndarray, Any]]:
    """Code ``clip`` with the default video model at base qp ``qp``; before coding each frame,
    yield (its luma padded to the coded size (H16, W16) int32, the ReferenceState the previous
    frame left, None for the first)."""
    from vqcodec.models import video_mc as vm
    from vqcodec.models.zoo import load_model

    info = clip["info"]
    codec = load_model(None, media="video").codec()
    state = None
    for planes in clip["planes"]:
        yield vm.pad_planes(planes, info.width, info.height)[0].astype(np.int32), state
        _, state = codec.compress(planes, info.width, info.height, state, qp=qp)


def run(
    argv: list[str] | None,
    doc: str,
    name: str,
    probe: Callable[[dict[str, Any], int], dict[str, Any]],
    describe: Callable[[dict[str, Any]], str],
) -> int:
    """``--clips`` x ``--qps``: ``probe(clip, qp)`` -> row, printed as ``describe(row)``; writes
    benchmarks/results/``name``.json (or ``--out``)."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--clips", default=CLIPS)
    parser.add_argument("--qps", default=QPS)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--out", type=Path, default=RESULTS / f"{name}.json")
    args = parser.parse_args(argv)
    report: dict[str, Any] = {"machine": {"platform": platform.platform()}, "clips": {}}
    for clip_name, clip in evaluation_clips(args.clips, args.frames):
        report["clips"][clip_name] = {}
        for qp in (int(q) for q in args.qps.split(",")):
            row = {"base_qp": qp, **probe(clip, qp)}
            report["clips"][clip_name][str(qp)] = row
            print(f"{clip_name:18s} qp {qp:2d}  {describe(row)}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")
    return 0
