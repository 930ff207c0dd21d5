"""``ContainerWriter``: writes a .vqc stream front to back, never seeking (formats/vqc-v1.md).

It works on pipes and stdout: it counts the bytes it writes, so it knows every chunk's offset and
can write the key-frame index at the end without going back. Given a path it writes a temporary
file in the same folder that replaces the path only when ``close()`` succeeds.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from types import TracebackType
from typing import BinaryIO

from vqcodec._io import PathOrFile, atomic_output
from vqcodec.container import spec
from vqcodec.container.chunks import chunk_crc
from vqcodec.container.header import Header, pack_header
from vqcodec.container.index import KeyFrame, encode_index
from vqcodec.errors import LimitError

Buffer = bytes | bytearray | memoryview


def _byte_view(data: Buffer) -> bytes | memoryview:
    """``data`` as a sequence of bytes, so ``len()`` counts bytes even for a typed memoryview/array."""
    return data if isinstance(data, bytes) else memoryview(data).cast("B")


class _Abandoned(Exception):
    """Thrown into the output context to make it discard a temporary file."""


class ContainerWriter:
    """Write one image or video: ``write_frame`` per frame, ``write_chunk`` for side chunks.

    ``dst`` is a path, ``"-"`` (stdout) or a writable binary file object (left open). The preamble
    and HEAD are written at once. Leaving the ``with`` block normally calls ``close()`` (index +
    end chunk); leaving it by an exception abandons the output (no end chunk; a path is not
    created). ``side_chunk_types`` registers extra critical side-chunk types for this writer on top
    of ``spec.CHUNK_TYPES``.
    """

    def __init__(
        self,
        dst: PathOrFile,
        header: Header,
        *,
        index: bool = True,
        force: bool = True,
        limits: spec.Limits | None = None,
        side_chunk_types: Iterable[bytes] = (),
    ):
        if not isinstance(header, Header):
            raise TypeError(f"header must be a vqcodec.container.Header, not {type(header).__name__}")
        self.header = header
        self.limits = limits if limits is not None else spec.limits
        self._index = index
        self._side_types = frozenset(side_chunk_types)
        self._keys: list[KeyFrame] = []
        self._frames = 0
        self._offset = 0
        self._closed = False
        self._output = contextlib.ExitStack()
        self._stream: BinaryIO = self._output.enter_context(atomic_output(dst, force=force))
        try:
            self._write(spec.PREAMBLE.pack(spec.MAGIC, spec.VERSION_MAJOR, spec.VERSION_MINOR))
            self._write_chunk(spec.TYPE_HEAD, pack_header(header))
            self._flush()
        except BaseException:
            self.abandon()
            raise

    @property
    def bytes_written(self) -> int:
        return self._offset

    @property
    def frames_written(self) -> int:
        return self._frames

    def write_frame(self, payload: Buffer, *, key: bool) -> int:
        """Write the next frame's payload as one FRAM chunk; returns its frame index."""
        self._check_open()
        payload = _byte_view(payload)
        index = self._frames
        if index == 0 and not key:
            raise ValueError("the first frame must be a key frame")
        if self.header.media == "image" and index >= 1:
            raise ValueError("an image holds exactly one frame")
        if self.header.frame_count and index >= self.header.frame_count:
            raise ValueError(
                f"the header declares {self.header.frame_count} frames; cannot write frame {index}"
            )
        if index >= self.limits.max_frame_count:
            raise LimitError(f"more than max_frame_count={self.limits.max_frame_count} frames")
        length = spec.FRAME_PREFIX_SIZE + len(payload)
        if length > self.limits.max_chunk_length:
            raise LimitError(f"frame {index} payload of {len(payload)} bytes is over the chunk length limit")
        prefix = spec.FRAME_PREFIX.pack(spec.FRAME_FLAG_KEY if key else 0, index)
        if key:
            self._keys.append(KeyFrame(index, self._offset))
        self._write_chunk(spec.TYPE_FRAM, prefix, payload)
        self._frames += 1
        self._flush()
        return index

    def write_chunk(self, chunk_type: bytes, data: Buffer) -> None:
        """Write a side chunk; it belongs to the next frame (or trails the frames when none follows).

        Critical types (upper-case first letter) must be registered in ``spec.CHUNK_TYPES`` (and in
        formats/vqc-v1.md) or passed as ``side_chunk_types``; any ancillary type is allowed.
        """
        self._check_open()
        if not isinstance(chunk_type, bytes) or not spec.is_valid_chunk_type(chunk_type):
            raise ValueError(f"chunk type {chunk_type!r} is not four ASCII letters")
        if chunk_type in spec.CORE_CHUNK_TYPES:
            raise ValueError(f"chunk type {chunk_type.decode()} is written by the container itself")
        known = chunk_type in spec.CHUNK_TYPES or chunk_type in self._side_types
        if not spec.is_ancillary(chunk_type) and not known:
            raise ValueError(
                f"critical chunk type {chunk_type.decode()} is not registered: add it to "
                "vqcodec/container/spec.py CHUNK_TYPES and formats/vqc-v1.md"
            )
        data = _byte_view(data)
        if len(data) > self.limits.max_chunk_length:
            raise LimitError(
                f"{chunk_type.decode()} chunk of {len(data)} bytes is over the chunk length limit"
            )
        self._write_chunk(chunk_type, data)

    def close(self) -> None:
        """Write the index and the end chunk and finish the output. Idempotent."""
        if self._closed:
            return
        try:
            if self.header.media == "image" and self._frames != 1:
                raise ValueError(f"an image needs exactly one frame, {self._frames} were written")
            if self.header.frame_count and self._frames != self.header.frame_count:
                raise ValueError(
                    f"the header declares {self.header.frame_count} frames, {self._frames} were written"
                )
            index_offset = 0
            if self._index and self._keys:
                index_offset = self._offset
                self._write_chunk(spec.TYPE_INDX, encode_index(self._keys))
            self._write_chunk(spec.TYPE_VEND, spec.VEND_DATA.pack(self._frames, index_offset))
            self._flush()
        except BaseException:
            self.abandon()
            raise
        self._closed = True
        self._output.close()

    def abandon(self) -> None:
        """Stop without an end chunk: a path output is removed, a stream reads as truncated."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(_Abandoned):
            self._output.__exit__(_Abandoned, _Abandoned(), None)

    def __enter__(self) -> ContainerWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abandon()

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("the container writer is closed")

    def _write_chunk(self, chunk_type: bytes, *parts: Buffer) -> None:
        length = sum(len(p) for p in parts)
        self._write(spec.CHUNK_HEAD.pack(length, chunk_type))
        for part in parts:
            self._write(part)
        self._write(spec.CHUNK_CRC.pack(chunk_crc(chunk_type, *parts)))

    def _write(self, data: Buffer) -> None:
        view = memoryview(data).cast("B")
        size = len(view)
        while view:
            written = self._stream.write(view)
            # raw (unbuffered) streams may write less than asked; buffered ones write all or raise
            if written is None or written >= len(view):
                break
            view = view[written:]
        self._offset += size

    def _flush(self) -> None:
        flush = getattr(self._stream, "flush", None)
        if flush is not None:
            flush()
