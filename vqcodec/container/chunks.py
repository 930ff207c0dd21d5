"""Chunk framing (formats/vqc-v1.md, "Chunks") and a byte source that knows where it is.

``Source`` wraps any readable binary stream, seekable or not. It counts the bytes it consumed (a
pipe has no ``tell()``), reads declared lengths in bounded blocks so a hostile length costs no more
memory than the bytes really present, and turns a short read into ``TruncatedError`` naming the
offset and the field.
"""

from __future__ import annotations

import dataclasses
import zlib
from typing import BinaryIO

from vqcodec.container import spec
from vqcodec.errors import ChecksumError, FormatError, LimitError, TruncatedError


def chunk_crc(chunk_type: bytes, *parts: bytes | bytearray | memoryview) -> int:
    crc = zlib.crc32(chunk_type)
    for part in parts:
        crc = zlib.crc32(part, crc)
    return crc


def encode_chunk(chunk_type: bytes, data: bytes | bytearray | memoryview) -> bytes:
    """One complete chunk: length, type, data, CRC-32 of type + data."""
    if not spec.is_valid_chunk_type(chunk_type):
        raise ValueError(f"chunk type {chunk_type!r} is not four ASCII letters")
    return b"".join(
        (
            spec.CHUNK_HEAD.pack(len(data), chunk_type),
            bytes(data),
            spec.CHUNK_CRC.pack(chunk_crc(chunk_type, data)),
        )
    )


@dataclasses.dataclass(frozen=True)
class ChunkInfo:
    """One chunk as a reader met it. ``offset`` is where its length field starts."""

    offset: int
    type: str
    length: int
    crc_ok: bool
    critical: bool
    known: bool
    frame_index: int | None = None
    key: bool | None = None

    @property
    def size(self) -> int:
        """Bytes the chunk occupies, framing included."""
        return self.length + spec.CHUNK_FRAMING


def _is_seekable(stream: BinaryIO) -> bool:
    try:
        if not stream.seekable():
            return False
        stream.tell()
        return True
    except (AttributeError, OSError, ValueError):
        return False


class Source:
    """A readable stream plus the position of the container in it.

    ``pos`` is relative to the container start (where the stream was when it was wrapped).
    ``size`` is the number of bytes from the container start to the end of a seekable stream,
    None for a non-seekable one.
    """

    def __init__(self, stream: BinaryIO):
        self.stream = stream
        self.seekable = _is_seekable(stream)
        self.pos = 0
        self.base = 0
        self.size: int | None = None
        if self.seekable:
            self.base = stream.tell()
            end = stream.seek(0, 2)
            stream.seek(self.base)
            self.size = max(0, end - self.base)

    def seek_to(self, pos: int) -> None:
        self.stream.seek(self.base + pos)
        self.pos = pos

    def read_upto(self, n: int) -> bytes:
        """Up to ``n`` bytes, fewer only at the end of the stream."""
        if self.seekable and self.size is not None:
            data = self.stream.read(max(0, min(n, self.size - self.pos)))
            self.pos += len(data)
            if len(data) == n:
                return data
            pieces = [data]
            got = len(data)
        else:
            pieces = []
            got = 0
        while got < n:
            piece = self.stream.read(min(n - got, spec.READ_BLOCK))
            if not piece:
                break
            pieces.append(piece)
            got += len(piece)
            self.pos += len(piece)
        return b"".join(pieces)

    def read_exact(self, n: int, *, field: str) -> bytes:
        start = self.pos
        data = self.read_upto(n)
        if len(data) < n:
            raise TruncatedError(
                f"stream ended after {len(data)} of {n} bytes", offset=start + len(data), field=field
            )
        return data

    def require(self, n: int, *, field: str) -> None:
        """On a seekable source, fail early when fewer than ``n`` bytes are left."""
        if self.size is not None and self.pos + n > self.size:
            raise TruncatedError(
                f"{field} declares {n} bytes, the stream holds {self.size - self.pos}",
                offset=self.pos,
                field=field,
            )

    def read_chunk_head(self) -> tuple[int, int, bytes] | None:
        """(offset, length, type) of the next chunk, or None at a clean end of stream."""
        offset = self.pos
        raw = self.read_upto(spec.CHUNK_HEAD.size)
        if not raw:
            return None
        if len(raw) < spec.CHUNK_HEAD.size:
            raise TruncatedError(
                f"stream ended inside a chunk header ({len(raw)} of 8 bytes)",
                offset=offset + len(raw),
                field="chunk",
            )
        length, chunk_type = spec.CHUNK_HEAD.unpack(raw)
        if not spec.is_valid_chunk_type(chunk_type):
            raise FormatError(
                f"chunk type {chunk_type.hex()} is not four ASCII letters",
                offset=offset + 4,
                field="chunk type",
            )
        return offset, length, chunk_type

    def read_chunk_body(self, offset: int, length: int, chunk_type: bytes, limit: int) -> tuple[bytes, bool]:
        """(data, crc_ok) of a chunk whose header was just read; checks ``length`` against ``limit``."""
        name = spec.chunk_type_name(chunk_type)
        check_length(length, limit, offset=offset, field=f"{name} length")
        self.require(length + spec.CHUNK_CRC.size, field=f"{name} data")
        data = self.read_exact(length, field=f"{name} data")
        (stored,) = spec.CHUNK_CRC.unpack(self.read_exact(spec.CHUNK_CRC.size, field=f"{name} crc"))
        return data, stored == chunk_crc(chunk_type, data)

    def skip_chunk_body(self, offset: int, length: int, chunk_type: bytes, limit: int) -> bool:
        """Check the CRC of a chunk without keeping its data; returns crc_ok."""
        name = spec.chunk_type_name(chunk_type)
        check_length(length, limit, offset=offset, field=f"{name} length")
        self.require(length + spec.CHUNK_CRC.size, field=f"{name} data")
        crc = zlib.crc32(chunk_type)
        left = length
        while left:
            piece = self.read_exact(min(left, spec.READ_BLOCK), field=f"{name} data")
            crc = zlib.crc32(piece, crc)
            left -= len(piece)
        (stored,) = spec.CHUNK_CRC.unpack(self.read_exact(spec.CHUNK_CRC.size, field=f"{name} crc"))
        return stored == crc


def check_length(length: int, limit: int, *, offset: int, field: str) -> None:
    if length > limit:
        raise LimitError(f"{field} {length} is over the limit of {limit} bytes (offset {offset})")


def checksum_error(chunk_type: bytes, offset: int) -> ChecksumError:
    name = spec.chunk_type_name(chunk_type)
    return ChecksumError(f"CRC mismatch in {name} chunk", offset=offset, field=f"{name} crc")
