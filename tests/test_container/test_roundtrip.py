"""Round trips of every header field and frame feature; streaming, seeking, versions, chunk kinds."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import struct

import pytest

from test_container.helpers import VIDEO, Pipe, Sink, make_file, payload, read_all
from vqcodec.container import ContainerReader, ContainerWriter, Header, Limits, encode_chunk, limits, spec
from vqcodec.errors import ChecksumError, FormatError, LimitError, TruncatedError, UnsupportedVersionError

IMAGE = Header(media="image", width=5, height=3, frame_count=1)

HEADER_VARIANTS = {
    "defaults": IMAGE,
    "video": VIDEO,
    "width": IMAGE.replace(width=12345),
    "height": IMAGE.replace(height=4321),
    "channels": IMAGE.replace(channels=16),
    "pixel_format": IMAGE.replace(pixel_format="yuv444p16_x"),
    "fps": VIDEO.replace(fps_num=4294967295, fps_den=4294967295),
    "fps_ntsc": VIDEO.replace(fps_num=30000, fps_den=1001),
    "frame_count": VIDEO.replace(frame_count=3),
    "image_count_0": IMAGE.replace(frame_count=0),
    "primaries": IMAGE.replace(primaries=255),
    "transfer": IMAGE.replace(transfer=0),
    "matrix": IMAGE.replace(matrix=200),
    "full_range": IMAGE.replace(full_range=False),
    "model_name": IMAGE.replace(model_name="ø" * 127),  # 254 UTF-8 bytes
    "model_name_max": IMAGE.replace(model_name="m" * 255),
    "model_sha256": IMAGE.replace(model_sha256=hashlib.sha256(b"w").digest()),
    "quality": IMAGE.replace(quality=65535),
    "codec_params": IMAGE.replace(codec_params=bytes(range(256)) * 40),
    "pixel_format_max": IMAGE.replace(pixel_format="a" * 32),
}


def _write(header: Header, frames: list[tuple[bool, bytes]], **kw) -> bytes:
    out = io.BytesIO()
    with ContainerWriter(out, header, **kw) as writer:
        for key, data in frames:
            writer.write_frame(data, key=key)
    return out.getvalue()


def _frames_for(header: Header) -> list[tuple[bool, bytes]]:
    count = header.frame_count or (1 if header.media == "image" else 3)
    return [(i == 0, payload(i)) for i in range(count)]


@pytest.mark.parametrize("name", sorted(HEADER_VARIANTS))
@pytest.mark.parametrize("pipe", [False, True])
def test_every_header_field_round_trips(name, pipe):
    header = HEADER_VARIANTS[name]
    frames = _frames_for(header)
    data = _write(header, frames)
    got, got_frames, reader = read_all(Pipe(data) if pipe else io.BytesIO(data))
    assert got == header
    assert [(f.key, f.payload) for f in got_frames] == frames
    assert reader.version == (spec.VERSION_MAJOR, spec.VERSION_MINOR)


def test_header_bytes_follow_the_spec_layout():
    header = HEADER_VARIANTS["model_sha256"].replace(quality=7, codec_params=b"{}", model_name="ab")
    data = _write(header, [(True, b"")])
    assert data[:12] == b"\x89VQC\r\n\x1a\n" + struct.pack("<HH", 1, 0)
    length, chunk_type = struct.unpack_from("<I4s", data, 12)
    assert chunk_type == b"HEAD" and length == spec.HEAD_FIXED_SIZE + 1 + 5 + 1 + 2 + 4 + 2
    fixed = struct.unpack_from("<BBIIIIIBBBBH32s", data, 20)
    assert fixed == (1, 3, 5, 3, 0, 1, 1, 1, 13, 0, 1, 7, header.model_sha256)
    assert data[80:86] == b"\x05rgb24" and data[86:89] == b"\x02ab" and data[89:95] == b"\x02\x00\x00\x00{}"


@pytest.mark.parametrize(
    "field, value",
    [
        ("media", "audio"),
        ("width", 0),
        ("height", 2**32),
        ("channels", 17),
        ("fps_den", 0),
        ("fps_num", 0),  # video needs a rate
        ("frame_count", -1),
        ("primaries", 256),
        ("quality", 65536),
        ("full_range", 1),
        ("pixel_format", "RGB"),
        ("pixel_format", "a" * 33),
        ("model_name", "x" * 256),
        ("model_sha256", b"short"),
        ("codec_params", "text"),
        ("width", True),
    ],
)
def test_header_refuses_invalid_fields(field, value):
    with pytest.raises(ValueError, match=field):
        dataclasses.replace(VIDEO, **{field: value})


def test_image_header_refuses_more_than_one_frame():
    with pytest.raises(ValueError, match="frame_count"):
        IMAGE.replace(frame_count=2)


def test_frames_payload_types_sizes_and_side_chunks():
    big = os.urandom(3 << 20)  # several READ_BLOCKs (a multiple of 4 for the typed view below)
    out = io.BytesIO()
    with ContainerWriter(out, VIDEO, side_chunk_types=[b"SIDE", b"auxx"]) as writer:
        writer.write_chunk(b"SIDE", b"for frame 0")
        writer.write_chunk(b"auxx", b"also for frame 0")
        writer.write_frame(b"", key=True)
        writer.write_frame(bytearray(b"ba"), key=False)
        writer.write_chunk(b"SIDE", b"for frame 2")
        writer.write_frame(memoryview(big).cast("I"), key=True)  # a typed view: sizes count bytes
        writer.write_chunk(b"SIDE", b"trailing")
    data = out.getvalue()
    for src in (io.BytesIO(data), Pipe(data, step=65536)):
        _, frames, reader = read_all(src, side_chunk_types=[b"SIDE", b"auxx"])
        assert [(f.index, f.key) for f in frames] == [(0, True), (1, False), (2, True)]
        assert frames[0].payload == b"" and frames[1].payload == b"ba" and frames[2].payload == big
        assert frames[0].side_chunks == ((b"SIDE", b"for frame 0"), (b"auxx", b"also for frame 0"))
        assert frames[1].side_chunks == () and frames[2].side_chunks == ((b"SIDE", b"for frame 2"),)
        assert reader.trailing_chunks == ((b"SIDE", b"trailing"),)
    # a reader that does not know SIDE (critical) refuses the file; auxx (ancillary) would be skipped
    with pytest.raises(FormatError, match="unknown critical chunk type SIDE") as info:
        read_all(io.BytesIO(data))
    assert info.value.field == "chunk type"


def test_streamed_frame_count_is_recorded_in_the_end_chunk():
    data = make_file(VIDEO.replace(frame_count=0), count=7)
    with ContainerReader(Pipe(data)) as reader:
        assert reader.frame_count is None
        assert len(list(reader.frames())) == 7
        assert reader.end is not None and reader.end.frame_count == 7 and reader.frame_count == 7
    with ContainerReader(io.BytesIO(data)) as reader:
        assert reader.key_frames().frame_count == 7 and reader.frame_count == 7


def test_writer_never_seeks_and_flushes_every_frame():
    sink = Sink()
    with ContainerWriter(sink, VIDEO) as writer:
        for i in range(5):
            before = sink.flushes
            writer.write_frame(payload(i, 10 + i), key=i == 0)
            assert sink.flushes > before
            assert writer.bytes_written == len(sink.data)
    assert bytes(sink.data) == make_file(VIDEO, count=5, gop=5)


def test_pipe_reader_yields_each_frame_before_reading_the_next():
    data = make_file(VIDEO, count=6, gop=3)
    pipe = Pipe(data, step=5)
    with ContainerReader(pipe) as reader:
        ends = {}
        for info in ContainerReader(io.BytesIO(data)).chunks():
            if info.frame_index is not None:
                ends[info.frame_index] = info.offset + info.size
        for frame in reader.frames():
            assert pipe._pos == ends[frame.index]  # nothing past this frame's chunk was read yet


def test_container_inside_a_larger_stream():
    data = make_file(VIDEO, count=9)
    stream = io.BytesIO(b"prefix!" + data + b"suffix")
    stream.seek(7)
    with ContainerReader(stream) as reader:
        assert [f.index for f in reader.frames()] == list(range(9))
        assert reader.trailing_bytes == 6
        assert reader.key_frames().source == "scan"  # trailing bytes hide the trailer: scan instead
        assert reader.seek(6) == 4
        assert [f.index for f in reader.frames()] == [4, 5, 6, 7, 8]


@pytest.mark.parametrize("index", [True, False])
def test_seek_lands_on_the_nearest_earlier_key_frame(index):
    data = make_file(VIDEO, count=11, gop=4, index=index)
    with ContainerReader(io.BytesIO(data)) as reader:
        assert reader.key_frames().source == ("index" if index else "scan")
        assert [k.frame_index for k in reader.key_frames().keys] == [0, 4, 8]
        for target in range(11):
            key = reader.seek(target)
            assert key == target - target % 4
            frames = list(reader.frames())
            assert [f.index for f in frames] == list(range(key, 11))
            assert frames[0].key and frames[-1].payload == payload(10, 20)
        with pytest.raises(IndexError):
            reader.seek(11)
        reader.seek(5)
        first = next(iter(reader.frames()))
        assert first.index == 4


def test_seek_survives_a_damaged_or_lying_index():
    data = bytearray(make_file(VIDEO, count=9, gop=4))
    with ContainerReader(io.BytesIO(bytes(data))) as reader:
        chunks = list(reader.chunks())
    index = next(c for c in chunks if c.type == "indx")
    frame5 = next(c for c in chunks if c.frame_index == 5)
    damaged = bytearray(data)
    damaged[index.offset + 12] ^= 1  # CRC mismatch in the index
    with ContainerReader(io.BytesIO(bytes(damaged))) as reader:
        assert reader.key_frames().source == "scan" and reader.seek(6) == 4
    # an index with a valid CRC that points key frame 4 at frame 5's chunk
    entries = struct.pack("<IIQIQ", 2, 0, chunks[1].offset, 4, frame5.offset)
    before, after = bytes(data[: index.offset]), bytes(data[index.offset + index.size :])
    lying = before + encode_chunk(b"indx", entries) + after
    with ContainerReader(io.BytesIO(lying)) as reader:
        assert reader.key_frames().source == "index"
        assert reader.seek(6) == 4 and reader.key_frames().source == "scan"
        assert [f.index for f in reader.frames()] == [4, 5, 6, 7, 8]
    with pytest.raises(FormatError, match="index"):
        read_all(io.BytesIO(lying))  # reading the whole stream cross-checks the index


def test_seek_needs_a_seekable_source():
    with ContainerReader(Pipe(make_file())) as reader:
        assert not reader.seekable
        with pytest.raises(io.UnsupportedOperation):
            reader.seek(0)


def test_unknown_ancillary_chunk_is_skipped():
    out = io.BytesIO()
    with ContainerWriter(out, VIDEO) as writer:
        writer.write_chunk(b"zzzz", b"something new")
        writer.write_frame(b"a", key=True)
        writer.write_chunk(b"tEXt", b"x" * 1000)
        writer.write_frame(b"b", key=False)
    for src in (io.BytesIO(out.getvalue()), Pipe(out.getvalue())):
        _, frames, reader = read_all(src)
        assert [f.payload for f in frames] == [b"a", b"b"] and all(f.side_chunks == () for f in frames)
        assert [c.type for c in reader.skipped_chunks] == ["zzzz", "tEXt"]


def test_unknown_critical_chunk_is_refused():
    with pytest.raises(ValueError, match="not registered"):
        ContainerWriter(io.BytesIO(), VIDEO).write_chunk(b"ZZZZ", b"")
    data = make_file(VIDEO, count=3)
    first_frame = next(c for c in ContainerReader(io.BytesIO(data)).chunks() if c.type == "FRAM")
    cut = first_frame.offset
    spliced = data[:cut] + encode_chunk(b"ZZZZ", b"new critical data") + data[cut:]
    with pytest.raises(FormatError, match="unknown critical") as info:
        read_all(Pipe(spliced))
    assert info.value.field == "chunk type" and info.value.offset == cut + 4


def _with_version(data: bytes, major: int, minor: int, extra_head: bytes = b"", frame_flags: int = 0):
    """Rewrite a file's version, append bytes to HEAD and OR bits into every frame's flags, fixing CRCs."""
    reader = ContainerReader(io.BytesIO(data))
    out = [spec.MAGIC + struct.pack("<HH", major, minor)]
    for info in reader.chunks():
        body = data[info.offset + 8 : info.offset + 8 + info.length]
        if info.type == "HEAD":
            body += extra_head
        if info.type == "FRAM":
            body = bytes([body[0] | frame_flags]) + body[1:]
        out.append(encode_chunk(info.type.encode(), body))
    return b"".join(out)


def test_newer_minor_version_is_read_and_older_rules_stay_strict():
    data = make_file(VIDEO, count=5, index=False)
    newer = _with_version(data, 1, 3, extra_head=b"future fields", frame_flags=0xF0)
    header, frames, reader = read_all(Pipe(newer))
    assert reader.version == (1, 3) and header == VIDEO and len(frames) == 5
    assert [f.key for f in frames] == [True, False, False, False, True]
    with pytest.raises(FormatError) as info:
        read_all(io.BytesIO(_with_version(data, 1, 0, extra_head=b"future fields")))
    assert info.value.field == "HEAD"
    with pytest.raises(FormatError) as info:
        read_all(io.BytesIO(_with_version(data, 1, 0, frame_flags=0x02)))
    assert info.value.field == "flags"


@pytest.mark.parametrize("major", [0, 2, 65535])
def test_unknown_major_version_is_refused(major):
    data = make_file()
    bad = data[:8] + struct.pack("<H", major) + data[10:]
    with pytest.raises(UnsupportedVersionError, match=f"version {major}") as info:
        ContainerReader(io.BytesIO(bad))
    assert info.value.field == "version" and info.value.offset == 8


def test_writer_rules():
    with pytest.raises(ValueError, match="first frame"):
        ContainerWriter(io.BytesIO(), VIDEO).write_frame(b"", key=False)
    writer = ContainerWriter(io.BytesIO(), IMAGE)
    writer.write_frame(b"", key=True)
    with pytest.raises(ValueError, match="exactly one frame"):
        writer.write_frame(b"", key=True)
    writer = ContainerWriter(io.BytesIO(), VIDEO.replace(frame_count=2))
    writer.write_frame(b"", key=True)
    writer.write_frame(b"", key=False)
    with pytest.raises(ValueError, match="declares 2"):
        writer.write_frame(b"", key=False)
    writer.close()
    with pytest.raises(ValueError, match="closed"):
        writer.write_frame(b"", key=True)
    for bad_type in (b"HEAD", b"indx", b"FR M", b"abc", "text"):
        with pytest.raises(ValueError):
            ContainerWriter(io.BytesIO(), VIDEO).write_chunk(bad_type, b"")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ContainerWriter(io.BytesIO(), {"media": "image"})  # type: ignore[arg-type]


def test_writer_to_a_path_is_atomic(tmp_path):
    path = tmp_path / "out.vqc"
    with pytest.raises(RuntimeError):
        with ContainerWriter(path, VIDEO) as writer:
            writer.write_frame(b"frame", key=True)
            raise RuntimeError("encoder failed")
    assert os.listdir(tmp_path) == []
    with pytest.raises(ValueError, match="declares 3 frames, 1 were written"):
        with ContainerWriter(path, VIDEO.replace(frame_count=3)) as writer:
            writer.write_frame(b"frame", key=True)
    assert os.listdir(tmp_path) == []
    with ContainerWriter(path, VIDEO) as writer:
        writer.write_frame(b"frame", key=True)
    assert os.listdir(tmp_path) == ["out.vqc"]
    assert read_all(path)[1][0].payload == b"frame"
    with pytest.raises(FileExistsError):
        ContainerWriter(path, VIDEO, force=False)


def test_abandoned_stream_reads_every_complete_frame_then_truncated():
    out = io.BytesIO()
    with pytest.raises(KeyboardInterrupt):
        with ContainerWriter(out, VIDEO) as writer:
            for i in range(3):
                writer.write_frame(payload(i), key=i == 0)
            raise KeyboardInterrupt
    got = []
    with pytest.raises(TruncatedError) as info, ContainerReader(Pipe(out.getvalue())) as reader:
        for frame in reader.frames():
            got.append(frame.index)
    assert got == [0, 1, 2] and info.value.field == "VEND"


def test_limits_are_configurable_per_reader_and_process_wide(monkeypatch):
    data = make_file(VIDEO.replace(width=1000, height=1000), count=5)
    read_all(io.BytesIO(data))
    with pytest.raises(LimitError, match="pixels"):
        ContainerReader(io.BytesIO(data), max_pixels=999_999)
    with pytest.raises(LimitError, match="pixels"):
        ContainerReader(io.BytesIO(data), limits=Limits(max_pixels=10))
    monkeypatch.setattr(limits, "max_pixels", 999_999)
    with pytest.raises(LimitError, match="pixels"):
        ContainerReader(io.BytesIO(data))
    assert read_all(io.BytesIO(data), max_pixels=10**6)[0].width == 1000
    monkeypatch.undo()
    with pytest.raises(LimitError, match="frame"):
        read_all(Pipe(data), max_frame_count=4)  # streamed: counted while reading
    with pytest.raises(LimitError, match="FRAM length"):
        read_all(io.BytesIO(data), max_chunk_length=16)
    with pytest.raises(LimitError, match="HEAD length"):
        ContainerReader(io.BytesIO(data), max_header_length=70)
    with pytest.raises(LimitError):
        writer = ContainerWriter(io.BytesIO(), VIDEO, limits=Limits(max_chunk_length=10))
        writer.write_frame(b"x" * 6, key=True)
    with pytest.raises(ValueError):
        Limits(max_pixels=0)


def test_chunks_reports_crc_status_before_raising():
    data = bytearray(make_file(VIDEO, count=4))
    good = list(ContainerReader(io.BytesIO(bytes(data))).chunks())
    assert [c.type for c in good] == ["HEAD", "FRAM", "FRAM", "FRAM", "FRAM", "indx", "VEND"]
    assert all(c.crc_ok for c in good) and sum(c.size for c in good) + 12 == len(data)
    data[good[3].offset + 14] ^= 0x55
    seen = []
    with pytest.raises(ChecksumError) as info:
        for c in ContainerReader(io.BytesIO(bytes(data))).chunks():
            seen.append(c)
    assert [c.crc_ok for c in seen] == [True, True, True, False] and info.value.offset == good[3].offset


def test_pipe_reading_resumes_after_an_early_break_and_stays_failed_after_an_error():
    data = make_file(VIDEO, count=6)
    with ContainerReader(Pipe(data)) as reader:
        for frame in reader.frames():
            if frame.index == 1:
                break
        assert [f.index for f in reader.frames()] == [2, 3, 4, 5]
        assert list(reader.frames()) == []
    with ContainerReader(Pipe(data[:-30])) as reader:
        with pytest.raises(TruncatedError):
            list(reader.frames())
        with pytest.raises(TruncatedError):
            list(reader.frames())
