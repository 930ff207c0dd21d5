"""``vqcodec demo``: encode a sample picture with the default model, decode it, print bpp, PSNR, time.

This is the README's first command. By default it codes ``samples/scene.png`` at every
quality level of the default image model and prints one row per level (the default level
is marked); ``-o DIR`` keeps the ``.vqc`` file and the decoded PNG of the default level.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from vqcodec.cli import CommandError

#: the sample inputs ship inside the package (package data), so demo and bench work from a wheel;
#: the repository's top-level ``samples`` is a link to this folder
SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def default_sample() -> Path:
    return SAMPLES / "scene.png"


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "demo",
        help="encode and decode a sample image; print bpp, PSNR and time",
        description="Encode samples/scene.png (or IMAGE) with the default model; print bpp, PSNR, time.",
    )
    p.add_argument("image", nargs="?", help="picture to use instead of samples/scene.png")
    p.add_argument("--model", metavar="NAME", help="model name or bundle path (default: the bundled default)")
    p.add_argument("-q", "--quality", type=int, metavar="N", help="code only this quality level")
    p.add_argument("-o", "--output", metavar="DIR", help="keep the .vqc and decoded .png of the level in DIR")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from vqcodec.codec.image import decode_image, default_quality, encode_image, resolve_model
    from vqcodec.codec.media import load_image, open_image_file, psnr

    path = Path(args.image) if args.image else default_sample()
    if not path.is_file():
        raise CommandError(f"sample image not found: {path} (give an IMAGE argument)")
    start = time.perf_counter()
    model = resolve_model(args.model)
    load_seconds = time.perf_counter() - start
    picture = open_image_file(path)
    source = load_image(picture)
    levels = [args.quality] if args.quality is not None else list(range(1, model.quality_levels + 1))
    chosen = args.quality if args.quality is not None else default_quality(model.quality_levels)
    # one untimed pass so the timings below do not include one-off allocator and kernel set-up
    decode_image(encode_image(picture, levels[0], model=model), model=model)
    rows = []
    kept: dict[str, str] = {}
    for level in levels:
        t0 = time.perf_counter()
        data = encode_image(picture, level, model=model)
        t1 = time.perf_counter()
        decoded = decode_image(data, model=model)
        t2 = time.perf_counter()
        decoded_rgb = load_image(decoded).rgb
        rows.append(
            {
                "quality": level,
                "bytes": len(data),
                "bpp": 8 * len(data) / (source.width * source.height),
                "psnr": psnr(decoded_rgb, source.rgb),
                "encode_s": t1 - t0,
                "decode_s": t2 - t1,
                "default": level == chosen,
            }
        )
        if level == chosen and args.output:
            out = Path(args.output)
            out.mkdir(parents=True, exist_ok=True)
            (out / f"{path.stem}.vqc").write_bytes(data)
            decoded.save(out / f"{path.stem}.decoded.png")
            kept = {"vqc": str(out / f"{path.stem}.vqc"), "png": str(out / f"{path.stem}.decoded.png")}
        elif level == chosen:
            with tempfile.TemporaryDirectory() as tmp:  # prove the file round-trips through disk too
                file = Path(tmp) / "scene.vqc"
                file.write_bytes(data)
                again = np.asarray(decode_image(file, model=model))
                if not np.array_equal(again, np.asarray(decoded)):
                    raise CommandError("decoding the same file twice gave different pixels")
    if args.json:
        print(
            json.dumps(
                {"image": str(path), "model": model.name, "load_s": load_seconds, "rows": rows, "kept": kept},
                indent=2,
            )
        )
        return 0
    print(
        f"{path.name}: {source.width}x{source.height} {source.pixel_format}, model {model.name} "
        f"(loaded in {load_seconds:.2f} s)"
    )
    print(f"{'quality':>7} {'bytes':>7} {'bpp':>7} {'PSNR dB':>8} {'encode s':>9} {'decode s':>9}")
    for r in rows:
        mark = "  <- default" if r["default"] and len(rows) > 1 else ""
        print(
            f"{r['quality']:>7} {r['bytes']:>7} {r['bpp']:>7.3f} {r['psnr']:>8.2f} "
            f"{r['encode_s']:>9.3f} {r['decode_s']:>9.3f}{mark}"
        )
    if kept:
        print(f"wrote {kept['vqc']} and {kept['png']}")
    return 0
