"""``vqcodec encode / decode / models / demo``: forms, batches, pipes, overwrite rules, video dispatch."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_codec.image_helpers import TINY_MODEL, picture

from vqcodec.cli import main
from vqcodec.container.spec import MAGIC

M = str(TINY_MODEL)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def pngs(tmp_path):
    paths = []
    for i, channels in enumerate((3, 4, 1)):
        array = picture(24 + 8 * i, 40, channels, seed=i)
        path = tmp_path / f"img{i}.png"
        Image.fromarray(array[..., 0] if channels == 1 else array).save(path)
        paths.append(path)
    return paths


def test_encode_decode_positional_form(pngs, tmp_path, capsys):
    src, vqc, out = pngs[0], tmp_path / "a.vqc", tmp_path / "a_out.png"
    assert main(["encode", str(src), str(vqc), "-q", "2", "--model", M]) == 0
    line = capsys.readouterr().out
    assert "bpp" in line and "quality 2" in line and vqc.is_file()
    assert main(["decode", str(vqc), str(out), "--model", M]) == 0
    decoded = Image.open(out)
    assert decoded.size == Image.open(src).size and decoded.mode == "RGB"


def test_default_output_names_and_output_option(pngs, tmp_path):
    assert main(["encode", str(pngs[1]), "--model", M, "--quiet"]) == 0
    assert pngs[1].with_suffix(".vqc").is_file()
    target = tmp_path / "named.tif"
    assert main(["decode", str(pngs[1].with_suffix(".vqc")), "-o", str(target), "--model", M, "--quiet"]) == 0
    assert Image.open(target).format == "TIFF" and Image.open(target).mode == "RGBA"


def test_refuses_to_overwrite_without_force_and_never_writes_over_an_input(pngs, tmp_path, capsys):
    vqc = tmp_path / "b.vqc"
    assert main(["encode", str(pngs[0]), str(vqc), "--model", M, "--quiet"]) == 0
    before = vqc.read_bytes()
    assert main(["encode", str(pngs[2]), str(vqc), "--model", M, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "exists" in err and "--force" in err and len(err.strip().splitlines()) == 1
    assert vqc.read_bytes() == before
    assert main(["encode", str(pngs[2]), str(vqc), "--model", M, "--quiet", "-f"]) == 0
    assert vqc.read_bytes() != before
    # another file: fine
    assert main(["decode", str(vqc), "-o", str(pngs[0]), "--model", M, "--quiet", "-f"]) == 0
    kept = vqc.read_bytes()
    assert main(["decode", str(vqc), "-o", str(vqc), "--model", M, "--quiet", "-f", "--format", "png"]) == 1
    assert "input" in capsys.readouterr().err
    assert vqc.read_bytes() == kept
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_batch_with_a_bad_file_reports_and_exits_1(pngs, tmp_path, capsys):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"this is not an image")
    outdir = tmp_path / "out"
    code = main(["encode", *map(str, pngs), str(bad), "-o", f"{outdir}/", "--model", M, "--json", "-j", "2"])
    assert code == 1
    report = json.loads(capsys.readouterr().out)
    assert (
        report["summary"]["files"] == 4 and report["summary"]["ok"] == 3 and report["summary"]["failed"] == 1
    )
    assert report["summary"]["mean_bpp"] > 0 and report["summary"]["bytes_out"] > 0
    failed = [f for f in report["files"] if not f["ok"]]
    assert failed[0]["input"] == str(bad) and failed[0]["error"]
    assert sorted(p.name for p in outdir.iterdir()) == ["img0.vqc", "img1.vqc", "img2.vqc"]
    decoded = tmp_path / "decoded"
    code = main(
        ["decode", *map(str, sorted(outdir.iterdir())), "-o", f"{decoded}/", "--model", M, "--format", "webp"]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "3/3 files ok" in out and "mean" in out
    assert sorted(p.name for p in decoded.iterdir()) == ["img0.webp", "img1.webp", "img2.webp"]


def test_decode_to_jpeg_drops_alpha_with_a_warning(pngs, tmp_path, capsys):
    vqc = tmp_path / "alpha.vqc"
    assert main(["encode", str(pngs[1]), str(vqc), "--model", M, "--quiet"]) == 0
    assert main(["decode", str(vqc), str(tmp_path / "x.jpg"), "--model", M]) == 0
    assert "alpha dropped" in capsys.readouterr().err
    assert Image.open(tmp_path / "x.jpg").mode == "RGB"


def test_usage_errors_are_one_line(pngs, tmp_path, capsys):
    vqc = tmp_path / "c.vqc"
    assert main(["encode", str(pngs[0]), str(vqc), "--model", M, "-q", "99"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("vqcodec: error:") and "1..4" in err and "\n" not in err
    assert main(["encode", str(pngs[0]), str(vqc), "--model", "no-such-model"]) == 1
    assert "unknown model" in capsys.readouterr().err
    main(["encode", str(pngs[0]), str(vqc), "--model", M, "--quiet"])
    assert main(["decode", str(vqc), str(tmp_path / "x.unknownext"), "--model", M]) == 1
    assert "format" in capsys.readouterr().err
    assert main(["decode", str(pngs[0]), str(tmp_path / "x.png")]) == 1  # a PNG is not a .vqc
    assert "magic" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["encode", str(pngs[0]), "-q", "2", "--bpp", "0.3"])
    assert info.value.code == 2


def test_pipes_through_stdin_and_stdout(pngs, tmp_path, vqcodec_cli):
    """encode - - | decode - OUT, in-process (tests/test_pipes.py runs real processes in a pipeline)."""
    out = tmp_path / "piped.png"
    encoded = vqcodec_cli("encode", "-", "-", "--model", M, stdin=pngs[1].read_bytes())
    assert encoded.returncode == 0, encoded.stderr
    assert "bpp" in encoded.stderr  # the report goes to stderr when stdout carries data
    assert encoded.stdout.startswith(MAGIC) and b"bpp" not in encoded.stdout
    decoded = vqcodec_cli("decode", "-", out, "--model", M, stdin=encoded.stdout)
    assert decoded.returncode == 0, decoded.stderr
    assert Image.open(out).mode == "RGBA" and Image.open(out).size == Image.open(pngs[1]).size


def test_models_command_lists_the_registry(capsys):
    from vqcodec.models.zoo import list_models

    assert main(["models", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["models"]
    assert [m["name"] for m in listed] == [m.name for m in list_models()]
    assert all(len(m["sha256"]) == 64 for m in listed)
    assert main(["models"]) == 0
    assert capsys.readouterr().out.strip()


def test_demo_prints_bpp_psnr_and_time(tmp_path, capsys):
    assert main(["demo", "--model", M, "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "PSNR" in out and "bpp" in out and "decode s" in out and "<- default" in out
    assert (tmp_path / "scene.vqc").is_file() and (tmp_path / "scene.decoded.png").is_file()


def test_video_inputs_and_files_go_to_the_video_module(pngs, tmp_path, monkeypatch, capsys):
    """The CLI hands videos to vqcodec.cli._video with one input and one output per call."""
    calls = []
    fake = types.ModuleType("vqcodec.cli._video")
    fake.add_video_options = lambda parser: None
    fake.is_video_path = lambda path: str(path).endswith((".y4m", ".mp4"))
    fake.encode_video = lambda args: calls.append(("encode", args.input, args.output, args.quality)) or 0
    fake.decode_video = lambda args: calls.append(("decode", args.input, args.output)) or 0
    monkeypatch.setitem(sys.modules, "vqcodec.cli._video", fake)
    clip = tmp_path / "clip.y4m"
    clip.write_bytes(b"YUV4MPEG2 W2 H2 F25:1\n")
    assert main(["encode", str(clip), str(tmp_path / "clip.vqc"), "-q", "3", "--quiet"]) == 0
    assert calls == [("encode", str(clip), str(tmp_path / "clip.vqc"), 3)]
    from vqcodec.container import ContainerWriter, Header

    video = tmp_path / "v.vqc"
    with ContainerWriter(str(video), Header(media="video", width=2, height=2, fps_num=25)) as writer:
        writer.write_frame(b"x", key=True)
    assert main(["decode", str(video), str(tmp_path / "v.mp4"), "--quiet"]) == 0
    assert calls[-1] == ("decode", str(video), str(tmp_path / "v.mp4"))


@pytest.mark.slow
def test_end_to_end_on_kodak_with_the_default_model(shared_data, tmp_path, capsys):
    """Real photos, the bundled default model, the CLI both ways."""
    from vqcodec.codec.media import psnr
    from vqcodec.models.zoo import DEFAULT_IMAGE_MODEL

    if not DEFAULT_IMAGE_MODEL:
        pytest.skip("no default image model is bundled yet")
    kodak = sorted((shared_data / "kodak").glob("*.png"))[:2]
    if len(kodak) < 2:
        pytest.skip("Kodak images not found")
    assert main(["encode", *map(str, kodak), "-o", f"{tmp_path}/", "--bpp", "0.5", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert 0 < report["summary"]["mean_bpp"] <= 0.5
    outs = [str(tmp_path / (p.stem + ".vqc")) for p in kodak]
    assert main(["decode", *outs, "-o", f"{tmp_path}/png/", "--quiet"]) == 0
    for p in kodak:
        original = np.asarray(Image.open(p).convert("RGB"))
        decoded = np.asarray(Image.open(tmp_path / "png" / (p.stem + ".png")))
        assert decoded.shape == original.shape
        # real picture content, not a blur of it: clearly better than the flat mean colour
        flat = np.broadcast_to(np.rint(original.mean(axis=(0, 1))).astype(np.uint8), original.shape)
        assert psnr(decoded, original) > psnr(flat, original) + 3.0


def test_encode_effort_one_on_a_scalar_model_and_refused_on_an_rvq_model(tmp_path, capsys):
    scene = REPO / "vqcodec" / "samples" / "scene.png"
    fast, slow, refused = tmp_path / "fast.vqc", tmp_path / "slow.vqc", tmp_path / "refused.vqc"
    assert main(["encode", str(scene), str(fast), "-q", "10", "--model", "image-sq20"]) == 0
    assert main(["encode", str(scene), str(slow), "-q", "10", "--model", "image-sq20", "--effort", "1"]) == 0
    assert slow.stat().st_size < fast.stat().st_size
    capsys.readouterr()
    assert main(["encode", str(scene), str(refused), "--effort", "1", "--model", "image-rvq8"]) != 0
    err = capsys.readouterr().err
    assert "effort 0 only" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not refused.exists()
