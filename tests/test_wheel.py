"""The installed wheel works outside the checkout (README "How it is built": package data).

Runs ``.ci/wheel_check``: build the wheel, install it into a fresh venv in a temporary folder, and
run ``demo``, ``encode``/``decode`` of a packaged sample, ``info`` on a golden vector and ``models``
from there; the script fails if ``vqcodec`` is imported from the checkout. It is a test (rather than
a separate CI step) so that it runs beside the rest of the suite on the other pytest-xdist worker;
``tests/conftest.py`` schedules it first, because it is the longest single test.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_wheel_installs_and_runs_outside_the_checkout():
    if shutil.which("python3") is None:
        pytest.skip("no python3 on PATH to make the fresh venv with")
    done = subprocess.run(
        [str(REPO / ".ci" / "wheel_check")], capture_output=True, text=True, timeout=900, cwd=REPO
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "wheel check: ok" in done.stdout
