"""Rate-distortion and speed of the video codec on the evaluation clips, against x264 and x265.

    .venv/bin/python benchmarks/video_rd.py --threads 1            # every clip, every row
    .venv/bin/python benchmarks/video_rd.py --clips foreman --frames 10 --qualities 5,7 --no-old
    .venv/bin/python benchmarks/video_rd.py --model some-video.safetensors --no-x265

Clips: ../shared/data/video (env VQCODEC_DATA): foreman, mobile and bus (CIF) and park_joy,
read exactly from their Y4M files (4:2:0, BT.601 limited range) and given to the encoder as
planes (``VideoEncoder.write_planes``).

Rows, per clip and setting:
- ``vqcodec``: the default video model (``video-mc2``, payload version 2) with temporal coding
  (key frame every ``--gop`` frames, P frames in between) at each quality level (``--qualities``);
  ``vqcodec-intra``: every frame a key frame (same model, same levels);
- ``vqcodec-old``: the previous default, ``video-rvq8`` (payload version 1), at ``--old-qualities``;
- ``x264``: libx264 preset medium, CRF sweep; ``x265``: libx265 preset medium, CRF sweep, both
  through PyAV on the original yuv420p planes (bitstream bytes, no container).
Metrics: kbit/s at the clip's own frame rate (vqcodec: the whole .vqc file), PSNR-Y on the
luma plane (payload 2: the decoded planes themselves; payload 1: its RGB output converted back to
yuv420p with the same BT.601 matrix) and PSNR-RGB against the source converted to RGB, both
averaged over frames (mean of per-frame PSNR); encode and decode frames per second (wall clock;
decode includes the conversion to RGB, the decoder's default output).
BD-rates (Bjontegaard, PCHIP, PSNR-Y): vqcodec vs vqcodec-intra (the temporal saving), vs x264,
vs x265, vs vqcodec-old.

Two more sections: ``rate_control``: ``--kbps`` targets on a 10-second clip (``--rate-clip``,
scaled to ``--rate-size``), the bitrate reached and its error; ``speed``: encode and decode frames
per second of the default model on ``--speed-size`` frames (854x480) of the same clip.
Writes benchmarks/results/video_rd.json and video_rd.png (matplotlib when installed).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("VQCODEC_DATA", REPO.parent / "shared" / "data"))
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(Path(__file__).resolve().parent))

from image_rd import bd_rate  # noqa: E402  (Bjontegaard delta, shared with the image benchmark)

CLIPS = ("foreman_cif_30f", "mobile_cif_30f", "bus_cif_17f", "park_joy_160x90_10f")
X264_CRF = (18, 23, 28, 33, 38)
X265_CRF = (18, 23, 28, 33, 38)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * math.log10(255.0**2 / mse)


def scaled_clip(path: Path, size: tuple[int, int], frames: int | None) -> dict[str, Any]:
    """Frames of any video file, scaled to ``size`` (Lanczos), as 4:2:0 planes (BT.601 limited)."""
    from fractions import Fraction as F

    from PIL import Image

    from vqcodec.codec.video_io import VideoInfo, open_video, rgb_to_yuv, yuv_to_rgb

    planes, rgb = [], []
    with open_video(str(path)) as reader:
        fps = reader.info.fps
        for i, frame in enumerate(reader):
            if frames is not None and i >= frames:
                break
            small = np.asarray(Image.fromarray(frame).resize(size, Image.LANCZOS))
            p = rgb_to_yuv(small, "yuv420p", matrix=6, full_range=False)
            planes.append(p)
            rgb.append(yuv_to_rgb(p, "yuv420p", matrix=6, full_range=False))
    info = VideoInfo(width=size[0], height=size[1], fps=F(fps), pixel_format="yuv420p", matrix=6)
    return {"name": f"{path.stem}@{size[0]}x{size[1]}", "info": info, "planes": planes, "rgb": rgb}


def load_clip(path: Path, frames: int | None) -> dict[str, Any]:
    from vqcodec.codec.video_io import Y4MReader, yuv_to_rgb

    planes, rgb = [], []
    with Y4MReader(str(path)) as reader:
        info = reader.info
        for i, p in enumerate(reader.planes()):
            if frames is not None and i >= frames:
                break
            planes.append([np.array(x) for x in p])
            rgb.append(yuv_to_rgb(p, info.pixel_format, matrix=info.matrix, full_range=info.full_range))
    return {"name": path.stem, "info": info, "planes": planes, "rgb": rgb}


def score(
    clip: dict[str, Any], decoded_planes: list[list[np.ndarray]], decoded_rgb: list[np.ndarray]
) -> tuple[float, float]:
    ys = [psnr(out[0], src[0]) for out, src in zip(decoded_planes, clip["planes"])]
    rgbs = [psnr(out, src) for out, src in zip(decoded_rgb, clip["rgb"])]
    return float(np.mean(ys)), float(np.mean(rgbs))


def kbps(total_bytes: int, frames: int, fps: Fraction) -> float:
    return 8.0 * total_bytes * float(fps) / frames / 1000.0


def run_vqcodec(
    clip: dict[str, Any],
    model: Any,
    quality: int | None,
    gop: int | None,
    lambda_scale: float,
    **options: Any,
) -> dict[str, Any]:
    from vqcodec.codec.video import VideoDecoder, VideoEncoder
    from vqcodec.codec.video_io import rgb_to_yuv, yuv_to_rgb

    info = clip["info"]
    out = io.BytesIO()
    start = time.perf_counter()
    with VideoEncoder(
        out,
        model,
        fps=info.fps,
        quality=quality,
        gop=gop,
        pixel_format=info.pixel_format,
        full_range=info.full_range,
        matrix=info.matrix,
        lambda_scale=lambda_scale,
        **options,
    ) as encoder:
        for planes in clip["planes"]:
            encoder.write_planes(planes)
    encode_s = time.perf_counter() - start
    data = out.getvalue()
    decoded_planes, decoded_rgb = [], []
    start = time.perf_counter()
    with VideoDecoder(data, model=model) as decoder:
        version = decoder.payload_version
        if version == 2:  # planes, and the RGB the decoder's default output gives
            for _, planes in decoder.planes_with_index():
                decoded_planes.append(planes)
                decoded_rgb.append(
                    yuv_to_rgb(planes, "yuv420p", matrix=info.matrix, full_range=info.full_range)
                )
        else:
            decoded_rgb = list(decoder)
    decode_s = time.perf_counter() - start
    if version == 1:
        decoded_planes = [
            rgb_to_yuv(f, "yuv420p", matrix=info.matrix, full_range=info.full_range) for f in decoded_rgb
        ]
    n = len(clip["planes"])
    psnr_y, psnr_rgb = score(clip, decoded_planes, decoded_rgb)
    with VideoDecoder(data, model=model) as decoder:
        qps = [int(f.payload[1]) for f in decoder._reader.frames()] if version == 2 else []
    return {
        "quality": quality,
        "qp": qps[0] if qps else None,
        "kbps": kbps(len(data), n, info.fps),
        "bytes": len(data),
        "psnr_y": psnr_y,
        "psnr_rgb": psnr_rgb,
        "encode_fps": n / encode_s,
        "decode_fps": n / decode_s,
        "key_frames": encoder.stats.key_frames,
        "payload_version": version,
        "qp_range": [min(qps), max(qps)] if qps else None,
    }


def run_x26x(clip: dict[str, Any], codec: str, crf: int) -> dict[str, Any]:
    import av

    info = clip["info"]
    n = len(clip["planes"])
    fps = Fraction(info.fps).limit_denominator(1 << 16)
    ctx = av.CodecContext.create(codec, "w")
    ctx.width, ctx.height = info.width, info.height
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = 1 / fps
    ctx.framerate = fps
    options = {"crf": str(crf), "preset": "medium"}
    if codec == "libx265":
        options["x265-params"] = "log-level=error"
    ctx.options = options
    packets = []
    start = time.perf_counter()
    for i, planes in enumerate(clip["planes"]):
        frame = av.VideoFrame(info.width, info.height, "yuv420p")
        for plane, data in zip(frame.planes, planes):
            rows = data.shape[0]
            buf = np.frombuffer(plane, dtype=np.uint8).reshape(-1, plane.line_size)
            buf[:rows, : data.shape[1]] = data  # type: ignore[index]
        frame.pts = i
        packets.extend(ctx.encode(frame))
    packets.extend(ctx.encode(None))
    encode_s = time.perf_counter() - start
    size = sum(p.size for p in packets)
    decoder = av.CodecContext.create("hevc" if codec == "libx265" else "h264", "r")
    decoded_y, decoded_rgb = [], []
    start = time.perf_counter()
    frames = []
    for p in packets:
        frames.extend(decoder.decode(p))
    frames.extend(decoder.decode(None))
    decode_s = time.perf_counter() - start
    from vqcodec.codec.video_io import yuv_to_rgb

    for f in frames:
        planes = [
            np.frombuffer(pl, dtype=np.uint8).reshape(-1, pl.line_size)[:h, :w]
            for pl, (h, w) in zip(
                f.planes, [(info.height, info.width)] + [((info.height + 1) // 2, (info.width + 1) // 2)] * 2
            )
        ]
        decoded_y.append(planes[0].copy())
        decoded_rgb.append(yuv_to_rgb(planes, "yuv420p", matrix=info.matrix, full_range=info.full_range))
    ys = [psnr(a, src[0]) for a, src in zip(decoded_y, clip["planes"])]
    rgbs = [psnr(a, src) for a, src in zip(decoded_rgb, clip["rgb"])]
    return {
        "crf": crf,
        "kbps": kbps(size, n, info.fps),
        "bytes": size,
        "psnr_y": float(np.mean(ys)),
        "psnr_rgb": float(np.mean(rgbs)),
        "encode_fps": n / encode_s,
        "decode_fps": n / decode_s,
        "frames_decoded": len(frames),
    }


def curve(rows: list[dict[str, Any]]) -> tuple[list[float], list[float]]:
    return [r["kbps"] for r in rows], [r["psnr_y"] for r in rows]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clips", default=",".join(CLIPS), help="comma-separated clip names (or parts of names)")
    p.add_argument("--frames", type=int, default=None, help="first N frames of each clip (default all)")
    p.add_argument("--model", default=None, help="video or image model (default: the bundled video model)")
    p.add_argument("--qualities", default="4,5,6,7,8,9", help="comma-separated quality levels")
    p.add_argument("--old-model", default="video-rvq8", help="the previous default, as rows vqcodec-old")
    p.add_argument("--old-qualities", default="3,5,7,8", help="its quality levels")
    p.add_argument("--no-old", action="store_true", help="skip the vqcodec-old rows")
    p.add_argument("--rate-clip", default="flower_720p_300f", help="clip of the rate-control rows (10 s)")
    p.add_argument("--rate-size", default="320x180", help="its frame size for rate control")
    p.add_argument("--rate-kbps", default="150,300,600", help="--kbps targets (empty: no rate rows)")
    p.add_argument("--speed-size", default="854x480", help="frame size of the speed rows")
    p.add_argument("--speed-frames", type=int, default=30, help="frames of the speed rows (0: none)")
    p.add_argument("--gop", type=int, default=None, help="key-frame interval (default the model's)")
    p.add_argument("--lambda-scale", type=float, default=1.0)
    p.add_argument("--x264-crf", default=",".join(map(str, X264_CRF)))
    p.add_argument("--x265-crf", default=",".join(map(str, X265_CRF)))
    p.add_argument("--no-intra", action="store_true", help="skip the intra-only rows")
    p.add_argument("--no-x265", action="store_true")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--out", default=str(RESULTS / "video_rd.json"))
    p.add_argument("--plot", default=str(RESULTS / "video_rd.png"))
    args = p.parse_args(argv)

    import torch

    from vqcodec.codec.video import resolve_video_model

    torch.set_num_threads(args.threads)
    folder = DATA / "video"
    if not folder.is_dir():
        print(f"no evaluation clips at {folder}: nothing to do")
        return 0
    wanted = [c.strip() for c in args.clips.split(",") if c.strip()]
    paths = sorted(p for p in folder.glob("*.y4m") if any(w in p.stem for w in wanted))
    model = resolve_video_model(args.model)
    old_model = None if args.no_old else resolve_video_model(args.old_model)
    levels = int(model.quality_levels)
    qualities = [int(q) for q in args.qualities.split(",")] if args.qualities else list(range(1, levels + 1))
    old_qualities = [int(q) for q in args.old_qualities.split(",") if q]
    gop = args.gop  # None: each model's own
    report: dict[str, Any] = {
        "model": {"name": model.name, "sha256": bytes(model.sha256).hex(), "media": model.media},
        "old_model": None if old_model is None else {"name": old_model.name, "qualities": old_qualities},
        "settings": {
            "gop": gop,
            "qualities": qualities,
            "frames": args.frames,
            "threads": args.threads,
            "lambda_scale": args.lambda_scale,
        },
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "load_average_at_start": os.getloadavg(),
        },
        "clips": {},
    }
    for path in paths:
        clip = load_clip(path, args.frames)
        info = clip["info"]
        entry: dict[str, Any] = {
            "width": info.width,
            "height": info.height,
            "fps": float(info.fps),
            "frames": len(clip["rgb"]),
        }
        print(
            f"\n{clip['name']}: {info.width}x{info.height} @ {float(info.fps):g} fps, "
            f"{len(clip['rgb'])} frames",
            flush=True,
        )
        settings: dict[str, list[dict[str, Any]]] = {"vqcodec": []}
        for q in qualities:
            settings["vqcodec"].append(run_vqcodec(clip, model, q, gop, args.lambda_scale))
            print_row("vqcodec", settings["vqcodec"][-1])
        if not args.no_intra:
            settings["vqcodec-intra"] = []
            for q in qualities:
                settings["vqcodec-intra"].append(run_vqcodec(clip, model, q, 1, args.lambda_scale))
                print_row("vqcodec-intra", settings["vqcodec-intra"][-1])
        if old_model is not None:
            settings["vqcodec-old"] = []
            for q in old_qualities:
                settings["vqcodec-old"].append(run_vqcodec(clip, old_model, q, gop, args.lambda_scale))
                print_row("vqcodec-old", settings["vqcodec-old"][-1])
        for name, codec, crfs, skip in (
            ("x264", "libx264", args.x264_crf, False),
            ("x265", "libx265", args.x265_crf, args.no_x265),
        ):
            if skip or not crfs:
                continue
            settings[name] = []
            for crf in (int(c) for c in crfs.split(",")):
                settings[name].append(run_x26x(clip, codec, crf))
                print_row(name, settings[name][-1])
        entry["rows"] = settings
        bd: dict[str, Any] = {}
        for anchor in ("vqcodec-intra", "x264", "x265", "vqcodec-old"):
            if anchor in settings:
                bd[f"vqcodec_vs_{anchor}"] = bd_rate(curve(settings[anchor]), curve(settings["vqcodec"]))
        entry["bd_rate_psnr_y"] = bd
        for name, value in bd.items():
            pct = value.get("bd_rate_percent")
            print(f"  BD-rate {name}: {'n/a (no PSNR overlap)' if pct is None else f'{pct:+.1f} %'}")
        report["clips"][clip["name"]] = entry
    rate_path = next(iter(sorted(folder.glob(f"{args.rate_clip}*"))), None)
    sizes = {
        name: tuple(int(v) for v in text.split("x"))
        for name, text in (("rate", args.rate_size), ("speed", args.speed_size))
    }
    if rate_path is not None and args.rate_kbps:
        clip = scaled_clip(rate_path, sizes["rate"], None)  # type: ignore[arg-type]
        seconds = len(clip["planes"]) / float(clip["info"].fps)
        print(f"\nrate control: {clip['name']}, {len(clip['planes'])} frames ({seconds:.1f} s)", flush=True)
        rows = []
        for target in (float(t) for t in args.rate_kbps.split(",")):
            row = run_vqcodec(clip, model, None, gop, args.lambda_scale, kbps=target)
            row.update(target_kbps=target, error_percent=100.0 * (row["kbps"] / target - 1.0))
            rows.append(row)
            print(
                f"  target {target:7.1f} kbit/s -> {row['kbps']:7.1f} kbit/s ({row['error_percent']:+.1f} %)"
                f"  Y {row['psnr_y']:.2f} dB  qp {row['qp_range']}  enc {row['encode_fps']:.1f} fps",
                flush=True,
            )
        report["rate_control"] = {
            "clip": clip["name"],
            "frames": len(clip["planes"]),
            "seconds": seconds,
            "rows": rows,
        }
    if rate_path is not None and args.speed_frames:
        clip = scaled_clip(rate_path, sizes["speed"], args.speed_frames)  # type: ignore[arg-type]
        row = run_vqcodec(clip, model, None, gop, args.lambda_scale)
        report["speed"] = {"clip": clip["name"], "frames": len(clip["planes"]), **row}
        print(
            f"\nspeed {clip['name']}: encode {row['encode_fps']:.1f} fps, decode {row['decode_fps']:.1f} fps "
            f"({row['kbps']:.0f} kbit/s, Y {row['psnr_y']:.2f} dB)",
            flush=True,
        )
    report["machine"]["load_average_at_end"] = os.getloadavg()
    print_summary(report)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {out}")
    plot(report, Path(args.plot))
    return 0


def print_row(name: str, row: dict[str, Any]) -> None:
    setting = f"q{row['quality']}" if "quality" in row else f"crf{row['crf']}"
    print(
        f"  {name:14s} {setting:6s} {row['kbps']:9.1f} kbit/s  Y {row['psnr_y']:6.2f} dB"
        f"  RGB {row['psnr_rgb']:6.2f} dB"
        f"  enc {row['encode_fps']:6.1f} fps  dec {row['decode_fps']:6.1f} fps",
        flush=True,
    )


def print_summary(report: dict[str, Any]) -> None:
    """One line per clip: BD-rates (PSNR-Y) of vqcodec and its median encode/decode speed."""

    def pct(entry: dict[str, Any], key: str) -> str:
        value = entry["bd_rate_psnr_y"].get(key, {}).get("bd_rate_percent")
        return "n/a" if value is None else f"{value:+.1f} %"

    print("\nsummary (BD-rate on PSNR-Y; negative = vqcodec needs fewer bits)")
    print(
        f"  {'clip':22s} {'vs own intra':>13s} {'vs x264':>10s} {'vs x265':>10s} {'vs old':>10s}"
        f" {'enc fps':>8s} {'dec fps':>8s}"
    )
    for name, entry in report["clips"].items():
        rows = entry["rows"]["vqcodec"]
        enc = float(np.median([r["encode_fps"] for r in rows]))
        dec = float(np.median([r["decode_fps"] for r in rows]))
        print(
            f"  {name:22s} {pct(entry, 'vqcodec_vs_vqcodec-intra'):>13s} {pct(entry, 'vqcodec_vs_x264'):>10s}"
            f" {pct(entry, 'vqcodec_vs_x265'):>10s} {pct(entry, 'vqcodec_vs_vqcodec-old'):>10s}"
            f" {enc:8.1f} {dec:8.1f}"
        )


def plot(report: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        return
    clips = report["clips"]
    if not clips:
        return
    fig, axes = plt.subplots(1, len(clips), figsize=(5 * len(clips), 4), squeeze=False)
    for ax, (name, entry) in zip(axes[0], clips.items()):
        for setting, rows in entry["rows"].items():
            rates, psnrs = curve(rows)
            ax.plot(rates, psnrs, marker="o", label=setting)
        ax.set_xscale("log")
        ax.set_title(name)
        ax.set_xlabel("kbit/s")
        ax.set_ylabel("PSNR-Y (dB)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")


if __name__ == "__main__":
    raise SystemExit(main())
