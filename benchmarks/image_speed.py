"""Encode/decode speed of a scalar image model (default ``image-sq20``) on Kodak, per quality level.

Times the model's own halves, which are what ``vqcodec.codec.image`` spends nearly all its time in:
encode = pixels -> codes (analysis + quantization) + entropy payload (``CodecModel.compress``);
decode = payload -> codes (``decompress``) + synthesis (``from_codes``). Each is timed per image
as the best of ``--repeats`` runs, in wall time and CPU time (the machine is shared: CPU time is
the steadier number), with 1 and 2 torch threads. The entropy encoder is also timed on its
reference (full-plane mask) context path, ``entropy_encode_reference_s``, as the before/after of
the gather-based contexts; both give byte-identical payloads (checked here on every image).

Prints a table and writes benchmarks/results/image_speed.json (``--out``).
Data: ../shared/data/kodak (env VQCODEC_DATA).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("VQCODEC_DATA", REPO.parent / "shared" / "data"))
RESULTS = REPO / "benchmarks" / "results"


def best_time(fn: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """(best wall seconds, best CPU seconds) over ``repeats`` calls."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


def measure(model: Any, pixels: torch.Tensor, quality: int, repeats: int) -> dict[str, float]:
    """Seconds for one image (1, 3, H, W) at ``quality``; see the module docstring."""
    prior = model.prior
    group = model._group(quality)

    def encode() -> bytes:
        codes = model.to_codes(pixels, quality)[0].numpy()
        return model.compress(codes, quality)

    codes = model.to_codes(pixels, quality)[0].numpy()
    payload = model.compress(codes, quality)

    def decode() -> torch.Tensor:
        decoded = model.decompress(payload, codes.shape, quality)
        return model.from_codes(torch.from_numpy(decoded.astype(np.int64))[None], quality)

    def reference_encode() -> bytes:
        prior._magnitude_batches = prior._reference_magnitude_batches
        try:
            return bytes(prior.encode(codes, group=group))
        finally:
            del prior._magnitude_batches

    if reference_encode() != payload:
        raise SystemExit("fast and reference entropy paths disagree (bitstream changed)")
    out: dict[str, float] = {"bytes": float(len(payload))}
    for name, fn in [
        ("encode", encode),
        ("decode", decode),
        ("entropy_encode", lambda: prior.encode(codes, group=group)),
        ("entropy_encode_reference", reference_encode),
        ("entropy_decode", lambda: prior.decode(payload, codes.shape, group=group)),
        ("synthesis", lambda: model.from_codes(torch.from_numpy(codes)[None], quality)),
    ]:
        fn()  # warm-up
        wall, cpu = best_time(fn, repeats)
        out[f"{name}_s"], out[f"{name}_cpu_s"] = wall, cpu
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="image-sq20")
    parser.add_argument("--qualities", type=int, nargs="+", default=[5, 10, 15, 20])
    parser.add_argument("--images", type=int, default=4, help="first N Kodak images")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "image_speed.json")
    args = parser.parse_args(argv)

    from vqcodec.models.zoo import load_model

    model = load_model(args.model)
    paths = sorted((DATA / "kodak").glob("*.png"))[: args.images]
    if not paths:
        raise SystemExit(f"no Kodak images under {DATA / 'kodak'}")
    images = [
        torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1)[None].float() / 255
        for p in paths
    ]
    rows = []
    print(
        f"{'thr':>3} {'q':>3} {'bpp':>6} {'enc s':>7} {'enc cpu':>7} {'dec s':>7} {'dec cpu':>7} "
        f"{'dec MP/s':>8} {'ent.enc':>7} {'ref.enc':>7} {'ent.dec':>7} {'synth':>7}"
    )
    for threads in args.threads:
        torch.set_num_threads(threads)
        for quality in args.qualities:
            per = [measure(model, x, quality, args.repeats) for x in images]
            pixels = float(np.mean([x.shape[-1] * x.shape[-2] for x in images]))
            row: dict[str, Any] = {"threads": threads, "quality": quality}
            for key in per[0]:
                row[key] = float(np.mean([p[key] for p in per]))
            row["bpp"] = 8 * row.pop("bytes") / pixels
            row["decode_mp_s"] = pixels / 1e6 / row["decode_s"]
            row["encode_mp_s"] = pixels / 1e6 / row["encode_s"]
            rows.append(row)
            print(
                f"{threads:3d} {quality:3d} {row['bpp']:6.3f} {row['encode_s']:7.3f} "
                f"{row['encode_cpu_s']:7.3f} {row['decode_s']:7.3f} {row['decode_cpu_s']:7.3f} "
                f"{row['decode_mp_s']:8.2f} {row['entropy_encode_s']:7.3f} "
                f"{row['entropy_encode_reference_s']:7.3f} {row['entropy_decode_s']:7.3f} "
                f"{row['synthesis_s']:7.3f}",
                flush=True,
            )
    report = {
        "benchmark": "image_speed",
        "command": "python benchmarks/image_speed.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "model": args.model,
        "images": [p.name for p in paths],
        "repeats": args.repeats,
        "note": "seconds per image, mean over images of the best of `repeats`; shared machine, "
        "CPU time (…_cpu_s) is steadier than wall time",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__},
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
