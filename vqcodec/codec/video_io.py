"""Video files in and out of the codec: Y4M (own exact reader/writer), PyAV formats, PNG sequences.

Reading (``open_video``):
- Y4M (``.y4m`` or a stream starting with ``YUV4MPEG2``, stdin included): our own reader
  (:class:`Y4MReader`), exact planes, works on pipes; 8-bit 4:2:0 / 4:2:2 / 4:4:4 / mono.
- MP4, MKV, WebM, MOV, AVI, raw H.264/H.265 (``.h264``/``.264``/``.h265``/``.hevc``) through
  PyAV (:class:`AVReader`); frames converted to RGB by libswscale.
Every reader yields RGB frames (H, W, 3) uint8 and has ``.info`` (:class:`VideoInfo`).

Writing (``open_video_writer`` by the output name):
- ``.y4m`` or ``-``: :class:`Y4MWriter`, the decoded frames converted to the file's original
  pixel format (yuv420p/422p/444p/gray8; rgb24 sources are written as 4:4:4), exactly;
- ``.mp4`` / ``.mkv``: H.264 through PyAV (:class:`AVWriter`): by default high quality
  (libx264, CRF 12, preset medium, yuv420p: near-transparent, NOT lossless); with
  ``lossless=True`` libx264rgb at QP 0 in RGB, which keeps the decoded pixels exactly;
- a name with a printf pattern such as ``out_%04d.png``: one PNG per frame
  (:class:`PNGSequenceWriter`), numbered by frame index.

Colour: YUV <-> RGB with the BT.601 matrix (H.273 matrix 6) for pictures up to 576 lines,
BT.709 (matrix 1) above, limited range unless the source says full range (Y4M
``XCOLORRANGE=FULL``, PyAV ``yuvj*`` formats or colour range JPEG). Chroma is upsampled by
sample repetition and downsampled by 2x2 box averaging: a pair that maps chroma back exactly.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

import numpy as np

from vqcodec.codec import limits
from vqcodec.errors import FormatError, TruncatedError

Y4M_MAGIC = b"YUV4MPEG2"
Y4M_FRAME = b"FRAME"
MAX_Y4M_HEADER = 4096
#: Y4M colour space tag -> our pixel format name
Y4M_COLOURSPACES = {
    "420jpeg": "yuv420p",
    "420paldv": "yuv420p",
    "420mpeg2": "yuv420p",
    "420": "yuv420p",
    "422": "yuv422p",
    "444": "yuv444p",
    "mono": "gray8",
}
Y4M_TAG_FOR = {"yuv420p": "420jpeg", "yuv422p": "422", "yuv444p": "444", "gray8": "mono"}
#: pixel formats a video file may record; subsampling (x, y) of the chroma planes
SUBSAMPLING = {"yuv420p": (2, 2), "yuv422p": (2, 1), "yuv444p": (1, 1)}
VIDEO_PIXEL_FORMATS = ("rgb24", "yuv420p", "yuv422p", "yuv444p", "gray8")
MATRIX_BT709, MATRIX_BT601 = 1, 6
KR_KB = {MATRIX_BT709: (0.2126, 0.0722), MATRIX_BT601: (0.299, 0.114), 5: (0.299, 0.114)}
PYAV_EXTENSIONS = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".h264", ".264", ".h265", ".hevc", ".ts")
RAW_FORMATS = {".h264": "h264", ".264": "h264", ".h265": "hevc", ".hevc": "hevc"}
VIDEO_EXTENSIONS = (".y4m", *PYAV_EXTENSIONS)
DEFAULT_RAW_FPS = Fraction(25)
MP4_CRF = 12


@dataclass(frozen=True)
class VideoInfo:
    """What a video source says about itself.

    ``frame_count`` None when unknown (pipes, some containers); ``matrix`` is the H.273 matrix
    code point used for YUV <-> RGB; ``pixel_format`` one of VIDEO_PIXEL_FORMATS.
    """

    width: int
    height: int
    fps: Fraction
    pixel_format: str = "rgb24"
    frame_count: int | None = None
    full_range: bool = False
    matrix: int = MATRIX_BT601

    @property
    def channels(self) -> int:
        return 1 if self.pixel_format == "gray8" else 3


def default_matrix(height: int) -> int:
    return MATRIX_BT601 if height <= 576 else MATRIX_BT709


# ---------------------------------------------------------------------------------------------
# colour conversion


def plane_shapes(pixel_format: str, width: int, height: int) -> list[tuple[int, int]]:
    """(rows, cols) of each plane of a planar frame."""
    if pixel_format == "gray8":
        return [(height, width)]
    if pixel_format == "rgb24":
        return [(height, width, 3)]  # type: ignore[list-item]
    sx, sy = SUBSAMPLING[pixel_format]
    chroma = (-(-height // sy), -(-width // sx))
    return [(height, width), chroma, chroma]


def frame_bytes(pixel_format: str, width: int, height: int) -> int:
    return sum(math.prod(s) for s in plane_shapes(pixel_format, width, height))


def _coefficients(matrix: int) -> tuple[float, float, float]:
    kr, kb = KR_KB.get(matrix, KR_KB[MATRIX_BT601])
    return kr, 1.0 - kr - kb, kb


def yuv_to_rgb(
    planes: list[np.ndarray], pixel_format: str, *, matrix: int = MATRIX_BT601, full_range: bool = False
) -> np.ndarray:
    """Planes (Y (H, W), U, V) uint8 -> RGB (H, W, 3) uint8. gray8: one plane."""
    y = planes[0].astype(np.float32)
    height, width = y.shape
    if pixel_format == "gray8":
        g = y if full_range else (y - 16.0) * (255.0 / 219.0)
        g8 = np.clip(np.rint(g), 0, 255).astype(np.uint8)
        return np.repeat(g8[..., None], 3, axis=2)
    sx, sy = SUBSAMPLING[pixel_format]
    kr, kg, kb = _coefficients(matrix)
    # the chroma terms at chroma resolution, then repeated: the same float32 operations on the same
    # values as on repeated samples, so the same bits, at a quarter of the work for 4:2:0
    cb = planes[1].astype(np.float32) - 128.0
    cr = planes[2].astype(np.float32) - 128.0
    if full_range:
        yy = y
    else:
        yy = (y - 16.0) * (255.0 / 219.0)
        cb, cr = cb * (255.0 / 224.0), cr * (255.0 / 224.0)
    r_add = 2.0 * (1.0 - kr) * cr
    b_add = 2.0 * (1.0 - kb) * cb
    out = np.empty((height, width, 3), dtype=np.float32)
    r, g, b = out[..., 0], out[..., 1], out[..., 2]
    np.add(yy, _upsample(r_add, sx, sy, height, width), out=r)
    np.add(yy, _upsample(b_add, sx, sy, height, width), out=b)
    np.divide(yy - kr * r - kb * b, kg, out=g)
    return np.clip(np.rint(out, out=out), 0, 255, out=out).astype(np.uint8)


def _upsample(plane: np.ndarray, sx: int, sy: int, height: int, width: int) -> np.ndarray:
    """Chroma (ceil(H / sy), ceil(W / sx)) -> (H, W) by sample repetition."""
    if sx == sy == 1:
        return plane
    return np.repeat(np.repeat(plane, sy, axis=0), sx, axis=1)[:height, :width]


def rgb_to_yuv(
    rgb: np.ndarray, pixel_format: str, *, matrix: int = MATRIX_BT601, full_range: bool = False
) -> list[np.ndarray]:
    """RGB (H, W, 3) uint8 -> planes in ``pixel_format`` (chroma by 2x2 / 2x1 box averaging)."""
    f = rgb.astype(np.float32)
    kr, kg, kb = _coefficients(matrix)
    y = kr * f[..., 0] + kg * f[..., 1] + kb * f[..., 2]
    if pixel_format == "gray8":
        luma = y if full_range else 16.0 + y * (219.0 / 255.0)
        return [np.clip(np.rint(luma), 0, 255).astype(np.uint8)]
    cb = (f[..., 2] - y) / (2.0 * (1.0 - kb))
    cr = (f[..., 0] - y) / (2.0 * (1.0 - kr))
    if full_range:
        yq, uq, vq = y, cb + 128.0, cr + 128.0
    else:
        yq = 16.0 + y * (219.0 / 255.0)
        uq, vq = 128.0 + cb * (224.0 / 255.0), 128.0 + cr * (224.0 / 255.0)
    sx, sy = SUBSAMPLING[pixel_format]
    out = [np.clip(np.rint(yq), 0, 255).astype(np.uint8)]
    for c in (uq, vq):
        out.append(np.clip(np.rint(_box_down(c, sx, sy)), 0, 255).astype(np.uint8))
    return out


def _box_down(plane: np.ndarray, sx: int, sy: int) -> np.ndarray:
    if sx == sy == 1:
        return plane
    height, width = plane.shape
    ph, pw = -(-height // sy) * sy, -(-width // sx) * sx
    if (ph, pw) != (height, width):
        plane = np.pad(plane, ((0, ph - height), (0, pw - width)), mode="edge")
    return plane.reshape(ph // sy, sy, pw // sx, sx).mean(axis=(1, 3))


def to_pixel_format(rgb: np.ndarray, info: VideoInfo) -> list[np.ndarray]:
    """RGB frame -> the planes of ``info.pixel_format`` (rgb24: one (H, W, 3) plane)."""
    if info.pixel_format == "rgb24":
        return [rgb]
    return rgb_to_yuv(rgb, info.pixel_format, matrix=info.matrix, full_range=info.full_range)


# ---------------------------------------------------------------------------------------------
# Y4M


def _read_exact(stream: IO[bytes], size: int) -> bytes:
    chunks, left = [], size
    while left:
        block = stream.read(left)
        if not block:
            break
        chunks.append(block)
        left -= len(block)
    return b"".join(chunks)


def _read_line(stream: IO[bytes], what: str, offset: int) -> bytes:
    line = bytearray()
    while len(line) <= MAX_Y4M_HEADER:
        c = stream.read(1)
        if not c:
            raise TruncatedError(f"Y4M stream ends inside the {what}", offset=offset + len(line), field=what)
        if c == b"\n":
            return bytes(line)
        line += c
    raise FormatError(f"Y4M {what} longer than {MAX_Y4M_HEADER} bytes", offset=offset, field=what)


def parse_y4m_header(line: bytes) -> VideoInfo:
    """The ``YUV4MPEG2 W.. H.. F..`` line (without newline) -> VideoInfo."""
    fields = line.split(b" ")
    if fields[0] != Y4M_MAGIC:
        raise FormatError("not a YUV4MPEG2 stream", offset=0, field="magic")
    width = height = 0
    fps = Fraction(0)
    colour = "420jpeg"
    full_range = False
    for f in fields[1:]:
        if not f:
            continue
        tag, value = chr(f[0]), f[1:].decode("ascii", "replace")
        try:
            if tag == "W":
                width = int(value)
            elif tag == "H":
                height = int(value)
            elif tag == "F":
                num, den = value.split(":")
                fps = Fraction(int(num), int(den)) if int(den) else Fraction(0)
            elif tag == "C":
                colour = value
            elif tag == "I" and value not in ("p", "?"):
                raise FormatError(f"interlaced Y4M (I{value}) is not supported", field="Y4M interlacing")
            elif tag == "X" and value.upper() == "COLORRANGE=FULL":
                full_range = True
        except (ValueError, ZeroDivisionError):
            raise FormatError(f"bad Y4M header field {f.decode('ascii', 'replace')!r}", field=tag) from None
    if width <= 0 or height <= 0:
        raise FormatError(f"Y4M header lacks a valid size (W{width} H{height})", field="W/H")
    if colour not in Y4M_COLOURSPACES:
        raise FormatError(f"unsupported Y4M colour space C{colour} (8-bit 420/422/444/mono only)", field="C")
    limits.check_pixels(width, height, what="Y4M frame")
    return VideoInfo(
        width=width,
        height=height,
        fps=fps if fps > 0 else DEFAULT_RAW_FPS,
        pixel_format=Y4M_COLOURSPACES[colour],
        full_range=full_range,
        matrix=default_matrix(height),
    )


class Y4MReader:
    """Reads a YUV4MPEG2 stream frame by frame (path, ``"-"`` or binary file object; never seeks).

    ``.info`` (frame_count known for a regular file), iteration yields RGB frames;
    :meth:`planes` yields the exact planes. A stream cut inside a frame raises TruncatedError
    after the last complete frame.
    """

    dropped_streams: tuple[str, ...] = ()  # a Y4M stream holds one video track and nothing else

    def __init__(self, src: Any):
        from vqcodec._io import open_input

        self._ctx: contextlib.AbstractContextManager[IO[bytes]] | None = open_input(src)
        self._stream: IO[bytes] = self._ctx.__enter__()
        try:
            self._offset = 0
            line = _read_line(self._stream, "Y4M header", 0)
            self._offset = len(line) + 1
            info = parse_y4m_header(line)
            self._frame_size = frame_bytes(info.pixel_format, info.width, info.height)
            count = None
            if isinstance(src, (str, os.PathLike)) and src != "-":
                size = os.path.getsize(src)
                per = self._frame_size + len(Y4M_FRAME) + 1
                if (size - self._offset) % per == 0:  # no frame parameters: exact count
                    count = (size - self._offset) // per
            self.info = replace(info, frame_count=count)
        except BaseException:
            self.close()
            raise

    def planes(self) -> Iterator[list[np.ndarray]]:
        info = self.info
        shapes = plane_shapes(info.pixel_format, info.width, info.height)
        index = 0
        while True:
            first = self._stream.read(1)
            if not first:
                return
            line = first + (b"" if first == b"\n" else _read_line(self._stream, "FRAME marker", self._offset))
            if not line.startswith(Y4M_FRAME):
                raise FormatError(
                    f"expected FRAME marker for frame {index}", offset=self._offset, field="FRAME"
                )
            self._offset += len(line) + (0 if first == b"\n" else 1)
            data = _read_exact(self._stream, self._frame_size)
            if len(data) < self._frame_size:
                raise TruncatedError(
                    f"Y4M stream ends inside frame {index} ({len(data)} of {self._frame_size} bytes)",
                    offset=self._offset + len(data),
                    field="frame data",
                )
            self._offset += self._frame_size
            buf = np.frombuffer(data, dtype=np.uint8)
            out, pos = [], 0
            for shape in shapes:
                n = math.prod(shape)
                out.append(buf[pos : pos + n].reshape(shape))
                pos += n
            index += 1
            yield out

    def __iter__(self) -> Iterator[np.ndarray]:
        info = self.info
        for planes in self.planes():
            yield yuv_to_rgb(planes, info.pixel_format, matrix=info.matrix, full_range=info.full_range)

    def close(self) -> None:
        ctx, self._ctx = getattr(self, "_ctx", None), None
        if ctx is not None:
            ctx.__exit__(None, None, None)

    def __enter__(self) -> Y4MReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Y4MWriter:
    """Writes a YUV4MPEG2 stream to a binary file object (pipes fine); frames as RGB or planes."""

    def __init__(self, stream: IO[bytes], info: VideoInfo):
        self.info = info if info.pixel_format != "rgb24" else replace(info, pixel_format="yuv444p")
        self._stream = stream
        fps = Fraction(info.fps).limit_denominator(1 << 30)
        extra = " XCOLORRANGE=FULL" if self.info.full_range else ""
        head = (
            f"YUV4MPEG2 W{info.width} H{info.height} F{fps.numerator}:{fps.denominator} Ip A1:1 "
            f"C{Y4M_TAG_FOR[self.info.pixel_format]}{extra}\n"
        )
        self._stream.write(head.encode("ascii"))
        self.frames = 0

    def write_planes(self, planes: list[np.ndarray]) -> None:
        shapes = plane_shapes(self.info.pixel_format, self.info.width, self.info.height)
        if [tuple(p.shape) for p in planes] != [tuple(s) for s in shapes]:
            raise ValueError(f"planes {[p.shape for p in planes]} do not match {shapes}")
        self._stream.write(Y4M_FRAME + b"\n")
        for p in planes:
            self._stream.write(np.ascontiguousarray(p, dtype=np.uint8).tobytes())
        self.frames += 1

    def write(self, rgb: np.ndarray) -> None:
        self.write_planes(to_pixel_format(rgb, self.info))

    def close(self) -> None:
        self._stream.flush()


# ---------------------------------------------------------------------------------------------
# PyAV


def _pyav_pixel_format(name: str) -> tuple[str, bool]:
    """A PyAV/FFmpeg pixel format name -> (our pixel format, full range)."""
    full = name.startswith("yuvj")
    base = name.replace("yuvj", "yuv")
    if base in SUBSAMPLING:
        return base, full
    if base.startswith("gray"):
        return "gray8", True
    return "rgb24", True


class AVReader:
    """Any container/codec FFmpeg reads (MP4, MKV, WebM, raw H.264...), frames as RGB via PyAV."""

    def __init__(self, src: Any, *, raw_format: str | None = None):
        import av

        try:
            if isinstance(src, (str, os.PathLike)) and str(src) != "-":
                suffix = Path(src).suffix.lower()
                fmt = raw_format or RAW_FORMATS.get(suffix)
                self._container = av.open(os.fspath(src), mode="r", format=fmt)
            else:
                stream = sys.stdin.buffer if src == "-" else src
                self._container = av.open(stream, mode="r", format=raw_format)
        except (av.error.FFmpegError, OSError) as exc:
            raise FormatError(f"cannot open the video: {exc}", field="input") from None
        if not self._container.streams.video:
            self._container.close()
            raise FormatError("the input has no video stream", field="input")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        # what a .vqc file cannot hold (audio, subtitles, extra video): callers warn about it
        self.dropped_streams = tuple(
            f"{s.type} stream {s.index} ({s.codec_context.name if s.codec_context else 'unknown codec'})"
            for s in self._container.streams
            if s is not self._stream
        )
        ctx = self._stream.codec_context
        rate = self._stream.average_rate or self._stream.guessed_rate or self._stream.base_rate
        fps = Fraction(rate) if rate else DEFAULT_RAW_FPS
        pix, full = _pyav_pixel_format(str(ctx.pix_fmt or "yuv420p"))
        width, height = int(ctx.width), int(ctx.height)
        limits.check_pixels(max(width, 1), max(height, 1), what="input video")
        count = int(self._stream.frames) or None
        self.info = VideoInfo(
            width=width,
            height=height,
            fps=fps if fps > 0 else DEFAULT_RAW_FPS,
            pixel_format=pix,
            frame_count=count,
            full_range=full,
            matrix=default_matrix(height),
        )

    def __iter__(self) -> Iterator[np.ndarray]:
        import av

        try:
            for frame in self._container.decode(self._stream):
                yield frame.to_ndarray(format="rgb24")
        except av.error.FFmpegError as exc:
            raise FormatError(f"cannot decode the video: {exc}", field="input") from None

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> AVReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def is_y4m_stream(stream: Any) -> bool:
    peek = getattr(stream, "peek", None)
    return bool(peek is not None and peek(len(Y4M_MAGIC))[: len(Y4M_MAGIC)] == Y4M_MAGIC)


def open_video(src: Any) -> Y4MReader | AVReader:
    """A frame reader for a path, ``"-"`` (stdin) or a binary file object; see the module docstring."""
    if isinstance(src, (str, os.PathLike)) and str(src) != "-":
        path = Path(src)
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {src}")
        with open(path, "rb") as f:
            head = f.read(len(Y4M_MAGIC))
        if head == Y4M_MAGIC:
            return Y4MReader(src)
        if path.suffix.lower() == ".y4m":
            raise FormatError(f"{src} does not start with YUV4MPEG2", offset=0, field="magic")
        return AVReader(src)
    stream = sys.stdin.buffer if src == "-" else src
    if is_y4m_stream(stream) or src == "-":
        return Y4MReader(stream)
    return AVReader(stream)


class AVWriter:
    """H.264 through PyAV: high quality (CRF MP4_CRF, yuv420p; yuv444p for odd sizes) or lossless
    (libx264rgb, QP 0). The output always has the clip's exact size.

    ``dst``: path or binary file object; ``container``: FFmpeg format ("mp4", "matroska", "mov").
    """

    def __init__(self, dst: Any, info: VideoInfo, *, lossless: bool = False, container: str | None = None):
        import av

        self.info = info
        # a file object has no name to guess from: ``container`` (FFmpeg format name) or MP4
        fmt = container or ("mp4" if not isinstance(dst, (str, os.PathLike)) else None)
        self._container = av.open(dst, mode="w", format=fmt)
        fps = Fraction(info.fps).limit_denominator(1 << 16)
        #: 4:2:0 needs even sizes: an odd-sized clip is written in 4:4:4 (H.264 High 4:4:4) at its
        #: exact size instead of being padded to the next even size
        self.odd_size = bool(info.width % 2 or info.height % 2)
        if lossless:
            self._stream = self._container.add_stream("libx264rgb", rate=fps)
            self._stream.pix_fmt = "rgb24"
            self._stream.options = {"qp": "0", "preset": "medium"}
        else:
            self._stream = self._container.add_stream("libx264", rate=fps)
            self._stream.pix_fmt = "yuv444p" if self.odd_size else "yuv420p"
            self._stream.options = {"crf": str(MP4_CRF), "preset": "medium"}
        self._stream.width = info.width
        self._stream.height = info.height
        self.frames = 0

    def write(self, rgb: np.ndarray) -> None:
        import av

        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = self.frames
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()


PATTERN = re.compile(r"%0?\d*d")


def is_frame_pattern(path: str) -> bool:
    return bool(PATTERN.search(os.path.basename(path)))


class PNGSequenceWriter:
    """One PNG per frame, named ``pattern % frame_index`` (e.g. ``out_%04d.png``)."""

    def __init__(self, pattern: str, info: VideoInfo, *, force: bool = False, first_index: int = 0):
        if not is_frame_pattern(pattern):
            raise ValueError(f"{pattern!r} has no frame number pattern such as %04d")
        self.pattern = pattern
        self.info = info
        self.force = force
        self.index = first_index
        self.written: list[str] = []

    def write(self, rgb: np.ndarray) -> None:
        from PIL import Image

        from vqcodec._io import atomic_output

        path = self.pattern % self.index
        image = Image.fromarray(rgb[..., 0] if self.info.pixel_format == "gray8" else rgb)
        with atomic_output(path, force=self.force) as f:
            image.save(f, format="PNG")
        self.written.append(path)
        self.index += 1

    def close(self) -> None:
        pass


__all__ = [
    "AVReader",
    "AVWriter",
    "PNGSequenceWriter",
    "VIDEO_EXTENSIONS",
    "VideoInfo",
    "Y4MReader",
    "Y4MWriter",
    "frame_bytes",
    "is_frame_pattern",
    "open_video",
    "rgb_to_yuv",
    "to_pixel_format",
    "yuv_to_rgb",
]
