"""The README's Python examples run, so the README cannot drift from the code.

Convention (stated in the README too): every fenced block opened with exactly ```` ```python ````
is run, in order, in one namespace, in a fresh working directory that has ``samples/``; a block
that is only an illustration is preceded by the line ``<!-- readme-test: skip (reason) -->``
and is then only compiled. Other fences (bash, text...) are not run here.

Before the bundled models exist in a tree, the tiny fixed test model stands in as the default
image model, so the examples still run end to end.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
TINY_MODEL = REPO / "formats" / "vectors" / "models" / "tiny-image.safetensors"
SKIP = re.compile(r"^<!--\s*readme-test:\s*skip\s*\((?P<reason>[^)]+)\)\s*-->$")
PYTHON_INFO = re.compile(r"^```\s*(py|python|python3|pycon)\b(.*)$", re.I)

RUNNER = r"""
import json, sys, time, traceback
blocks, tiny = json.load(sys.stdin), sys.argv[1]
import vqcodec.models.catalog as catalog
if not any(m.media == "image" for m in catalog.list_models()):
    from vqcodec.models.bundle import file_sha256
    info = catalog.ModelInfo("tiny-image", tiny, file_sha256(tiny).hex(), "tiny test model", "image", True)
    catalog.REGISTRY = (info,)
    catalog.DEFAULT_IMAGE_MODEL = "tiny-image"
namespace = {"__name__": "__main__"}
for block in blocks:
    code = compile("\n" * (block["line"] - 1) + block["code"], "README.md", "exec")
    if block["skip"]:
        continue
    start = time.perf_counter()
    try:
        exec(code, namespace)
        seconds = time.perf_counter() - start
        print(f"README.md example at line {block['line']}: {seconds:.1f} s", file=sys.stderr)
    except BaseException:
        traceback.print_exc()
        print(f"README.md example at line {block['line']} failed", file=sys.stderr)
        sys.exit(1)
print(f"ran {sum(not b['skip'] for b in blocks)} examples")
"""


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


def test_readme_examples_run(tmp_path):
    blocks = python_blocks(README.read_text())
    (tmp_path / "samples").symlink_to(REPO / "samples", target_is_directory=True)
    payload = json.dumps([{"line": b.line, "code": b.code, "skip": b.skip is not None} for b in blocks])
    result = subprocess.run(
        [sys.executable, "-c", RUNNER, str(TINY_MODEL)],
        input=payload,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=480,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"ran {sum(b.skip is None for b in blocks)} examples" in result.stdout
    print(result.stderr)  # seconds per example, shown by pytest -s or on failure


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
