"""The CLI in shell pipelines: stdin/stdout for images and Y4M video give the bytes files give.

The two pipelines (an image, a Y4M clip) run the real ``vqcodec`` processes and are marked
``slow``; the rest runs the CLI in-process with pipe-like standard streams (the ``vqcodec_cli``
fixture of tests/conftest.py), and the file-based references run in-process too.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vqcodec.cli import main as cli_main
from vqcodec.codec.image import decode_image, encode_image

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = str(REPO / "formats" / "vectors" / "models" / "tiny-image.safetensors")
SCENE = REPO / "samples" / "scene.png"
VQCODEC = f"{shlex.quote(sys.executable)} -m vqcodec"
MODEL = f"--model {shlex.quote(TINY_MODEL)}"


def sh(script: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    """Run a bash pipeline; any failing stage fails it (pipefail)."""
    return subprocess.run(
        ["bash", "-c", "set -o pipefail\n" + script], cwd=cwd, capture_output=True, timeout=300
    )


@pytest.mark.slow
def test_image_through_a_pipeline(tmp_path):
    """cat a.png | vqcodec encode - - | vqcodec decode - out.png (the .vqc kept with tee)."""
    result = sh(
        f"cat {SCENE} | {VQCODEC} encode - - -q 3 {MODEL} | tee piped.vqc"
        f" | {VQCODEC} decode - out.png {MODEL}",
        tmp_path,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert b"Traceback" not in result.stderr
    with Image.open(SCENE) as scene:
        assert (tmp_path / "piped.vqc").read_bytes() == encode_image(scene, 3, model=TINY_MODEL)
    # the decoding process and this one give the same pixels (decoding is deterministic across processes)
    expected = decode_image(tmp_path / "piped.vqc", output="numpy", model=TINY_MODEL)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out.png")), expected)


def test_decode_to_stdout(tmp_path, vqcodec_cli):
    assert cli_main(["encode", str(SCENE), str(tmp_path / "a.vqc"), "-q", "2", "--model", TINY_MODEL]) == 0
    result = vqcodec_cli(
        "decode", "-", "-", "--format", "png", "--model", TINY_MODEL, stdin=(tmp_path / "a.vqc").read_bytes()
    )
    assert result.returncode == 0, result.stderr
    (tmp_path / "out.png").write_bytes(result.stdout)
    with Image.open(tmp_path / "out.png") as im:
        assert im.format == "PNG"
        expected = decode_image(tmp_path / "a.vqc", output="numpy", model=TINY_MODEL)
        assert np.array_equal(np.asarray(im), expected)


def test_garbage_and_cut_streams_on_stdin(tmp_path, vqcodec_cli, monkeypatch):
    """Random bytes, and a stream cut 30 bytes early (a dropped connection): one error line each."""
    assert cli_main(["encode", str(SCENE), str(tmp_path / "a.vqc"), "--model", TINY_MODEL, "--quiet"]) == 0
    data = (tmp_path / "a.vqc").read_bytes()
    monkeypatch.chdir(tmp_path)
    garbage = vqcodec_cli("decode", "-", "out.png", "--model", TINY_MODEL, stdin=os.urandom(3000))
    assert garbage.returncode == 1
    garbage.error_line()
    cut = vqcodec_cli("decode", "-", "out.png", "--model", TINY_MODEL, stdin=data[:-30])
    assert cut.returncode == 1
    cut.error_line()
    assert not (tmp_path / "out.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.vqc"]  # no partial file either


def write_y4m(path: Path, frames: int = 4, width: int = 32, height: int = 32) -> None:
    """A small 4:2:0 Y4M clip with a moving gradient."""
    y, x = np.mgrid[0:height, 0:width]
    out = [f"YUV4MPEG2 W{width} H{height} F25:1 Ip A1:1 C420jpeg\n".encode()]
    for t in range(frames):
        luma = ((x * 6 + y * 2 + t * 9) % 220 + 16).astype(np.uint8)
        u = np.full((height // 2, width // 2), 128 + 8 * t, np.uint8)
        v = np.full((height // 2, width // 2), 128 - 6 * t, np.uint8)
        out += [b"FRAME\n", luma.tobytes(), u.tobytes(), v.tobytes()]
    path.write_bytes(b"".join(out))


@pytest.mark.slow
def test_y4m_video_through_stdin_and_stdout(tmp_path):
    write_y4m(tmp_path / "clip.y4m")
    piped = sh(
        f"cat clip.y4m | {VQCODEC} encode - - -q 2 --gop 2 {MODEL} | tee piped.vqc"
        f" | {VQCODEC} decode - - {MODEL} > piped.y4m",
        tmp_path,
    )
    assert piped.returncode == 0, piped.stderr.decode()
    assert b"Traceback" not in piped.stderr
    common = ["-q", "2", "--gop", "2", "--model", TINY_MODEL, "--quiet"]
    assert cli_main(["encode", str(tmp_path / "clip.y4m"), str(tmp_path / "files.vqc"), *common]) == 0
    # (the .vqc bytes differ in one field: a stream from stdin has no frame count in its header)
    assert cli_main(["decode", str(tmp_path / "files.vqc"), str(tmp_path / "files.y4m"), *common[4:]]) == 0
    out = (tmp_path / "piped.y4m").read_bytes()
    assert out.startswith(b"YUV4MPEG2 W32 H32 ")
    assert out.count(b"FRAME") == 4
    assert out == (tmp_path / "files.y4m").read_bytes()
