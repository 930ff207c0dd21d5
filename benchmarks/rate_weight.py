"""Rate-distortion code choice of the image encoder: BD-rate of each rate weight against nearest codes.

The encoder may pick, at each RVQ stage, a code that costs fewer bits under the prior instead of
the nearest one (``CodecModel.rate_weight``, see ``ResidualVQ.encode``). This sweeps the weight on
Kodak (decoding is unchanged: any weight makes files every decoder reads) and prints, per weight,
bpp/PSNR-RGB per quality level and the BD-rate against weight 0.

Usage: python benchmarks/rate_weight.py [--weights 0,0.05,0.15,0.3] [--limit 8] [--model NAME]
Writes benchmarks/results/rate_weight.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import image_rd  # noqa: E402
from image_rd import RESULTS, bd_rate, load_kodak, run_vqcodec  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="0,0.05,0.15,0.3", help="comma-separated rate weights")
    parser.add_argument("--limit", type=int, default=8, help="first N Kodak images (default 8)")
    parser.add_argument("--model", help="model name or bundle path (default: the bundled default)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "rate_weight.json")
    args = parser.parse_args(argv)

    import torch

    from vqcodec.codec.image import resolve_model

    torch.set_num_threads(args.threads)
    image_rd.MS_SSIM = False  # BD-rate is on PSNR; MS-SSIM would cost about a decode per image
    model = resolve_model(args.model)
    weights = [float(w) for w in args.weights.split(",")]
    if weights[0] != 0.0:
        weights.insert(0, 0.0)  # the anchor: nearest codes
    images = load_kodak(args.limit)
    levels = list(range(1, model.quality_levels + 1))
    default = model.rate_weight
    rows: dict[str, list[dict]] = {}
    for weight in weights:
        rows[str(weight)] = [
            {k: r[k] for k in ("setting", "bpp", "psnr", "encode_s")}
            for r in run_vqcodec(model.with_rate_weight(weight), images, levels)
        ]
    anchor = rows[str(0.0)]
    print(f"model {model.name}, {len(images)} Kodak images, default rate weight {default}")
    print(f"{'weight':>7} {'BD-rate':>9}  " + "  ".join(f"q{q}: bpp/dB" for q in levels[:4]) + " ...")
    summary = {}
    for weight, measured in rows.items():
        bd = bd_rate(
            ([r["bpp"] for r in anchor], [r["psnr"] for r in anchor]),
            ([r["bpp"] for r in measured], [r["psnr"] for r in measured]),
        )["bd_rate_percent"]
        summary[weight] = bd
        cells = "  ".join(f"{r['bpp']:.3f}/{r['psnr']:.2f}" for r in measured[:4])
        print(f"{weight:>7} {bd:>+8.2f} %  {cells} ...")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "benchmark": "rate_weight",
                "command": "python benchmarks/rate_weight.py " + " ".join(argv or sys.argv[1:]),
                "model": model.name,
                "images": len(images),
                "default_rate_weight": default,
                "machine": platform.platform(),
                "bd_rate_vs_nearest_percent": summary,
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
