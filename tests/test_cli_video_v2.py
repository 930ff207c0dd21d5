"""``vqcodec encode / decode / models`` on videos with the default model (video-mc1, payload 2),
in-process (the ``vqcodec_cli`` fixture): Y4M planes in and out exactly, -q levels, --kbps, pipes,
--frames, --salvage, MP4 output and one-line errors."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from vqcodec.codec.video import VideoDecoder
from vqcodec.codec.video_io import Y4MReader
from vqcodec.container import ContainerReader
from vqcodec.models import video_mc as vm

REPO = Path(__file__).resolve().parents[1]
ORBIT = REPO / "vqcodec" / "samples" / "orbit.y4m"


def y4m_planes(data: bytes) -> list[list[np.ndarray]]:
    with Y4MReader(io.BytesIO(data)) as reader:
        return [[np.array(p) for p in planes] for planes in reader.planes()]


def digest(planes: list[np.ndarray]) -> str:
    return hashlib.sha256(b"".join(np.ascontiguousarray(p).tobytes() for p in planes)).hexdigest()


@pytest.fixture(scope="module")
def encoded(tmp_path_factory) -> Path:
    from tests.conftest import run_vqcodec

    out = tmp_path_factory.mktemp("v2") / "orbit.vqc"
    result = run_vqcodec("encode", ORBIT, out, "--gop", "8")
    assert result.returncode == 0, result.stderr
    assert "quality 7 (qp 28)" in result.stderr and "3 key frames" in result.stderr
    return out


def test_encode_codes_the_y4m_planes_with_the_default_model(encoded):
    with ContainerReader(str(encoded)) as reader:
        header = reader.header
        qps = {f.payload[1] for f in reader.frames()}
    assert header.model_name == vm.MC2_MODEL_NAME and header.pixel_format == "yuv420p"
    assert header.matrix == 6 and not header.full_range  # the Y4M source's colour, recorded
    cascade = vm.EncoderSettings()
    assert qps == {cascade.frame_qp(vm.qp_for_quality(7), i % 8 == 0, i % 8 - 1) for i in range(24)}


def test_decode_to_y4m_writes_the_decoded_planes_exactly(encoded, tmp_path, vqcodec_cli):
    out = tmp_path / "out.y4m"
    result = vqcodec_cli("decode", encoded, out)
    assert result.returncode == 0, result.stderr
    written = y4m_planes(out.read_bytes())
    with VideoDecoder(str(encoded)) as dec:
        decoded = [planes for _, planes in dec.planes_with_index()]
    assert [digest(p) for p in written] == [digest(p) for p in decoded] and len(written) == 24
    # --frames starts at the key frame before A and writes A..B-1 only
    part = tmp_path / "part.y4m"
    assert vqcodec_cli("decode", encoded, part, "--frames", "10:14").returncode == 0
    assert [digest(p) for p in y4m_planes(part.read_bytes())] == [digest(p) for p in decoded[10:14]]


def test_y4m_through_stdin_and_stdout(encoded, vqcodec_cli):
    source = ORBIT.read_bytes()
    coded = vqcodec_cli("encode", "-", "-", "-q", "12", stdin=source)
    assert coded.returncode == 0, coded.stderr
    assert coded.stdout.startswith(b"\x89VQC")
    with ContainerReader(io.BytesIO(coded.stdout)) as reader:
        qps = {f.payload[1] for f in reader.frames()}
    cascade = vm.EncoderSettings()
    assert qps <= {cascade.frame_qp(vm.qp_for_quality(12), key, n) for key in (True, False) for n in range(8)}
    assert vm.qp_for_quality(12) + vm.KEY_QP_OFFSET in qps
    decoded = vqcodec_cli("decode", "-", "-", stdin=coded.stdout)
    assert decoded.returncode == 0, decoded.stderr
    planes = y4m_planes(decoded.stdout)
    with VideoDecoder(coded.stdout) as dec:
        assert [digest(p) for p in planes] == [digest(p) for _, p in dec.planes_with_index()]
    # quality 12 (qp 13) is close to the source
    source_y = y4m_planes(source)[3][0].astype(float)
    assert 10 * np.log10(255**2 / np.mean((planes[3][0] - source_y) ** 2)) > 40


def test_kbps_holds_the_target_and_is_refused_where_it_does_not_apply(tmp_path, vqcodec_cli):
    out = tmp_path / "rate.vqc"
    result = vqcodec_cli("encode", ORBIT, out, "--kbps", "120", "--json")
    assert result.returncode == 0, result.stderr
    with VideoDecoder(str(out)) as dec:
        frames, fps = dec.frame_count, float(dec.fps)
    kbps = 8.0 * out.stat().st_size * fps / frames / 1000.0
    assert abs(kbps / 120 - 1) < 0.25, kbps  # 24 frames: one second, the controller still learning
    text = vqcodec_cli("encode", ORBIT, tmp_path / "t.vqc", "--kbps", "120")
    assert "target 120 kbit/s" in text.stderr
    both = vqcodec_cli("encode", ORBIT, tmp_path / "x.vqc", "--kbps", "100", "-q", "3")
    assert both.returncode == 2 and "not allowed with" in both.stderr
    bad = vqcodec_cli("encode", ORBIT, tmp_path / "y.vqc", "--kbps", "-5")
    assert bad.returncode == 1 and "--kbps" in bad.error_line()
    old = vqcodec_cli("encode", ORBIT, tmp_path / "z.vqc", "--kbps", "100", "--model", "video-rvq8")
    assert old.returncode == 1 and "video-mc1" in old.error_line()
    picture = vqcodec_cli("encode", REPO / "samples" / "scene.png", tmp_path / "p.vqc", "--kbps", "100")
    assert picture.returncode == 1 and "--kbps is for videos" in picture.stderr
    assert not (tmp_path / "p.vqc").exists() and not (tmp_path / "z.vqc").exists()


def test_quality_range_is_the_video_models(tmp_path, vqcodec_cli):
    top = vqcodec_cli("encode", ORBIT, tmp_path / "a.vqc", "-q", "12", "--frames", "0:2")
    assert top.returncode == 0, top.stderr
    over = vqcodec_cli("encode", ORBIT, tmp_path / "b.vqc", "-q", "13")
    assert over.returncode == 1 and "1..12" in over.error_line()
    assert not (tmp_path / "b.vqc").exists()


def test_salvage_keeps_the_frames_before_a_cut(encoded, tmp_path, vqcodec_cli):
    data = encoded.read_bytes()
    cut = tmp_path / "cut.vqc"
    cut.write_bytes(data[: len(data) * 2 // 3])
    plain = vqcodec_cli("decode", cut, tmp_path / "plain.y4m")
    assert plain.returncode == 1 and not (tmp_path / "plain.y4m").exists()
    saved = vqcodec_cli("decode", cut, tmp_path / "saved.y4m", "--salvage")
    assert saved.returncode == 0, saved.stderr
    kept = y4m_planes((tmp_path / "saved.y4m").read_bytes())
    with VideoDecoder(str(encoded)) as dec:
        full = [digest(p) for _, p in dec.planes_with_index()]
    assert 8 <= len(kept) < 24 and [digest(p) for p in kept] == full[: len(kept)]


def test_decode_to_mp4_and_png_frames(encoded, tmp_path, vqcodec_cli):
    import av

    mp4 = tmp_path / "out.mp4"
    assert vqcodec_cli("decode", encoded, mp4, "--frames", "0:5").returncode == 0
    with av.open(str(mp4)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 5 and frames[0].shape == (64, 96, 3)
    pattern = tmp_path / "f_%02d.png"
    assert vqcodec_cli("decode", encoded, pattern, "--frames", "20:22").returncode == 0
    assert sorted(p.name for p in tmp_path.glob("f_*.png")) == ["f_20.png", "f_21.png"]


def test_models_lists_the_weightless_default(vqcodec_cli):
    result = vqcodec_cli("models", "--json")
    rows = {m["name"]: m for m in json.loads(result.stdout)["models"]}
    mc = rows["video-mc2"]
    assert mc["default"] and mc["weightless"] and mc["quality_levels"] == len(vm.QUALITY_QP)
    assert mc["sha256"] == vm.MC2_MODEL_SHA256.hex() and not rows["video-rvq8"]["default"]
    assert rows["video-mc1"]["weightless"] and not rows["video-mc1"]["default"]
    table = vqcodec_cli("models").stdout.decode()
    assert "video-mc2 *" in table and "no weights" in table


def test_old_payload_files_still_decode_through_the_cli(tmp_path, vqcodec_cli):
    old = tmp_path / "old.vqc"
    coded = vqcodec_cli("encode", ORBIT, old, "--model", "video-rvq8", "-q", "2", "--frames", "0:3")
    assert coded.returncode == 0, coded.stderr
    with VideoDecoder(str(old)) as dec:
        assert dec.payload_version == 1
    out = tmp_path / "old.y4m"
    assert vqcodec_cli("decode", old, out).returncode == 0
    assert len(y4m_planes(out.read_bytes())) == 3
