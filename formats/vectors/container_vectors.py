"""Container-level golden vectors (kind "container"): every feature of formats/vqc-v1.md, and breakage.

Payloads are arbitrary deterministic bytes: these files test the container, not a codec. Valid
vectors are written by ``ContainerWriter`` (so a change in what the writer emits shows up as a
byte difference); invalid ones are assembled chunk by chunk here, so each breaks one rule.

Expectations are written out by hand from the inputs (never by reading the files back):
- valid: ``header`` (every field; bytes as hex), ``frame_count``, ``key_frames``, ``frames`` (index,
  key, payload size and sha256, side chunks), ``skipped_chunks``, ``trailing_chunks``, ``index``;
- invalid: ``error`` (exception class name), ``at`` ("open": the reader's constructor raises;
  "frames": reading the frames raises after ``frames_before_error`` good frames), ``field`` when
  the error names one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import struct
import zlib
from typing import Any

from vqcodec.container import ContainerWriter, Header
from vqcodec.container.header import pack_header

MAGIC = b"\x89VQC\r\n\x1a\n"


def payload(tag: str, size: int) -> bytes:
    """``size`` deterministic pseudo-random bytes."""
    out = b""
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{tag}:{counter}".encode()).digest()
        counter += 1
    return out[:size]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def chunk(chunk_type: bytes, data: bytes, *, length: int | None = None, crc: int | None = None) -> bytes:
    """A chunk, by hand; ``length``/``crc`` override the true values to break them on purpose."""
    true_crc = zlib.crc32(chunk_type + data)
    return (
        struct.pack("<I", len(data) if length is None else length)
        + chunk_type
        + data
        + struct.pack("<I", true_crc if crc is None else crc)
    )


def preamble(major: int = 1, minor: int = 0) -> bytes:
    return MAGIC + struct.pack("<HH", major, minor)


def fram(index: int, key: bool, data: bytes, flags: int | None = None) -> bytes:
    return chunk(b"FRAM", struct.pack("<BI", (1 if key else 0) if flags is None else flags, index) + data)


def vend(frame_count: int, index_offset: int = 0) -> bytes:
    return chunk(b"VEND", struct.pack("<IQ", frame_count, index_offset))


def header_dict(header: Header) -> dict[str, Any]:
    fields = dataclasses.asdict(header)
    fields["model_sha256"] = header.model_sha256.hex()
    fields["codec_params"] = header.codec_params.hex()
    return fields


def frame_dict(index: int, key: bool, data: bytes, side: tuple[tuple[bytes, bytes], ...] = ()) -> dict:
    return {
        "index": index,
        "key": key,
        "size": len(data),
        "sha256": sha(data),
        "side_chunks": [[t.decode(), sha(d)] for t, d in side],
    }


def write(header: Header, frames: list[tuple[bool, bytes]], *, index: bool = True, extra=None) -> bytes:
    """A file by ContainerWriter; ``extra`` maps a frame position to chunks written before it."""
    out = io.BytesIO()
    extra = extra or {}
    with ContainerWriter(out, header, index=index) as writer:
        for i, (key, data) in enumerate(frames):
            for chunk_type, chunk_data in extra.get(i, ()):
                writer.write_chunk(chunk_type, chunk_data)
            writer.write_frame(data, key=key)
        # chunks keyed by len(frames) trail the frames
        for chunk_type, chunk_data in extra.get(len(frames), ()):
            writer.write_chunk(chunk_type, chunk_data)
    return out.getvalue()


def valid_expect(
    header: Header,
    frames: list[tuple[bool, bytes]],
    *,
    frame_count: int | None = None,
    index: bool = True,
    skipped: list[str] | None = None,
    version: str = "1.0",
) -> dict[str, Any]:
    return {
        "error": None,
        "version": version,
        "header": header_dict(header),
        "frame_count": len(frames) if frame_count is None else frame_count,
        "key_frames": [i for i, (key, _) in enumerate(frames) if key],
        "frames": [frame_dict(i, key, data) for i, (key, data) in enumerate(frames)],
        "skipped_chunks": skipped or [],
        "trailing_chunks": [],
        "index": index,
    }


def invalid(error: str, at: str, *, frames_before_error: int = 0, field: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"error": error, "at": at}
    if at == "frames":
        out["frames_before_error"] = frames_before_error
    if field is not None:
        out["field"] = field
    return out


# -- the inputs the valid vectors share ------------------------------------------------------
IMAGE = Header(media="image", width=8, height=6, frame_count=1)
IMAGE_FULL = Header(
    media="image",
    width=3000,
    height=2000,
    channels=4,
    pixel_format="rgba32",
    frame_count=1,
    primaries=9,
    transfer=16,
    matrix=9,
    full_range=False,
    model_name="vq-image-ü-test",
    model_sha256=hashlib.sha256(b"model weights").digest(),
    quality=65535,
    codec_params=json.dumps({"codes": [3, 125, 188], "stride": 16}, sort_keys=True).encode(),
)
VIDEO = Header(
    media="video",
    width=32,
    height=24,
    channels=3,
    pixel_format="yuv420p",
    fps_num=30000,
    fps_den=1001,
    frame_count=12,
    primaries=1,
    transfer=1,
    matrix=1,
    full_range=False,
    model_name="vq-video-test",
    model_sha256=hashlib.sha256(b"video weights").digest(),
    quality=3,
    codec_params=b'{"gop":5}',
)
GOP_FRAMES = [(i % 5 == 0, payload(f"gop{i}", 20 + 7 * i)) for i in range(12)]
STREAM_FRAMES = [(i in (0, 4), payload(f"stream{i}", 33 + i)) for i in range(7)]
NO_INDEX_FRAMES = [(i % 3 == 0, payload(f"noindex{i}", 10)) for i in range(6)]


def image_minimal():
    frames = [(True, payload("image_minimal", 40))]
    return write(IMAGE, frames), valid_expect(IMAGE, frames)


def image_all_fields():
    frames = [(True, payload("image_all_fields", 300))]
    meta = [(b"meta", b'{"comment":"ancillary, unknown to readers"}'), (b"tIME", b"\x07\xea\x0b\x18")]
    data = write(IMAGE_FULL, frames, extra={0: meta, 1: [(b"meta", b"trailing")]})
    return data, valid_expect(IMAGE_FULL, frames, skipped=["meta", "tIME", "meta"])


def video_gop():
    return write(VIDEO, GOP_FRAMES), valid_expect(VIDEO, GOP_FRAMES)


def video_streamed():
    header = dataclasses.replace(VIDEO, frame_count=0)
    return write(header, STREAM_FRAMES), valid_expect(header, STREAM_FRAMES, frame_count=7)


def video_no_index():
    header = dataclasses.replace(VIDEO, frame_count=6)
    data = write(header, NO_INDEX_FRAMES, index=False)
    return data, valid_expect(header, NO_INDEX_FRAMES, index=False)


def video_empty():
    header = dataclasses.replace(VIDEO, frame_count=0)
    return write(header, []), valid_expect(header, [], frame_count=0, index=False)


def minor_newer():
    """Version 1.7: four header bytes and a frame flag bit that 1.0 does not know; a 1.0 reader reads it."""
    frames = [(True, payload("minor0", 16)), (False, payload("minor1", 16))]
    body = (
        preamble(1, 7)
        + chunk(b"HEAD", pack_header(IMAGE.replace(media="video", fps_num=25, frame_count=2)) + b"NEW!")
        + fram(0, True, frames[0][1], flags=0x81)
        + fram(1, False, frames[1][1], flags=0x40)
        + vend(2)
    )
    header = IMAGE.replace(media="video", fps_num=25, frame_count=2)
    return body, valid_expect(header, frames, index=False, version="1.7")


# -- invalid vectors ------------------------------------------------------------------------------
def _gop() -> bytes:
    return write(VIDEO, GOP_FRAMES)


def _head(header: Header = VIDEO) -> bytes:
    return preamble() + chunk(b"HEAD", pack_header(header))


def _frames(count: int, start: int = 0) -> bytes:
    return b"".join(fram(i, key, data) for i, (key, data) in enumerate(GOP_FRAMES[start:count], start))


def empty():
    return b"", invalid("TruncatedError", "open", field="magic")


def not_vqc():
    return b"\x89PNG\r\n\x1a\n" + payload("png", 40), invalid("FormatError", "open", field="magic")


def truncated_preamble():
    return MAGIC[:5], invalid("TruncatedError", "open", field="magic")


def major_2():
    return preamble(2, 0) + _gop()[12:], invalid("UnsupportedVersionError", "open", field="version")


def head_crc():
    data = bytearray(_gop())
    data[12 + 8 + 3] ^= 0x10  # a byte of the width field
    return bytes(data), invalid("ChecksumError", "open", field="HEAD crc")


def head_short():
    data = preamble() + chunk(b"HEAD", pack_header(VIDEO)[:40]) + vend(0)
    return data, invalid("FormatError", "open", field="HEAD")


def head_bad_media():
    raw = bytearray(pack_header(VIDEO))
    raw[0] = 7
    return preamble() + chunk(b"HEAD", bytes(raw)) + vend(0), invalid("FormatError", "open", field="media")


def first_chunk_not_head():
    return preamble() + _frames(1) + vend(1), invalid("FormatError", "open", field="HEAD")


def frame_crc():
    data = bytearray(_gop())
    target = len(_head()) + len(_frames(2)) + 12 + 3  # inside frame 2's payload
    data[target] ^= 0x01
    return bytes(data), invalid("ChecksumError", "frames", frames_before_error=2, field="FRAM crc")


def truncated_mid_frame():
    data = _gop()
    cut = len(_head()) + len(_frames(3)) + 20  # 20 bytes into frame 3's chunk
    return data[:cut], invalid("TruncatedError", "frames", frames_before_error=3, field="FRAM data")


def truncated_before_end():
    data = _gop()
    return data[:-24], invalid("TruncatedError", "frames", frames_before_error=12, field="VEND")


def unknown_critical():
    data = _head() + _frames(1) + chunk(b"ZZZZ", b"must be understood") + _frames(12, 1) + vend(12)
    return data, invalid("FormatError", "frames", frames_before_error=1, field="chunk type")


def bad_chunk_type():
    data = _head() + _frames(1) + chunk(b"FR\x00M", b"x") + vend(1)
    return data, invalid("FormatError", "frames", frames_before_error=1, field="chunk type")


def huge_dimensions():
    header = VIDEO.replace(width=0xFFFFFFFF, height=0xFFFFFFFF)
    return _head(header) + _frames(12) + vend(12), invalid("LimitError", "open")


def huge_frame_count():
    header = VIDEO.replace(frame_count=0xFFFFFFFF)
    return _head(header) + _frames(12) + vend(12), invalid("LimitError", "open")


def huge_chunk_length():
    lying = chunk(b"FRAM", b"\x00\x01\x00\x00\x00" + b"tiny", length=0xFFFFFFF0)
    data = _head() + _frames(1) + lying + vend(2)
    return data, invalid("LimitError", "frames", frames_before_error=1)


def huge_header_length():
    return preamble() + chunk(b"HEAD", pack_header(VIDEO), length=0x7FFFFFFF), invalid("LimitError", "open")


def frame_index_gap():
    data = _head() + _frames(2) + _frames(4, 3) + vend(3)
    return data, invalid("FormatError", "frames", frames_before_error=2, field="frame_index")


def first_frame_not_key():
    data = _head() + fram(0, False, b"delta") + vend(1)
    return data, invalid("FormatError", "frames", frames_before_error=0, field="flags")


def reserved_flags():
    data = _head() + _frames(1) + fram(1, False, b"x", flags=0x80) + vend(2)
    return data, invalid("FormatError", "frames", frames_before_error=1, field="flags")


def too_many_frames():
    data = _head(VIDEO.replace(frame_count=2)) + _frames(3) + vend(3)
    return data, invalid("FormatError", "frames", frames_before_error=2, field="frame_index")


def count_mismatch():
    data = _head(VIDEO.replace(frame_count=0)) + _frames(5) + vend(4)
    return data, invalid("FormatError", "frames", frames_before_error=5, field="frame_count")


def index_mismatch():
    entries = struct.pack("<I", 1) + struct.pack("<IQ", 0, 99)  # frame 0 is not at offset 99
    frames = _frames(3)
    index_offset = len(_head()) + len(frames)
    data = _head(VIDEO.replace(frame_count=3)) + frames + chunk(b"indx", entries) + vend(3, index_offset)
    return data, invalid("FormatError", "frames", frames_before_error=3, field="indx")


def image_two_frames():
    frames = fram(0, True, b"one") + fram(1, True, b"two")
    expect = invalid("FormatError", "frames", frames_before_error=1, field="frame_index")
    return _head(IMAGE) + frames + vend(2), expect


def second_head():
    data = _head() + _frames(1) + chunk(b"HEAD", pack_header(VIDEO)) + vend(1)
    return data, invalid("FormatError", "frames", frames_before_error=1, field="HEAD")


def trailer_crc():
    data = bytearray(_gop())
    data[-6] ^= 0xFF  # inside VEND's index_offset
    return bytes(data), invalid("ChecksumError", "frames", frames_before_error=12, field="VEND crc")


VECTORS: list[dict[str, Any]] = [
    {"name": f.__name__, "kind": "container", "description": (f.__doc__ or desc).strip(), "build": f}
    for f, desc in [
        (image_minimal, "image, one key frame, every header field at its default"),
        (image_all_fields, "image, every header field away from its default, unknown ancillary chunks"),
        (video_gop, "video, 12 frames, key frame every 5, fps 30000/1001, index"),
        (video_streamed, "video written as a stream: header frame_count 0, the end chunk records 7"),
        (video_no_index, "video without an index chunk (seeking must scan)"),
        (video_empty, "video with no frames at all"),
        (minor_newer, ""),
        (empty, "empty file"),
        (not_vqc, "a PNG signature: not a .vqc file"),
        (truncated_preamble, "five bytes of the magic"),
        (major_2, "format version 2.0"),
        (head_crc, "header byte flipped after the CRC was computed"),
        (head_short, "header chunk too short for its fixed fields"),
        (head_bad_media, "media code 7"),
        (first_chunk_not_head, "a frame where the header should be"),
        (frame_crc, "a payload byte of frame 2 flipped"),
        (truncated_mid_frame, "stream cut inside frame 3"),
        (truncated_before_end, "stream cut just before the end chunk"),
        (unknown_critical, "unknown critical chunk ZZZZ after frame 0"),
        (bad_chunk_type, "chunk type with a NUL byte"),
        (huge_dimensions, "header declares 4294967295 x 4294967295 pixels (valid CRC)"),
        (huge_frame_count, "header declares 4294967295 frames (valid CRC)"),
        (huge_chunk_length, "frame chunk declares a length of 4 GiB"),
        (huge_header_length, "header chunk declares a length of 2 GiB"),
        (frame_index_gap, "frame 2 missing"),
        (first_frame_not_key, "frame 0 is not a key frame"),
        (reserved_flags, "reserved frame flag bit set in a version 1.0 file"),
        (too_many_frames, "three frames where the header declares two"),
        (count_mismatch, "end chunk says 4 frames, the file holds 5"),
        (index_mismatch, "index points frame 0 at the wrong offset"),
        (image_two_frames, "an image with two frames"),
        (second_head, "a second header chunk"),
        (trailer_crc, "end chunk damaged"),
    ]
]
