"""Video support of ``vqcodec encode`` / ``vqcodec decode`` (called by cli/encode.py and cli/decode.py).

    vqcodec encode clip.mp4 clip.vqc -q 5 --gop 16
    vqcodec encode clip.y4m clip.vqc --frames 0:60 --key-frames 0,25
    ffmpeg -i in.mkv -f yuv4mpegpipe - | vqcodec encode - clip.vqc
    vqcodec decode clip.vqc out.y4m            # exact decoded pixels, original pixel format
    vqcodec decode clip.vqc out.mp4            # H.264 CRF 12 (high quality, not lossless)
    vqcodec decode clip.vqc out.mp4 --mp4-lossless   # H.264 RGB QP 0: lossless
    vqcodec decode clip.vqc 'out_%04d.png' --frames 10:20
    vqcodec decode clip.vqc - | ffplay -        # Y4M on stdout

The parsers own the shared options (-q/--quality, --model, -f/--force, --quiet, --json);
``add_video_options`` adds the video ones. ``encode_video(args)`` / ``decode_video(args)``
get ``args.input`` / ``args.output`` naming one file each and return an exit status.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from vqcodec.cli import CommandError

DEFAULT_DECODE_SUFFIX = ".y4m"


class VideoProgress:
    """An ffmpeg-style status line on a terminal while a clip is coded, e.g.
    ``encode clip.mp4  frame 120/300  12.4 fps  640 kbit/s  ETA 14 s``.

    Shown on stderr only when it is a terminal and ``enabled``, only after ``delay`` seconds
    (short jobs stay clean), at most every ``period`` seconds; erased when the job ends.
    """

    def __init__(
        self,
        desc: str,
        *,
        enabled: bool,
        total: int | None = None,
        fps: float = 0.0,
        delay: float = 2.0,
        period: float = 0.25,
        stream: Any = None,
    ) -> None:
        import time

        self._clock = time.perf_counter
        self.stream = stream if stream is not None else sys.stderr
        self.desc, self.total, self.fps, self.delay, self.period = desc, total, fps, delay, period
        self.enabled = enabled and bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = self._clock()
        self._last = -1.0
        self.shown = False

    def line(self, frames: int, bytes_so_far: int | None, now: float) -> str:
        """The status text after ``frames`` frames (and ``bytes_so_far`` bytes written) at ``now``."""
        elapsed = max(now - self.start, 1e-9)
        speed = frames / elapsed
        count = f"{frames}/{self.total}" if self.total else f"{frames}"
        parts = [self.desc, f"frame {count}", f"{speed:.1f} fps"]
        if bytes_so_far is not None and frames and self.fps > 0:
            parts.append(f"{8.0 * bytes_so_far * self.fps / frames / 1000.0:.0f} kbit/s")
        if self.total and speed > 0 and frames < self.total:
            parts.append(f"ETA {(self.total - frames) / speed:.0f} s")
        return "  ".join(parts)

    def update(self, frames: int, bytes_so_far: int | None = None) -> None:
        if not self.enabled:
            return
        now = self._clock()
        if now - self.start < self.delay or now - self._last < self.period:
            return
        self._last = now
        self.stream.write("\r" + self.line(frames, bytes_so_far, now) + "\x1b[K")
        self.stream.flush()
        self.shown = True

    def finish(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.shown = False


def add_video_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("video")
    g.add_argument(
        "--frames",
        metavar="A:B",
        help="only frames A..B-1 (either end may be left out); decoding starts at the key frame before A",
    )
    g.add_argument("--fps", metavar="RATE", help="frame rate override (e.g. 25, 30000/1001)")
    if parser.prog.split()[-1] == "encode":
        g.add_argument(
            "--gop", type=int, metavar="N", help="key-frame interval (default: the model's; 1 = intra only)"
        )
        g.add_argument(
            "--key-frames", metavar="LIST", help="comma-separated frame indices that must be key frames"
        )
        g.add_argument(
            "--intra-only", action="store_true", help="code every frame as a key frame (same as --gop 1)"
        )
        g.add_argument(
            "--no-scene-cut", action="store_true", help="never turn a predicted frame into a key frame"
        )
        g.add_argument(
            "--lambda-scale",
            type=float,
            default=1.0,
            metavar="X",
            help="predicted-frame rate/quality trade-off (< 1: better P frames, more bits; default 1)",
        )
    else:
        g.add_argument(
            "--mp4-lossless",
            action="store_true",
            help="MP4 output in lossless H.264 (libx264rgb QP 0) instead of the default high-quality "
            "H.264 (libx264 CRF 12, yuv420p, not lossless)",
        )


def is_video_path(path: str) -> bool:
    """A path the encoder should treat as video: by extension, or a file starting with YUV4MPEG2."""
    # imported here: every command registers the video options, and `vqcodec info` must not
    # pull in numpy (tests/test_container/test_vectors.py)
    from vqcodec.codec.video_io import VIDEO_EXTENSIONS

    if path == "-":
        return False
    if path.lower().endswith(VIDEO_EXTENSIONS):
        return True
    try:
        with open(path, "rb") as f:
            return f.read(9) == b"YUV4MPEG2"
    except OSError:
        return False


def parse_range(text: str | None) -> tuple[int, int | None]:
    """``"A:B"`` -> (A, B) with B None for open ends; a single ``"A"`` means frame A alone."""
    if not text:
        return 0, None
    try:
        if ":" not in text:
            a = int(text)
            return a, a + 1
        a_text, b_text = text.split(":", 1)
        a = int(a_text) if a_text.strip() else 0
        b = int(b_text) if b_text.strip() else None
    except ValueError:
        raise CommandError(f"--frames wants A:B with integers, got {text!r}") from None
    if a < 0 or (b is not None and b <= a):
        raise CommandError(f"--frames {text!r} is an empty or negative range")
    return a, b


def parse_fps(text: str | None) -> Fraction | None:
    if text is None:
        return None
    try:
        value = Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        raise CommandError(f"--fps wants a positive number such as 25 or 30000/1001, got {text!r}") from None
    if value <= 0:
        raise CommandError(f"--fps must be positive, got {text!r}")
    return value


def encode_video(args: argparse.Namespace) -> int:
    from vqcodec._io import atomic_output
    from vqcodec.codec.video import VideoEncoder
    from vqcodec.codec.video_io import Y4MReader, open_video

    start, stop = parse_range(getattr(args, "frames", None))
    fps = parse_fps(getattr(args, "fps", None))
    keys = _parse_keys(getattr(args, "key_frames", None))
    if getattr(args, "bpp", None) is not None or getattr(args, "psnr", None) is not None:
        raise CommandError("--bpp and --psnr are for images; give a video a quality level with -q")
    gop = 1 if getattr(args, "intra_only", False) else getattr(args, "gop", None)
    if gop is not None and gop < 1:
        raise CommandError(f"--gop must be >= 1, got {gop}")
    if args.output != "-" and not args.force and os.path.exists(args.output):
        raise FileExistsError(f"{args.output} exists (use --force to overwrite)")
    with open_video(args.input) as reader:
        info = reader.info
        if reader.dropped_streams and not args.quiet:
            # a .vqc file holds one video track: say what is left behind instead of dropping it silently
            print(
                f"vqcodec: warning: {args.input}: not coded (a .vqc file holds video only): "
                + ", ".join(reader.dropped_streams),
                file=sys.stderr,
            )
        count = 0
        # only a Y4M file's size gives an exact count (container metadata may be approximate)
        if info.frame_count is not None and isinstance(reader, Y4MReader):
            count = max(0, min(info.frame_count, stop if stop is not None else info.frame_count) - start)
        expected = count or (
            max(0, min(info.frame_count, stop if stop is not None else info.frame_count) - start)
            if info.frame_count
            else None
        )
        progress = VideoProgress(
            f"encode {args.input}",
            enabled=not args.quiet and not getattr(args, "json", False),
            total=expected,
            fps=float(fps or info.fps),
        )
        with atomic_output(args.output, force=args.force, inputs=(args.input,)) as out:
            encoder = VideoEncoder(
                out,
                args.model,
                fps=fps or info.fps,
                size=(info.width, info.height),
                quality=args.quality,
                gop=gop,
                key_frames=[k - start for k in keys if k >= start],
                pixel_format=info.pixel_format,
                frame_count=count,
                full_range=info.full_range,
                matrix=info.matrix,
                scene_cut=not getattr(args, "no_scene_cut", False),
                lambda_scale=getattr(args, "lambda_scale", 1.0),
                kbps=getattr(args, "kbps", None),
            )
            # a Y4M source's planes go in exactly (payload 2 codes 4:2:0 planes as they are)
            frames = reader.planes() if isinstance(reader, Y4MReader) else iter(reader)
            write: Callable[[Any], int] = (
                encoder.write_planes if isinstance(reader, Y4MReader) else encoder.write
            )
            try:
                for index, frame in enumerate(frames):
                    if index < start:
                        continue
                    if stop is not None and index >= stop:
                        break
                    write(frame)
                    progress.update(encoder.frames_written, encoder.bytes_written)
                progress.finish()
                if encoder.frames_written == 0:
                    raise CommandError(f"{args.input}: no frames in the range {start}:{stop if stop else ''}")
                encoder.close()
            except BaseException:
                progress.finish()
                encoder.abandon()
                raise
    stats = encoder.stats
    if not args.quiet and not getattr(args, "json", False):
        seconds = max(stats.seconds, 1e-9)
        rate = 8.0 * encoder.bytes_written * float(encoder.fps) / max(1, stats.frames) / 1000.0
        if encoder.quality is not None:
            setting = f"quality {encoder.quality}" + (f" (qp {encoder.qp})" if encoder.qp is not None else "")
        else:
            setting = f"target {args.kbps:g} kbit/s" if args.kbps is not None else f"qp {encoder.qp}"
        print(
            f"{args.input}: {stats.frames} frames {info.width}x{info.height} {info.pixel_format} "
            f"@ {float(encoder.fps):.3g} fps, {setting}, {stats.key_frames} key frames, "
            f"{rate:.1f} kbit/s, {stats.frames / seconds:.1f} frames/s",
            file=sys.stderr,
        )
    return 0


def _parse_keys(text: str | None) -> list[int]:
    if not text:
        return []
    try:
        keys = [int(k) for k in text.replace(" ", "").split(",") if k]
    except ValueError:
        raise CommandError(f"--key-frames wants comma-separated frame numbers, got {text!r}") from None
    if any(k < 0 for k in keys):
        raise CommandError("--key-frames must be >= 0")
    return keys


def decode_video(args: argparse.Namespace) -> int:
    from vqcodec._io import atomic_output
    from vqcodec.codec.video import VideoDecoder
    from vqcodec.codec.video_io import (
        AVWriter,
        PNGSequenceWriter,
        VideoInfo,
        Y4MWriter,
        is_frame_pattern,
    )

    start, stop = parse_range(getattr(args, "frames", None))
    fps = parse_fps(getattr(args, "fps", None))
    output = args.output
    lower = output.lower()
    kind = "y4m"
    if output != "-":
        if is_frame_pattern(output):
            kind = "png"
        elif lower.endswith((".mp4", ".mkv", ".mov", ".m4v")):
            kind = "mp4"
        elif not lower.endswith(".y4m"):
            raise CommandError(
                f"cannot tell the video format from {output!r}: use .y4m, .mp4, out_%04d.png or -"
            )
        if kind != "png" and not args.force and os.path.exists(output):
            raise FileExistsError(f"{output} exists (use --force to overwrite)")
    source: Any = args.input if args.input != "-" else sys.stdin.buffer
    if getattr(args, "salvage", False):
        from vqcodec.cli.decode import salvaged

        source = salvaged(args.input, source)
    with VideoDecoder(source, model=args.model) as decoder:
        header = decoder.header
        info = VideoInfo(
            width=decoder.width,
            height=decoder.height,
            fps=fps or decoder.fps,
            pixel_format=decoder.pixel_format,
            full_range=bool(header.full_range),
            matrix=int(header.matrix) or 6,
        )
        if start:
            if not decoder.seekable:
                # a pipe cannot seek: decode from the start and drop the frames before A
                decoder.skip_to(start)
            else:
                count = decoder.frame_count or 0
                if start >= count:
                    raise CommandError(f"--frames starts at {start} but the video has {count} frames")
                decoder.seek(start)
        total = decoder.frame_count if decoder.seekable else None
        if total is not None:
            total = max(0, min(total, stop if stop is not None else total) - start)
        progress = VideoProgress(
            f"decode {args.input}",
            enabled=not args.quiet and not getattr(args, "json", False),
            total=total or None,
            fps=float(info.fps),
        )
        if kind == "png":
            writer: Any = PNGSequenceWriter(output, info, force=args.force, first_index=start)
            _copy_frames(decoder, writer, stop, progress, salvage=getattr(args, "salvage", False))
        elif kind == "mp4":
            with atomic_output(output, force=args.force, inputs=(args.input,)) as f:
                container = {".mkv": "matroska", ".mov": "mov"}.get(os.path.splitext(lower)[1], "mp4")
                writer = AVWriter(f, info, lossless=getattr(args, "mp4_lossless", False), container=container)
                _copy_frames(decoder, writer, stop, progress, salvage=getattr(args, "salvage", False))
        else:
            with atomic_output(output, force=args.force, inputs=(args.input,)) as f:
                writer = Y4MWriter(f, info)
                _copy_frames(decoder, writer, stop, progress, salvage=getattr(args, "salvage", False))
        stats = decoder.stats
    if not args.quiet and not getattr(args, "json", False):
        shown = writer.frames if hasattr(writer, "frames") else len(writer.written)
        print(
            f"{args.input}: {shown} frames {info.width}x{info.height} -> {output} "
            f"({stats.frames / max(stats.seconds, 1e-9):.1f} frames/s decoded)",
            file=sys.stderr,
        )
    return 0


def _copy_frames(
    decoder: Any,
    writer: Any,
    stop: int | None,
    progress: VideoProgress | None = None,
    *,
    salvage: bool = False,
) -> None:
    """Decoded frames into ``writer``; with ``salvage``, a frame that fails to decode ends the
    output there (with a warning) instead of failing the whole job."""
    from vqcodec.codec.video_io import Y4MWriter
    from vqcodec.errors import VQCError

    decoder.output = "numpy"
    done = 0
    # a payload-2 file's decoded 4:2:0 planes go into a Y4M output exactly, without RGB
    planes = isinstance(writer, Y4MWriter) and decoder.payload_version == 2
    try:
        for index, picture in decoder.planes_with_index() if planes else decoder.frames_with_index():
            if stop is not None and index >= stop:
                break
            if planes:
                writer.write_planes(picture)
            else:
                writer.write(picture if picture.ndim == 3 else picture[..., None].repeat(3, axis=2))
            done += 1
            if progress is not None:
                progress.update(done)
    except VQCError as exc:
        if not salvage or done == 0:
            raise
        print(f"vqcodec: warning: salvaged: kept {done} decoded frame(s); then: {exc}", file=sys.stderr)
    finally:
        if progress is not None:
            progress.finish()
    writer.close()


__all__ = ["DEFAULT_DECODE_SUFFIX", "add_video_options", "decode_video", "encode_video", "is_video_path"]
