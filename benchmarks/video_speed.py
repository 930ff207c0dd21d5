"""Encode and decode speed of the default video model (video-mc2, payload 2) on one thread.

    .venv/bin/python benchmarks/video_speed.py                 # CIF clips and 854x480
    .venv/bin/python benchmarks/video_speed.py --repeat 1 --frames 10

Clips: foreman, bus and mobile CIF (their Y4M planes) and the first ``--frames`` frames of
flower_720p scaled to 854x480 (benchmarks/video_rd.py ``scaled_clip``), from ../shared/data/video.
Each clip is coded at the default quality (level 7, qp 28) with the default GOP (one key frame
here), through ``VideoEncoder.write_planes`` and ``VideoDecoder``; decode is timed twice, to the
decoded planes (a Y4M output) and to RGB (the default numpy output). Times are the fastest of
``--repeat`` runs (the machine is shared: the fastest run is the one least disturbed); the load
average is recorded. Writes benchmarks/results/video_speed.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("VQCODEC_DATA", REPO.parent / "shared" / "data"))
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(Path(__file__).resolve().parent))

from video_rd import load_clip, scaled_clip  # noqa: E402

CIF = ("foreman_cif_30f", "bus_cif_17f", "mobile_cif_30f")


def fastest(repeat: int, step: Any) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        result = step()
        best = min(best, time.perf_counter() - start)
    return best, result


def measure(clip: dict[str, Any], repeat: int) -> dict[str, Any]:
    from vqcodec.codec.video import VideoDecoder, VideoEncoder

    info = clip["info"]
    n = len(clip["planes"])

    def encode() -> bytes:
        out = io.BytesIO()
        with VideoEncoder(
            out, fps=info.fps, pixel_format="yuv420p", matrix=info.matrix, full_range=info.full_range
        ) as encoder:
            for planes in clip["planes"]:
                encoder.write_planes(planes)
        return out.getvalue()

    def decode_planes(data: bytes) -> int:
        with VideoDecoder(data) as decoder:
            return sum(1 for _ in decoder.planes_with_index())

    def decode_rgb(data: bytes) -> int:
        with VideoDecoder(data) as decoder:
            return sum(1 for _ in decoder)

    encode_s, data = fastest(repeat, encode)
    planes_s, count = fastest(repeat, lambda: decode_planes(data))
    rgb_s, _ = fastest(repeat, lambda: decode_rgb(data))
    assert count == n
    return {
        "clip": clip["name"],
        "size": [info.width, info.height],
        "frames": n,
        "kbps": 8.0 * len(data) * float(info.fps) / n / 1000.0,
        "encode_fps": n / encode_s,
        "decode_planes_fps": n / planes_s,
        "decode_rgb_fps": n / rgb_s,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeat", type=int, default=3, help="runs per measurement (the fastest is kept)")
    p.add_argument("--frames", type=int, default=30, help="frames of each clip")
    p.add_argument("--out", default=str(RESULTS / "video_speed.json"))
    args = p.parse_args(argv)
    import torch

    from vqcodec.codec.video import resolve_video_model

    torch.set_num_threads(1)
    folder = DATA / "video"
    if not folder.is_dir():
        print(f"no evaluation clips at {folder}: nothing to do")
        return 0
    clips = [
        load_clip(folder / f"{name}.y4m", args.frames) for name in CIF if (folder / f"{name}.y4m").is_file()
    ]
    flower = folder / "flower_720p_300f.h264"
    if flower.is_file():
        clips.append(scaled_clip(flower, (854, 480), args.frames))
    rows = []
    load = [os.getloadavg()]
    for clip in clips:
        rows.append(measure(clip, args.repeat))
        r = rows[-1]
        print(
            f"{r['clip']:28s} {r['size'][0]}x{r['size'][1]} {r['frames']:3d} f  {r['kbps']:7.1f} kbit/s  "
            f"encode {r['encode_fps']:5.1f} fps  decode {r['decode_planes_fps']:5.1f} fps (planes) "
            f"{r['decode_rgb_fps']:5.1f} fps (RGB)",
            flush=True,
        )
    load.append(os.getloadavg())
    report = {
        "model": resolve_video_model(None).name,
        "settings": {"quality": 7, "threads": 1, "repeat": args.repeat, "frames": args.frames},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_average": load},
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
