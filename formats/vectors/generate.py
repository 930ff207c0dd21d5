"""Generate the golden vectors in formats/vectors/ and their manifest.json.

    python formats/vectors/generate.py                 # write every vector and the manifest
    python formats/vectors/generate.py --valid-only    # rewrite valid vectors only (VQCODEC_REGEN=1)
    python formats/vectors/generate.py --kind container --check   # compare, write nothing

Vectors come from the modules ``<kind>_vectors.py`` in this folder (``container_vectors.py``; the
codecs add ``image_vectors.py`` / ``video_vectors.py``). Each defines ``VECTORS``, a list of dicts:

    {"name": "video_gop", "kind": "container", "description": "...", "build": callable}

``build()`` returns ``(data: bytes, expect: dict)``. ``expect`` states what reading the file must give
and is written by hand in the builder, never computed by reading the file back: ``{"error": None}``
plus kind-specific keys for a valid file, ``{"error": "ChecksumError", ...}`` for an invalid one.
See formats/vectors/README.md for the manifest schema.

Valid vectors are golden: the tests check that the files still read as the manifest says and that
the builders still produce them byte for byte. Invalid vectors are fixed hostile inputs: once
written, only an explicit full run rewrites them (``--valid-only`` leaves existing ones alone).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "manifest.json"


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"vqc_vectors_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def all_vectors(kinds: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Every vector definition of every ``*_vectors.py`` module, optionally of some kinds only."""
    vectors: list[dict[str, Any]] = []
    paths = sorted(HERE.glob("*_vectors.py"))
    if kinds is not None:  # <kind>_vectors.py holds the vectors of that kind: skip heavy imports of others
        paths = [p for p in paths if p.stem.removesuffix("_vectors") in kinds]
    for path in paths:
        for vector in _load(path).VECTORS:
            if kinds is None or vector["kind"] in kinds:
                vectors.append({**vector, "module": path.name})
    names = [v["name"] for v in vectors]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SystemExit(f"duplicate vector names: {duplicates}")
    return vectors


def entry(vector: dict[str, Any], data: bytes, expect: dict[str, Any]) -> dict[str, Any]:
    return {
        "file": f"{vector['name']}.vqc",
        "kind": vector["kind"],
        "valid": expect.get("error") is None,
        "description": vector["description"],
        "generator": vector["module"],
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "expect": expect,
    }


def load_manifest() -> dict[str, Any]:
    if MANIFEST.exists():
        return json.loads(MANIFEST.read_text())
    return {"vectors": []}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", action="append", help="only vectors of this kind (repeatable)")
    parser.add_argument(
        "--valid-only", action="store_true", help="rewrite valid vectors; keep existing invalid ones"
    )
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if anything would change")
    args = parser.parse_args(argv)

    manifest = load_manifest()
    entries = {e["file"]: e for e in manifest.get("vectors", [])}
    changed: list[str] = []
    for vector in all_vectors(args.kind):
        data, expect = vector["build"]()
        new = entry(vector, data, expect)
        path = HERE / new["file"]
        if args.valid_only and not new["valid"] and path.exists() and new["file"] in entries:
            continue
        if entries.get(new["file"]) != new or not path.exists() or path.read_bytes() != data:
            changed.append(new["file"])
            if not args.check:
                path.write_bytes(data)
        entries[new["file"]] = new
    if args.check:
        for name in changed:
            print(f"would change: {name}")
        return 1 if changed else 0
    manifest = {
        "format": "vqc",
        "spec": "formats/vqc-v1.md",
        "generator": "formats/vectors/generate.py",
        "vectors": [entries[name] for name in sorted(entries)],
    }
    MANIFEST.write_text(json.dumps(manifest, indent=1, sort_keys=False) + "\n")
    for name in changed:
        print(f"wrote {name}")
    print(f"{len(changed)} vector(s) written, manifest has {len(entries)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
