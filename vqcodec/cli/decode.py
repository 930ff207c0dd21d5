"""``vqcodec decode``: ``.vqc`` files back to images (or videos, through cli/_video.py).

    vqcodec decode photo.vqc photo.png
    vqcodec decode *.vqc -o out/ --format webp
    vqcodec encode - - < a.png | vqcodec decode - out.png

The output format follows the output's extension (PNG, JPEG, WebP, TIFF, BMP, AVIF, ...
whatever Pillow writes), or ``--format`` (needed for stdout, where PNG is the default).
PNG, TIFF, BMP and lossless WebP keep the decoded pixels exactly; JPEG, lossy WebP and AVIF
are written at ``-q/--quality`` (1..100, default 95; JPEG cannot hold alpha: it is dropped
with a warning). Without an output name the extension is appended (``photo.vqc`` ->
``photo.vqc.png``), so the default can never replace the picture the file was made from.
A ``.vqc`` whose header says video is handed to ``vqcodec.cli._video.decode_video(args)``
with ``args.input`` / ``args.output`` naming one file each.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from vqcodec.cli import CommandError, _batch, add_output_options
from vqcodec.cli._batch import Job, Outcome

LOSSY_FORMATS = ("JPEG", "WEBP", "AVIF")
DEFAULT_OUTPUT_QUALITY = 95
NO_ALPHA_FORMATS = ("JPEG",)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "decode",
        help="decode .vqc files to images (or videos)",
        description="Decode .vqc files; the output format follows the output file's extension.",
        epilog="Forms: 'decode IN OUT', 'decode IN... [-o OUT | -o DIR/]'; '-' is stdin/stdout.",
    )
    p.add_argument(
        "paths", nargs="+", metavar="IN", help="input .vqc files; a last argument OUT names the output"
    )
    p.add_argument(
        "-o", "--output", metavar="OUT", help="output file, '-' for stdout, or a folder DIR/ for a batch"
    )
    p.add_argument(
        "--format", metavar="FMT", help="image format (png, jpeg, webp, tiff...) for stdout or a folder"
    )
    p.add_argument(
        "--model", metavar="NAME", help="decode with this model name or bundle path (must match the file)"
    )
    p.add_argument(
        "-q",
        "--quality",
        type=int,
        metavar="N",
        help=f"quality 1..100 of a lossy output (JPEG, WebP, AVIF; default {DEFAULT_OUTPUT_QUALITY})",
    )
    add_output_options(p)
    p.add_argument(
        "-j", "--jobs", type=int, default=1, metavar="WORKERS", help="files decoded in parallel (default 1)"
    )
    p.add_argument(
        "--salvage",
        action="store_true",
        help="from a damaged or cut file, decode every complete frame (a warning says what was lost)",
    )
    _batch.add_threads_option(p)
    _batch.add_device_option(p)
    _batch.video_module().add_video_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    _batch.check_counts(args)
    _batch.check_device(args)
    if args.quality is not None and not 1 <= args.quality <= 100:
        raise CommandError(f"-q/--quality (of a JPEG/WebP/AVIF output) must be in 1..100, got {args.quality}")
    inputs, output = _batch.split_paths(list(args.paths), args.output, output_is_vqc=False)
    fmt = _explicit_format(args.format)
    medias = {path: media_of(path) for path in inputs}
    ext = _extension_for(fmt) if fmt is not None else ".png"

    def suffix_for(path: str) -> str:
        if medias.get(path) == "video":
            return str(_batch.video_module().DEFAULT_DECODE_SUFFIX)
        return ext

    jobs = _batch.plan_jobs(inputs, output, suffix_for=suffix_for, append_suffix=True)
    for job in jobs:
        if job.error is None and job.output != "-" and fmt is None and medias.get(job.input) != "video":
            try:
                _format_from_path(job.output)
            except CommandError as exc:
                job.error, job.error_names_file = str(exc), True
    _batch.preflight(jobs, args.force)
    stream = _batch.message_stream(jobs)
    videos = {id(j) for j in jobs if medias.get(j.input) == "video"}
    # torch (and its thread setting) only once a job really runs
    runtime = _batch.LazyModel(args.model, threads=args.threads, workers=1 if videos else args.jobs)

    def work(job: Job) -> Outcome:
        runtime.configure()
        if id(job) in videos:
            return _batch.run_video("decode", args, job)
        return decode_one(job, args, fmt)

    with _batch.cli_warnings(args.quiet):
        progress = not args.quiet and len(jobs) > 1 and sys.stderr.isatty()
        ticker = _batch.Ticker(
            f"decoding {jobs[0].input}", enabled=len(jobs) == 1 and not args.quiet and not videos
        )
        with ticker:
            outcomes = _batch.run_jobs(
                jobs, work, workers=1 if videos else args.jobs, progress=progress, desc="decode"
            )
    return _batch.report(
        "decode",
        outcomes,
        seconds=time.perf_counter() - start,
        as_json=args.json,
        quiet=args.quiet,
        stream=stream,
        line=_line,
    )


def media_of(path: str) -> str | None:
    """ "image" / "video" from the HEAD chunk's media byte, None when unreadable (decode reports why).

    Reads only the first bytes: the preamble, the HEAD chunk framing and its first data byte.
    stdin is peeked, not consumed.
    """
    from vqcodec.container import spec

    offset = spec.PREAMBLE_SIZE + spec.CHUNK_HEAD.size
    if path == "-":
        peek = getattr(sys.stdin.buffer, "peek", None)
        head = peek(offset + 1)[: offset + 1] if peek is not None else b""
    else:
        try:
            with open(path, "rb") as f:
                head = f.read(offset + 1)
        except OSError:
            return None
    if len(head) <= offset or not head.startswith(spec.MAGIC):
        return None
    return spec.MEDIA_NAMES.get(head[offset])


def decode_one(job: Job, args: argparse.Namespace, fmt: str | None) -> Outcome:
    from vqcodec.codec.image import decode_image_result
    from vqcodec.codec.media import make_output

    start = time.perf_counter()
    _batch.check_output(job, args.force)
    save_format = fmt or (_format_from_path(job.output) if job.output != "-" else "PNG")
    source: Any
    if job.input == "-":
        data = sys.stdin.buffer.read()
        bytes_in, source = len(data), io.BytesIO(data)
    else:
        bytes_in, source = os.path.getsize(job.input), job.input
    if args.salvage:
        source = salvaged(job.input, source)
    decoded = decode_image_result(source, model=args.model, device=args.device)
    image = make_output(decoded.rgb, decoded.alpha, decoded.pixel_format, "pil")
    if save_format in NO_ALPHA_FORMATS and image.mode in ("RGBA", "LA"):
        warnings.warn(f"{save_format} has no alpha channel: alpha dropped from {job.output}", stacklevel=1)
        image = image.convert(image.mode[:-1])
    options = _metadata_options(decoded.metadata, save_format, job.output)
    if save_format in LOSSY_FORMATS:
        options["quality"] = args.quality if args.quality is not None else DEFAULT_OUTPUT_QUALITY
    elif args.quality is not None:
        _batch.warn(f"-q/--quality is for JPEG, WebP and AVIF outputs; {save_format} is written lossless")
    with _batch.output_file(job, args.force) as f:
        image.save(f, format=save_format, **options)
        size = f.tell() if job.output != "-" else 0
    header = decoded.header
    return Outcome(
        job.input,
        job.output,
        ok=True,
        bytes_in=bytes_in,
        bytes_out=size,
        pixels=header.width * header.height,
        seconds=time.perf_counter() - start,
        info={
            "bits": 8 * bytes_in,
            "width": header.width,
            "height": header.height,
            "pixel_format": header.pixel_format,
            "quality": header.quality,
            "model": header.model_name,
            "format": save_format,
            "media": "image",
            "metadata": [name for name in decoded.metadata.names if name in options],
        },
    )


def _metadata_options(metadata: Any, save_format: str, output: str) -> dict[str, Any]:
    """PIL save keywords restoring the file's ICC profile / Exif; warns what ``save_format`` cannot hold."""
    from vqcodec.codec.metadata import save_options

    options, lost = save_options(save_format, metadata)
    if lost:
        what = " and ".join({"icc_profile": "ICC profile", "exif": "Exif"}[n] for n in lost)
        _batch.warn(f"{save_format} output cannot hold the {what}: left out of {output}")
    return options


