"""CUDA against the CPU for every bundled image model on Kodak: same bytes, same codes, pixels within 1.

For each bundled image model, Kodak picture and quality level (default: 1, the middle and the top):

- ``bytes_equal``: ``encode_image(..., device=DEV)`` gives exactly the file of ``device="cpu"``
  (the codes are chosen on the CPU whatever the device: ``vqcodec/models/device.py``);
- ``codes_equal``: decoding that file on DEV gives exactly the CPU's codes (integer entropy
  decoding), and ``max_pixel_diff`` / ``pixels_differing`` compare the DEV synthesis with the
  CPU's (the format allows 1 per 8-bit value);
- ``analysis_on_device``: the experiment the policy rests on. The codes a DEV copy of the network
  would choose itself (analysis + quantization on DEV, fp32, TF32 off) against the CPU's: how many
  code entries and latent positions differ, and the largest latent difference. Nonzero counts mean
  a GPU encoder would write different files from a CPU one;
- seconds to encode and decode each picture on the CPU and on DEV (after a warm-up).

Exits 1 when a file, a code or a pixel tolerance differs. Writes benchmarks/results/device_check.json
(``--out``). Needs CUDA; ``--device cpu --images 1`` runs the same checks CPU against CPU (a dry
run of this script on a machine without a GPU). Data: ../shared/data/kodak (env VQCODEC_DATA).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("VQCODEC_DATA", REPO.parent / "shared" / "data"))
RESULTS = REPO / "benchmarks" / "results"


def levels_for(model: Any, text: str | None) -> list[int]:
    top = int(model.quality_levels)
    if text:
        return sorted({min(top, max(1, int(x))) for x in text.split(",")})
    return sorted({1, (top + 1) // 2, top})


def timed(fn: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def device_codes(model: Any, moved: Any, rgb: np.ndarray, quality: int, device: Any) -> dict[str, Any]:
    """CPU codes against the codes ``moved`` (the model's copy on ``device``) chooses itself."""
    from vqcodec.codec import media

    padded = media.pad_to_stride(rgb, model.stride)
    pixels = media.to_tensor(padded)
    cpu = model.to_codes(pixels, quality)[0].numpy()
    rate: dict[str, Any] = {}
    bits = model.code_bits() if not model.scalar and model.rate_weight > 0 else None
    if bits is not None:
        rate = {"code_bits": [b.to(device) for b in bits], "rate_weight": float(model.rate_weight)}
    with torch.inference_mode():
        on_device = pixels.to(device)
        dev = moved.network.to_codes(on_device, quality, **rate)[0].cpu().numpy()
        latent_cpu = model.network.analyse(pixels.float())
        latent_dev = moved.network.analyse(on_device.float()).cpu()
    differ = cpu != dev
    return {
        "codes": int(cpu.size),
        "codes_differing": int(differ.sum()),
        "positions_differing": int(differ.any(axis=0).sum()),
        "max_latent_diff": float((latent_cpu - latent_dev).abs().max()),
    }


def check_model(name: str, pictures: list[tuple[str, Any]], device: Any, qualities: str | None) -> dict:
    from vqcodec.codec.image import decode_image_result, encode_image
    from vqcodec.models.device import on_device
    from vqcodec.models.zoo import load_model

    model = load_model(name)
    moved = on_device(model, device)
    levels = levels_for(model, qualities)
    warm = encode_image(pictures[0][1], levels[0], model=model, device=device)
    decode_image_result(warm, model=model, device=device)  # warm-up: device copy, kernels, halos
    rows = []
    for path, image in pictures:
        rgb = np.asarray(image)
        for level in levels:

            def encode(where: Any, image: Any = image, level: int = level) -> bytes:
                return encode_image(image, level, model=model, device=where)

            cpu_s, on_cpu = timed(lambda: encode("cpu"))
            dev_s, on_dev = timed(lambda: encode(device))

            def decode(where: Any, data: bytes = on_cpu) -> Any:
                return decode_image_result(data, model=model, device=where)

            dec_cpu_s, a = timed(lambda: decode("cpu"))
            dec_dev_s, b = timed(lambda: decode(device))
            diff = np.abs(a.rgb.astype(np.int16) - b.rgb.astype(np.int16))
            row = {
                "image": Path(path).name,
                "quality": level,
                "bytes": len(on_cpu),
                "bytes_equal": on_cpu == on_dev,
                "codes_equal": bool(np.array_equal(a.codes, b.codes)),
                "max_pixel_diff": int(diff.max()),
                "pixels_differing": int((diff > 0).any(axis=2).sum()),
                "encode_s": {"cpu": round(cpu_s, 4), "device": round(dev_s, 4)},
                "decode_s": {"cpu": round(dec_cpu_s, 4), "device": round(dec_dev_s, 4)},
                "analysis_on_device": device_codes(model, moved, rgb, level, device),
            }
            rows.append(row)
            print(
                f"{name} {row['image']} q{level}: bytes {'=' if row['bytes_equal'] else 'DIFFER'}, "
                f"codes {'=' if row['codes_equal'] else 'DIFFER'}, max pixel diff {row['max_pixel_diff']}, "
                f"GPU-analysis codes differing {row['analysis_on_device']['codes_differing']}, "
                f"decode {dec_cpu_s:.3f} s -> {dec_dev_s:.3f} s",
                flush=True,
            )
    ok = all(r["bytes_equal"] and r["codes_equal"] and r["max_pixel_diff"] <= 1 for r in rows)
    return {
        "model": name,
        "levels": levels,
        "ok": ok,
        "all_bytes_equal": all(r["bytes_equal"] for r in rows),
        "all_codes_equal": all(r["codes_equal"] for r in rows),
        "max_pixel_diff": max(r["max_pixel_diff"] for r in rows),
        "analysis_on_device_codes_differing": sum(r["analysis_on_device"]["codes_differing"] for r in rows),
        "analysis_on_device_codes": sum(r["analysis_on_device"]["codes"] for r in rows),
        "analysis_on_device_rows_differing": sum(
            r["analysis_on_device"]["codes_differing"] > 0 for r in rows
        ),
        "decode_s_total": {
            "cpu": round(sum(r["decode_s"]["cpu"] for r in rows), 3),
            "device": round(sum(r["decode_s"]["device"] for r in rows), 3),
        },
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="device to check against the CPU (default cuda)")
    parser.add_argument("--images", type=int, default=24, help="Kodak pictures to use (default all 24)")
    parser.add_argument("--qualities", help="levels, e.g. 1,4,8 (default: 1, the middle and the top)")
    parser.add_argument("--model", action="append", help="model name (default: every bundled image model)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (default 0: torch's own)")
    parser.add_argument("--out", type=Path, default=RESULTS / "device_check.json")
    args = parser.parse_args(argv)

    from vqcodec.models.device import DeviceError, resolve_device
    from vqcodec.models.zoo import list_models

    try:
        device = resolve_device(args.device)
    except DeviceError as exc:
        print(f"device_check: {exc}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    files = sorted((DATA / "kodak").glob("kodim*.png"))[: args.images]
    if not files:
        print(f"device_check: no Kodak pictures in {DATA / 'kodak'}", file=sys.stderr)
        return 2
    pictures = [(str(p), Image.open(p).convert("RGB")) for p in files]
    names = args.model or [m.name for m in list_models() if m.media == "image"]
    models = [check_model(name, pictures, device, args.qualities) for name in names]
    report = {
        "benchmark": "device_check",
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "images": [Path(p).name for p, _ in pictures],
        "ok": all(m["ok"] for m in models),
        "tf32": {
            "matmul": torch.backends.cuda.matmul.allow_tf32,
            "cudnn": torch.backends.cudnn.allow_tf32,
        },
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "threads": torch.get_num_threads(),
        },
        "models": models,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    for m in models:
        print(
            f"{m['model']}: ok={m['ok']} bytes equal={m['all_bytes_equal']} "
            f"codes equal={m['all_codes_equal']} "
            f"max pixel diff={m['max_pixel_diff']}; GPU analysis would change "
            f"{m['analysis_on_device_codes_differing']} of {m['analysis_on_device_codes']} codes "
            f"({m['analysis_on_device_rows_differing']} of {len(m['rows'])} pictures x levels); "
            f"decode {m['decode_s_total']['cpu']} s (cpu) vs {m['decode_s_total']['device']} s ({device})"
        )
    print(f"wrote {args.out}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
