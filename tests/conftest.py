"""Shared fixtures: repo paths, the shared data folder, small synthetic inputs."""

from __future__ import annotations

import io
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("VQCODEC_DATA", REPO.parent / "shared" / "data"))
SAMPLES = REPO / "samples"
VECTORS = REPO / "formats" / "vectors"

# Keep torch from oversubscribing the cores: CI has two. Under pytest-xdist (the README's test
# command runs one worker per core) each worker and the processes it starts get one thread, so two
# workers never run four threads on two cores; a plain run keeps two. Tests that are about thread
# counts set them explicitly.
os.environ.setdefault("OMP_NUM_THREADS", "1" if os.environ.get("PYTEST_XDIST_WORKER") else "2")


# the longest single tests, started first: on pytest-xdist workers a long test collected last would
# run alone at the end while the other worker idles
FIRST = ("tests/test_wheel.py::",)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: not item.nodeid.startswith(FIRST))  # stable: the rest keep their order


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real-media folder beside the repo; tests that need it skip cleanly without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder not found: {SHARED_DATA}")
    return SHARED_DATA


# ---------------------------------------------------------------------------------------------
# the CLI in this process, with its standard streams replaced (no `python -m vqcodec` startup)


class _PipeReader(io.RawIOBase):
    """A non-seekable byte source, like a pipe on stdin: ``sys.stdin.buffer`` over it can ``peek``."""

    def __init__(self, data: bytes):
        self._data = memoryview(bytes(data))
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        n = min(len(buffer), len(self._data) - self._pos)
        buffer[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n

    @property
    def consumed(self) -> int:
        return self._pos


class _PipeWriter(io.RawIOBase):
    """A non-seekable byte sink, like a pipe on stdout; keeps what was written."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
        self.data += data
        return len(data)


@dataclass
class CLIResult:
    """What a ``vqcodec`` run left: exit status, stdout bytes, stderr text (like CompletedProcess)."""

    returncode: int
    stdout: bytes
    stderr: str

    def error_line(self) -> str:
        """The one ``vqcodec: error:`` line a failed command prints (and nothing else, no traceback)."""
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("vqcodec: error:"), self.stderr
        return lines[0]


def run_vqcodec(*argv: str | os.PathLike[str], stdin: bytes = b"") -> CLIResult:
    """``vqcodec ARGV`` through ``vqcodec.cli.main`` here, with stdin, stdout and stderr replaced
    by pipe-like, non-terminal streams (binary underneath, as ``sys.stdin.buffer`` /
    ``sys.stdout.buffer`` are). Usage errors (argparse's SystemExit) give their exit status."""
    from vqcodec.cli import main

    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch is not None else None
    sink = _PipeWriter()
    fake_in = io.TextIOWrapper(io.BufferedReader(_PipeReader(stdin)), encoding="utf-8")
    fake_out = io.TextIOWrapper(io.BufferedWriter(sink), encoding="utf-8", write_through=True)
    fake_err = io.StringIO()
    saved = sys.stdin, sys.stdout, sys.stderr
    sys.stdin, sys.stdout, sys.stderr = fake_in, fake_out, fake_err
    try:
        try:
            status = main([os.fspath(a) for a in argv])
        except SystemExit as exc:  # argparse: usage errors (2), --help / --version (0)
            status = 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1
        fake_out.flush()
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved
        if threads is not None:
            torch.set_num_threads(threads)  # --threads / the CLI default must not leak into other tests
    return CLIResult(int(status), bytes(sink.data), fake_err.getvalue())


@pytest.fixture
def vqcodec_cli():
    """Run the CLI in-process: ``vqcodec_cli("decode", "-", "-", stdin=data)`` -> CLIResult."""
    return run_vqcodec
