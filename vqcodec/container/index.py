"""The key-frame index: the ``indx`` chunk, the VEND trailer and the scan fallback.

formats/vqc-v1.md, sections "indx", "VEND" and "Finding the index". A seekable reader finds the
index from the last 24 bytes (the VEND chunk gives its offset); when that fails for any reason it
scans the chunk headers instead. Both give the key frames as ``KeyFrame(frame_index, offset)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from vqcodec.container import spec
from vqcodec.container.chunks import Source, checksum_error, chunk_crc
from vqcodec.errors import FormatError, LimitError, VQCError


@dataclasses.dataclass(frozen=True)
class KeyFrame:
    frame_index: int
    offset: int  # of the key frame's FRAM chunk, from the container start


@dataclasses.dataclass(frozen=True)
class KeyFrameMap:
    """Where the key frames are, and how many frames the file holds; ``source`` is "index" or "scan"."""

    keys: tuple[KeyFrame, ...]
    frame_count: int
    source: str


def encode_index(keys: Sequence[KeyFrame]) -> bytes:
    return spec.INDEX_COUNT.pack(len(keys)) + b"".join(
        spec.INDEX_ENTRY.pack(k.frame_index, k.offset) for k in keys
    )


def decode_index(data: bytes, *, offset: int, limits: spec.Limits) -> tuple[KeyFrame, ...]:
    """Parse indx chunk data found at ``offset``; checks the layout and the ordering of entries."""
    if len(data) < spec.INDEX_COUNT.size:
        raise FormatError(f"index data is {len(data)} bytes, shorter than 4", offset=offset, field="indx")
    (count,) = spec.INDEX_COUNT.unpack_from(data, 0)
    if count > limits.max_frame_count:
        raise LimitError(
            f"index entry count {count} is over the limit of {limits.max_frame_count} (offset {offset})"
        )
    if len(data) != spec.INDEX_COUNT.size + count * spec.INDEX_ENTRY_SIZE:
        raise FormatError(
            f"index of {count} entries cannot be {len(data)} bytes", offset=offset, field="indx"
        )
    keys = tuple(
        KeyFrame(*spec.INDEX_ENTRY.unpack_from(data, spec.INDEX_COUNT.size + i * spec.INDEX_ENTRY_SIZE))
        for i in range(count)
    )
    for before, after in zip(keys, keys[1:]):
        if after.frame_index <= before.frame_index or after.offset <= before.offset:
            raise FormatError("index entries are not in increasing order", offset=offset, field="indx")
    return keys


def from_trailer(source: Source, body_start: int, limits: spec.Limits) -> KeyFrameMap:
    """Key frames through the VEND trailer and the indx chunk; raises VQCError if anything is off."""
    size = source.size
    if size is None or size < body_start + spec.TRAILER_SIZE:
        raise FormatError("no room for a trailer", offset=size, field="VEND")
    end = size - spec.TRAILER_SIZE
    source.seek_to(end)
    raw = source.read_exact(spec.TRAILER_SIZE, field="VEND")
    length, chunk_type = spec.CHUNK_HEAD.unpack_from(raw, 0)
    if chunk_type != spec.TYPE_VEND or length != spec.VEND_DATA_SIZE:
        raise FormatError("the last 24 bytes are not a VEND chunk", offset=end, field="VEND")
    data = raw[spec.CHUNK_HEAD.size : spec.CHUNK_HEAD.size + spec.VEND_DATA_SIZE]
    (stored,) = spec.CHUNK_CRC.unpack_from(raw, spec.CHUNK_HEAD.size + spec.VEND_DATA_SIZE)
    if stored != chunk_crc(spec.TYPE_VEND, data):
        raise checksum_error(spec.TYPE_VEND, end)
    frame_count, index_offset = spec.VEND_DATA.unpack(data)
    if frame_count > limits.max_frame_count:
        raise LimitError(f"end chunk frame count {frame_count} is over the limit of {limits.max_frame_count}")
    if index_offset == 0:
        raise FormatError("the file has no index", offset=end, field="index_offset")
    if not body_start <= index_offset <= end - spec.CHUNK_FRAMING - spec.INDEX_COUNT.size:
        raise FormatError(
            f"index offset {index_offset} is outside the body", offset=end, field="index_offset"
        )
    source.seek_to(index_offset)
    head = source.read_chunk_head()
    if head is None or head[2] != spec.TYPE_INDX:
        raise FormatError(
            "index offset does not point at an indx chunk", offset=index_offset, field="index_offset"
        )
    _, length, _ = head
    if index_offset + spec.CHUNK_FRAMING + length > end:
        raise FormatError("index chunk runs into the trailer", offset=index_offset, field="indx")
    data, crc_ok = source.read_chunk_body(index_offset, length, spec.TYPE_INDX, limits.max_chunk_length)
    if not crc_ok:
        raise checksum_error(spec.TYPE_INDX, index_offset)
    keys = decode_index(data, offset=index_offset, limits=limits)
    if frame_count and (not keys or keys[0].frame_index != 0):
        raise FormatError("index does not start at frame 0", offset=index_offset, field="indx")
    if keys and (
        keys[-1].frame_index >= frame_count or keys[0].offset < body_start or keys[-1].offset >= index_offset
    ):
        raise FormatError("index entries point outside the frames", offset=index_offset, field="indx")
    return KeyFrameMap(keys, frame_count, "index")


def scan(source: Source, body_start: int, limits: spec.Limits) -> KeyFrameMap:
    """Key frames by walking the chunk headers from ``body_start`` to VEND, seeking over data.

    Checks the framing and the frame numbering, not the CRCs of the data it seeks over.
    """
    source.seek_to(body_start)
    keys: list[KeyFrame] = []
    frames = 0
    while True:
        head = source.read_chunk_head()
        if head is None:
            raise FormatError("stream ended before the end chunk", offset=source.pos, field="VEND")
        offset, length, chunk_type = head
        name = spec.chunk_type_name(chunk_type)
        if chunk_type == spec.TYPE_VEND:
            data, crc_ok = source.read_chunk_body(offset, length, chunk_type, spec.VEND_DATA_SIZE)
            if not crc_ok:
                raise checksum_error(chunk_type, offset)
            if length != spec.VEND_DATA_SIZE:
                raise FormatError(f"VEND data is {length} bytes, not 12", offset=offset, field="VEND length")
            (frame_count, _) = spec.VEND_DATA.unpack(data)
            if frame_count != frames:
                raise FormatError(
                    f"end chunk says {frame_count} frames, the file holds {frames}",
                    offset=offset,
                    field="frame_count",
                )
            return KeyFrameMap(tuple(keys), frames, "scan")
        limit = limits.max_header_length if chunk_type == spec.TYPE_HEAD else limits.max_chunk_length
        if length > limit:
            raise LimitError(f"{name} length {length} is over the limit of {limit} bytes (offset {offset})")
        source.require(length + spec.CHUNK_CRC.size, field=f"{name} chunk")
        if chunk_type == spec.TYPE_FRAM:
            if length < spec.FRAME_PREFIX_SIZE:
                raise FormatError(f"frame chunk of {length} bytes", offset=offset, field="FRAM length")
            flags, frame_index = spec.FRAME_PREFIX.unpack(
                source.read_exact(spec.FRAME_PREFIX_SIZE, field="FRAM")
            )
            if frame_index != frames:
                raise FormatError(
                    f"frame index {frame_index}, expected {frames}", offset=offset + 9, field="frame_index"
                )
            if frames >= limits.max_frame_count:
                raise LimitError(f"more than {limits.max_frame_count} frames (offset {offset})")
            if flags & spec.FRAME_FLAG_KEY:
                keys.append(KeyFrame(frame_index, offset))
            elif frames == 0:
                raise FormatError("the first frame is not a key frame", offset=offset + 8, field="flags")
            frames += 1
            source.seek_to(source.pos + length - spec.FRAME_PREFIX_SIZE + spec.CHUNK_CRC.size)
        else:
            source.seek_to(source.pos + length + spec.CHUNK_CRC.size)


def locate_key_frames(source: Source, body_start: int, limits: spec.Limits) -> KeyFrameMap:
    """The index when it is sound, else a scan (which raises if the file itself is broken)."""
    try:
        return from_trailer(source, body_start, limits)
    except VQCError:
        return scan(source, body_start, limits)


def gop_lengths(key_frames: Sequence[int], frame_count: int) -> list[int]:
    """Number of frames in each group of pictures that starts at one of ``key_frames``."""
    bounds = [*key_frames, frame_count]
    return [b - a for a, b in zip(bounds, bounds[1:])]
