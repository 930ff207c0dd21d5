"""Ablation of the scalar-quantized image codec's levers, on a fixed Kodak subset.

    .venv/bin/python benchmarks/image_sq_ablation.py                       # first 8 Kodak images
    .venv/bin/python benchmarks/image_sq_ablation.py --model runs/x.safetensors --limit 4

Starting from the bundled ``image-sq20`` (its block transform, steps and prior), each row switches
one lever and reports the BD-rate (PCHIP, PSNR-RGB) against the full model on the same images:

- ``factorized prior``: one table per coefficient (no context) instead of the context prior;
- ``neighbour context only``: the context prior without the ``recent`` (same-block) term;
- ``plain rounding`` / ``rounding 0.30`` / ``rounding 0.25``: other rounding offsets than the
  model's dead zone (an encoder-only choice; real payloads under the bundled prior);
- ``linear synthesis``: the exact inverse transform without the learned refinement.

Rates are the payloads' ideal bits under tables fitted on training crops (``../shared/data/train``,
never Kodak) for the context variants, which are refitted here the same way as the bundled prior;
the full model's row uses the real payload sizes. Prints a table, writes
benchmarks/results/image_sq_ablation.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from image_rd import DATA, RESULTS, bd_rate, psnr  # noqa: E402

from vqcodec.entropy import coefficients as cc  # noqa: E402
from vqcodec.models.image_sq import group_for_quality  # noqa: E402
from vqcodec.models.zoo import load_model  # noqa: E402
from vqcodec.train.data import list_training_images, load_training_image  # noqa: E402


def training_crops(count: int, size: int = 128, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    images = list_training_images()
    crops = []
    for index in rng.permutation(len(images))[:count]:
        pixels = load_training_image(*images[index])
        h, w = pixels.shape[:2]
        if min(h, w) < size:
            continue
        y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        crops.append(pixels[y : y + size, x : x + size])
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous()


def factorized_bits(train: list[np.ndarray], test: list[np.ndarray]) -> list[float]:
    """Ideal bits with one table per coefficient (magnitude symbols) + the raw sign/mantissa bits."""
    counts = np.full((train[0].shape[0], cc.ALPHABET), 0.02)
    for codes in train:
        symbols, _, _ = cc.magnitude_symbols(codes.astype(np.int64))
        for c in range(codes.shape[0]):
            counts[c] += np.bincount(symbols[c].ravel(), minlength=cc.ALPHABET)
    logp = np.log2(counts / counts.sum(1, keepdims=True))
    out = []
    for codes in test:
        symbols, k, _ = cc.magnitude_symbols(codes.astype(np.int64))
        bits = -sum(logp[c][symbols[c].ravel()].sum() for c in range(codes.shape[0]))
        out.append(float(bits + k.sum() + np.count_nonzero(codes)))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="image-sq20")
    parser.add_argument("--limit", type=int, default=8, help="first N Kodak images (default 8)")
    parser.add_argument("--levels", default="2,5,8,11,14,17,20")
    parser.add_argument("--fit-crops", type=int, default=150)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "image_sq_ablation.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    kodak_dir = DATA / "kodak"
    if not kodak_dir.is_dir():
        print(f"skipped: no Kodak images in {kodak_dir}")
        return 0
    start = time.time()
    model = load_model(args.model)
    net = model.network
    levels = [int(x) for x in args.levels.split(",")]
    images = [np.array(Image.open(p).convert("RGB")) for p in sorted(kodak_dir.glob("*.png"))[: args.limit]]
    pixels = [torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255 for a in images]
    crops = training_crops(args.fit_crops)
    groups = int(model.prior.num_groups)

    def quantized(rounding: float, quality: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        step = model.config.step_for_quality(quality)
        with torch.no_grad():
            test = [net.quantize(net.analyse(p), step, rounding)[0].numpy() for p in pixels]
            train = [net.quantize(net.analyse(crops[i : i + 32].float() / 255), step, rounding).numpy()
                     for i in range(0, crops.shape[0], 32)]
        return [c for batch in train for c in batch], test

    def distortion(codes: list[np.ndarray], quality: int, refined: bool) -> float:
        step = model.config.step_for_quality(quality)
        values = []
        with torch.no_grad():
            for a, c in zip(images, codes):
                d = torch.from_numpy(c)[None].float() * step
                if refined:
                    out = net.synthesise(d, step)
                else:
                    linear = torch.einsum("kc,bkhw->bchw", net.basis, d) + net.mean[:, None, None]
                    out = torch.nn.functional.pixel_shuffle(linear, 8) + 0.5
                rgb = torch.round(out.clamp(0, 1)[0].permute(1, 2, 0) * 255).numpy()
                values.append(psnr(rgb, a))
        return float(np.mean(values))

    npix = [a.shape[0] * a.shape[1] for a in images]
    curves: dict[str, tuple[list[float], list[float]]] = {
        k: ([], []) for k in ("full", "factorized prior", "neighbour context only", "plain rounding",
                              "rounding 0.30", "rounding 0.25", "linear synthesis")
    }
    for quality in levels:
        group = group_for_quality(quality, model.quality_levels, groups)
        train, test = quantized(model.config.rounding, quality)
        bits = [8 * len(model.compress(c, quality)) for c in test]
        full_psnr = distortion(test, quality, True)
        bpp = float(np.mean([b / n for b, n in zip(bits, npix)]))
        curves["full"][0].append(bpp)
        curves["full"][1].append(full_psnr)
        curves["linear synthesis"][0].append(bpp)
        curves["linear synthesis"][1].append(distortion(test, quality, False))
        fact = factorized_bits(train, test)
        curves["factorized prior"][0].append(float(np.mean([b / n for b, n in zip(fact, npix)])))
        curves["factorized prior"][1].append(full_psnr)
        # neighbour-only: a prior whose recent buckets are all merged (refit with RECENT_BUCKETS = 0)
        saved = cc.RECENT_BUCKETS.copy()
        try:
            cc.RECENT_BUCKETS[:] = 0
            prior = cc.CoefficientContextPrior.fit([train])
            nb = [prior.ideal_bits(c, group=0) for c in test]
        finally:
            cc.RECENT_BUCKETS[:] = saved
        curves["neighbour context only"][0].append(float(np.mean([b / n for b, n in zip(nb, npix)])))
        curves["neighbour context only"][1].append(full_psnr)
        for name, rounding in (("plain rounding", 0.5), ("rounding 0.30", 0.30), ("rounding 0.25", 0.25)):
            _, other = quantized(rounding, quality)
            other_bits = [8 * len(model.compress(c, quality)) for c in other]
            curves[name][0].append(float(np.mean([b / n for b, n in zip(other_bits, npix)])))
            curves[name][1].append(distortion(other, quality, True))
        print(f"level {quality} (group {group}): {bpp:.3f} bpp {full_psnr:.2f} dB", flush=True)
    rows = []
    for name, curve in curves.items():
        delta = 0.0 if name == "full" else bd_rate(curves["full"], curve)["bd_rate_percent"]
        rows.append({"variant": name, "bd_rate_vs_full": delta, "bpp": curve[0], "psnr": curve[1]})
    print(f"\n{'variant':28s} {'BD-rate vs full':>16s}")
    for row in rows:
        value = row["bd_rate_vs_full"]
        shown = f"{value:+15.1f}%" if value is not None else f"{'no overlap':>16s}"
        print(f"{row['variant']:28s} {shown}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "image_sq_ablation", "model": args.model, "sha256": bytes(model.sha256).hex(),
        "images": args.limit, "levels": levels, "fit_crops": args.fit_crops,
        "note": "positive BD-rate = the variant needs that many % more bits than the full model",
        "rows": rows, "seconds": round(time.time() - start, 1)}, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
