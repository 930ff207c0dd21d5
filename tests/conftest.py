"""Shared fixtures: repo paths, the shared data folder, small synthetic inputs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("VQCODEC_DATA", REPO.parent / "shared" / "data"))
SAMPLES = REPO / "samples"
VECTORS = REPO / "formats" / "vectors"

# Keep torch from grabbing both cores in every test worker: CI has two.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real-media folder beside the repo; tests that need it skip cleanly without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder not found: {SHARED_DATA}")
    return SHARED_DATA
