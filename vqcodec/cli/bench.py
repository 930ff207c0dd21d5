"""``vqcodec bench``: a quick speed and rate-distortion check of the installed models on your files.

    vqcodec bench                          # the pictures and the clip in samples/
    vqcodec bench photos/*.png -q 2,4,6    # your pictures, three quality levels
    vqcodec bench clip.y4m --frames 30     # a video: kbit/s, PSNR, encode/decode frames per second
    vqcodec bench --model my.safetensors --json

For every model (all bundled ones, or ``--model``) and quality level, each picture is encoded
and decoded in memory (nothing is written) and the table shows the mean bits per pixel, the
mean PSNR-RGB against the source (alpha not counted) and the encode/decode speed in
megapixels per second (the fastest of ``--repeat`` runs, after one untimed warm-up per
model). Videos (Y4M, MP4, MKV, ...) are coded as one stream each with the model's default GOP:
kbit/s at the clip's frame rate, mean PSNR-RGB over the frames, and frames per second.
This is a sanity check for your own machine and content; the reference numbers come from
``benchmarks/image_rd.py`` and ``benchmarks/video_rd.py``.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from vqcodec.cli import CommandError, _batch
from vqcodec.cli.demo import SAMPLES


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "bench",
        help="quick speed and rate-distortion check of the installed models",
        description="Encode and decode your pictures or videos (default: samples/) in memory with the "
        "installed models; print bpp (or kbit/s), PSNR and speed per quality level.",
    )
    p.add_argument(
        "files", nargs="*", metavar="FILE", help="pictures or videos (default: the files in samples/)"
    )
    p.add_argument(
        "--model",
        action="append",
        metavar="NAME",
        help="model name or bundle path; repeat for several (default: every bundled model)",
    )
    p.add_argument(
        "-q",
        "--quality",
        metavar="LIST",
        help="quality levels, e.g. 1,3,5 or 2-6 (default: every level for pictures, the default for video)",
    )
    p.add_argument(
        "--repeat", type=int, default=1, metavar="N", help="time each step N times, keep the fastest"
    )
    p.add_argument("--frames", type=int, default=12, metavar="N", help="frames per video (default 12)")
    _batch.add_threads_option(p)
    _batch.add_device_option(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=run)


def parse_levels(text: str | None, levels: int) -> list[int]:
    """ "1,3,5" / "2-6" / None (every level) -> sorted levels, each checked against 1..levels."""
    if text is None:
        return list(range(1, levels + 1))
    chosen: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                chosen.update(range(lo, hi + 1))
            else:
                chosen.add(int(part))
        except ValueError:
            raise CommandError(f"bad quality list {text!r} (use e.g. 1,3,5 or 2-6)") from None
    bad = sorted(q for q in chosen if not 1 <= q <= levels)
    if bad:
        raise CommandError(f"quality {bad[0]} is outside 1..{levels} for this model")
    return sorted(chosen)


def default_files() -> list[Path]:
    files = sorted(p for p in SAMPLES.glob("*") if p.suffix.lower() in (".png", ".y4m"))
    if not files:
        raise CommandError(f"no sample files in {SAMPLES}; give FILE arguments")
    return files


def _is_video(path: Path) -> bool:
    from vqcodec.codec.video_io import VIDEO_EXTENSIONS

    return path.suffix.lower() in VIDEO_EXTENSIONS


def _models(names: list[str] | None) -> list[Any]:
    from vqcodec.models.zoo import list_models, load_model

    if names:
        return [load_model(name) for name in names]
    infos = list_models()
    if not infos:
        raise CommandError("no models are bundled in this build; give one with --model PATH")
    return [load_model(info.name, media=info.media) for info in infos]


def _fastest(repeat: int, step: Any) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        result = step()
        best = min(best, time.perf_counter() - start)
    return best, result


def bench_images(
    model: Any, pictures: list[tuple[str, Any]], levels: list[int], repeat: int, device: Any = "cpu"
) -> list[dict]:
    """One row per level: mean bpp and PSNR over the pictures, total encode/decode time and speed."""
    from vqcodec.codec.image import decode_image_result, encode_image
    from vqcodec.codec.media import psnr

    _, source = pictures[0]
    warm = encode_image(source.rgb, levels[0], model=model, device=device)
    decode_image_result(warm, model=model, device=device)  # warm-up (and the device copy)
    rows = []
    for level in levels:
        bpps, psnrs, encode_s, decode_s, pixels = [], [], 0.0, 0.0, 0
        for _, source in pictures:
            image = _as_input(source)
            seconds, data = _fastest(
                repeat,
                lambda image=image, level=level: encode_image(image, level, model=model, device=device),
            )
            encode_s += seconds
            seconds, decoded = _fastest(
                repeat, lambda data=data: decode_image_result(data, model=model, device=device)
            )
            decode_s += seconds
            count = source.width * source.height
            pixels += count
            bpps.append(8.0 * len(data) / count)
            psnrs.append(psnr(decoded.rgb, source.rgb))
        rows.append(
            {
                "model": model.name,
                "media": "image",
                "device": str(device),
                "quality": level,
                "files": len(pictures),
                "bpp": sum(bpps) / len(bpps),
                "psnr_rgb": sum(psnrs) / len(psnrs),
                "encode_s": encode_s,
                "decode_s": decode_s,
                "encode_mpix_s": pixels / encode_s / 1e6,
                "decode_mpix_s": pixels / decode_s / 1e6,
            }
        )
    return rows


def _as_input(source: Any) -> Any:
    """A SourceImage back to what a user would pass: (H, W, C) uint8, alpha included."""
    import numpy as np

    if source.alpha is None:
        return source.rgb
    return np.dstack([source.rgb, source.alpha])


def read_video(path: Path, frames: int) -> tuple[list[Any], Any]:
    """The first ``frames`` RGB frames of a video file and its VideoInfo."""
    from vqcodec.codec.video_io import open_video

    reader = open_video(path)
    try:
        clip = [frame for frame in itertools.islice(iter(reader), frames)]
        info = reader.info
    finally:
        close = getattr(reader, "close", None)
        if close is not None:
            close()
    if not clip:
        raise CommandError(f"{path}: no frames")
    return clip, info


def bench_video(
    model: Any, name: str, clip: list[Any], info: Any, levels: list[int], repeat: int
) -> list[dict]:
    from vqcodec.codec.media import psnr
    from vqcodec.codec.video import VideoDecoder, VideoEncoder

    fps = float(info.fps) if info.fps else 25.0

    def encode(level: int) -> bytes:
        out = io.BytesIO()
        with VideoEncoder(out, model, fps=info.fps, quality=level) as encoder:
            for frame in clip:
                encoder.write(frame)
        return out.getvalue()

    def decode(data: bytes) -> list[Any]:
        with VideoDecoder(io.BytesIO(data), model=model) as decoder:
            return list(decoder)

    rows = []
    for level in levels:
        encode_s, data = _fastest(repeat, lambda level=level: encode(level))
        decode_s, frames = _fastest(repeat, lambda data=data: decode(data))
        scores = [psnr(_rgb(d), _rgb(s)) for d, s in zip(frames, clip)]
        rows.append(
            {
                "model": model.name,
                "media": "video",
                "file": name,
                "quality": level,
                "frames": len(clip),
                "size": f"{info.width}x{info.height}",
                "kbit_s": 8.0 * len(data) / (len(clip) / fps) / 1000,
                "bpp": 8.0 * len(data) / (len(clip) * info.width * info.height),
                "psnr_rgb": sum(scores) / len(scores),
                "encode_s": encode_s,
                "decode_s": decode_s,
                "encode_fps": len(clip) / encode_s,
                "decode_fps": len(clip) / decode_s,
            }
        )
    return rows


def _rgb(frame: Any) -> Any:
    import numpy as np

    array = np.asarray(frame)
    return np.repeat(array[..., None], 3, axis=-1) if array.ndim == 2 else array


def run(args: argparse.Namespace) -> int:
    from vqcodec.codec.image import default_quality
    from vqcodec.codec.media import load_image, open_image_file

    _batch.check_counts(args)
    _batch.check_device(args)
    _batch.configure_threads(args.threads)
    files = [Path(f) for f in args.files] if args.files else default_files()
    for path in files:
        if not path.is_file():
            raise CommandError(f"no such file: {path}")
    videos = [p for p in files if _is_video(p)]
    pictures = []
    for path in files:
        if path not in videos:
            with open(path, "rb") as f:
                pictures.append((str(path), load_image(open_image_file(f))))
    models = _models(args.model)
    rows: list[dict] = []
    start = time.perf_counter()
    for model in models:
        levels_all = int(model.quality_levels)
        if pictures and getattr(model, "media", "image") == "image":
            levels = parse_levels(args.quality, levels_all)
            _progress(args, f"{model.name}: {len(pictures)} picture(s) at {len(levels)} level(s)")
            rows += bench_images(model, pictures, levels, args.repeat, args.device)
        if videos and _codes_video(model, models):
            levels = parse_levels(args.quality or str(default_quality(levels_all)), levels_all)
            for path in videos:
                clip, info = read_video(path, args.frames)
                _progress(args, f"{model.name}: {path.name}, {len(clip)} frames at {len(levels)} level(s)")
                rows += bench_video(model, str(path), clip, info, levels, args.repeat)
    report = {
        "command": "bench",
        "files": [str(p) for p in files],
        "rows": rows,
        "seconds": round(time.perf_counter() - start, 3),
        "machine": _machine(),
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(rows, report)
    return 0


def _codes_video(model: Any, models: list[Any]) -> bool:
    """Video models code the videos; image models do when no video model is in the list."""
    if getattr(model, "media", "image") == "video":
        return True
    return not any(getattr(m, "media", "image") == "video" for m in models)


def _progress(args: argparse.Namespace, text: str) -> None:
    import sys

    if not args.quiet and not args.json:
        print(f"bench: {text}", file=sys.stderr, flush=True)


def _machine() -> dict[str, Any]:
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }


def print_table(rows: list[dict], report: dict) -> None:
    images = [r for r in rows if r["media"] == "image"]
    videos = [r for r in rows if r["media"] == "video"]
    if images:
        head = (
            f"{'model':<24} {'q':>3} {'files':>5} {'bpp':>8} {'PSNR dB':>8} {'enc MP/s':>9} {'dec MP/s':>9}"
        )
        print(head)
        print("-" * len(head))
        for r in images:
            print(
                f"{r['model']:<24} {r['quality']:>3} {r['files']:>5} {r['bpp']:>8.4f} {r['psnr_rgb']:>8.2f} "
                f"{r['encode_mpix_s']:>9.3f} {r['decode_mpix_s']:>9.3f}"
            )
    if videos:
        if images:
            print()
        head = (
            f"{'model':<24} {'file':<16} {'q':>3} {'frames':>6} {'kbit/s':>9} {'PSNR dB':>8} "
            f"{'enc fps':>8} {'dec fps':>8}"
        )
        print(head)
        print("-" * len(head))
        for r in videos:
            print(
                f"{r['model']:<24} {Path(r['file']).name[:16]:<16} {r['quality']:>3} {r['frames']:>6} "
                f"{r['kbit_s']:>9.1f} {r['psnr_rgb']:>8.2f} {r['encode_fps']:>8.2f} {r['decode_fps']:>8.2f}"
            )
    machine = report["machine"]
    print(
        f"\n{len(report['files'])} file(s), {report['seconds']:.1f} s; torch {machine['torch']}, "
        f"{machine['torch_threads']} thread(s) on {machine['cpus']} CPU(s)"
    )
