"""Salvage: the complete frames of a cut or damaged file in a new, well-formed container."""

from __future__ import annotations

import io

import pytest

from test_container.helpers import VIDEO, make_file, payload
from vqcodec.container import ContainerReader, ContainerWriter, Header, spec
from vqcodec.container.salvage import salvage
from vqcodec.errors import ChecksumError, FormatError, TruncatedError


def _frames(data: bytes) -> list[tuple[bool, bytes]]:
    with ContainerReader(io.BytesIO(data)) as reader:
        return [(f.key, f.payload) for f in reader.frames()]


def _frame_offsets(data: bytes) -> list[int]:
    with ContainerReader(io.BytesIO(data)) as reader:
        return [c.offset for c in reader.chunks() if c.type == "FRAM"]


def test_an_intact_file_is_returned_as_it_is():
    data = make_file(count=9, gop=4)
    result = salvage(data)
    assert result.intact and result.data == data and result.kept == tuple(range(9)) and result.lost == ()
    assert result.describe() == "intact: 9 frame(s)"


def test_a_cut_file_keeps_every_frame_completed_before_the_cut():
    data = make_file(count=9, gop=4)
    offsets = _frame_offsets(data)
    original = _frames(data)
    for cut in range(offsets[0] + 1, len(data), 3):
        complete = sum(
            o + spec.CHUNK_FRAMING + spec.FRAME_PREFIX_SIZE + len(original[i][1]) <= cut
            for i, o in enumerate(offsets)
        )
        if complete == 0:
            with pytest.raises(TruncatedError):
                salvage(data[:cut])
            continue
        result = salvage(data[:cut])
        assert not result.intact and isinstance(result.error, TruncatedError), cut
        assert result.kept == tuple(range(complete)), cut
        assert _frames(result.data) == original[:complete], cut  # a well-formed file: reads to its end


def test_damage_in_the_middle_loses_only_the_frames_that_depend_on_it():
    data = bytearray(make_file(count=12, gop=4))  # key frames 0, 4, 8
    offsets = _frame_offsets(bytes(data))
    data[offsets[5] + 14] ^= 0x55  # inside frame 5's payload: its CRC fails
    result = salvage(bytes(data))
    assert isinstance(result.error, ChecksumError)
    # 0-4 read before the damage; 6 and 7 predict from 5 and are lost; the next key frame, 8, resyncs
    assert result.kept == (0, 1, 2, 3, 4, 8, 9, 10, 11) and result.lost == ((5, 7),)
    assert "lost frame(s) 5-7" in result.describe()
    original = _frames(make_file(count=12, gop=4))
    assert _frames(result.data) == [original[i] for i in result.kept]


def test_a_declared_frame_count_becomes_the_kept_count():
    header = VIDEO.replace(frame_count=6)
    data = make_file(header, count=6, gop=2)
    offsets = _frame_offsets(data)
    result = salvage(data[: offsets[3] + 5])
    with ContainerReader(io.BytesIO(result.data)) as reader:
        assert reader.header.frame_count == 3 and len(list(reader.frames())) == 3


def test_an_image_whose_end_is_cut_keeps_its_frame_and_alpha_chunk():
    image = Header(media="image", width=8, height=8, pixel_format="rgba32", model_name="t")
    out = io.BytesIO()
    with ContainerWriter(out, image) as writer:
        writer.write_chunk(b"ALPH", b"alpha-bytes")
        writer.write_frame(payload(1), key=True)
    data = out.getvalue()
    cut = data[: len(data) - spec.TRAILER_SIZE - 3]  # into the index / end chunk
    with pytest.raises(FormatError):
        _frames(cut)
    result = salvage(cut)
    assert result.kept == (0,) and not result.intact
    with ContainerReader(io.BytesIO(result.data)) as reader:
        (frame,) = list(reader.frames())
    assert frame.payload == payload(1) and frame.side_chunks == ((b"ALPH", b"alpha-bytes"),)


def test_nothing_to_salvage_raises_the_readers_error():
    data = make_file(count=3)
    with pytest.raises(FormatError):
        salvage(data[:20])  # inside the HEAD chunk
    offsets = _frame_offsets(data)
    with pytest.raises(TruncatedError):
        salvage(data[: offsets[0] + 4])  # the first frame is incomplete
