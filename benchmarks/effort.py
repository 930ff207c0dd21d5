"""Encoder effort of the scalar-quantized image models: rate-distortion quantization vs dead zone.

    .venv/bin/python benchmarks/effort.py                          # image-sq20, first 8 Kodak images
    .venv/bin/python benchmarks/effort.py --model image-sq20b --lambdas 0.1,0.15,0.2

Effort 0 rounds with the model's dead zone; effort 1 (``CodecModel.with_effort(1)``) picks every
code by squared error + lambda * bits under the model's own context tables
(``CoefficientContextPrior.rd_quantize``). Rates are real payload sizes, PSNR-RGB is measured on
the decoded pictures; each row's BD-rate (PCHIP) is against effort 0 on the same images. Extra
rows sweep lambda and the number of context passes. Prints a table and writes
benchmarks/results/effort.json.
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

from image_rd import RESULTS, bd_rate, load_kodak, psnr  # noqa: E402

from vqcodec.entropy import coefficients as cc  # noqa: E402
from vqcodec.models.image_sq import group_for_quality  # noqa: E402
from vqcodec.models.zoo import load_model  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="image-sq20")
    parser.add_argument("--limit", type=int, default=8, help="first N Kodak images (default 8)")
    parser.add_argument("--levels", default="2,5,8,11,14,17,20")
    parser.add_argument("--lambdas", default="0.1,0.2", help="extra lambda rows (2 passes each)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "effort.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.time()
    model = load_model(args.model)
    if not model.max_effort:
        print(f"{args.model}: effort 0 only (not a scalar-quantized model)")
        return 1
    net, prior = model.network, model.prior
    levels = [int(x) for x in args.levels.split(",")]
    images = [np.array(rgb) for _, rgb in load_kodak(args.limit)]
    pixels = [torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255 for a in images]
    fast, slow = model.with_effort(0), model.with_effort(1)

    def sweep(lam: float, passes: int):
        def codes_of(p: torch.Tensor, q: int) -> torch.Tensor:
            coefficients = net.analyse(p)[0].double().numpy()
            step, group = (
                model.config.step_for_quality(q),
                group_for_quality(q, model.quality_levels, prior.num_groups),
            )
            return torch.from_numpy(
                prior.rd_quantize(coefficients, step, group=group, lam=lam, passes=passes)
            )[None]

        return codes_of

    variants = {
        "effort 0 (dead zone)": lambda p, q: fast.to_codes(p, q),
        f"effort 1 (lambda {cc.RDO_LAMBDA}, {cc.RDO_PASSES} passes)": lambda p, q: slow.to_codes(p, q),
        f"lambda {cc.RDO_LAMBDA}, 1 pass": sweep(cc.RDO_LAMBDA, 1),
        f"lambda {cc.RDO_LAMBDA}, 3 passes": sweep(cc.RDO_LAMBDA, 3),
    }
    for lam in (float(x) for x in args.lambdas.split(",") if x):
        variants[f"lambda {lam}, {cc.RDO_PASSES} passes"] = sweep(lam, cc.RDO_PASSES)
    rows = []
    for name, codes_of in variants.items():
        bpp, quality, seconds = [], [], []
        for q in levels:
            level_bpp, level_psnr, level_s = [], [], []
            for a, p in zip(images, pixels):
                t = time.perf_counter()
                with torch.inference_mode():
                    codes = codes_of(p, q)
                payload = model.compress(codes[0].numpy(), q)
                level_s.append(time.perf_counter() - t)
                out = model.from_codes(codes, q)
                rgb = torch.round(out[0].permute(1, 2, 0) * 255).numpy()
                level_bpp.append(8 * len(payload) / (a.shape[0] * a.shape[1]))
                level_psnr.append(psnr(rgb, a))
            bpp.append(float(np.mean(level_bpp)))
            quality.append(float(np.mean(level_psnr)))
            seconds.append(float(np.mean(level_s)))
        rows.append({"variant": name, "bpp": bpp, "psnr": quality, "encode_s": seconds})
        print(f"{name}: " + " ".join(f"{r:.3f}/{d:.2f}" for r, d in zip(bpp, quality)), flush=True)
    anchor = (rows[0]["bpp"], rows[0]["psnr"])
    print(f"\n{'variant':36s} {'BD-rate vs effort 0':>20s} {'encode s/image':>15s}")
    for row in rows:
        row["bd_rate_vs_effort0"] = (
            0.0 if row is rows[0] else bd_rate(anchor, (row["bpp"], row["psnr"]))["bd_rate_percent"]
        )
        print(f"{row['variant']:36s} {row['bd_rate_vs_effort0']:+19.2f}% {np.mean(row['encode_s']):15.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "benchmark": "effort",
                "model": args.model,
                "sha256": bytes(model.sha256).hex(),
                "images": args.limit,
                "levels": levels,
                "threads": args.threads,
                "note": "negative BD-rate = fewer bits than effort 0 at the same PSNR-RGB; "
                "encode_s = codes + payload per image",
                "rows": rows,
                "seconds": round(time.time() - start, 1),
            },
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
