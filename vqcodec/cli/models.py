"""``vqcodec models``: the bundled models, from the registry (no weights are loaded)."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "models",
        help="list the bundled models",
        description="List the models bundled with vqcodec: name, media, quality levels, size, sha256.",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def describe() -> list[dict[str, Any]]:
    """One dict per registered model (JSON-able)."""
    from vqcodec.models.zoo import list_models

    rows = []
    for info in list_models():
        config = dict(info.config or {})
        config = dict(config.get("image", config))  # a video model's levels are its image network's
        # RVQ stages, scalar steps or (weightless video-mc1, video-mc2) qps per level
        stages = config.get("quality_stages", config.get("steps", config.get("quality_qp")))
        path = info.path
        rows.append(
            {
                "name": info.name,
                "media": info.media,
                "default": bool(info.default),
                "quality_levels": len(stages) if isinstance(stages, (list, tuple)) else None,
                "stride": 2 ** len(config["encoder_channels"])
                if "encoder_channels" in config
                else 8
                if config.get("kind") == "image-sq"
                else None,
                "file": info.file,
                "size_bytes": path.stat().st_size if path.is_file() else None,
                "weightless": info.weightless,
                "sha256": info.sha256,
                "description": info.description,
            }
        )
    return rows


def run(args: argparse.Namespace) -> int:
    rows = describe()
    if args.json:
        print(json.dumps({"models": rows}, indent=2))
        return 0
    if not rows:
        print("no models are bundled in this build")
        return 0
    header = ("name", "media", "levels", "size", "sha256", "description")
    table = [
        (
            row["name"] + (" *" if row["default"] else ""),
            row["media"],
            f"1..{row['quality_levels']}" if row["quality_levels"] else "-",
            "no weights"
            if row["weightless"]
            else f"{row['size_bytes'] / 1e6:.1f} MB"
            if row["size_bytes"] is not None
            else "missing",
            row["sha256"][:12],
            row["description"],
        )
        for row in rows
    ]
    widths = [max(len(str(r[i])) for r in [header, *table]) for i in range(len(header) - 1)]
    for r in [header, *table]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r[:-1], widths)) + "  " + str(r[-1]))
    print("* default model for its media")
    return 0
