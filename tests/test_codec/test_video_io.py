"""Video I/O (Y4M reader/writer, colour conversion, PyAV) and the video side of the CLI."""

from __future__ import annotations

import io
from fractions import Fraction

import numpy as np
import pytest

from tests.test_codec.image_helpers import REPO, TINY_MODEL, picture
from vqcodec.codec.video_io import (
    AVReader,
    AVWriter,
    VideoInfo,
    Y4MReader,
    Y4MWriter,
    open_video,
    rgb_to_yuv,
    yuv_to_rgb,
)
from vqcodec.errors import FormatError, TruncatedError

SAMPLE = REPO / "samples" / "orbit.y4m"


@pytest.mark.parametrize("fmt", ["yuv420p", "yuv422p", "yuv444p", "gray8"])
def test_y4m_write_read_is_exact_for_odd_sizes(fmt):
    info = VideoInfo(width=23, height=17, fps=Fraction(30000, 1001), pixel_format=fmt)
    buf = io.BytesIO()
    writer = Y4MWriter(buf, info)
    frames = []
    for seed in range(3):
        rgb = picture(17, 23, seed=seed)
        from vqcodec.codec.video_io import to_pixel_format

        planes = to_pixel_format(rgb, info)
        writer.write_planes(planes)
        frames.append(planes)
    buf.seek(0)
    with Y4MReader(buf) as reader:
        assert (reader.info.width, reader.info.height, reader.info.fps) == (23, 17, Fraction(30000, 1001))
        assert reader.info.pixel_format == fmt
        got = list(reader.planes())
    assert len(got) == 3
    for a, b in zip(got, frames):
        assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_colour_conversion_round_trips_closely():
    planes = rgb_to_yuv(picture(18, 22), "yuv420p")
    back = rgb_to_yuv(yuv_to_rgb(planes, "yuv420p"), "yuv420p")
    # back within rounding, except where averaged chroma with noisy luma leaves the RGB gamut
    for a, b in zip(planes, back):
        diff = np.abs(a.astype(int) - b)
        assert diff.mean() < 0.6 and diff.max() <= 6
    rgb2 = picture(20, 30)
    for full in (False, True):
        again = yuv_to_rgb(rgb_to_yuv(rgb2, "yuv444p", full_range=full), "yuv444p", full_range=full)
        assert np.abs(again.astype(int) - rgb2).max() <= 2


def test_y4m_truncated_and_bad_headers():
    data = SAMPLE.read_bytes()
    with Y4MReader(io.BytesIO(data)) as reader:
        total = sum(1 for _ in reader)
    frame_size = 96 * 64 * 3 // 2 + 6
    cut = data[: len(data) - frame_size // 2]
    got = 0
    with pytest.raises(TruncatedError):
        with Y4MReader(io.BytesIO(cut)) as reader:
            for _ in reader:
                got += 1
    assert got == total - 1
    for bad in (
        b"YUV4MPEG2 W0 H10 F25:1\n",
        b"YUV4MPEG2 W10 H10 C420p10\n",
        b"NOTY4M W1 H1\n",
        b"YUV4MPEG2 W4",
    ):
        with pytest.raises(FormatError):
            Y4MReader(io.BytesIO(bad))


def test_pyav_mp4_write_and_read(tmp_path):
    info = VideoInfo(width=33, height=21, fps=Fraction(25), pixel_format="yuv420p")
    path = tmp_path / "clip.mp4"
    frames = [picture(21, 33, seed=i) for i in range(4)]
    writer = AVWriter(str(path), info, lossless=True)
    for f in frames:
        writer.write(f)
    writer.close()
    with open_video(str(path)) as reader:
        assert isinstance(reader, AVReader)
        assert (reader.info.width, reader.info.height) == (33, 21) and reader.info.fps == 25
        got = list(reader)
    assert len(got) == 4 and all(np.array_equal(a, b) for a, b in zip(got, frames))  # lossless


def test_cli_encode_decode_round_trip(tmp_path, vqcodec_cli):
    run_cli = vqcodec_cli  # in-process; tests/test_pipes.py runs the real processes
    from vqcodec.codec.video import VideoDecoder

    vqc, y4m = tmp_path / "orbit.vqc", tmp_path / "out.y4m"
    r = run_cli(
        "encode", str(SAMPLE), str(vqc), "--model", str(TINY_MODEL), "-q", "3", "--gop", "8", "--quiet"
    )
    assert r.returncode == 0, r.stderr
    r = run_cli("decode", str(vqc), str(y4m), "--model", str(TINY_MODEL), "--quiet")
    assert r.returncode == 0, r.stderr
    with Y4MReader(str(y4m)) as out, Y4MReader(str(SAMPLE)) as src:
        assert (out.info.width, out.info.height, out.info.fps, out.info.pixel_format) == (
            src.info.width,
            src.info.height,
            src.info.fps,
            src.info.pixel_format,
        )
        assert out.info.frame_count == src.info.frame_count == 24
    with VideoDecoder(str(vqc), model=str(TINY_MODEL)) as dec:
        assert dec.key_frames() == [0, 8, 16]
        expected = [f for i, f in dec.frames_with_index() if 5 <= i < 9]
    pattern = str(tmp_path / "f_%03d.png")
    r = run_cli("decode", str(vqc), pattern, "--model", str(TINY_MODEL), "--frames", "5:9", "--quiet")
    assert r.returncode == 0, r.stderr
    from PIL import Image

    names = sorted(p.name for p in tmp_path.glob("f_*.png"))
    assert names == ["f_005.png", "f_006.png", "f_007.png", "f_008.png"]
    for name, frame in zip(names, expected):
        assert np.array_equal(np.asarray(Image.open(tmp_path / name)), frame)
    # refusing to overwrite; a bad output name; a corrupt input
    before = y4m.read_bytes()
    r = run_cli("decode", str(vqc), str(y4m), "--model", str(TINY_MODEL))
    assert r.returncode == 1 and "exists" in r.error_line() and y4m.read_bytes() == before
    r = run_cli("decode", str(vqc), str(tmp_path / "x.avi2"), "--model", str(TINY_MODEL))
    assert r.returncode == 1 and "x.avi2" in r.error_line() and not (tmp_path / "x.avi2").exists()


def test_cli_y4m_through_pipes(vqcodec_cli):
    run_cli = vqcodec_cli  # pipe-like stdin/stdout, in-process
    data = SAMPLE.read_bytes()
    r = run_cli("encode", "-", "-", "--model", str(TINY_MODEL), "--frames", "2:6", "--quiet", stdin=data)
    assert r.returncode == 0, r.stderr
    from vqcodec.container import spec

    assert r.stdout.startswith(spec.MAGIC)
    d = run_cli("decode", "-", "-", "--model", str(TINY_MODEL), "--quiet", stdin=r.stdout)
    assert d.returncode == 0, d.stderr
    with Y4MReader(io.BytesIO(d.stdout)) as reader:
        assert reader.info.fps == 24 and sum(1 for _ in reader) == 4
