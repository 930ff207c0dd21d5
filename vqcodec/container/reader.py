"""``ContainerReader``: reads a .vqc stream frame by frame and seeks when the source allows it.

Every rule of formats/vqc-v1.md that a reader can check is checked here, as the bytes arrive:
chunk framing and CRCs, limits before allocation, frame numbering and key flags, the index
against the frames actually read, and the end chunk's frame count. A source is a path, ``"-"``
(stdin) or a readable binary file object (left open).

``frames()`` on a seekable source starts at the first frame, or at the key frame chosen by the
latest ``seek()``; on a non-seekable source it continues where the previous call stopped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
from collections.abc import Iterable, Iterator
from types import TracebackType

from vqcodec._io import PathOrFile, open_input
from vqcodec.container import spec
from vqcodec.container.chunks import ChunkInfo, Source, checksum_error
from vqcodec.container.header import Header, unpack_header
from vqcodec.container.index import KeyFrame, KeyFrameMap, decode_index, locate_key_frames, scan
from vqcodec.errors import FormatError, LimitError, TruncatedError, UnsupportedVersionError, VQCError

SideChunk = tuple[bytes, bytes]  # (type, data)


@dataclasses.dataclass(frozen=True)
class Frame:
    """One frame: its index, whether it is a key frame, its payload, and the side chunks before it."""

    index: int
    key: bool
    payload: bytes
    side_chunks: tuple[SideChunk, ...] = ()


@dataclasses.dataclass(frozen=True)
class EndInfo:
    """What the VEND chunk says: frames in the file and the offset of the index (0 = none)."""

    frame_count: int
    index_offset: int


class ContainerReader:
    """Read the header on construction; then ``frames()``, ``seek()``, ``chunks()``.

    Limits default to ``vqcodec.container.limits``; pass ``limits=`` or single ``max_*`` values to
    change them for this reader. ``side_chunk_types`` are extra chunk types (besides those in
    ``spec.CHUNK_TYPES``) this caller understands: they are handed over with the frames instead
    of being skipped (ancillary) or refused (critical).
    """

    def __init__(
        self,
        src: PathOrFile,
        *,
        limits: spec.Limits | None = None,
        max_pixels: int | None = None,
        max_chunk_length: int | None = None,
        max_frame_count: int | None = None,
        max_header_length: int | None = None,
        side_chunk_types: Iterable[bytes] = (),
    ):
        base = limits if limits is not None else spec.limits
        self.limits = base.replace(
            max_pixels=max_pixels,
            max_chunk_length=max_chunk_length,
            max_frame_count=max_frame_count,
            max_header_length=max_header_length,
        )
        self._side_types = frozenset(spec.CHUNK_TYPES) - spec.CORE_CHUNK_TYPES | frozenset(side_chunk_types)
        self._input = contextlib.ExitStack()
        try:
            self._source = Source(self._input.enter_context(open_input(src)))
            self.version, self._head_info, self.header = self._read_start()
        except BaseException:
            self._input.close()
            raise
        self._body_start = self._source.pos
        self._key_map: KeyFrameMap | None = None
        self._start: KeyFrame | None = None  # where the next frames() starts on a seekable source
        self._walk: Iterator[tuple[ChunkInfo, Frame | None]] | None = None
        self._error: VQCError | None = None
        self.end: EndInfo | None = None
        self._end_pos: int | None = None
        self.trailing_chunks: tuple[SideChunk, ...] = ()
        self.skipped_chunks: list[ChunkInfo] = []

    # -- public -----------------------------------------------------------------------------
    @property
    def body_offset(self) -> int:
        """Container offset of the first chunk after the HEAD chunk."""
        return self._body_start

    @property
    def seekable(self) -> bool:
        return self._source.seekable

    @property
    def frame_count(self) -> int | None:
        """Frames in the file when known: from the header, the end chunk, or the index/scan."""
        if self.header.frame_count:
            return self.header.frame_count
        if self.end is not None:
            return self.end.frame_count
        if self._key_map is not None:
            return self._key_map.frame_count
        return None

    @property
    def trailing_bytes(self) -> int | None:
        """Bytes after the end chunk of a seekable source (None: unknown or end not reached)."""
        if self._end_pos is None or self._source.size is None:
            return None
        return self._source.size - self._end_pos

    def frames(self) -> Iterator[Frame]:
        """Frames in order, each checked before it is yielded; raises at the first problem."""
        for _, frame in self._iterate():
            if frame is not None:
                yield frame

    def chunks(self) -> Iterator[ChunkInfo]:
        """Every chunk from HEAD to VEND, with the same checks as ``frames()``.

        A chunk whose CRC or content is bad is yielded (``crc_ok`` False for a CRC mismatch) before
        the error is raised, so a caller can show everything readable. On a non-seekable source this
        works only before ``frames()`` consumed anything.
        """
        if self.seekable:
            self._start = None
        elif self._walk is not None:
            raise io.UnsupportedOperation("chunks() on a non-seekable source must come before frames()")
        yield self._head_info
        for info, _ in self._iterate():
            yield info

    def key_frames(self) -> KeyFrameMap:
        """Key frames and frame count of a seekable source, from the index or else a scan."""
        if not self.seekable:
            raise io.UnsupportedOperation("key_frames() needs a seekable source")
        if self._key_map is None:
            self._walk = None
            self._key_map = locate_key_frames(self._source, self._body_start, self.limits)
        return self._key_map

    def seek(self, frame_index: int) -> int:
        """Make the next ``frames()`` start at the nearest key frame at or before ``frame_index``.

        Returns that key frame's index. Needs a seekable source.
        """
        if not self.seekable:
            raise io.UnsupportedOperation("seek() needs a seekable source")
        key_map = self.key_frames()
        if not 0 <= frame_index < key_map.frame_count:
            raise IndexError(
                f"frame {frame_index} is out of range: the file has {key_map.frame_count} frames"
            )
        key = max((k for k in key_map.keys if k.frame_index <= frame_index), key=lambda k: k.frame_index)
        if key_map.source == "index" and not self._lands_on_key(key):
            # the index disagrees with the file: trust only what a scan of the file says
            self._key_map = scan(self._source, self._body_start, self.limits)
            return self.seek(frame_index)
        self._start = key
        self._walk = None
        return key.frame_index

    def close(self) -> None:
        self._walk = None
        self._input.close()

    def __enter__(self) -> ContainerReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- start of stream --------------------------------------------------------------------
    def _read_start(self) -> tuple[tuple[int, int], ChunkInfo, Header]:
        source = self._source
        raw = source.read_upto(spec.PREAMBLE_SIZE)
        magic = raw[: len(spec.MAGIC)]
        if magic != spec.MAGIC[: len(magic)]:
            raise FormatError("not a .vqc file (bad magic bytes)", offset=0, field="magic")
        if len(raw) < spec.PREAMBLE_SIZE:
            raise TruncatedError(
                f"stream ended after {len(raw)} bytes of the preamble", offset=len(raw), field="magic"
            )
        _, major, minor = spec.PREAMBLE.unpack(raw)
        if major != spec.VERSION_MAJOR:
            raise UnsupportedVersionError(
                f"format version {major}.{minor} is not supported (this reader reads {spec.VERSION_MAJOR}.x)",
                offset=8,
                field="version",
            )
        head = source.read_chunk_head()
        if head is None:
            raise TruncatedError("stream ended before the header chunk", offset=source.pos, field="HEAD")
        offset, length, chunk_type = head
        if chunk_type != spec.TYPE_HEAD:
            raise FormatError(
                f"first chunk is {spec.chunk_type_name(chunk_type)}, not HEAD",
                offset=offset + 4,
                field="HEAD",
            )
        data, crc_ok = source.read_chunk_body(offset, length, chunk_type, self.limits.max_header_length)
        if not crc_ok:
            raise checksum_error(chunk_type, offset)
        header = unpack_header(data, offset=offset + spec.CHUNK_HEAD.size, minor=minor, limits=self.limits)
        info = ChunkInfo(offset, "HEAD", length, True, True, True)
        return (major, minor), info, header

    # -- the walk over the body ---------------------------------------------------------------
    def _iterate(self) -> Iterator[tuple[ChunkInfo, Frame | None]]:
        if not self.seekable and self._error is not None:
            raise self._error  # a stream that failed cannot be read further
        if self.seekable or self._walk is None:
            if not self.seekable and self._end_pos is not None:
                return  # a stream read to its end has nothing more to give
            self._walk = self._body(self._start)
        walk = self._walk
        # next() by hand, not ``yield from``: a caller that stops early closes this generator, and
        # that must not close the walk, so a later frames() on a pipe continues where this one stopped
        while True:
            try:
                item = next(walk)
            except StopIteration:
                return
            except VQCError as exc:
                self._error = exc
                raise
            yield item

    def _body(self, start: KeyFrame | None) -> Iterator[tuple[ChunkInfo, Frame | None]]:
        """(chunk, frame or None) for each chunk from ``start`` (None: the first body chunk) to VEND."""
        source, limits = self._source, self.limits
        newer_minor = self.version[1] > spec.VERSION_MINOR
        if source.seekable:
            source.seek_to(start.offset if start is not None else self._body_start)
        from_start = start is None
        next_index = start.frame_index if start is not None else 0
        keys_read: list[KeyFrame] = []
        side: list[SideChunk] = []
        side_bytes = 0
        index_at: int | None = None
        self.end = None
        self._end_pos = None
        self.skipped_chunks = []
        pos = source.pos
        while True:
            if source.seekable and source.pos != pos:
                source.seek_to(pos)  # another walk (or a seek) moved the stream since our last chunk
            head = source.read_chunk_head()
            if head is None:
                raise TruncatedError(
                    "stream ended before the end chunk (VEND)", offset=source.pos, field="VEND"
                )
            offset, length, chunk_type = head
            pos = offset + spec.CHUNK_FRAMING + length  # where the next chunk starts
            name = spec.chunk_type_name(chunk_type)
            critical = not spec.is_ancillary(chunk_type)
            if chunk_type == spec.TYPE_FRAM:
                if length < spec.FRAME_PREFIX_SIZE:
                    raise FormatError(f"frame chunk of {length} bytes", offset=offset, field="FRAM length")
                data, crc_ok = source.read_chunk_body(offset, length, chunk_type, limits.max_chunk_length)
                flags, frame_index = spec.FRAME_PREFIX.unpack_from(data, 0)
                key = bool(flags & spec.FRAME_FLAG_KEY)
                info = ChunkInfo(offset, name, length, crc_ok, True, True, frame_index, key)
                if not crc_ok:
                    yield info, None
                    raise checksum_error(chunk_type, offset)
                problem = self._frame_problem(flags, frame_index, next_index, index_at, newer_minor)
                if problem is not None:
                    yield info, None
                    raise FormatError(problem[1], offset=offset + 8, field=problem[0])
                if key and from_start:
                    keys_read.append(KeyFrame(frame_index, offset))
                next_index += 1
                frame = Frame(frame_index, key, data[spec.FRAME_PREFIX_SIZE :], tuple(side))
                side, side_bytes = [], 0
                yield info, frame
            elif chunk_type == spec.TYPE_VEND:
                data, crc_ok = source.read_chunk_body(offset, length, chunk_type, spec.VEND_DATA_SIZE)
                info = ChunkInfo(offset, name, length, crc_ok, True, True)
                if not crc_ok:
                    yield info, None
                    raise checksum_error(chunk_type, offset)
                if length != spec.VEND_DATA_SIZE:
                    yield info, None
                    raise FormatError(
                        f"VEND data is {length} bytes, not 12", offset=offset, field="VEND length"
                    )
                frame_count, index_offset = spec.VEND_DATA.unpack(data)
                problem = self._end_problem(frame_count, index_offset, next_index, from_start, index_at)
                if problem is not None:
                    yield info, None
                    raise FormatError(problem[1], offset=offset + 8, field=problem[0])
                self.end = EndInfo(frame_count, index_offset)
                self._end_pos = source.pos
                self.trailing_chunks = tuple(side)
                yield info, None
                self._walk = None
                return
            elif chunk_type == spec.TYPE_INDX:
                data, crc_ok = source.read_chunk_body(offset, length, chunk_type, limits.max_chunk_length)
                info = ChunkInfo(offset, name, length, crc_ok, False, True)
                if not crc_ok:
                    yield info, None
                    raise checksum_error(chunk_type, offset)
                try:
                    entries = decode_index(data, offset=offset, limits=limits)
                except (FormatError, LimitError):
                    yield info, None
                    raise
                if index_at is not None or (from_start and list(entries) != keys_read):
                    yield info, None
                    raise FormatError(
                        "index does not list the key frames of the file", offset=offset, field="indx"
                    )
                index_at = offset
                yield info, None
            elif chunk_type == spec.TYPE_HEAD:
                raise FormatError("a second HEAD chunk", offset=offset + 4, field="HEAD")
            elif chunk_type in self._side_types:
                side_bytes += length
                data, crc_ok = source.read_chunk_body(offset, length, chunk_type, limits.max_chunk_length)
                info = ChunkInfo(offset, name, length, crc_ok, critical, True)
                if not crc_ok:
                    yield info, None
                    raise checksum_error(chunk_type, offset)
                if side_bytes > limits.max_chunk_length:
                    raise LimitError(
                        f"side chunks before one frame exceed {limits.max_chunk_length} bytes"
                        f" (offset {offset})"
                    )
                side.append((chunk_type, data))
                yield info, None
            elif not critical:
                crc_ok = source.skip_chunk_body(offset, length, chunk_type, limits.max_chunk_length)
                info = ChunkInfo(offset, name, length, crc_ok, False, False)
                if not crc_ok:
                    yield info, None
                    raise checksum_error(chunk_type, offset)
                self.skipped_chunks.append(info)
                yield info, None
            else:
                yield ChunkInfo(offset, name, length, False, True, False), None
                raise FormatError(
                    f"unknown critical chunk type {name}", offset=offset + 4, field="chunk type"
                )

    def _frame_problem(
        self, flags: int, frame_index: int, expected: int, index_at: int | None, newer_minor: bool
    ) -> tuple[str, str] | None:
        header = self.header
        if frame_index != expected:
            return "frame_index", f"frame index {frame_index}, expected {expected}"
        if index_at is not None:
            return "FRAM", "a frame after the index chunk"
        if flags & ~spec.FRAME_FLAGS_KNOWN and not newer_minor:
            return "flags", f"reserved frame flag bits set ({flags:#04x})"
        if frame_index == 0 and not flags & spec.FRAME_FLAG_KEY:
            return "flags", "the first frame is not a key frame"
        if header.media == "image" and frame_index >= 1:
            return "frame_index", "an image holds exactly one frame"
        if header.frame_count and frame_index >= header.frame_count:
            return "frame_index", f"frame {frame_index} is past the declared count of {header.frame_count}"
        if frame_index >= self.limits.max_frame_count:
            raise LimitError(f"more than max_frame_count={self.limits.max_frame_count} frames")
        return None

    def _end_problem(
        self, frame_count: int, index_offset: int, frames_read: int, from_start: bool, index_at: int | None
    ) -> tuple[str, str] | None:
        if frame_count != frames_read:
            return "frame_count", f"end chunk says {frame_count} frames, the file holds {frames_read}"
        if self.header.frame_count and frame_count != self.header.frame_count:
            return "frame_count", f"end chunk says {frame_count} frames, the header {self.header.frame_count}"
        if self.header.media == "image" and frame_count != 1:
            return "frame_count", f"an image needs one frame, the file holds {frame_count}"
        if from_start and index_offset != (index_at or 0):
            return "index_offset", f"index offset {index_offset} does not match the index at {index_at or 0}"
        return None

    def _lands_on_key(self, key: KeyFrame) -> bool:
        """Whether ``key.offset`` really holds the FRAM chunk of that key frame."""
        source = self._source
        try:
            source.seek_to(key.offset)
            head = source.read_chunk_head()
            if head is None or head[2] != spec.TYPE_FRAM or head[1] < spec.FRAME_PREFIX_SIZE:
                return False
            flags, frame_index = spec.FRAME_PREFIX.unpack(
                source.read_exact(spec.FRAME_PREFIX_SIZE, field="FRAM")
            )
        except (FormatError, LimitError):
            return False
        return bool(flags & spec.FRAME_FLAG_KEY) and frame_index == key.frame_index
