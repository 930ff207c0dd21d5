"""Scene-cut detection of the video encoder: false key frames in continuous shots, true cuts found.

    .venv/bin/python benchmarks/scene_cut.py            # 4 DAVIS clips, margins 1.0/0.95/0.9/0.8/off
    .venv/bin/python benchmarks/scene_cut.py --clips 2 --frames 12 --margins 1.0,0.7

Clips: ``../shared/data/video_train`` (DAVIS, 854x480; training clips, never the evaluation set),
first ``--frames`` frames, downscaled by ``--scale`` (default 2) so the run stays short on a CPU.
Each clip is one continuous shot, so every key frame after frame 0 that the GOP does not force is
a false scene cut. A spliced clip (the first half of one clip, then the second half of another)
has exactly one true cut.

For each scene-cut margin (``vqcodec.codec.video.SCENE_CUT_MARGIN``: a P frame becomes a key frame
only when the key frame's D + lambda R is under margin x the P frame's) and quality level: key
frames, kbit/s (at 25 fps), PSNR-RGB; per margin, the BD-rate (PCHIP) against scene-cut detection
off, averaged over the clips, and whether the spliced clip's cut was found. Writes
benchmarks/results/scene_cut.json.
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

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from image_rd import bd_rate as _bd_rate  # noqa: E402  (Bjontegaard delta, shared with the image benchmark)

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("VQCODEC_DATA", REPO.parent / "shared" / "data"))
OUT = REPO / "benchmarks" / "results" / "scene_cut.json"
FPS = 25


def load_clip(path: Path, frames: int, scale: int) -> list[np.ndarray]:
    from PIL import Image

    from vqcodec.codec.video_io import open_video

    out = []
    with open_video(str(path)) as reader:
        for rgb in reader:
            if len(out) >= frames:
                break
            image = Image.fromarray(rgb)
            if scale > 1:
                image = image.resize((image.width // scale, image.height // scale), Image.LANCZOS)
            out.append(np.asarray(image))
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def code_clip(frames: list[np.ndarray], quality: int, margin: float | None, gop: int) -> dict[str, Any]:
    """Encode and decode ``frames``; ``margin`` None turns scene-cut detection off."""
    import vqcodec.codec.video as video

    saved = video.SCENE_CUT_MARGIN
    video.SCENE_CUT_MARGIN = 1.0 if margin is None else margin
    try:
        buf = io.BytesIO()
        start = time.perf_counter()
        h, w = frames[0].shape[:2]
        with video.VideoEncoder(
            buf, fps=FPS, size=(w, h), quality=quality, gop=gop, scene_cut=margin is not None
        ) as encoder:
            for frame in frames:
                encoder.write(frame)
        seconds = time.perf_counter() - start
        stats = encoder.stats
    finally:
        video.SCENE_CUT_MARGIN = saved
    buf.seek(0)
    keys = []
    with video.VideoDecoder(buf) as decoder:
        decoded = [np.asarray(f) for f in decoder]
    buf.seek(0)
    from vqcodec.container import ContainerReader

    with ContainerReader(buf) as reader:
        keys = [f.index for f in reader.frames() if f.key]
    return {
        "quality": quality,
        "key_frames": keys,
        "kbps": 8.0 * len(buf.getvalue()) * FPS / len(frames) / 1000.0,
        "psnr": float(np.mean([psnr(a, b) for a, b in zip(frames, decoded)])),
        "encode_fps": stats.frames / max(seconds, 1e-9),
    }


def bd_rate(ref: list[tuple[float, float]], test: list[tuple[float, float]]) -> float | None:
    """Bjontegaard rate difference (%) of ``test`` against ``ref``, (kbps, psnr) points, PCHIP."""
    anchor = ([r for r, _ in ref], [p for _, p in ref])
    result = _bd_rate(anchor, ([r for r, _ in test], [p for _, p in test]))
    value = result.get("bd_rate_percent")
    return None if value is None else float(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=4, help="DAVIS clips (default 4)")
    parser.add_argument("--frames", type=int, default=16, help="frames per clip (default 16)")
    parser.add_argument("--scale", type=int, default=2, help="downscale factor (default 2)")
    parser.add_argument("--qualities", default="3,5,7", help="quality levels (default 3,5,7)")
    parser.add_argument("--margins", default="1.0,0.95,0.9,0.8", help="scene-cut margins (off is always run)")
    parser.add_argument("--gop", type=int, default=64, help="key-frame interval (default 64: no forced keys)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    paths = sorted((DATA / "video_train").glob("*.mkv"))[: args.clips]
    if not paths:
        raise SystemExit(f"no clips under {DATA / 'video_train'}")
    qualities = [int(q) for q in args.qualities.split(",")]
    margins: list[float | None] = [None, *(float(m) for m in args.margins.split(","))]
    clips = {p.stem: load_clip(p, args.frames, args.scale) for p in paths}
    if len(paths) >= 2:
        a, b = list(clips.values())[:2]
        half = args.frames // 2
        spliced = {"spliced": a[:half] + b[half : half * 2]}
    else:
        spliced = {}
    rows = []
    for name, frames in {**clips, **spliced}.items():
        for margin in margins:
            for quality in qualities:
                row = {"clip": name, "margin": margin, **code_clip(frames, quality, margin, args.gop)}
                rows.append(row)
                label = "off" if margin is None else f"{margin:.2f}"
                print(
                    f"{name:<28} margin {label:>4} q{quality}  keys {len(row['key_frames']):>2}"
                    f"  {row['kbps']:8.1f} kbit/s  {row['psnr']:6.2f} dB",
                    flush=True,
                )
    summary = []
    for margin in margins:
        false_keys, rates = 0, []
        for name in clips:
            mine = [r for r in rows if r["clip"] == name and r["margin"] == margin]
            off = [r for r in rows if r["clip"] == name and r["margin"] is None]
            false_keys += sum(len(r["key_frames"]) - 1 for r in mine)
            rate = bd_rate([(r["kbps"], r["psnr"]) for r in off], [(r["kbps"], r["psnr"]) for r in mine])
            if rate is not None:
                rates.append(rate)
        cut_found = None
        if spliced:
            half = args.frames // 2
            cuts = [r for r in rows if r["clip"] == "spliced" and r["margin"] == margin]
            cut_found = sum(half in r["key_frames"] for r in cuts) / len(cuts)
        summary.append(
            {
                "margin": margin,
                "false_key_frames_per_clip_and_level": false_keys / (len(clips) * len(qualities)),
                "bd_rate_vs_off_percent": float(np.mean(rates)) if rates else None,
                "spliced_cut_found_share": cut_found,
            }
        )
    print(f"\n{'margin':>6} {'false keys/run':>15} {'BD-rate vs off':>15} {'cut found':>10}")
    for s in summary:
        label = "off" if s["margin"] is None else f"{s['margin']:.2f}"
        bd = s["bd_rate_vs_off_percent"]
        cut = s["spliced_cut_found_share"]
        print(
            f"{label:>6} {s['false_key_frames_per_clip_and_level']:>15.2f} "
            f"{'' if bd is None else f'{bd:+.1f} %':>15} {'' if cut is None else f'{cut:.0%}':>10}"
        )
    result = {
        "clips": list(clips),
        "frames": args.frames,
        "scale": args.scale,
        "gop": args.gop,
        "qualities": qualities,
        "threads": args.threads,
        "platform": platform.platform(),
        "rows": rows,
        "summary": summary,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
