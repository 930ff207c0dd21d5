"""A full disk during encode/decode: no partial output, the input untouched, one error line, exit 1.

Three ways to fill the disk, from the most real to the most portable:
- a 4 KiB tmpfs mounted in a private mount namespace (``unshare -m``; needs root, skipped otherwise);
- ``RLIMIT_FSIZE`` on the CLI subprocess: writes past the limit fail (EFBIG), any user, Linux;
- the atomic writer's file object replaced by one that raises ENOSPC (in-process, everywhere).
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vqcodec.cli import main as cli_main

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = str(REPO / "formats" / "vectors" / "models" / "tiny-image.safetensors")
SCENE = REPO / "samples" / "scene.png"
VQCODEC = [sys.executable, "-m", "vqcodec"]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def inputs(tmp_path):
    """scene.png and its .vqc, in a folder of their own."""
    folder = tmp_path / "in"
    folder.mkdir()
    png = folder / "scene.png"
    shutil.copy(SCENE, png)
    vqc = folder / "scene.vqc"
    assert cli_main(["encode", str(png), str(vqc), "-q", "2", "--model", TINY_MODEL, "--quiet"]) == 0
    return png, vqc


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("vqcodec: error:"), stderr
    assert "Traceback" not in stderr
    return lines[0]


def can_mount_tmpfs() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=4k tmpfs /mnt"], capture_output=True, timeout=30
    )
    return probe.returncode == 0


@pytest.mark.skipif(not can_mount_tmpfs(), reason="needs root and unshare to mount a private tmpfs")
@pytest.mark.parametrize("command", ["encode", "decode"])
def test_full_tmpfs(tmp_path, inputs, command):
    png, vqc = inputs
    source = png if command == "encode" else vqc
    before = digest(source)
    mnt = tmp_path / "full"
    mnt.mkdir()
    name = "out.vqc" if command == "encode" else "out.png"
    # the tmpfs (4 KiB) holds an older output and a filler that uses the rest, so it is full;
    # everything is checked inside the namespace, where the mount exists
    script = f"""
mount -t tmpfs -o size=8k tmpfs {mnt} || exit 99
printf old > {mnt}/{name}
head -c 4096 /dev/zero > {mnt}/filler
{" ".join(VQCODEC)} {command} {source} {mnt}/{name} --model {TINY_MODEL} -f 2> {tmp_path}/stderr
echo "status=$?"
ls -A {mnt}
echo "old=$(cat {mnt}/{name})"
"""
    result = subprocess.run(
        ["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert "status=" in result.stdout, result.stdout + result.stderr
    out = result.stdout.split()
    assert "status=1" in out, result.stdout
    listing = set(out[out.index("status=1") + 1 : -1])
    assert listing == {name, "filler"}, f"partial output left behind: {listing}"
    assert out[-1] == "old=old", "the existing output was damaged"
    line = one_error_line((tmp_path / "stderr").read_text())
    assert "No space left on device" in line
    assert digest(source) == before


def _limit_file_size(limit: int):
    def apply() -> None:
        # SIGXFSZ would kill the process; ignored, the write fails with EFBIG instead
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def write_y4m(path: Path, frames: int = 4) -> None:
    luma = (np.arange(32 * 32) % 200 + 16).astype(np.uint8).tobytes()
    chroma = bytes([128]) * (16 * 16 * 2)
    path.write_bytes(b"YUV4MPEG2 W32 H32 F25:1 C420jpeg\n" + (b"FRAME\n" + luma + chroma) * frames)


@pytest.mark.parametrize("command", ["encode", "decode", "encode-video", "decode-video"])
def test_file_size_limit_in_a_subprocess(tmp_path, inputs, command):
    png, vqc = inputs
    source = png if command == "encode" else vqc
    suffix = ".vqc" if command.startswith("encode") else ".png"
    if command.endswith("video"):
        pytest.importorskip("vqcodec.codec.video")
        source = tmp_path / "in" / "clip.y4m"
        write_y4m(source)
        if command == "decode-video":
            clip = tmp_path / "in" / "clip.vqc"
            assert cli_main(["encode", str(source), str(clip), "--model", TINY_MODEL, "--quiet"]) == 0
            source, suffix = clip, ".y4m"
    command = command.split("-")[0]
    before = digest(source)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    output = out_dir / f"out{suffix}"
    result = subprocess.run(
        [*VQCODEC, command, str(source), str(output), "--model", TINY_MODEL],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_limit_file_size(100),
    )
    assert result.returncode == 1, result.stderr
    line = one_error_line(result.stderr)
    assert "too large" in line.lower(), line
    assert list(out_dir.iterdir()) == [], "partial output left behind"
    assert digest(source) == before


class _FullDisk(io.FileIO):
    """A real temporary file whose writes stop with ENOSPC after ``room`` bytes, like a full disk."""

    room = 64

    def write(self, data):  # type: ignore[override]
        if self.tell() + len(data) > self.room:
            fit = max(0, self.room - self.tell())
            super().write(bytes(data[:fit]))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().write(data)


@pytest.fixture
def full_disk(monkeypatch):
    """Make the atomic writer's temporary files fill up (buffered like the real ones)."""
    import vqcodec._io as vio

    real_fdopen = os.fdopen

    def fdopen(fd, mode="r", *args, **kwargs):
        if mode == "wb":
            return io.BufferedWriter(_FullDisk(fd, "wb", closefd=True), buffer_size=16)
        return real_fdopen(fd, mode, *args, **kwargs)

    monkeypatch.setattr(vio.os, "fdopen", fdopen)


