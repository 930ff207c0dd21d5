"""Rate-distortion of the image codec on Kodak against Pillow's JPEG, WebP and AVIF.

    .venv/bin/python benchmarks/image_rd.py                  # all 24 images, every level
    .venv/bin/python benchmarks/image_rd.py --limit 2        # quick check while developing
    .venv/bin/python benchmarks/image_rd.py --model tiny.safetensors --levels 1,3 --no-baselines
    .venv/bin/python benchmarks/image_rd.py --large          # + 24-megapixel memory check

For every quality level of the model: mean bpp (whole .vqc file), mean PSNR-RGB (mean of the
per-image PSNRs), mean MS-SSIM (RGB), median encode and decode time per image; the same for
Pillow's JPEG, WebP and AVIF over quality sweeps; BD-rate of vqcodec against each (Bjontegaard,
log-rate over PSNR, both the piecewise-cubic (PCHIP) form of the current VCEG/JVET reference and
the classic cubic polyfit). Writes benchmarks/results/image_rd.json (``--out``) and, beside it, an
RD plot image_rd.png (when matplotlib is installed) and a side-by-side crop image_rd_crops.png
(original, vqcodec, JPEG, WebP, AVIF at about the same bpp). Data: ../shared/data/kodak (env VQCODEC_DATA).
Timings use ``--threads`` torch threads (default 2, the target machine) and are wall-clock.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("VQCODEC_DATA", REPO.parent / "shared" / "data"))
RESULTS = REPO / "benchmarks" / "results"

SWEEPS = {
    "JPEG": [5, 10, 15, 20, 30, 40, 50, 60, 75, 85, 92],
    "WebP": [0, 5, 10, 25, 40, 55, 75, 85, 92],
    "AVIF": [5, 15, 22, 30, 38, 45, 55, 65, 75],
}
PIL_FORMATS = {"JPEG": "JPEG", "WebP": "WEBP", "AVIF": "AVIF"}
# published Kodak points of CompressAI's MSE-optimised models (cited: URL, commit, file in the JSON),
# drawn as reference curves; their PSNR-RGB is computed as ours (see "psnr_note" in the file)
COMPRESSAI_REFERENCE = REPO / "benchmarks" / "compressai_kodak.json"
MS_SSIM = True  # --no-ms-ssim turns it off (it costs about as much as a decode)


# ------------------------------------------------------------------------------------------------
# metrics


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * math.log10(255.0**2 / mse)


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """MS-SSIM (Wang et al. 2003) of two (H, W, 3) uint8 images, per channel then averaged.

    Gaussian window 11 / sigma 1.5 (applied as two 1-D passes), 5 scales with the standard
    weights, 2x2 average pooling between scales, float32.
    """
    import torch
    import torch.nn.functional as F

    weights = torch.tensor([0.0448, 0.2856, 0.3001, 0.2363, 0.1333])
    g = torch.exp(-((torch.arange(11, dtype=torch.float32) - 5) ** 2) / (2 * 1.5**2))
    g = g / g.sum()
    rows, cols = g.view(1, 1, 11, 1), g.view(1, 1, 1, 11)

    def blur(t: torch.Tensor) -> torch.Tensor:  # (3, 1, H, W) -> (3, 1, H - 10, W - 10)
        return F.conv2d(F.conv2d(t, rows), cols)

    # channels as the batch axis: one single-channel filter serves all three
    x = torch.from_numpy(np.array(a, dtype=np.float32)).permute(2, 0, 1).unsqueeze(1).contiguous()
    y = torch.from_numpy(np.array(b, dtype=np.float32)).permute(2, 0, 1).unsqueeze(1).contiguous()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    with torch.inference_mode():
        for scale in range(5):
            mu_x, mu_y = blur(x), blur(y)
            sxx = blur(x * x) - mu_x**2
            syy = blur(y * y) - mu_y**2
            sxy = blur(x * y) - mu_x * mu_y
            cs = (2 * sxy + c2) / (sxx + syy + c2)
            if scale < 4:
                values.append(cs.mean(dim=(1, 2, 3)).clamp(min=0))
                x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
            else:
                ssim = ((2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)) * cs
                values.append(ssim.mean(dim=(1, 2, 3)).clamp(min=0))
    stacked = torch.stack(values, dim=0)  # (5 scales, 3 channels)
    return float(torch.prod(stacked ** weights[:, None], dim=0).mean())


# ------------------------------------------------------------------------------------------------
# Bjontegaard delta rate


def _pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Fritsch-Carlson monotone slopes (as scipy's PchipInterpolator)."""
    h = np.diff(x)
    delta = np.diff(y) / h
    n = len(x)
    d = np.zeros(n)
    if n == 2:
        return np.full(2, delta[0])
    for k in range(1, n - 1):
        if delta[k - 1] * delta[k] > 0:
            w1, w2 = 2 * h[k] + h[k - 1], h[k] + 2 * h[k - 1]
            d[k] = (w1 + w2) / (w1 / delta[k - 1] + w2 / delta[k])
    for end, (h0, h1, d0, d1) in (
        (0, (h[0], h[1], delta[0], delta[1])),
        (n - 1, (h[-1], h[-2], delta[-1], delta[-2])),
    ):
        slope = ((2 * h0 + h1) * d0 - h0 * d1) / (h0 + h1)
        if np.sign(slope) != np.sign(d0):
            slope = 0.0
        elif np.sign(d0) != np.sign(d1) and abs(slope) > abs(3 * d0):
            slope = 3 * d0
        d[end] = slope
    return d


