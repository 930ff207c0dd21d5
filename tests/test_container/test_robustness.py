"""Hostile input: truncation at every offset, seeded corruption, lying lengths, allocation bounds."""

from __future__ import annotations

import io
import random
import struct
import time
import tracemalloc

import pytest

from test_container.helpers import VIDEO, Pipe, make_file, read_all
from vqcodec.container import ContainerReader, ContainerWriter, Header, encode_chunk, spec
from vqcodec.container.header import pack_header
from vqcodec.errors import FormatError, LimitError, TruncatedError, VQCError


def _small_file() -> bytes:
    """Every chunk kind: HEAD, FRAM (key and not), an unknown ancillary chunk, indx, VEND."""
    out = io.BytesIO()
    with ContainerWriter(out, VIDEO.replace(codec_params=b'{"k":1}')) as writer:
        writer.write_frame(b"key-0", key=True)
        writer.write_chunk(b"meta", b"m")
        writer.write_frame(b"p-1", key=False)
        writer.write_frame(b"key-2", key=True)
    return out.getvalue()


def _read_everything(src) -> list[bytes]:
    """Read all frames, then (seekable sources) seek to each frame and read from there."""
    with ContainerReader(src) as reader:
        payloads = [f.payload for f in reader.frames()]
        if reader.seekable:
            for target in range(len(payloads)):
                reader.seek(target)
                list(reader.frames())
    return payloads


def test_truncation_at_every_offset_raises_truncated_error():
    data = _small_file()
    assert len(data) < 400
    for cut in range(len(data)):
        for src in (io.BytesIO(data[:cut]), Pipe(data[:cut], step=3)):
            with pytest.raises(TruncatedError):
                _read_everything(src)
        # a seekable reader that seeks first goes through the trailer/scan path
        try:
            with ContainerReader(io.BytesIO(data[:cut])) as reader:
                reader.seek(2)
        except VQCError as exc:
            assert isinstance(exc, (TruncatedError, FormatError)), (cut, exc)
        else:
            raise AssertionError(f"seek on a file cut at {cut} did not fail")
    assert len(_read_everything(io.BytesIO(data))) == 3


def test_every_single_byte_flip_is_detected_outside_the_version_field():
    """CRC-32 catches any error burst of up to 32 bits, so a flipped byte in a chunk never reads clean.

    The only bytes outside the chunks are the preamble; a flipped minor version still reads (as a
    newer minor), everything else must raise one of the library's errors.
    """
    data = _small_file()
    original = _read_everything(io.BytesIO(data))
    rng = random.Random(1234)
    for offset in range(len(data)):
        for _ in range(3):
            mutated = bytearray(data)
            mutated[offset] ^= rng.randrange(1, 256)
            for src in (io.BytesIO(bytes(mutated)), Pipe(bytes(mutated), step=11)):
                try:
                    got = _read_everything(src)
                except VQCError:
                    continue
                assert offset in (10, 11), f"flip at {offset} read clean"
                assert got == original