@pytest.mark.parametrize("command", ["encode", "decode"])
def test_enospc_in_process(tmp_path, inputs, full_disk, capsys, command):
    png, vqc = inputs
    source = png if command == "encode" else vqc
    before = digest(source)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    existing = out_dir / ("out.vqc" if command == "encode" else "out.png")
    existing.write_bytes(b"old")
    status = cli_main([command, str(source), str(existing), "--model", TINY_MODEL, "-f"])
    assert status == 1
    line = one_error_line(capsys.readouterr().err)
    assert "No space left on device" in line
    assert [p.name for p in out_dir.iterdir()] == [existing.name], "partial output left behind"
    assert existing.read_bytes() == b"old"
    assert digest(source) == before


def test_enospc_in_a_batch_keeps_going(tmp_path, inputs, full_disk, capsys, monkeypatch):
    png, _ = inputs
    second = tmp_path / "in" / "second.png"
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(second)
    monkeypatch.setattr(_FullDisk, "room", 240)  # second.vqc (232 bytes) fits, scene.vqc does not
    out_dir = tmp_path / "out"
    argv = ["encode", str(png), str(second), "-o", f"{out_dir}/", "-q", "4", "--model", TINY_MODEL]
    status = cli_main(argv)
    assert status == 1
    err = capsys.readouterr().err
    assert err.count("No space left on device") == 1, err
    assert "scene.png" in err
    assert sorted(p.name for p in out_dir.iterdir()) == ["second.vqc"]


def test_outputs_get_ordinary_permissions(tmp_path, inputs):
    """The temporary file behind an atomic output is 0600; the output must not keep that mode."""
    png, _ = inputs
    umask = os.umask(0o022)
    os.umask(umask)
    fresh = tmp_path / "fresh.vqc"
    assert cli_main(["encode", str(png), str(fresh), "--model", TINY_MODEL, "--quiet"]) == 0
    assert fresh.stat().st_mode & 0o777 == 0o666 & ~umask
    kept = tmp_path / "kept.vqc"
    kept.write_bytes(b"old")
    kept.chmod(0o640)
    assert cli_main(["encode", str(png), str(kept), "--model", TINY_MODEL, "--quiet", "-f"]) == 0
    assert kept.stat().st_mode & 0o777 == 0o640
