"""BD-rates between the vqcodec curves of several ``image_rd.py`` runs (same Kodak images).

    .venv/bin/python benchmarks/compare_rd.py benchmarks/results/image_rd.json \\
        benchmarks/results/image_rd_sq20.json benchmarks/results/image_rd_rvq8.json

The first file is the candidate; each row gives its BD-rate (PCHIP, PSNR-RGB, over the pair's
common PSNR range, also restricted to 24-34 dB) against the vqcodec curve of every other file,
and against the JPEG/WebP/AVIF rows of the first file. Prints a table, writes
benchmarks/results/compare_rd.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from image_rd import RESULTS, bd_rate  # noqa: E402

BAND = (24.0, 34.0)


def curve(rows: list[dict[str, Any]]) -> tuple[list[float], list[float]]:
    return [r["bpp"] for r in rows], [r["psnr"] for r in rows]


def in_band(c: tuple[list[float], list[float]]) -> tuple[list[float], list[float]]:
    """The curve's points inside BAND plus one neighbour either side (so the band is covered)."""
    rates, psnrs = c
    keep = [i for i, p in enumerate(psnrs) if BAND[0] <= p <= BAND[1]]
    if not keep:
        return [], []
    lo, hi = max(0, keep[0] - 1), min(len(psnrs), keep[-1] + 2)
    return rates[lo:hi], psnrs[lo:hi]


def bd(anchor: tuple[list[float], list[float]], test: tuple[list[float], list[float]]) -> float | None:
    try:
        value = bd_rate(anchor, test)["bd_rate_percent"]
    except (ValueError, ZeroDivisionError):
        return None
    return None if value is None else float(value)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("candidate", type=Path)
    parser.add_argument("others", type=Path, nargs="*")
    parser.add_argument("--out", type=Path, default=RESULTS / "compare_rd.json")
    args = parser.parse_args()
    first = json.loads(args.candidate.read_text())
    name = first["model"]["name"]
    ours = curve(first["results"]["vqcodec"])
    anchors: dict[str, tuple[list[float], list[float]]] = {}
    for path in args.others:
        other = json.loads(path.read_text())
        if other.get("images") != first.get("images"):
            print(f"{path}: other images than {args.candidate}, skipped")
            continue
        anchors[other["model"]["name"]] = curve(other["results"]["vqcodec"])
    for fmt in ("JPEG", "WebP", "AVIF"):
        if fmt in first["results"]:
            anchors[fmt] = curve(first["results"][fmt])
    rows = []
    print(f"{name} against:\n{'anchor':14s} {'BD-rate (common range)':>24s} {'BD-rate 24-34 dB':>18s}")
    for anchor_name, anchor in anchors.items():
        full, band = bd(anchor, ours), bd(in_band(anchor), in_band(ours))
        rows.append({"anchor": anchor_name, "bd_rate_percent": full, "bd_rate_24_34_db_percent": band})
        shown = [f"{v:+.1f} %" if v is not None else "no overlap" for v in (full, band)]
        print(f"{anchor_name:14s} {shown[0]:>24s} {shown[1]:>18s}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "benchmark": "compare_rd",
                "candidate": name,
                "files": [str(p) for p in [args.candidate, *args.others]],
                "band_db": list(BAND),
                "images": first.get("images"),
                "rows": rows,
            },
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