def salvaged(name: str, source: Any) -> io.BytesIO:
    """``--salvage``: the complete frames of ``source`` in a new container; warns what was lost."""
    from vqcodec.container.salvage import salvage

    result = salvage(source)
    if not result.intact:
        _batch.warn(f"{name}: salvaged: {result.describe()}")
    return io.BytesIO(result.data)


def _line(o: Outcome) -> str:
    if o.info.get("media") == "video":
        return ""
    return (
        f"{o.input} -> {o.output}: {o.info['width']}x{o.info['height']} {o.info['pixel_format']} "
        f"{o.info['format']}, {o.bpp:.4f} bpp, {o.seconds:.2f} s"
    )


def _format_from_path(path: str) -> str:
    from PIL import Image

    suffix = Path(path).suffix.lower()
    fmt = Image.registered_extensions().get(suffix)
    if fmt is None or fmt not in Image.SAVE:
        raise CommandError(
            f"cannot tell the image format from {path!r}: use an extension such as .png, .jpg, .webp, .tif "
            "or give --format"
        )
    return fmt


def _explicit_format(name: str | None) -> str | None:
    if name is None:
        return None
    from PIL import Image

    fmt = name.upper().lstrip(".")
    fmt = {"JPG": "JPEG", "TIF": "TIFF"}.get(fmt, fmt)
    Image.init()  # Pillow registers its save handlers lazily
    if fmt not in Image.SAVE:
        raise CommandError(f"unknown image format {name!r} (try png, jpeg, webp, tiff, bmp)")
    return fmt


def _extension_for(fmt: str) -> str:
    from PIL import Image

    preferred = {"JPEG": ".jpg", "TIFF": ".tif", "PNG": ".png", "WEBP": ".webp"}
    if fmt in preferred:
        return preferred[fmt]
    return next((ext for ext, f in Image.registered_extensions().items() if f == fmt), "." + fmt.lower())
