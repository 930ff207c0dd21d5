"""The scalar models' refinement under bf16 autocast against fp32.

    .venv/bin/python benchmarks/bf16_refine.py                 # default model, first 4 Kodak images

The CPU decoder runs the refinement under bf16 only where the CPU has native bf16
(``models.device.cpu_bf16_is_fast``); this script forces each path, so it shows both the gain on
such a CPU and the cost of emulated bf16 elsewhere. Per level: synthesis time (best of
``--repeats``, 1 thread) in fp32 with the shipped channels_last layout, in fp32 with contiguous
weights, under bf16, and of the decoder as it runs here (``from_codes``); mean PSNR-RGB of fp32
and bf16, the largest 8-bit difference and the share of 8-bit values that differ, and whether
bf16 output is identical on 1 and 2 threads. Prints a table, writes
benchmarks/results/bf16_refine.json (``native_bf16`` says which kind of CPU it ran on).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from image_rd import RESULTS, load_kodak, psnr  # noqa: E402

from vqcodec.codec.image import resolve_model  # noqa: E402
from vqcodec.models.device import cpu_bf16_is_fast  # noqa: E402


def fastest(fn, *args, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - t)
    return best


def fp32_synthesis(net, codes: torch.Tensor, step: float) -> torch.Tensor:
    """The synthesis without autocast (what the decoder runs on a CPU without native bf16)."""
    return net.synthesise(codes.float() * step, step).clamp(0, 1)


def bf16_synthesis(net, codes: torch.Tensor, step: float) -> torch.Tensor:
    """The synthesis under bf16 autocast (what the decoder runs on a CPU with native bf16)."""
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return net.synthesise(codes.float() * step, step).float().clamp(0, 1)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", help="scalar model name or bundle (default: the default image model)")
    parser.add_argument("--limit", type=int, default=4)
    parser.add_argument("--levels", default="2,10,18")
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats (best of)")
    parser.add_argument("--out", type=Path, default=RESULTS / "bf16_refine.json")
    args = parser.parse_args()
    model = resolve_model(args.model)
    net = model.network
    if not model.scalar:
        print(f"{model.name}: not a scalar-quantized model")
        return 1
    images = load_kodak(args.limit)
    contiguous = copy.deepcopy(net).to(memory_format=torch.contiguous_format)
    rows = []
    for q in (int(x) for x in args.levels.split(",")):
        step = model.config.step_for_quality(q)
        t32, t32c, t16, tdec, p32, p16, worst, share, same = [], [], [], [], [], [], 0, [], True
        for _, rgb in images:
            pixels = torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].float() / 255
            codes = net.to_codes(pixels, q)
            torch.set_num_threads(1)
            with torch.no_grad():
                t32.append(fastest(fp32_synthesis, net, codes, step, repeats=args.repeats))
                t32c.append(fastest(fp32_synthesis, contiguous, codes, step, repeats=args.repeats))
                t16.append(fastest(bf16_synthesis, net, codes, step, repeats=args.repeats))
                tdec.append(fastest(net.from_codes, codes, q, repeats=args.repeats))
                a, b = fp32_synthesis(net, codes, step), bf16_synthesis(net, codes, step)
                torch.set_num_threads(2)
                same &= torch.equal(b, bf16_synthesis(net, codes, step))
            a8, b8 = (np.round(x[0].permute(1, 2, 0).numpy() * 255) for x in (a, b))
            p32.append(psnr(a8, rgb))
            p16.append(psnr(b8, rgb))
            difference = np.abs(a8 - b8)
            worst = max(worst, int(difference.max()))
            share.append(float((difference > 0).mean()))
        row = {
            "level": q,
            "fp32_s": float(np.mean(t32)),
            "fp32_contiguous_s": float(np.mean(t32c)),
            "bf16_s": float(np.mean(t16)),
            "decoder_s": float(np.mean(tdec)),
            "psnr_fp32": float(np.mean(p32)),
            "psnr_bf16": float(np.mean(p16)),
            "max_8bit_difference": worst,
            "share_differing": float(np.mean(share)),
            "bf16_same_on_1_and_2_threads": bool(same),
        }
        rows.append(row)
        print(
            f"q{q:<3} fp32 {row['fp32_s'] * 1000:6.1f} ms "
            f"(contiguous {row['fp32_contiguous_s'] * 1000:6.1f})  "
            f"bf16 {row['bf16_s'] * 1000:8.1f} ms  decoder {row['decoder_s'] * 1000:6.1f} ms  "
            f"PSNR {row['psnr_fp32']:.4f} / {row['psnr_bf16']:.4f} dB  max diff {worst}  "
            f"differing {row['share_differing'] * 100:.2f} %  threads-identical {same}",
            flush=True,
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "bf16_refine",
        "model": model.name,
        "sha256": bytes(model.sha256).hex(),
        "images": [n for n, _ in images],
        "native_bf16": cpu_bf16_is_fast(),
        "rows": rows,
    }
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
