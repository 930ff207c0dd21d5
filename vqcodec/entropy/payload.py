"""The entropy payload: a small self-delimiting header followed by the coded body.

Byte layout (formats/vqc-v1.md, section "Entropy payload"; names below match the spec):

    offset 0  u8      PAYLOAD_VERSION (1)
    offset 1  u8      prior kind (PRIOR_FACTORIZED = 1, PRIOR_SPATIAL_CONTEXT = 2,
                      PRIOR_COEFFICIENT_CONTEXT = 3)
    offset 2  u8      flags: bit 0 FLAG_REFERENCE (coded conditionally on a reference frame's
                      codes); other bits must be 0
    offset 3  varint  streams S' (codes stored: the first S' streams of the prior)
              varint  height H
              varint  width W
              varint  body length L in bytes
              L bytes body (constriction ANS words, little-endian u32, the last word's high
                      zero bytes dropped; see coder.py)

A varint is unsigned LEB128: 7 bits per byte, least significant group first, high bit set on
every byte but the last, at most VARINT_MAX_BYTES bytes, no redundant trailing 0x80 0x00 groups.
The payload ends right after the body, so payloads can be concatenated and split again.
"""

from __future__ import annotations

from dataclasses import dataclass

from vqcodec.errors import FormatError, LimitError, TruncatedError, UnsupportedVersionError

PAYLOAD_VERSION = 1
PRIOR_FACTORIZED = 1
PRIOR_SPATIAL_CONTEXT = 2
PRIOR_COEFFICIENT_CONTEXT = 3
KNOWN_PRIORS = (PRIOR_FACTORIZED, PRIOR_SPATIAL_CONTEXT, PRIOR_COEFFICIENT_CONTEXT)
FLAG_REFERENCE = 0x01
KNOWN_FLAGS = FLAG_REFERENCE
VARINT_MAX_BYTES = 5  # values < 2**35; every field is checked against tighter limits anyway
#: Safety limits on declared sizes; callers also pass the shape they expect.
MAX_STREAMS = 64
#: Transform priors code one stream per coefficient (192 for 8x8 RGB blocks).
MAX_COEFFICIENT_STREAMS = 256
MAX_SIDE = 1 << 16
MAX_SYMBOLS = 1 << 28


@dataclass(frozen=True)
class PayloadHeader:
    """Decoded payload header. ``shape`` is (S', H, W); ``header_size`` counts the header bytes."""

    prior_kind: int
    flags: int
    shape: tuple[int, int, int]
    body_length: int
    header_size: int

    @property
    def reference(self) -> bool:
        return bool(self.flags & FLAG_REFERENCE)


def write_varint(value: int) -> bytes:
    if value < 0 or value >= 1 << (7 * VARINT_MAX_BYTES):
        raise ValueError(f"varint value out of range: {value}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def read_varint(data: bytes | memoryview, offset: int, field: str) -> tuple[int, int]:
    """Value and the offset after it; TruncatedError / FormatError name the field."""
    value = 0
    for i in range(VARINT_MAX_BYTES):
        pos = offset + i
        if pos >= len(data):
            raise TruncatedError("payload ends inside a varint", offset=pos, field=field)
        byte = data[pos]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if byte == 0 and i > 0:
                raise FormatError("non-minimal varint", offset=pos, field=field)
            return value, pos + 1
    raise FormatError(f"varint longer than {VARINT_MAX_BYTES} bytes", offset=offset, field=field)


def build_payload(prior_kind: int, flags: int, shape: tuple[int, int, int], body: bytes) -> bytes:
    streams, height, width = shape
    head = bytes([PAYLOAD_VERSION, prior_kind, flags])
    return head + b"".join(write_varint(v) for v in (streams, height, width, len(body))) + body


def parse_header(data: bytes | memoryview, offset: int = 0) -> PayloadHeader:
    """Read and validate a payload header at ``offset`` (the body is checked for presence too)."""
    if len(data) - offset < 3:
        raise TruncatedError("payload shorter than its fixed header", offset=len(data), field="version")
    version, kind, flags = data[offset], data[offset + 1], data[offset + 2]
    if version != PAYLOAD_VERSION:
        raise UnsupportedVersionError(f"entropy payload version {version} (this reader knows "
                                      f"{PAYLOAD_VERSION})", offset=offset, field="version")
    if kind not in KNOWN_PRIORS:
        raise FormatError(f"unknown prior kind {kind}", offset=offset + 1, field="prior_kind")
    if flags & ~KNOWN_FLAGS:
        raise FormatError(f"unknown flag bits 0x{flags:02x}", offset=offset + 2, field="flags")
    pos = offset + 3
    streams, pos = read_varint(data, pos, "streams")
    height, pos = read_varint(data, pos, "height")
    width, pos = read_varint(data, pos, "width")
    start = pos
    body_length, pos = read_varint(data, pos, "body_length")
    max_streams = MAX_COEFFICIENT_STREAMS if kind == PRIOR_COEFFICIENT_CONTEXT else MAX_STREAMS
    if not (1 <= streams <= max_streams):
        raise FormatError(f"stream count {streams} outside 1..{max_streams}", offset=offset + 3,
                          field="streams")
    if height > MAX_SIDE or width > MAX_SIDE or streams * height * width > MAX_SYMBOLS:
        raise LimitError(f"payload declares {streams}x{height}x{width} codes, over the limit")
    if body_length > len(data) - pos:
        raise TruncatedError(f"payload body needs {body_length} bytes, {len(data) - pos} left",
                             offset=start, field="body_length")
    return PayloadHeader(kind, flags, (streams, height, width), body_length, pos - offset)


def split_payload(data: bytes | memoryview, offset: int = 0) -> tuple[PayloadHeader, bytes, int]:
    """Header, body bytes and the offset right after the payload (for concatenated payloads)."""
    header = parse_header(data, offset)
    start = offset + header.header_size
    end = start + header.body_length
    return header, bytes(data[start:end]), end


__all__ = [
    "PAYLOAD_VERSION",
    "PRIOR_FACTORIZED",
    "PRIOR_SPATIAL_CONTEXT",
    "PRIOR_COEFFICIENT_CONTEXT",
    "MAX_COEFFICIENT_STREAMS",
    "FLAG_REFERENCE",
    "MAX_STREAMS",
    "MAX_SIDE",
    "MAX_SYMBOLS",
    "PayloadHeader",
    "build_payload",
    "parse_header",
    "split_payload",
    "read_varint",
    "write_varint",
]
