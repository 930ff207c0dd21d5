"""Variants of the coefficient context prior: ideal bits of the same codes under each one.

    .venv/bin/python benchmarks/context_layout.py                  # image-sq20b, first 8 Kodak images
    .venv/bin/python benchmarks/context_layout.py --model image-sq20b --limit 24 --fit-crops 400
    .venv/bin/python benchmarks/context_layout.py --model image-sq20c --priors 3,3s,3sa,3sp \
        --out benchmarks/results/context_signs.json   # sign contexts and prediction

A variant is a pass layout (``LAYOUT_PASSES``) with optional letters: ``s`` context-coded sign
bits, ``p`` predicted channels chosen by ``CoefficientContextPrior.fit_with_prediction``, ``a``
the fit's aligned mosaics without prediction (what ``p`` fits on, to tell the two apart).

The codes are fixed (the model's dead-zone codes of each level), so a layout changes only the
rate: the percentage per level is the saving at equal distortion. Each layout's tables are fitted
by ``CoefficientContextPrior.fit`` on the same training crops (the recipe's export: the last
``--fit-crops`` packed crops of ../shared/data/train, never Kodak; 4 table groups over the
levels). Also times the payload encode/decode of one image per layout. Prints a table and writes
benchmarks/results/context_layout.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from image_rd import RESULTS, load_kodak  # noqa: E402

from vqcodec.entropy.coefficients import LAYOUT_PASSES, CoefficientContextPrior  # noqa: E402
from vqcodec.models.image_sq import group_for_quality  # noqa: E402
from vqcodec.models.zoo import load_model  # noqa: E402
from vqcodec.train.data import ensure_packed, resolve_path  # noqa: E402
from vqcodec.train.recipes.image_sq import training_codes  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="image-sq20b")
    parser.add_argument("--limit", type=int, default=8, help="first N Kodak images (default 8)")
    parser.add_argument("--fit-crops", type=int, default=400)
    parser.add_argument("--packed", default=".data/image_crops_144_16k.pt", help="image_sq20c.toml's packing")
    parser.add_argument("--num-crops", type=int, default=16000, help="crops of the packing (if it is made)")
    parser.add_argument("--groups", type=int, default=4)
    parser.add_argument(
        "--priors",
        "--layouts",
        default=",".join(str(k) for k in LAYOUT_PASSES),
        help="comma-separated variants: a layout, then optional letters s, p, a (see above)",
    )
    parser.add_argument(
        "--smoothing", default="4", help="comma-separated fit smoothing values (rows per value)"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "context_layout.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    net = model.network
    levels = net.config.quality_levels
    packed = ensure_packed(resolve_path(args.packed), crop_size=144, num_crops=args.num_crops, seed=0)
    by_level = training_codes(net, packed["train"][-args.fit_crops :])
    by_group: list[list[np.ndarray]] = [[] for _ in range(args.groups)]
    for level, codes in enumerate(by_level, start=1):
        by_group[group_for_quality(level, levels, args.groups)].extend(codes)
    del by_level
    images = [np.array(rgb) for _, rgb in load_kodak(args.limit)]
    kodak = []
    with torch.no_grad():
        for a in images:
            h, w = a.shape[0] // 8 * 8, a.shape[1] // 8 * 8
            p = torch.from_numpy(a[:h, :w]).permute(2, 0, 1)[None].float() / 255
            coefficients = net.analyse(p)
            kodak.append((h * w, [net.quantize(coefficients, s)[0].numpy() for s in net.config.steps]))
    rows = []
    baseline: list[float] | None = None
    variants = [(x.strip(), float(v)) for x in args.priors.split(",") for v in args.smoothing.split(",")]
    for variant, smoothing in variants:
        layout = int(variant.rstrip("spa"))
        options = {"layout": layout, "smoothing": smoothing, "sign_context": "s" in variant}
        start = time.perf_counter()
        if "p" in variant:
            prior = CoefficientContextPrior.fit_with_prediction(by_group, **options)
        elif "a" in variant:
            prior = CoefficientContextPrior.fit(by_group, predicted=[[] for _ in by_group], **options)
        else:
            prior = CoefficientContextPrior.fit(by_group, **options)
        fit_s = time.perf_counter() - start
        bpp = []
        for q in range(1, levels + 1):
            g = group_for_quality(q, levels, args.groups)
            bits = sum(prior.ideal_bits(codes[q - 1], group=g) for _, codes in kodak)
            bpp.append(bits / sum(n for n, _ in kodak))
        codes = kodak[0][1][levels - 1]
        g = group_for_quality(levels, levels, args.groups)
        t0 = time.perf_counter()
        payload = prior.encode(codes, group=g)
        t1 = time.perf_counter()
        decoded = prior.decode(payload, codes.shape, group=g)
        t2 = time.perf_counter()
        assert np.array_equal(decoded, codes)
        if baseline is None:
            baseline = bpp
        saving = [100 * (b / a - 1) for a, b in zip(baseline, bpp)]
        rows.append(
            {
                "variant": variant,
                "layout": layout,
                "sign_context": prior.sign_context,
                "predicted": prior.config().get("predicted"),
                "smoothing": smoothing,
                "passes": len(LAYOUT_PASSES[layout]),
                "bpp": bpp,
                "change_percent": saving,
                "mean_change_percent": float(np.mean(saving)),
                "table_bytes": prior.table_bytes(),
                "fit_s": fit_s,
                "encode_top_s": t1 - t0,
                "decode_top_s": t2 - t1,
            }
        )
    print(f"{args.model}, {args.limit} Kodak images, tables fitted on {args.fit_crops} training crops")
    print(
        "variant (smoothing) | "
        + " | ".join(f"q{q}" for q in range(1, levels + 1, 3))
        + " | mean | tables MB | enc/dec top (s)"
    )
    for r in rows:
        cells = " | ".join(
            f"{r['bpp'][q - 1]:.3f} ({r['change_percent'][q - 1]:+.1f}%)" for q in range(1, levels + 1, 3)
        )
        print(
            f"{r['variant']} ({r['smoothing']:g}) | {cells} | {r['mean_change_percent']:+.2f}% "
            f"| {r['table_bytes'] / 1e6:.2f} "
            f"| {r['encode_top_s']:.2f}/{r['decode_top_s']:.2f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "model": args.model,
                "images": args.limit,
                "packed": args.packed,
                "num_crops": args.num_crops,
                "fit_crops": args.fit_crops,
                "rows": rows,
            },
            indent=1,
        )
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
