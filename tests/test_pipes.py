"""The CLI in shell pipelines: stdin/stdout for images and Y4M video give the bytes files give.

Each pipeline runs the real ``vqcodec`` processes; the file-based reference runs in-process
(``vqcodec.cli.main``) to keep the test fast.
"""

from __future__ import annotations

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


def one_error_line(result: subprocess.CompletedProcess[bytes]) -> str:
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vqcodec: error:"), lines
    return lines[0]


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
    expected = decode_image(tmp_path / "piped.vqc", output="numpy", model=TINY_MODEL)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out.png")), expected)


def test_decode_to_stdout(tmp_path):
    assert cli_main(["encode", str(SCENE), str(tmp_path / "a.vqc"), "-q", "2", "--model", TINY_MODEL]) == 0
    result = sh(f"{VQCODEC} decode - - --format png {MODEL} < a.vqc | cat > out.png", tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    with Image.open(tmp_path / "out.png") as im:
        assert im.format == "PNG"
        expected = decode_image(tmp_path / "a.vqc", output="numpy", model=TINY_MODEL)
        assert np.array_equal(np.asarray(im), expected)


def test_garbage_and_cut_streams_on_stdin(tmp_path):
    """Random bytes, and a stream cut 30 bytes early (a dropped connection): one error line each."""
    assert cli_main(["encode", str(SCENE), str(tmp_path / "a.vqc"), "--model", TINY_MODEL, "--quiet"]) == 0
    size = (tmp_path / "a.vqc").stat().st_size
    garbage = sh(f"head -c 3000 /dev/urandom | {VQCODEC} decode - out.png {MODEL}", tmp_path)
    assert garbage.returncode == 1
    one_error_line(garbage)
    cut = sh(f"head -c {size - 30} a.vqc | {VQCODEC} decode - out.png {MODEL}", tmp_path)
    assert cut.returncode == 1
    one_error_line(cut)
    assert not (tmp_path / "out.png").exists()


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


def test_y4m_video_through_stdin_and_stdout(tmp_path):
    pytest.importorskip("vqcodec.codec.video")
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