def _pchip_integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float, samples: int = 4001) -> float:
    """Integral over [lo, hi] of the PCHIP interpolant through (x, y), x increasing."""
    d = _pchip_slopes(x, y)
    t = np.linspace(lo, hi, samples)
    k = np.clip(np.searchsorted(x, t) - 1, 0, len(x) - 2)
    h = x[k + 1] - x[k]
    s = (t - x[k]) / h
    h00, h10, h01, h11 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s, -2 * s**3 + 3 * s**2, s**3 - s**2
    values = h00 * y[k] + h10 * h * d[k] + h01 * y[k + 1] + h11 * h * d[k + 1]
    return float(np.trapezoid(values, t))


def _curve(rates: list[float], psnrs: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """(PSNR, log rate) sorted by PSNR, duplicates in PSNR dropped (they break interpolation)."""
    order = np.argsort(psnrs)
    x = np.asarray(psnrs, dtype=np.float64)[order]
    y = np.log(np.asarray(rates, dtype=np.float64)[order])
    keep = np.concatenate([[True], np.diff(x) > 1e-9])
    return x[keep], y[keep]


def bd_rate(
    anchor: tuple[list[float], list[float]], test: tuple[list[float], list[float]], method: str = "pchip"
) -> dict[str, Any]:
    """Average bitrate difference (%) of ``test`` vs ``anchor`` at equal PSNR; negative = test saves bits.

    ``anchor``/``test`` are (rates, psnrs). Integrates log-rate over the overlapping PSNR interval,
    with piecewise cubic Hermite interpolation ("pchip") or a cubic polyfit ("polyfit").
    """
    xa, ya = _curve(*anchor)
    xt, yt = _curve(*test)
    lo, hi = max(xa.min(), xt.min()), min(xa.max(), xt.max())
    if len(xa) < 2 or len(xt) < 2 or hi <= lo:
        return {"bd_rate_percent": None, "psnr_range": None, "method": method, "note": "no PSNR overlap"}
    if method == "pchip":
        area_a, area_t = _pchip_integral(xa, ya, lo, hi), _pchip_integral(xt, yt, lo, hi)
    else:
        pa = np.polyfit(xa, ya, min(3, len(xa) - 1))
        pt = np.polyfit(xt, yt, min(3, len(xt) - 1))
        ia, it = np.polyint(pa), np.polyint(pt)
        area_a = np.polyval(ia, hi) - np.polyval(ia, lo)
        area_t = np.polyval(it, hi) - np.polyval(it, lo)
    avg_diff = (area_t - area_a) / (hi - lo)
    return {
        "bd_rate_percent": float((math.exp(avg_diff) - 1) * 100),
        "psnr_range": [float(lo), float(hi)],
        "method": method,
    }


# ------------------------------------------------------------------------------------------------
# codecs


def load_kodak(limit: int | None) -> list[tuple[str, np.ndarray]]:
    folder = DATA / "kodak"
    paths = sorted(folder.glob("*.png"))
    if not paths:
        raise SystemExit(f"no Kodak images in {folder} (set VQCODEC_DATA)")
    paths = paths[:limit] if limit else paths
    return [(p.stem, np.asarray(Image.open(p).convert("RGB"))) for p in paths]


def measured(
    name: str, rgb: np.ndarray, data: bytes, out: np.ndarray, encode_s: float, decode_s: float
) -> dict[str, Any]:
    """One image's row: size, bpp, PSNR (and MS-SSIM unless turned off) and the two timings."""
    return {
        "image": name,
        "bytes": len(data),
        "bpp": 8 * len(data) / (rgb.shape[0] * rgb.shape[1]),
        "psnr": psnr(out, rgb),
        "ms_ssim": ms_ssim(out, rgb) if MS_SSIM else None,
        "encode_s": encode_s,
        "decode_s": decode_s,
    }


def run_vqcodec(
    model: Any, images: list[tuple[str, np.ndarray]], levels: list[int], on_row: Any = None
) -> list[dict[str, Any]]:
    from vqcodec.codec.image import decode_image, encode_image

    # one untimed round trip: first calls pay for allocator and kernel set-up
    decode_image(encode_image(images[0][1], levels[0], model=model), model=model)
    rows = []
    for level in levels:
        per = []
        for name, rgb in images:
            t0 = time.perf_counter()
            data = encode_image(rgb, level, model=model)
            t1 = time.perf_counter()
            out = decode_image(data, model=model, output="numpy")
            t2 = time.perf_counter()
            per.append(measured(name, rgb, data, out, t1 - t0, t2 - t1))
        rows.append(summarize("vqcodec", level, per))
        if on_row is not None:
            on_row(rows)
        print(format_row(rows[-1]), flush=True)
    return rows


def pil_round_trip(fmt: str, rgb: np.ndarray, quality: int) -> tuple[bytes, np.ndarray, float, float]:
    image = Image.fromarray(rgb)
    buffer = io.BytesIO()
    t0 = time.perf_counter()
    image.save(buffer, format=PIL_FORMATS[fmt], quality=quality)
    t1 = time.perf_counter()
    data = buffer.getvalue()
    out = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    t2 = time.perf_counter()
    return data, out, t1 - t0, t2 - t1


def run_baseline(
    fmt: str, images: list[tuple[str, np.ndarray]], qualities: list[int]
) -> list[dict[str, Any]]:
    rows = []
    for quality in qualities:
        per = []
        for name, rgb in images:
            data, out, enc, dec = pil_round_trip(fmt, rgb, quality)
            per.append(measured(name, rgb, data, out, enc, dec))
        rows.append(summarize(fmt, quality, per))
        print(format_row(rows[-1]), flush=True)
    return rows


def summarize(codec: str, setting: int, per: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "codec": codec,
        "setting": setting,
        "bpp": float(np.mean([p["bpp"] for p in per])),
        "psnr": float(np.mean([p["psnr"] for p in per])),
        "ms_ssim": float(np.mean([p["ms_ssim"] for p in per])) if MS_SSIM else None,
        "encode_s": float(np.median([p["encode_s"] for p in per])),
        "decode_s": float(np.median([p["decode_s"] for p in per])),
        "per_image": [{k: (round(v, 5) if isinstance(v, float) else v) for k, v in p.items()} for p in per],
    }


def format_row(row: dict[str, Any]) -> str:
    label = f"q{row['setting']}" if row["codec"] == "vqcodec" else f"quality {row['setting']}"
    ssim = f"{row['ms_ssim']:.4f}" if row.get("ms_ssim") is not None else "  -   "
    return (
        f"{row['codec']:>8} {label:>11}  {row['bpp']:7.4f} bpp  {row['psnr']:6.2f} dB  MS-SSIM {ssim}  "
        f"enc {row['encode_s'] * 1000:7.1f} ms  dec {row['decode_s'] * 1000:7.1f} ms"
    )


# ------------------------------------------------------------------------------------------------
# figures


def compressai_references() -> dict[str, tuple[list[float], list[float]]]:
    """CompressAI model name -> (bpp, PSNR-RGB) lists from benchmarks/compressai_kodak.json."""
    models = json.loads(COMPRESSAI_REFERENCE.read_text())["models"]
    return {f"CompressAI {name}": (list(m["bpp"]), list(m["psnr_rgb"])) for name, m in models.items()}


def plot(
    results: dict[str, list[dict[str, Any]]],
    path: Path,
    title: str,
    references: dict[str, tuple[list[float], list[float]]] | None = None,
) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7, 5), dpi=120)
    for codec, rows in results.items():
        rows = sorted(rows, key=lambda r: r["bpp"])
        ax.plot(
            [r["bpp"] for r in rows],
            [r["psnr"] for r in rows],
            "o-",
            label=codec,
            linewidth=2.5 if codec == "vqcodec" else 1.2,
            markersize=4,
        )
    for name, (rates, psnrs) in (references or {}).items():
        ax.plot(rates, psnrs, "s--", label=name + " (published)", linewidth=1.0, markersize=3, alpha=0.8)
    ax.set_xlabel("bits per pixel")
    ax.set_ylabel("PSNR-RGB (dB)")
    ax.set_xlim(0, 1.6)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def crops(model: Any, images: list[tuple[str, np.ndarray]], level: int, path: Path) -> dict[str, Any]:
    """Original, vqcodec and each baseline at about vqcodec's bpp on one image, 2x enlarged crops."""
    from PIL import ImageDraw

    from vqcodec.codec.image import decode_image, encode_image

    name, rgb = next(((n, r) for n, r in images if n == "kodim23"), images[-1])
    pixels = rgb.shape[0] * rgb.shape[1]
    data = encode_image(rgb, level, model=model)
    target = 8 * len(data) / pixels
    panels = [
        ("original", rgb, None),
        (f"vqcodec q{level}", decode_image(data, model=model, output="numpy"), target),
    ]
    chosen = {"image": name, "vqcodec": {"level": level, "bpp": target}}
    for fmt in SWEEPS:
        best = None
        for quality in range(1, 101):
            encoded, out, _, _ = pil_round_trip(fmt, rgb, quality)
            bpp = 8 * len(encoded) / pixels
            if best is None or abs(bpp - target) < abs(best[1] - target):
                best = (quality, bpp, out)
            if bpp > target * 1.5:
                break
        assert best is not None
        panels.append((f"{fmt} q{best[0]}", best[2], best[1]))
        chosen[fmt] = {"quality": best[0], "bpp": best[1]}
    size, scale = 160, 2
    top, left = (rgb.shape[0] - size) // 2, (rgb.shape[1] - size) // 2
    label_h = 18
    canvas = Image.new("RGB", (len(panels) * (size * scale + 6), size * scale + label_h), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (label, image, bpp) in enumerate(panels):
        crop = Image.fromarray(image[top : top + size, left : left + size]).resize(
            (size * scale,) * 2, Image.NEAREST
        )
        x = i * (size * scale + 6)
        canvas.paste(crop, (x, label_h))
        text = label if bpp is None else f"{label}  {bpp:.3f} bpp  {psnr(image, rgb):.1f} dB"
        draw.text((x + 2, 3), text, fill="black")
    canvas.save(path)
    return chosen


# ------------------------------------------------------------------------------------------------
# 24-megapixel memory check


LARGE_CHILD = r"""
import json, resource, sys, time
import numpy as np
from PIL import Image
import torch
torch.set_num_threads(int(sys.argv[4]))
from vqcodec.codec.image import encode_image, decode_image
from vqcodec.codec.media import psnr
src = np.asarray(Image.open(sys.argv[1]).convert("RGB").resize((6000, 4000), Image.BICUBIC))
t0 = time.perf_counter(); data = encode_image(src, int(sys.argv[3]), model=sys.argv[2] or None)
t1 = time.perf_counter()
out = decode_image(data, model=sys.argv[2] or None, output="numpy")
t2 = time.perf_counter()
print(json.dumps({"width": 6000, "height": 4000, "bytes": len(data), "bpp": 8 * len(data) / 24e6,
                  "psnr": psnr(out, src), "encode_s": t1 - t0, "decode_s": t2 - t1,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def large_check(model_arg: str | None, level: int, threads: int) -> dict[str, Any]:
    source = sorted((DATA / "kodak").glob("*.png"))[0]
    done = subprocess.run(
        [sys.executable, "-c", LARGE_CHILD, str(source), model_arg or "", str(level), str(threads)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------


def reusable_baselines(path: Path, images: list[tuple[str, np.ndarray]]) -> dict[str, list[dict[str, Any]]]:
    """Baseline rows of an earlier report, when it used the same images and quality sweeps."""
    report = json.loads(path.read_text())
    if report.get("images") != [n for n, _ in images]:
        print(f"not reusing {path}: it was run on other images", flush=True)
        return {}
    found = {}
    for fmt, qualities in SWEEPS.items():
        rows = report.get("results", {}).get(fmt)
        if rows and [r["setting"] for r in rows] == qualities:
            found[fmt] = rows
    return found


def _shown(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it (as the JSON records figures)."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model name or bundle path (default: the bundled default)")
    parser.add_argument("--levels", help="comma-separated quality levels (default: all)")
    parser.add_argument("--limit", type=int, help="use only the first N Kodak images")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (runs the model there)")
    parser.add_argument("--no-baselines", action="store_true", help="skip JPEG/WebP/AVIF")
    parser.add_argument("--no-ms-ssim", action="store_true", help="skip MS-SSIM")
    parser.add_argument(
        "--reuse-baselines",
        type=Path,
        metavar="JSON",
        help="take the JPEG/WebP/AVIF rows from an earlier run's JSON (same images and sweeps)",
    )
    parser.add_argument(
        "--large", action="store_true", help="also encode/decode a 24-MP picture, report peak RSS"
    )
    parser.add_argument(
        "--effort", type=int, default=0, help="encoder effort (0 fast; 1 RD quantization, scalar models)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "image_rd.json")
    args = parser.parse_args(argv)

    import torch

    from vqcodec.codec.image import default_quality, resolve_model

    global MS_SSIM
    MS_SSIM = not args.no_ms_ssim
    torch.set_num_threads(args.threads)
    model = resolve_model(args.model)
    if args.effort:
        model = model.with_effort(args.effort)
    if args.device != "cpu":
        model.network.to(args.device)
    levels = (
        [int(x) for x in args.levels.split(",")] if args.levels else list(range(1, model.quality_levels + 1))
    )
    images = load_kodak(args.limit)
    print(
        f"model {model.name} ({bytes(model.sha256).hex()[:12]}), {len(images)} Kodak images, "
        f"levels {levels}, effort {model.effort}, "
        f"{args.threads} threads, device {args.device}",
        flush=True,
    )

    def save_partial(rows: list[dict[str, Any]]) -> None:
        """Keep what is measured so far on disk (a long run cut short still leaves numbers)."""
        args.out.parent.mkdir(parents=True, exist_ok=True)
        partial = {
            "benchmark": "image_rd",
            "partial": True,
            "model": model.name,
            "results": {"vqcodec": rows},
        }
        args.out.write_text(json.dumps(partial, indent=1) + "\n")

    results: dict[str, list[dict[str, Any]]] = {"vqcodec": run_vqcodec(model, images, levels, save_partial)}
    if not args.no_baselines:
        earlier = reusable_baselines(args.reuse_baselines, images) if args.reuse_baselines else {}
        for fmt, qualities in SWEEPS.items():
            if fmt in earlier:
                results[fmt] = earlier[fmt]
                for row in results[fmt]:
                    print(format_row(row) + "  (reused)", flush=True)
            else:
                results[fmt] = run_baseline(fmt, images, qualities)

    ours = ([r["bpp"] for r in results["vqcodec"]], [r["psnr"] for r in results["vqcodec"]])
    bd = {}
    for fmt in SWEEPS:
        if fmt in results:
            anchor = ([r["bpp"] for r in results[fmt]], [r["psnr"] for r in results[fmt]])
            bd[fmt] = {"pchip": bd_rate(anchor, ours, "pchip"), "polyfit": bd_rate(anchor, ours, "polyfit")}
    references = compressai_references()
    for name, anchor in references.items():
        bd[name] = {"pchip": bd_rate(anchor, ours, "pchip"), "polyfit": bd_rate(anchor, ours, "polyfit")}

    print("\nBD-rate of vqcodec (negative = fewer bits than the anchor at equal PSNR-RGB):")
    for fmt, entry in bd.items():
        p, c = entry["pchip"], entry["polyfit"]
        if p["bd_rate_percent"] is None:
            print(f"  vs {fmt:5}: no PSNR overlap")
        else:
            print(
                f"  vs {fmt:5}: {p['bd_rate_percent']:+7.1f} % (pchip), "
                f"{c['bd_rate_percent']:+7.1f} % (polyfit) "
                f"over {p['psnr_range'][0]:.2f}-{p['psnr_range'][1]:.2f} dB"
            )

    # the figures go beside the JSON (name.png, name_crops.png), so a trial run with --out elsewhere
    # leaves the published ones alone
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Any] = {}
    title = f"Kodak ({len(images)} images), model {model.name}"
    rd_png, crops_png = args.out.with_suffix(".png"), args.out.with_name(args.out.stem + "_crops.png")
    if plot(results, rd_png, title, references):
        figures["rd_plot"] = _shown(rd_png)
    if not args.no_baselines:
        crop_level = min(levels, key=lambda q: abs(results["vqcodec"][levels.index(q)]["bpp"] - 0.25))
        figures["crops"] = {"file": _shown(crops_png), **crops(model, images, crop_level, crops_png)}
    large = (
        large_check(args.model, default_quality(model.quality_levels), args.threads) if args.large else None
    )
    if large is not None:
        print(f"\n24 MP: {large}")

    report = {
        "benchmark": "image_rd",
        "command": "python benchmarks/image_rd.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "model": {
            "name": model.name,
            "sha256": bytes(model.sha256).hex(),
            "levels": model.quality_levels,
            "effort": model.effort,
        },
        "images": [n for n, _ in images],
        "threads": args.threads,
        "device": args.device,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "pillow": Image.__version__,
        },
        "results": results,
        "bd_rate": bd,
        "compressai_reference": {"file": _shown(COMPRESSAI_REFERENCE), "curves": references},
        "large_image": large,
        "figures": figures,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(
        f"\nwrote {args.out}"
        + "".join(f", {v if isinstance(v, str) else v['file']}" for v in figures.values())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
