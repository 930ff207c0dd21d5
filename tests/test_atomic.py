"""A full disk during encode/decode: no partial output, the input untouched, one error line, exit 1.

Three ways to fill the disk, from the most real to the most portable:
- a 4 KiB tmpfs mounted in a private mount namespace (``unshare -m``; needs root, skipped otherwise);
- ``RLIMIT_FSIZE`` in a CLI subprocess: writes past the limit fail (EFBIG), any user, Linux;
- the atomic writer's file object replaced by one that raises ENOSPC (in-process, everywhere).

The first two run in one child process for the whole module (``child_runs``): it pays the torch
import once.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import shlex
import shutil
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


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_inputs(folder: Path) -> tuple[Path, Path]:
    """scene.png and its .vqc, in ``folder`` (made here)."""
    folder.mkdir()
    png = folder / "scene.png"
    shutil.copy(SCENE, png)
    vqc = folder / "scene.vqc"
    assert cli_main(["encode", str(png), str(vqc), "-q", "2", "--model", TINY_MODEL, "--quiet"]) == 0
    return png, vqc


@pytest.fixture
def inputs(tmp_path):
    """scene.png and its .vqc, in a folder of their own."""
    return make_inputs(tmp_path / "in")


# `python -m vqcodec ARGS` for several commands in one child interpreter (it pays the torch import
# once). Each command is {"name", "argv", "fsize"}: with "fsize", the child's files may not grow past
# that many bytes while the command runs (RLIMIT_FSIZE, soft limit; SIGXFSZ ignored, so a write past it
# fails with EFBIG instead of killing the process). Before each command a line "@@ NAME" goes to the
# child's stderr, so what follows up to the next such line is that command's stderr; its exit status
# is a JSON line on stdout.
DRIVER = r"""
import json, resource, runpy, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
for command in json.loads(sys.argv[1]):
    print("@@ " + command["name"], file=sys.stderr, flush=True)
    sys.argv = ["vqcodec", *command["argv"]]
    if command.get("fsize"):
        resource.setrlimit(resource.RLIMIT_FSIZE, (command["fsize"], hard))
    try:
        runpy.run_module("vqcodec", run_name="__main__", alter_sys=True)
        status = 0
    except SystemExit as exc:
        status = 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
    sys.stderr.flush()
    print(json.dumps({"name": command["name"], "status": status}), flush=True)