def _mutations(data: bytes, rng: random.Random, count: int):
    for _ in range(count):
        mutated = bytearray(data)
        kind = rng.randrange(4)
        if kind == 0:  # several random bytes
            for _ in range(rng.randrange(1, 6)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        elif kind == 1:  # splice a range of the file over another place
            a, b = sorted(rng.sample(range(len(data)), 2))
            at = rng.randrange(len(data))
            mutated[at : at + (b - a)] = data[a:b]
        elif kind == 2:  # insert or delete a range
            a, b = sorted(rng.sample(range(len(data)), 2))
            if rng.random() < 0.5:
                del mutated[a:b]
            else:
                mutated[a:a] = data[rng.randrange(len(data)) :][: b - a]
        else:  # a lying length field with a valid CRC elsewhere: rewrite a u32 anywhere
            at = rng.randrange(len(mutated) - 4)
            value = rng.choice([0, 1, 5, 11, 2**31, 2**32 - 1, rng.randrange(2**32)])
            mutated[at : at + 4] = struct.pack("<I", value)
        yield bytes(mutated)


def test_seeded_corruption_raises_only_library_errors():
    data = make_file(VIDEO, count=6, gop=3)
    rng = random.Random(20261124)
    outcomes: dict[str, int] = {}
    start = time.monotonic()
    for mutated in _mutations(data, rng, 5000):
        src = io.BytesIO(mutated) if rng.random() < 0.5 else Pipe(mutated, step=rng.randrange(1, 64))
        try:
            _read_everything(src)
            outcome = "ok"
        except VQCError as exc:
            outcome = type(exc).__name__
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert time.monotonic() - start < 60
    # the mutations reach every kind of check, not just the CRCs
    assert outcomes.get("ChecksumError", 0) > 1000 and outcomes.get("FormatError", 0) > 200, outcomes
    assert outcomes.get("TruncatedError", 0) > 50 and outcomes.get("LimitError", 0) > 10, outcomes


def _lying_files() -> dict[str, bytes]:
    """Files whose declared sizes are enormous while the bytes are few; CRCs are valid."""
    preamble = spec.MAGIC + struct.pack("<HH", 1, 0)
    head = preamble + encode_chunk(b"HEAD", pack_header(VIDEO))
    huge = VIDEO.replace(width=2**32 - 1, height=2**32 - 1)
    return {
        "pixels": preamble + encode_chunk(b"HEAD", pack_header(huge)),
        "frames": preamble + encode_chunk(b"HEAD", pack_header(VIDEO.replace(frame_count=2**32 - 1))),
        "head length": preamble + struct.pack("<I4s", 2**32 - 1, b"HEAD") + b"x" * 100,
        "head length at limit": preamble + struct.pack("<I4s", spec.MAX_HEADER_LENGTH, b"HEAD") + b"x" * 99,
        "frame length": head + struct.pack("<I4s", 2**32 - 1, b"FRAM") + b"\x01" + b"\x00" * 50,
        "frame length under limit": head + struct.pack("<I4s", 200 << 20, b"FRAM") + b"\x01" + b"\x00" * 50,
        "ancillary length": head + struct.pack("<I4s", 200 << 20, b"zzzz") + b"\x00" * 50,
        "index count": head + encode_chunk(b"FRAM", b"\x01" + bytes(4)) + encode_chunk(b"indx", b"\xff" * 4),
    }


@pytest.mark.parametrize("name", sorted(_lying_files()))
@pytest.mark.parametrize("pipe", [False, True])
def test_hostile_sizes_are_refused_without_allocating(name, pipe):
    data = _lying_files()[name]
    tracemalloc.start()
    try:
        with pytest.raises((LimitError, TruncatedError)):
            read_all(Pipe(data, step=4096) if pipe else io.BytesIO(data))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # reads go in READ_BLOCK pieces: a lie costs at most a block or two, never the declared size
    assert peak < 3 * spec.READ_BLOCK, f"{name}: peak {peak} bytes"


def test_limit_errors_name_the_field():
    with pytest.raises(LimitError, match=r"4294967295x4294967295 .*field width/height, offset \d+"):
        read_all(io.BytesIO(_lying_files()["pixels"]))
    with pytest.raises(LimitError, match=r"FRAM length 4294967295 is over the limit .*offset \d+"):
        read_all(io.BytesIO(_lying_files()["frame length"]))


def test_trailing_garbage_after_the_end_chunk_is_not_read_by_a_stream_reader():
    data = make_file(VIDEO, count=3)
    pipe = Pipe(data + b"next container starts here")
    with ContainerReader(pipe) as reader:
        assert len(list(reader.frames())) == 3
        assert list(reader.frames()) == []
    assert pipe._pos == len(data)


def test_header_parse_errors_name_fields():
    bad = bytearray(pack_header(Header(media="image", width=1, height=1)))
    bad[25] = 2  # full_range
    data = spec.MAGIC + struct.pack("<HH", 1, 0) + encode_chunk(b"HEAD", bytes(bad))
    with pytest.raises(FormatError) as info:
        ContainerReader(io.BytesIO(data))
    assert info.value.field == "full_range" and info.value.offset == 20 + 25
    bad = bytearray(pack_header(Header(media="image", width=1, height=1)))
    bad[60] = 200  # pixel_format length past the end
    data = spec.MAGIC + struct.pack("<HH", 1, 0) + encode_chunk(b"HEAD", bytes(bad))
    with pytest.raises(FormatError) as info:
        ContainerReader(io.BytesIO(data))
    assert info.value.field == "pixel_format"
