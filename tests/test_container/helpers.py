"""Small builders and stream wrappers shared by the container tests."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from vqcodec.container import ContainerReader, ContainerWriter, Frame, Header

REPO = Path(__file__).resolve().parents[2]
VECTORS = REPO / "formats" / "vectors"
VIDEO = Header(media="video", width=40, height=30, fps_num=25, fps_den=1, frame_count=0, model_name="t")


def payload(i: int, size: int = 24) -> bytes:
    return (hashlib.sha256(str(i).encode()).digest() * (size // 32 + 1))[:size]


def make_file(header: Header = VIDEO, count: int = 9, gop: int = 4, **writer_args) -> bytes:
    """A valid container with ``count`` frames, a key frame every ``gop``."""
    out = io.BytesIO()
    with ContainerWriter(out, header, **writer_args) as writer:
        for i in range(count):
            writer.write_frame(payload(i, 10 + i), key=i % gop == 0)
    return out.getvalue()


class Pipe(io.RawIOBase):
    """A non-seekable readable stream that hands out at most ``step`` bytes per read, like a pipe."""

    def __init__(self, data: bytes, step: int = 7):
        self._data = data
        self._pos = 0
        self._step = step

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, buffer) -> int:  # type: ignore[override]
        n = min(len(buffer), self._step, len(self._data) - self._pos)
        buffer[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n

    def seek(self, *args):  # noqa: D401 - a pipe cannot seek
        raise io.UnsupportedOperation("pipe")

    def tell(self):
        raise io.UnsupportedOperation("pipe")


class Sink(io.RawIOBase):
    """A write-only, non-seekable sink (stdout, a socket) that records what it got."""

    def __init__(self):
        self.data = bytearray()
        self.flushes = 0

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, b) -> int:  # type: ignore[override]
        self.data += bytes(b)
        return len(b)

    def flush(self) -> None:
        self.flushes += 1

    def seek(self, *args):
        raise AssertionError("the writer seeked")

    def tell(self):
        raise AssertionError("the writer asked tell()")


def read_all(src, **reader_args) -> tuple[Header, list[Frame], ContainerReader]:
    with ContainerReader(src, **reader_args) as reader:
        frames = list(reader.frames())
    return reader.header, frames, reader