"""


def driver_results(stdout: str, stderr: str) -> tuple[dict[str, int], dict[str, str]]:
    """(exit status, stderr) of each command a DRIVER run reported."""
    statuses = {}
    for line in stdout.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            statuses[record["name"]] = record["status"]
    errors: dict[str, list[str]] = {}
    current = None
    for line in stderr.splitlines():
        if line.startswith("@@ "):
            current = line[3:]
            errors[current] = []
        elif current is not None:
            errors[current].append(line)
    return statuses, {name: "\n".join(lines) for name, lines in errors.items()}


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


CAN_MOUNT_TMPFS = can_mount_tmpfs()


def write_y4m(path: Path, frames: int = 4) -> None:
    luma = (np.arange(32 * 32) % 200 + 16).astype(np.uint8).tobytes()
    chroma = bytes([128]) * (16 * 16 * 2)
    path.write_bytes(b"YUV4MPEG2 W32 H32 F25:1 C420jpeg\n" + (b"FRAME\n" + luma + chroma) * frames)


TMPFS_CASES = {"encode": "out.vqc", "decode": "out.png"}
FSIZE_SUFFIXES = {"encode": ".vqc", "decode": ".png", "encode-video": ".vqc", "decode-video": ".y4m"}


@pytest.fixture(scope="module")
def child_runs(tmp_path_factory):
    """Every full-disk command of this module in one child process.

    - ``tmpfs/encode``, ``tmpfs/decode`` (root only): onto their own 8 KiB tmpfs, mounted in a
      private mount namespace (``unshare -m``), that holds an older output and a filler using the
      rest, so it is full; the listing and the old output are read inside the namespace, where
      the mounts exist;
    - ``fsize/encode``, ``fsize/decode``, ``fsize/encode-video``, ``fsize/decode-video``: with
      files limited to 100 bytes.
    """
    root = tmp_path_factory.mktemp("full")
    png, vqc = make_inputs(root / "in")
    clip = root / "in" / "clip.y4m"
    write_y4m(clip)
    clip_vqc = root / "in" / "clip.vqc"
    assert cli_main(["encode", str(clip), str(clip_vqc), "--model", TINY_MODEL, "--quiet"]) == 0
    sources = {"encode": png, "decode": vqc, "encode-video": clip, "decode-video": clip_vqc}
    runs: dict[str, dict] = {}
    commands, setup, listing = [], [], []
    if CAN_MOUNT_TMPFS:
        for command, name in TMPFS_CASES.items():
            mnt = root / f"tmpfs-{command}"
            mnt.mkdir()
            setup += [
                f"mount -t tmpfs -o size=8k tmpfs {mnt} || exit 99",
                f"printf old > {mnt}/{name}",
                f"head -c 4096 /dev/zero > {mnt}/filler",
            ]
            listing += [
                f'echo "listing {command}" $(ls -A {mnt})',
                f'echo "old {command}" $(cat {mnt}/{name})',
            ]
            argv = [command, str(sources[command]), f"{mnt}/{name}", "--model", TINY_MODEL, "-f"]
            commands.append({"name": f"tmpfs/{command}", "argv": argv})
            runs[f"tmpfs/{command}"] = {"source": sources[command], "before": digest(sources[command])}
    for name, source in sources.items():
        out_dir = root / f"fsize-{name}"
        out_dir.mkdir()
        output = out_dir / f"out{FSIZE_SUFFIXES[name]}"
        argv = [name.split("-")[0], str(source), str(output), "--model", TINY_MODEL]
        commands.append({"name": f"fsize/{name}", "argv": argv, "fsize": 100})
        runs[f"fsize/{name}"] = {"source": source, "before": digest(source), "out_dir": out_dir}
    child = f"{shlex.quote(sys.executable)} -c {shlex.quote(DRIVER)} {shlex.quote(json.dumps(commands))}"
    script = "\n".join([*setup, child, *listing])
    shell = ["unshare", "-m", "sh", "-c", script] if CAN_MOUNT_TMPFS else ["sh", "-c", script]
    result = subprocess.run(shell, capture_output=True, text=True, timeout=300, cwd=REPO)
    statuses, errors = driver_results(result.stdout, result.stderr)
    # "listing CMD NAME..." and "old CMD TEXT" lines, keyed by their first two words
    words = {tuple(line.split()[:2]): line.split()[2:] for line in result.stdout.splitlines()}
    for name, run in runs.items():
        run["status"] = statuses.get(name)
        run["stderr"] = errors.get(name, result.stdout + result.stderr)  # all of it when it is missing
        if name.startswith("tmpfs/"):
            command = name.split("/")[1]
            run["listing"] = set(words.get(("listing", command), ["?"]))
            run["old"] = words.get(("old", command))
    return runs


@pytest.mark.slow
@pytest.mark.skipif(not CAN_MOUNT_TMPFS, reason="needs root and unshare to mount a private tmpfs")
@pytest.mark.parametrize("command", list(TMPFS_CASES))
def test_full_tmpfs(child_runs, command):
    run = child_runs[f"tmpfs/{command}"]
    assert run["status"] == 1, run["stderr"]
    assert run["listing"] == {TMPFS_CASES[command], "filler"}, f"partial output left behind: {run['listing']}"
    assert run["old"] == ["old"], "the existing output was damaged"
    line = one_error_line(run["stderr"])
    assert "No space left on device" in line
    assert digest(run["source"]) == run["before"]


@pytest.mark.slow
@pytest.mark.parametrize("command", list(FSIZE_SUFFIXES))
def test_file_size_limit_in_a_subprocess(child_runs, command):
    run = child_runs[f"fsize/{command}"]
    assert run["status"] == 1, run["stderr"]
    line = one_error_line(run["stderr"])
    assert "too large" in line.lower(), line
    assert list(run["out_dir"].iterdir()) == [], "partial output left behind"
    assert digest(run["source"]) == run["before"]


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
