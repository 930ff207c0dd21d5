"""``vqcodec encode`` / ``decode`` keep a picture's ICC profile and Exif (``--no-metadata`` strips
them), restore them in every output format that holds them and say which format cannot.
In-process: ``vqcodec.cli.main([...])`` with pytest's captured streams."""

from __future__ import annotations

import json

import pytest
from PIL import Image, ImageCms
from test_codec.image_helpers import TINY_MODEL, picture

from vqcodec.cli import main

M = str(TINY_MODEL)
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.fixture
def tagged(tmp_path):
    """A JPEG with an sRGB profile and Exif (Software, Artist)."""
    exif = Image.Exif()
    exif[0x0131] = "vqcodec test"
    exif[0x013B] = "someone"
    path = tmp_path / "tagged.jpg"
    Image.fromarray(picture(32, 48, seed=7)).save(path, quality=95, icc_profile=SRGB, exif=exif.tobytes())
    return path


def _encode(source, out, *extra):
    return main(["encode", str(source), str(out), "-q", "2", "--model", M, *extra])


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".tif"])
def test_decode_restores_icc_and_exif(tagged, tmp_path, capsys, suffix):
    vqc = tmp_path / "tagged.vqc"
    assert _encode(tagged, vqc, "--quiet") == 0
    out = tmp_path / f"back{suffix}"
    assert main(["decode", str(vqc), str(out), "--model", M]) == 0
    assert "warning" not in capsys.readouterr().err
    with Image.open(out) as image:
        assert image.info.get("icc_profile") == SRGB
        exif = image.getexif()
        assert exif.get(0x0131) == "vqcodec test" and exif.get(0x013B) == "someone"


def test_no_metadata_strips_and_json_reports(tagged, tmp_path, capsys):
    vqc = tmp_path / "tagged.vqc"
    assert _encode(tagged, vqc, "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["files"][0]["metadata"] == ["icc_profile", "exif"]
    bare = tmp_path / "bare.vqc"
    assert _encode(tagged, bare, "--no-metadata", "--json") == 0
    assert json.loads(capsys.readouterr().out)["files"][0]["metadata"] == []
    assert bare.stat().st_size < vqc.stat().st_size - len(SRGB)
    out = tmp_path / "bare.png"
    assert main(["decode", str(bare), str(out), "--model", M, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["files"][0]["metadata"] == []
    with Image.open(out) as image:
        assert "icc_profile" not in image.info and len(image.getexif()) == 0


def test_format_without_metadata_warns(tagged, tmp_path, capsys):
    vqc = tmp_path / "tagged.vqc"
    assert _encode(tagged, vqc, "--quiet") == 0
    out = tmp_path / "back.bmp"
    assert main(["decode", str(vqc), str(out), "--model", M]) == 0
    err = capsys.readouterr().err
    assert "BMP output cannot hold the ICC profile and Exif" in err and str(out) in err
    assert out.is_file()
    # --quiet: nothing but errors
    assert main(["decode", str(vqc), str(tmp_path / "q.bmp"), "--model", M, "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_cmyk_profile_is_dropped_with_a_notice(tmp_path, capsys):
    cmyk = tmp_path / "cmyk.jpg"
    profile = SRGB[:16] + b"CMYK" + SRGB[20:]
    Image.fromarray(picture(32, 32, 4, seed=8), mode="CMYK").save(cmyk, icc_profile=profile)
    vqc = tmp_path / "cmyk.vqc"
    assert _encode(cmyk, vqc, "--json") == 0
    captured = capsys.readouterr()
    assert "CMYK picture converted to RGB" in captured.err
    assert f"{cmyk}: ICC profile dropped: it describes CMYK data" in captured.err
    assert json.loads(captured.out)["files"][0]["metadata"] == []


def test_animated_webp_is_refused(tmp_path, capsys):
    frames = [Image.fromarray(picture(16, 16, seed=20 + i)) for i in range(4)]
    path = tmp_path / "anim.webp"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=40)
    assert main(["encode", str(path), "--model", M]) == 1
    err = capsys.readouterr().err
    assert "animated WEBP with 4 frames" in err and err.count("\n") == 1
    assert not path.with_suffix(".vqc").exists()


def test_salvage_keeps_the_metadata(tagged, tmp_path, capsys):
    vqc = tmp_path / "tagged.vqc"
    assert _encode(tagged, vqc, "--quiet") == 0
    cut = tmp_path / "cut.vqc"
    cut.write_bytes(vqc.read_bytes()[:-30])  # the end chunk and part of the index are gone
    out = tmp_path / "cut.png"
    assert main(["decode", str(cut), str(out), "--model", M]) == 1
    assert main(["decode", str(cut), str(out), "--model", M, "--salvage"]) == 0
    assert "salvaged" in capsys.readouterr().err
    with Image.open(out) as image:
        assert image.info.get("icc_profile") == SRGB and image.getexif().get(0x0131) == "vqcodec test"
