"""``vqcodec encode``: images (and videos, through cli/_video.py) to ``.vqc``.

    vqcodec encode photo.png photo.vqc -q 6
    vqcodec encode photo.png --bpp 0.25            # writes photo.vqc
    vqcodec encode *.png -o out/ -j 2 --json
    cat photo.png | vqcodec encode - - > photo.vqc

``-q`` is the quality level here (as in every image tool), so quiet is ``--quiet``.
Video inputs (by extension, or a Y4M stream on stdin) are handed to
``vqcodec.cli._video.encode_video(args)`` with ``args.input`` / ``args.output`` naming one
file each; every other option keeps its name from this parser.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from typing import Any

from vqcodec.cli import _batch
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
    p.add_argument(
        "--model",
        metavar="NAME",
        help="bundled model name or .safetensors bundle path (see 'vqcodec models')",
    )
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    _batch.add_batch_options(p)
    video = _batch.video_module()
    if video is not None:
        video.add_video_options(p)
    p.set_defaults(func=run)



def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    inputs, output = _batch.split_paths(list(args.paths), args.output, output_is_vqc=True)
    jobs = _batch.plan_jobs(inputs, output, suffix_for=lambda _: ".vqc")
    stream = _batch.message_stream(jobs)
    videos = {id(j) for j in jobs if _is_video_input(j.input)}
    images = [j for j in jobs if id(j) not in videos]
    model = None
    if images:
        from vqcodec.codec.image import resolve_model

        model = resolve_model(args.model)  # fail once, early, for an unknown model
        _batch.configure_threads(args.jobs)

    def work(job: Job) -> Outcome:
        if id(job) in videos:
            return _batch.run_video("encode", args, job)
        return encode_one(job, args, model)

    with _batch.cli_warnings(args.quiet):
        progress = not args.quiet and len(jobs) > 1 and sys.stderr.isatty()
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


def encode_one(job: Job, args: argparse.Namespace, model: Any) -> Outcome:
    from vqcodec._io import atomic_output
    from vqcodec.codec.image import encode_image_result
    from vqcodec.codec.media import open_image_file

    start = time.perf_counter()
    _batch.check_output_free(job, args.force)
    if job.input == "-":
        data = sys.stdin.buffer.read()
        bytes_in, source = len(data), io.BytesIO(data)
        image = open_image_file(source)
    else:
        bytes_in = os.path.getsize(job.input)
        with open(job.input, "rb") as f:
            image = open_image_file(f)
    result = encode_image_result(image, args.quality, bpp=args.bpp, psnr=args.psnr, model=model)
    with atomic_output(job.output, force=args.force, inputs=(job.input,)) as f:
        f.write(result.data)
    info = {
        "width": result.width,
        "height": result.height,
        "pixel_format": result.pixel_format,
        "quality": result.quality,
        "model": result.model_name,
        "media": "image",
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


def _line(o: Outcome) -> str:
    if o.info.get("media") == "video":
        return ""
    psnr = f", {o.info['psnr']:.2f} dB" if "psnr" in o.info else ""
    return (
        f"{o.input} -> {o.output}: {o.info['width']}x{o.info['height']} {o.info['pixel_format']}, "
        f"quality {o.info['quality']}, {o.bytes_out} bytes, {o.bpp:.4f} bpp{psnr}, {o.seconds:.2f} s"
    )


def _is_video_input(path: str) -> bool:
    if path == "-":
        peek = getattr(sys.stdin.buffer, "peek", None)
        return bool(peek is not None and peek(len(Y4M_MAGIC))[: len(Y4M_MAGIC)] == Y4M_MAGIC)
    return _batch.is_video_path(path)
