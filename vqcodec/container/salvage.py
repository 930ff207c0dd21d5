"""Recover the complete frames of a damaged or cut file (``vqcodec decode --salvage``).

A reader stops at the first problem (formats/vqc-v1.md, "Readers"). Salvage keeps going: it
keeps every frame before the problem, then looks for the next key frame whose chunk is intact
(its CRC-32 matches) and keeps the run of consecutive intact frames from there, and so on to the
end of the bytes. The kept frames, with their side chunks, are written into a new well-formed
container (same header; a declared frame count becomes the kept count), which decodes with the
ordinary decoders. A predicted frame is only kept after the key frame it depends on, so every
kept frame decodes exactly as it would have in the intact file.

What salvage cannot fix: a damaged HEAD chunk (nothing says how to decode the frames) and a
payload that is damaged under a valid CRC (the decoder reports that frame).
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass, replace

from vqcodec._io import PathOrFile, open_input
from vqcodec.container import spec
from vqcodec.container.chunks import chunk_crc
from vqcodec.container.reader import ContainerReader, Frame
from vqcodec.container.writer import ContainerWriter
from vqcodec.errors import FormatError, VQCError


@dataclass(frozen=True)
class Salvaged:
    """What :func:`salvage` recovered.

    ``data``: a well-formed container holding the kept frames (the input's own bytes when it
    was intact); ``kept``: the original indices of the kept frames; ``error``: the first problem
    met (None when the file was intact); ``lost``: (first, last) original index ranges of frames
    known to be lost (frames lost after the last kept one cannot be counted without an intact end
    chunk).
    """

    data: bytes
    kept: tuple[int, ...]
    error: VQCError | None
    lost: tuple[tuple[int, int], ...] = ()

    @property
    def intact(self) -> bool:
        return self.error is None

    def describe(self) -> str:
        """One line: what was kept and what was lost."""
        if self.intact:
            return f"intact: {len(self.kept)} frame(s)"
        gaps = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in self.lost)
        lost = f"; lost frame(s) {gaps}" if gaps else ""
        return f"kept {len(self.kept)} complete frame(s){lost}; first problem: {self.error}"


def salvage(src: PathOrFile | bytes, *, side_chunk_types: Iterable[bytes] = ()) -> Salvaged:
    """The complete frames of ``src`` (path, file object or bytes) in a new container.

    Raises the reader's error when the header is unreadable or no frame at all is complete.
    """
    if isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
    else:
        with open_input(src) as stream:
            data = stream.read()
    side_types = frozenset(side_chunk_types)
    kept: list[Frame] = []
    error: VQCError | None = None
    resume_at: int | None = None
    with ContainerReader(io.BytesIO(data), side_chunk_types=side_types) as reader:
        header = reader.header
        body_start = reader.body_offset
        try:
            for frame in reader.frames():
                kept.append(frame)
        except FormatError as exc:  # cut, bad CRC, malformed chunk: look for intact frames after it
            error = exc
            resume_at = exc.offset if exc.offset is not None else body_start
        except VQCError as exc:  # a limit: keep what came before it, look no further
            error = exc
    if error is None:
        return Salvaged(data, tuple(f.index for f in kept), None)
    if header.media == "video" and resume_at is not None:
        last = kept[-1].index if kept else -1
        kept += _resync(data, max(resume_at, body_start) + 1, last, side_types)
    if not kept:
        raise error
    indices = [f.index for f in kept]
    lost = _gaps(indices)
    out = io.BytesIO()
    if header.frame_count:
        header = replace(header, frame_count=len(kept))
    writer = ContainerWriter(out, header, side_chunk_types=side_types)
    with writer:
        for frame in kept:
            for chunk_type, body in frame.side_chunks:
                writer.write_chunk(chunk_type, body)
            writer.write_frame(frame.payload, key=frame.key)
    return Salvaged(out.getvalue(), tuple(indices), error, lost)


def _gaps(indices: list[int]) -> tuple[tuple[int, int], ...]:
    gaps = []
    expected = 0
    for index in indices:
        if index > expected:
            gaps.append((expected, index - 1))
        expected = index + 1
    return tuple(gaps)


def _resync(data: bytes, start: int, last_index: int, side_types: frozenset[bytes]) -> list[Frame]:
    """Frames after the damage: runs of intact, consecutive frames, each run from a key frame.

    ``start`` is a byte offset in ``data`` (container offsets: the preamble is byte 0) at which
    to look for the next intact FRAM chunk; ``last_index`` the index of the last frame kept.
    """
    frames: list[Frame] = []
    pos = start
    while True:
        found = data.find(spec.TYPE_FRAM, pos)
        if found < 0:
            return frames
        run = _run_from(data, found - 4, last_index, side_types)
        if run:
            frames += run
            last_index = run[-1].index
            pos = _end_of(data, found - 4, run)
        else:
            pos = found + 1


def _chunk_at(data: bytes, offset: int) -> tuple[bytes, bytes, int] | None:
    """(type, body, next offset) of an intact chunk starting at ``offset``, None otherwise."""
    if offset < 0 or offset + spec.CHUNK_FRAMING > len(data):
        return None
    length, chunk_type = spec.CHUNK_HEAD.unpack_from(data, offset)
    body_start = offset + spec.CHUNK_HEAD.size
    end = body_start + length + spec.CHUNK_CRC.size
    if end > len(data) or not spec.is_valid_chunk_type(chunk_type):
        return None
    body = data[body_start : body_start + length]
    (crc,) = spec.CHUNK_CRC.unpack_from(data, body_start + length)
    if crc != chunk_crc(chunk_type, body):
        return None
    return chunk_type, body, end


def _run_from(data: bytes, offset: int, last_index: int, side_types: frozenset[bytes]) -> list[Frame]:
    """The run of consecutive intact frames starting with a key frame at ``offset``."""
    run: list[Frame] = []
    side: list[tuple[bytes, bytes]] = []
    expected: int | None = None
    while True:
        chunk = _chunk_at(data, offset)
        if chunk is None:
            return run
        chunk_type, body, offset = chunk
        if chunk_type == spec.TYPE_FRAM:
            if len(body) < spec.FRAME_PREFIX_SIZE:
                return run
            flags, index = spec.FRAME_PREFIX.unpack_from(body, 0)
            key = bool(flags & spec.FRAME_FLAG_KEY)
            if expected is None:
                if not key or index <= last_index:
                    return run
            elif index != expected:
                return run
            run.append(Frame(index, key, body[spec.FRAME_PREFIX_SIZE :], tuple(side)))
            side, expected = [], index + 1
        elif chunk_type in side_types and expected is not None:
            side.append((chunk_type, body))
        elif expected is None:
            return run  # a run starts at a frame chunk
        else:
            return run  # the index, the end chunk or anything else ends the run


def _end_of(data: bytes, offset: int, run: list[Frame]) -> int:
    """The byte offset just after the last frame chunk of ``run``, which starts at ``offset``."""
    remaining = len(run)
    while remaining:
        chunk = _chunk_at(data, offset)
        if chunk is None:  # cannot happen: the run was read from these bytes
            raise FormatError("salvage: a kept chunk is no longer intact", offset=offset, field="FRAM")
        chunk_type, _, offset = chunk
        remaining -= chunk_type == spec.TYPE_FRAM
    return offset


__all__ = ["Salvaged", "salvage"]
