"""The README's Python examples run, so the README cannot drift from the code.

Convention (stated in the README too): every fenced block opened with exactly ```` ```python ````
is run, in order, in one namespace, in a fresh working directory that has ``samples/``; a block
that is only an illustration is preceded by the line ``<!-- readme-test: skip (reason) -->``
and is then only compiled. Other fences (bash, text...) are not run here.

The examples run in this process (a child interpreter would only add its torch import) on the
bundled default models; the global state they may change (random generators, torch threads and
flags, ``$VQCODEC_SEED``) is put back afterwards.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
SKIP = re.compile(r"^<!--\s*readme-test:\s*skip\s*\((?P<reason>[^)]+)\)\s*-->$")
PYTHON_INFO = re.compile(r"^```\s*(py|python|python3|pycon)\b(.*)$", re.I)


@dataclass
class Block:
    line: int  # README line of the first code line
    code: str
    skip: str | None  # the reason, for an illustrative block


def python_blocks(text: str) -> list[Block]:
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = PYTHON_INFO.match(lines[i].strip())
        if match:
            if match.group(1) != "python" or match.group(2).strip():
                raise AssertionError(f"README line {i + 1}: Python examples open with exactly ```python")
            end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
            assert end is not None, f"README line {i + 1}: unclosed code block"
            previous = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            marker = SKIP.match(previous)
            blocks.append(
                Block(i + 2, "\n".join(lines[i + 1 : end]) + "\n", marker["reason"] if marker else None)
            )
            i = end
        i += 1
    return blocks


def test_readme_has_the_documented_examples():
    text = README.read_text()
    blocks = python_blocks(text)
    run = [b for b in blocks if b.skip is None]
    assert len(run) >= 5, "the README's Python API, Pillow and thread-safety sections have runnable examples"
    for needle in (
        "encode_image",
        "VideoEncoder",
        "VideoDecoder",
        "Image.open",
        "Trainer",
        "ThreadPoolExecutor",
    ):
        assert any(needle in b.code for b in run), f"no runnable README example uses {needle}"
    for block in blocks:
        compile(block.code, f"README.md:{block.line}", "exec")  # skipped ones must still be valid Python


@contextlib.contextmanager
def global_state_kept():
    """Random generators, torch's thread count and determinism flags and ``$VQCODEC_SEED`` (what
    ``seed_everything`` and ``Trainer`` set) as they were before the block."""
    import numpy as np
    import torch

    python_rng, numpy_rng, torch_rng = random.getstate(), np.random.get_state(), torch.get_rng_state()
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    seed_env = os.environ.get("VQCODEC_SEED")
    try:
        yield
    finally:
        random.setstate(python_rng)
        np.random.set_state(numpy_rng)
        torch.set_rng_state(torch_rng)
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        if seed_env is None:
            os.environ.pop("VQCODEC_SEED", None)
        else:
            os.environ["VQCODEC_SEED"] = seed_env


@pytest.mark.slow
def test_readme_examples_run(tmp_path, monkeypatch):
    blocks = python_blocks(README.read_text())
    (tmp_path / "samples").symlink_to(REPO / "samples", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__main__"}
    ran = 0
    with global_state_kept():
        for block in blocks:
            code = compile("\n" * (block.line - 1) + block.code, "README.md", "exec")
            if block.skip:
                continue
            start = time.perf_counter()
            try:
                exec(code, namespace)
            except (Exception, SystemExit) as exc:
                raise AssertionError(f"README.md example at line {block.line} failed: {exc!r}") from exc
            ran += 1
            # seconds per example, shown by pytest -s or on failure
            print(f"README.md example at line {block.line}: {time.perf_counter() - start:.1f} s")
    assert ran == sum(b.skip is None for b in blocks) >= 5


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("```python\nx = 1\n```\n", [(2, None)]),
        ("<!-- readme-test: skip (needs a camera) -->\n```python\nx = 1\n```\n", [(3, "needs a camera")]),
        ("```bash\nls\n```\n```python\ny = 2\n```\n", [(5, None)]),
    ],
)
def test_block_parser(text, expected):
    assert [(b.line, b.skip) for b in python_blocks(text)] == expected


def test_python_fences_must_be_plain():
    with pytest.raises(AssertionError, match="exactly"):
        python_blocks("```py\nx = 1\n```\n")
