"""``vqcodec encode``: images (and videos, through cli/_video.py) to ``.vqc``.

    vqcodec encode photo.png photo.vqc -q 6
    vqcodec encode photo.png --bpp 0.25            # writes photo.vqc
    vqcodec encode *.png -o out/ -j 2 --json
    cat photo.png | vqcodec encode - - > photo.vqc

``-q`` is the quality level (in every vqcodec command), so quiet is ``--quiet``.
Arguments, inputs and the output are checked before torch is imported or a model loaded,
so a mistake costs milliseconds; the model is loaded once for the whole batch.
Video inputs (by extension, or a Y4M stream on stdin) are handed to
``vqcodec.cli._video.encode_video(args)`` with ``args.input`` / ``args.output`` naming one
file each; every other option keeps its name from this parser.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import sys
import time
from typing import Any

from vqcodec.cli import CommandError, _batch
from vqcodec.cli._batch import Job, Outcome

Y4M_MAGIC = b"YUV4MPEG2"


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "encode",
        help="encode images (or videos) to .vqc",
        description="Encode images (PNG, JPEG, WebP, TIFF...; any size, gray, RGBA) or videos to .vqc.",
        epilog="Forms: 'encode IN OUT', 'encode IN... [-o OUT | -o DIR/]'; '-' is stdin/stdout.",
    )
    p.add_argument(
        "paths", nargs="+", metavar="IN", help="input files; a last argument OUT (.vqc or -) names the output"
    )
    p.add_argument(
        "-o", "--output", metavar="OUT", help="output file, '-' for stdout, or a folder DIR/ for a batch"
    )
    rate = p.add_mutually_exclusive_group()
    rate.add_argument("-q", "--quality", type=int, metavar="N", help="quality level 1..N (higher is better)")
    rate.add_argument("--bpp", type=float, metavar="X", help="best quality level of at most X bits per pixel")
    rate.add_argument("--psnr", type=float, metavar="DB", help="lowest quality level reaching DB dB PSNR-RGB")
    rate.add_argument("--kbps", type=float, metavar="RATE", help="video: target bitrate in kbit/s")
    p.add_argument(
        "--model",
        metavar="NAME",
        help="bundled model name or .safetensors bundle path (see 'vqcodec models')",
    )
    p.add_argument(
        "--effort",
        type=int,
        choices=(0, 1),
        default=0,
        help="images: 0 fast (default), 1 rate-distortion optimised codes (smaller files, slower; "
        "scalar-quantized models such as image-sq20)",
    )
    p.add_argument("--quiet", action="store_true", help="print nothing but errors (no progress, no summary)")
    p.add_argument(
        "--no-metadata",
        action="store_true",
        help="leave out the picture's ICC profile and Exif (kept by default, restored by decode)",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="fail (exit 1, nothing written) when a --bpp or --psnr target cannot be met",
    )
    _batch.add_batch_options(p)
    _batch.add_device_option(p)
    _batch.video_module().add_video_options(p)
    p.set_defaults(func=run)


def check_args(args: argparse.Namespace) -> None:
    """Everything that can be checked without torch or a model, before any work.

    The quality range comes from the model registry (or a bundle's JSON header); a level the
    model does not have is refused here in milliseconds instead of after the model load.
    """
    _batch.check_counts(args)
    _batch.check_device(args)
    if args.quality is not None:
        levels = _batch.quick_levels(args.model)
        kinds = {_input_media(path) for path in args.paths if not path.lower().endswith(".vqc")}
        if args.model is None and kinds & {"video", None}:  # the default video model's levels
            video = _batch.quick_levels(None, "video")
            levels = video if kinds == {"video"} else max((n for n in (levels, video) if n), default=None)
        if args.quality < 1 or (levels is not None and args.quality > levels):
            span = f"1..{levels}" if levels is not None else ">= 1"
            raise CommandError(f"-q/--quality must be in {span}, got {args.quality}")
    for name in ("bpp", "psnr", "kbps"):
        value = getattr(args, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise CommandError(f"--{name} target must be a positive number, got {value}")


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    check_args(args)
    paths = list(args.paths)
    if args.output is None and len(paths) > 2 and paths[-1].lower().endswith(".vqc"):
        last = paths[-1]
        if not os.path.exists(last) or _batch.is_vqc_file(last):
            raise CommandError(
                f"{last}: a .vqc file holds one picture or one clip; to encode {len(paths) - 1} inputs "
                "give a folder: -o DIR/"
            )
    inputs, output = _batch.split_paths(paths, args.output, output_is_vqc=True)
    jobs = _batch.plan_jobs(inputs, output, suffix_for=lambda _: ".vqc")
    _batch.preflight(jobs, args.force)
    stream = _batch.message_stream(jobs)
    videos = {id(j) for j in jobs if j.error is None and _is_video_input(j.input)}
    images = [j for j in jobs if id(j) not in videos and j.error is None]
    if images:
        _batch.check_model_name(args.model)  # an unknown name fails once, early, without torch
    model = _batch.LazyModel(args.model, threads=args.threads, workers=args.jobs if not videos else 1)

    def work(job: Job) -> Outcome:
        if id(job) in videos:
            model.configure()
            return _batch.run_video("encode", args, job)
        return encode_one(job, args, model)

    single = len(jobs) == 1
    with _batch.cli_warnings(args.quiet):
        progress = not args.quiet and len(jobs) > 1 and sys.stderr.isatty()
        ticker = _batch.Ticker(f"encoding {jobs[0].input}", enabled=single and not args.quiet and not videos)
        with ticker:
            outcomes = _batch.run_jobs(
                jobs, work, workers=args.jobs if not videos else 1, progress=progress, desc="encode"
            )
    return _batch.report(
        "encode",
        outcomes,
        seconds=time.perf_counter() - start,
        as_json=args.json,
        quiet=args.quiet,
        stream=stream,
        line=_line,
    )


def encode_one(job: Job, args: argparse.Namespace, model: _batch.LazyModel) -> Outcome:
    from vqcodec.codec.image import encode_image_result
    from vqcodec.codec.media import open_image_file

    start = time.perf_counter()
    if args.kbps is not None:
        raise CommandError(f"{job.input}: --kbps is for videos; give a picture -q, --bpp or --psnr")
    if args.effort and not model.get().max_effort:
        name = model.get().name
        raise CommandError(f"--effort {args.effort}: model {name!r} has effort 0 only (RVQ models)")
    _batch.check_output(job, args.force)
    if job.input == "-":
        data = sys.stdin.buffer.read()
        if not data:
            raise CommandError("stdin: empty input")
        bytes_in, source = len(data), io.BytesIO(data)
        image = open_image_file(source)
    else:
        bytes_in = os.path.getsize(job.input)
        if _batch.is_vqc_file(job.input):
            _batch.warn(
                f"{job.input} is already a .vqc file: it is decoded and coded again (more loss); "
                "'vqcodec decode' gives the picture back"
            )
        with open(job.input, "rb") as f:
            image = open_image_file(f)
    if image.mode == "CMYK":
        _batch.warn("CMYK picture converted to RGB without colour management (the ink values are lost)")
    # the model (and torch) only once the picture has been read: a bad file costs no model load
    result = encode_image_result(
        image,
        args.quality,
        bpp=args.bpp,
        psnr=args.psnr,
        model=model.get(),
        metadata=not args.no_metadata,
        device=args.device,
        effort=args.effort,
    )
    _check_target(job, args, result)
    with _batch.output_file(job, args.force) as f:
        f.write(result.data)
    info = {
        "width": result.width,
        "height": result.height,
        "pixel_format": result.pixel_format,
        "quality": result.quality,
        "model": result.model_name,
        "media": "image",
        "metadata": list(result.metadata),
    }
    if result.psnr is not None:
        info["psnr"] = round(result.psnr, 4)
    return Outcome(
        job.input,
        job.output,
        ok=True,
        bytes_in=bytes_in,
        bytes_out=len(result.data),
        pixels=result.width * result.height,
        seconds=time.perf_counter() - start,
        info=info,
    )


def _check_target(job: Job, args: argparse.Namespace, result: Any) -> None:
    """A --bpp / --psnr target the model cannot meet: a warning, or with --strict an error."""
    message = None
    if args.bpp is not None and result.bpp > args.bpp:
        message = (
            f"--bpp {args.bpp:g} cannot be met: the lowest level (quality {result.quality}) "
            f"takes {result.bpp:.4f} bpp"
        )
    elif args.psnr is not None and result.psnr is not None and result.psnr < args.psnr:
        message = (
            f"--psnr {args.psnr:g} cannot be met: the top level (quality {result.quality}) "
            f"reaches {result.psnr:.2f} dB"
        )
    if message is None:
        return
    if args.strict:
        raise CommandError(f"{message} (--strict: nothing written)")
    _batch.warn(message)


def _line(o: Outcome) -> str:
    if o.info.get("media") == "video":
        return ""
    psnr = f", {o.info['psnr']:.2f} dB" if "psnr" in o.info else ""
    return (
        f"{o.input} -> {o.output}: {o.info['width']}x{o.info['height']} {o.info['pixel_format']}, "
        f"quality {o.info['quality']}, {o.bytes_out} bytes, {o.bpp:.4f} bpp{psnr}, {o.seconds:.2f} s"
    )


def _input_media(path: str) -> str | None:
    """The media of an input path ("video" or "image"); None for stdin (not known before it is read)."""
    if path == "-":
        return None
    return "video" if _batch.is_video_path(path) else "image"


def _is_video_input(path: str) -> bool:
    if path == "-":
        peek = getattr(sys.stdin.buffer, "peek", None)
        return bool(peek is not None and peek(len(Y4M_MAGIC))[: len(Y4M_MAGIC)] == Y4M_MAGIC)
    return _batch.is_video_path(path)
