"""Runs every python block of docs/migrating-from-vector-quantize-pytorch.md, in order, in one namespace."""

from __future__ import annotations

import re
from pathlib import Path

import torch

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "migrating-from-vector-quantize-pytorch.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.S)


def test_guide_examples_run():
    blocks = _blocks()
    assert len(blocks) >= 6, "the guide lost its examples"
    torch.manual_seed(0)
    namespace: dict = {}
    for index, block in enumerate(blocks):
        exec(compile(block, f"{GUIDE.name} block {index}", "exec"), namespace)


def test_guide_names_every_exported_quantizer():
    import vqcodec.quantize as quantize

    text = GUIDE.read_text()
    # every exported quantizer class (configs, the base class and registries aside)
    exported = [
        n for n in quantize.__all__ if isinstance(getattr(quantize, n), type) and not n.endswith("Config")
    ]
    missing = [n for n in exported if n not in ("Quantizer", "QuantizerOutput") and f"`{n}" not in text]
    assert not missing, missing
