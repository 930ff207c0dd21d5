"""The ``Header`` of a .vqc file and its HEAD chunk data (formats/vqc-v1.md, "HEAD")."""

from __future__ import annotations

import dataclasses
import re
from fractions import Fraction
from typing import Any

from vqcodec.container import spec
from vqcodec.errors import FormatError, LimitError

_PIXEL_FORMAT = re.compile(r"[a-z0-9_]+")


@dataclasses.dataclass(frozen=True)
class Header:
    """What a .vqc file says about its media, before any frame.

    ``frame_count`` 0 means unknown (a streaming writer); the end chunk then records the count.
    Colour fields are ITU-T H.273 code points. ``codec_params`` is an opaque blob that the codec
    layer defines (formats/vqc-v1.md, "Image frame payload" / "Video frame payload").
    Construction validates every field (``ValueError`` naming it).
    """

    media: str
    width: int
    height: int
    channels: int = 3
    pixel_format: str = "rgb24"
    fps_num: int = 0
    fps_den: int = 1
    frame_count: int = 0
    primaries: int = 1
    transfer: int = 13
    matrix: int = 0
    full_range: bool = True
    model_name: str = ""
    model_sha256: bytes = bytes(spec.MODEL_SHA256_SIZE)
    quality: int = 0
    codec_params: bytes = b""

    def __post_init__(self) -> None:
        problem = self._problem()
        if problem is not None:
            raise ValueError(f"invalid header field {problem}")

    def _problem(self) -> str | None:
        """``"<field>: <reason>"`` for the first invalid field, or None."""

        def is_int(v: object) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        if self.media not in spec.MEDIA_CODES:
            return f"media: {self.media!r} is not one of {sorted(spec.MEDIA_CODES)}"
        for name, low, high in (
            ("width", 1, spec.U32_MAX),
            ("height", 1, spec.U32_MAX),
            ("channels", 1, spec.MAX_CHANNELS),
            ("fps_num", 0, spec.U32_MAX),
            ("fps_den", 1, spec.U32_MAX),
            ("frame_count", 0, spec.U32_MAX),
            ("primaries", 0, 255),
            ("transfer", 0, 255),
            ("matrix", 0, 255),
            ("quality", 0, spec.U16_MAX),
        ):
            value = getattr(self, name)
            if not is_int(value) or not low <= value <= high:
                return f"{name}: {value!r} is not an int in [{low}, {high}]"
        if not isinstance(self.full_range, bool):
            return f"full_range: {self.full_range!r} is not a bool"
        if self.media == "video" and self.fps_num == 0:
            return "fps_num: a video needs a frame rate (fps_num >= 1)"
        if self.media == "image" and self.frame_count > 1:
            return f"frame_count: an image has one frame, not {self.frame_count}"
        if (
            not isinstance(self.pixel_format, str)
            or not _PIXEL_FORMAT.fullmatch(self.pixel_format)
            or len(self.pixel_format) > spec.MAX_PIXEL_FORMAT_LENGTH
        ):
            return f"pixel_format: {self.pixel_format!r} is not 1-32 characters of [a-z0-9_]"
        if not isinstance(self.model_name, str):
            return f"model_name: {self.model_name!r} is not a str"
        if len(self.model_name.encode("utf-8", "surrogatepass")) > spec.MAX_MODEL_NAME_LENGTH:
            return f"model_name: longer than {spec.MAX_MODEL_NAME_LENGTH} UTF-8 bytes"
        try:
            self.model_name.encode("utf-8")
        except UnicodeEncodeError:
            return "model_name: not encodable as UTF-8"
        if not isinstance(self.model_sha256, bytes) or len(self.model_sha256) != spec.MODEL_SHA256_SIZE:
            return "model_sha256: must be 32 bytes"
        if not isinstance(self.codec_params, bytes):
            return "codec_params: must be bytes"
        return None

    @property
    def fps(self) -> Fraction | None:
        """The frame rate as an exact fraction, None for an image (fps_num 0)."""
        return Fraction(self.fps_num, self.fps_den) if self.fps_num else None

    @property
    def pixels(self) -> int:
        return self.width * self.height

    def replace(self, **changes: Any) -> Header:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (bytes as hex, codec_params also as text when it is UTF-8)."""
        out: dict[str, Any] = dataclasses.asdict(self)
        out["model_sha256"] = self.model_sha256.hex()
        out["codec_params"] = self.codec_params.hex()
        try:
            out["codec_params_text"] = self.codec_params.decode("utf-8")
        except UnicodeDecodeError:
            out["codec_params_text"] = None
        return out


def pack_header(header: Header) -> bytes:
    """HEAD chunk data of the current minor version."""
    pixel_format = header.pixel_format.encode("ascii")
    model_name = header.model_name.encode("utf-8")
    return b"".join(
        (
            spec.HEAD_FIXED.pack(
                spec.MEDIA_CODES[header.media],
                header.channels,
                header.width,
                header.height,
                header.fps_num,
                header.fps_den,
                header.frame_count,
                header.primaries,
                header.transfer,
                header.matrix,
                int(header.full_range),
                header.quality,
                header.model_sha256,
            ),
            spec.U8.pack(len(pixel_format)),
            pixel_format,
            spec.U8.pack(len(model_name)),
            model_name,
            spec.U32.pack(len(header.codec_params)),
            header.codec_params,
        )
    )


def unpack_header(data: bytes, *, offset: int, minor: int, limits: spec.Limits) -> Header:
    """Parse HEAD chunk data that starts at byte ``offset`` of the file (for error messages).

    Raises FormatError naming the field, LimitError for sizes over ``limits``.
    """
    if len(data) < spec.HEAD_MIN_SIZE:
        raise FormatError(
            f"header is {len(data)} bytes, shorter than {spec.HEAD_MIN_SIZE}", offset=offset, field="HEAD"
        )
    (
        media_code,
        channels,
        width,
        height,
        fps_num,
        fps_den,
        frame_count,
        primaries,
        transfer,
        matrix,
        full_range,
        quality,
        model_sha256,
    ) = spec.HEAD_FIXED.unpack_from(data, 0)
    if media_code not in spec.MEDIA_NAMES:
        raise FormatError(f"unknown media code {media_code}", offset=offset, field="media")
    if width * height > limits.max_pixels:
        raise LimitError(
            f"declared size {width}x{height} is over the limit of {limits.max_pixels} pixels "
            f"(field width/height, offset {offset + 2})"
        )
    if frame_count > limits.max_frame_count:
        raise LimitError(
            f"declared frame count {frame_count} is over the limit of {limits.max_frame_count} "
            f"(field frame_count, offset {offset + 18})"
        )
    if full_range > 1:
        raise FormatError(f"full_range is {full_range}, not 0 or 1", offset=offset + 25, field="full_range")

    pos = spec.HEAD_FIXED_SIZE

    def take(size: int, field: str) -> bytes:
        nonlocal pos
        if pos + size > len(data):
            raise FormatError(
                f"{field} needs {size} bytes, the header has {len(data) - pos} left",
                offset=offset + pos,
                field=field,
            )
        piece = data[pos : pos + size]
        pos += size
        return piece

    pixel_format_raw = take(take(1, "pixel_format length")[0], "pixel_format")
    name_raw = take(take(1, "model_name length")[0], "model_name")
    (params_length,) = spec.U32.unpack(take(4, "codec_params length"))
    codec_params = take(params_length, "codec_params")
    if pos != len(data) and minor <= spec.VERSION_MINOR:
        raise FormatError(
            f"{len(data) - pos} unexpected bytes after the header fields", offset=offset + pos, field="HEAD"
        )
    try:
        pixel_format = pixel_format_raw.decode("ascii")
    except UnicodeDecodeError:
        pixel_format = "?"
    try:
        model_name = name_raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(
            "model_name is not UTF-8", offset=offset + spec.HEAD_FIXED_SIZE, field="model_name"
        ) from exc
    try:
        return Header(
            media=spec.MEDIA_NAMES[media_code],
            width=width,
            height=height,
            channels=channels,
            pixel_format=pixel_format,
            fps_num=fps_num,
            fps_den=fps_den,
            frame_count=frame_count,
            primaries=primaries,
            transfer=transfer,
            matrix=matrix,
            full_range=bool(full_range),
            model_name=model_name,
            model_sha256=model_sha256,
            quality=quality,
            codec_params=codec_params,
        )
    except ValueError as exc:
        field = str(exc).removeprefix("invalid header field ").split(":", 1)[0]
        raise FormatError(str(exc), offset=offset, field=field) from exc
