"""``vqcodec bench``: JSON rows that agree with the library, a table, and clean errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vqcodec.cli import main as cli_main
from vqcodec.codec.image import decode_image, encode_image
from vqcodec.codec.media import psnr

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = str(REPO / "formats" / "vectors" / "models" / "tiny-image.safetensors")


def test_json_rows_match_the_library(tmp_path, capsys):
    picture = np.random.default_rng(3).integers(0, 256, size=(40, 56, 3), dtype=np.uint8)
    path = tmp_path / "p.png"
    Image.fromarray(picture).save(path)
    assert cli_main(["bench", str(path), "--model", TINY_MODEL, "-q", "1,3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    rows = report["rows"]
    assert [r["quality"] for r in rows] == [1, 3]
    for row in rows:
        data = encode_image(picture, row["quality"], model=TINY_MODEL)
        assert row["bpp"] == pytest.approx(8 * len(data) / (40 * 56))
        decoded = decode_image(data, output="numpy", model=TINY_MODEL)
        assert row["psnr_rgb"] == pytest.approx(psnr(decoded, picture))
        assert row["encode_mpix_s"] > 0 and row["decode_mpix_s"] > 0


def test_table_on_a_video_and_a_picture(capsys):
    clip = REPO / "samples" / "orbit.y4m"
    status = cli_main(
        [
            "bench",
            str(REPO / "samples" / "scene_gray.png"),
            str(clip),
            "--model",
            TINY_MODEL,
            "--frames",
            "3",
            "-q",
            "2",
            "--quiet",
        ]
    )
    assert status == 0
    out = capsys.readouterr().out
    assert "PSNR dB" in out and "kbit/s" in out and "orbit.y4m" in out


def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
    assert cli_main(["bench", str(tmp_path / "missing.png"), "--model", TINY_MODEL]) == 1
    assert "no such file" in capsys.readouterr().err
    assert cli_main(["bench", str(REPO / "samples" / "scene.png"), "--model", TINY_MODEL, "-q", "9"]) == 1
    assert "outside 1..4" in capsys.readouterr().err
