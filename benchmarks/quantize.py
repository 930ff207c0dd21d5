"""Quantizer benchmark: encode speed vs a naive cdist+argmin, peak memory, and rate-distortion sanity.

    .venv/bin/python benchmarks/quantize.py [--quick] [--device cpu|cuda] [--threads 2]

1. Throughput: ``VectorQuantizer.encode`` vectors/s at K=1024, d=64 and 256, N=65,536, against
   ``torch.cdist(x, c).argmin(1)`` on the whole batch (best of --repeats).
2. Peak memory: extra peak RSS (CPU) / peak allocated (CUDA) of one encode call on a large N, measured in
   a fresh subprocess per method so the numbers do not mix.
3. Rate-distortion: MSE vs bits for a ResidualVQ (K=256 per stage, 1..8 stages, k-means init + EMA steps
   on a training split, evaluated on a held-out split) and for FSQ at several level sets, on a fixed
   Gaussian (d=16, with the Shannon bound D = 2^(-2R) per unit-variance dimension) and on real image
   latents: 8x8 grey patches of ../shared/data/train images projected on their top-16 PCA components
   (skipped when the folder is missing).  FSQ has no learned decoder here, so its input gain is picked
   from a small grid and its output mapped back by a per-channel least-squares affine fit (standing in
   for the codec's decoder).  MSE is per latent dimension; NMSE is MSE / variance in dB.

Prints tables and writes benchmarks/results/quantize.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vqcodec.quantize import FSQ, ResidualVQ, VectorQuantizer  # noqa: E402

DATA = Path(os.environ.get("VQCODEC_DATA", REPO.parent / "shared" / "data"))
RESULTS = REPO / "benchmarks" / "results" / "quantize.json"


# ----------------------------------------------------------------------------- throughput


def _best_time(fn, repeats: int) -> float:
    fn()  # warm-up
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def throughput(device: str, num: int, repeats: int) -> list[dict]:
    rows = []
    for dim in (64, 256):
        torch.manual_seed(0)
        vq = VectorQuantizer(dim, 1024, channel_first=False).to(device).eval()
        x = torch.randn(num, dim, device=device)
        codebook = vq.codebook
        t_vq = _best_time(lambda vq=vq, x=x: vq.encode(x), repeats)
        t_naive = _best_time(lambda x=x, c=codebook: torch.cdist(x, c).argmin(1), repeats)
        agree = (vq.encode(x) == torch.cdist(x.double(), codebook.double()).argmin(1)).float().mean().item()
        rows.append(
            {
                "device": device,
                "K": 1024,
                "d": dim,
                "N": num,
                "vqcodec_vectors_per_s": num / t_vq,
                "naive_cdist_vectors_per_s": num / t_naive,
                "speedup": t_naive / t_vq,
                "agreement_with_fp64_argmin": agree,
            }
        )
    return rows


# ----------------------------------------------------------------------------- memory


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> int:
    """Reset the kernel's peak-RSS mark (Linux clear_refs 5) and return the current RSS in bytes."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        current = _status_kib("VmRSS")
        if current is not None:
            return current * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _peak_rss() -> int:
    peak = _status_kib("VmHWM")
    return peak * 1024 if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _probe(method: str, num: int, dim: int, device: str) -> dict:
    """Runs in a fresh process: extra peak memory of one encode."""
    torch.manual_seed(0)
    vq = VectorQuantizer(dim, 1024, channel_first=False).to(device).eval()
    x = torch.randn(num, dim, device=device)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _reset_peak_rss()
    start = time.perf_counter()
    if method == "vqcodec":
        codes = vq.encode(x)
    else:
        codes = torch.cdist(x, vq.codebook).argmin(1)
    elapsed = time.perf_counter() - start
    if device == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = _peak_rss() - base
    return {
        "method": method,
        "N": num,
        "d": dim,
        "K": 1024,
        "device": device,
        "extra_peak_MiB": peak / 2**20,
        "seconds": elapsed,
        "codes": int(codes.numel()),
    }


def memory(device: str, num: int, threads: int) -> list[dict]:
    rows = []
    for method in ("vqcodec", "naive"):
        cmd = [sys.executable, __file__, "--probe", method, str(num), "64", device, "--threads", str(threads)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return rows


# ----------------------------------------------------------------------------- rate-distortion


def gaussian_data(dim: int, num: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(num, dim, generator=generator)


def image_latents(max_images: int, dim: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(train, test) top-``dim`` PCA coefficients of 8x8 grey patches, or None without the data."""
    root = DATA / "train"
    if not root.is_dir():
        return None
    from PIL import Image

    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if len(files) < 4:
        return None
    files = files[:: max(1, len(files) // max_images)][:max_images]
    patches = []
    for path in files:
        with Image.open(path) as im:
            im = im.convert("L")
            if max(im.size) > 768:  # large photos: downscale so patches hold structure, not flat areas
                scale = 768 / max(im.size)
                im = im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.LANCZOS)
            a = np.asarray(im, dtype=np.float32) / 255.0
        h, w = a.shape[0] // 8, a.shape[1] // 8
        p = a[: h * 8, : w * 8].reshape(h, 8, w, 8).transpose(0, 2, 1, 3).reshape(-1, 64)
        patches.append(p)
    half = len(patches) // 2  # split by image: no patch of a test image is seen in training
    train = np.concatenate(patches[:half])
    test = np.concatenate(patches[half:])
    mean = train.mean(0)
    _, _, vt = np.linalg.svd(train - mean, full_matrices=False)
    basis = vt[:dim].T
    to_latents = lambda x: torch.from_numpy(((x - mean) @ basis).astype(np.float32))  # noqa: E731
    return to_latents(train), to_latents(test)


def rd_rvq(train: torch.Tensor, test: torch.Tensor, max_stages: int, steps: int, batch: int) -> list[dict]:
    torch.manual_seed(0)
    rvq = ResidualVQ(
        train.shape[1], max_stages, 256, kmeans_init=True, threshold_ema_dead_code=1.0, channel_first=False
    )
    rvq.train()
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        pick = torch.randint(train.shape[0], (min(batch, train.shape[0]),), generator=generator)
        rvq(train[pick])
    rvq.eval()
    variance = test.var(0).mean().item()
    rows = []
    for k in range(1, max_stages + 1):
        recon = rvq.decode(rvq.encode(test, num_stages=k))
        mse = (recon - test).pow(2).mean().item()
        rows.append(_rd_row("RVQ", f"{k} stage(s) x K=256", 8 * k, test.shape[1], mse, variance))
    return rows


def rd_fsq(train: torch.Tensor, test: torch.Tensor, level_sets: list[int]) -> list[dict]:
    dim = train.shape[1]
    std = train.std(0)
    variance = test.var(0).mean().item()
    rows = []
    for level in level_sets:
        fsq = FSQ([level] * dim, channel_first=False).eval()
        best = None
        for gain in (0.25, 0.35, 0.5, 0.7, 1.0, 1.4):
            # per-channel affine decoder fitted on the training split, evaluated on the test split
            q_train = fsq.decode(fsq.encode(train / std * gain))
            a, b = _affine_fit(q_train, train)
            recon = fsq.decode(fsq.encode(test / std * gain)) * a + b
            mse = (recon - test).pow(2).mean().item()
            if best is None or mse < best[0]:
                best = (mse, gain)
        assert best is not None
        row = _rd_row(
            "FSQ", f"levels {level}^{dim}, gain {best[1]}", dim * math.log2(level), dim, best[0], variance
        )
        rows.append(row)
    return rows


def _affine_fit(q: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    qm, tm = q.mean(0), target.mean(0)
    cov = ((q - qm) * (target - tm)).mean(0)
    a = cov / (q - qm).pow(2).mean(0).clamp_min(1e-12)
    return a, tm - a * qm


def _rd_row(quantizer: str, setting: str, bits: float, dim: int, mse: float, variance: float) -> dict:
    return {
        "quantizer": quantizer,
        "setting": setting,
        "bits_per_vector": bits,
        "bits_per_dim": bits / dim,
        "mse_per_dim": mse,
        "nmse_db": 10 * math.log10(mse / variance),
    }


def rate_distortion(quick: bool) -> dict[str, list[dict]]:
    steps = 10 if quick else 30
    out: dict[str, list[dict]] = {}
    dim = 16
    train, test = gaussian_data(dim, 32768, 0), gaussian_data(dim, 16384, 1)
    rows = rd_rvq(train, test, 8, steps, 16384) + rd_fsq(train, test, [3, 4, 5, 8, 16])
    for row in rows:
        row["shannon_bound_nmse_db"] = 10 * math.log10(2 ** (-2 * row["bits_per_dim"]))
    out["gaussian_d16"] = rows
    latents = image_latents(12 if quick else 40, dim)
    if latents is None:
        print(f"[skip] image latents: no training images under {DATA / 'train'}")
    else:
        train, test = latents
        out["image_pca16_8x8"] = rd_rvq(train, test, 8, steps, 16384) + rd_fsq(train, test, [3, 4, 5, 8, 16])
        out["image_pca16_8x8_info"] = [
            {"train_vectors": int(train.shape[0]), "test_vectors": int(test.shape[0])}
        ]
    return out


# ----------------------------------------------------------------------------- main


def _print_table(title: str, rows: list[dict], columns: list[str]) -> None:
    print(f"\n## {title}")
    print(" | ".join(columns))
    for row in rows:
        cells = []
        for col in columns:
            value = row.get(col, "")
            cells.append(f"{value:.4g}" if isinstance(value, float) else str(value))
        print(" | ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller N and fewer steps (development)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--memory-n", type=int, default=1 << 18)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--probe", nargs=4, metavar=("METHOD", "N", "D", "DEVICE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.probe:
        method, num, dim, device = args.probe
        print(json.dumps(_probe(method, int(num), int(dim), device)))
        return
    num = 1 << 14 if args.quick else 1 << 16
    results: dict = {
        "machine": {
            "platform": platform.platform(),
            "torch": torch.__version__,
            "threads": args.threads,
            "device": args.device,
        },
        "throughput": throughput(args.device, num, args.repeats),
        "memory": memory(args.device, args.memory_n >> (2 if args.quick else 0), args.threads),
    }
    if args.device == "cpu":
        results["rate_distortion"] = rate_distortion(args.quick)
    _print_table(
        "encode throughput",
        results["throughput"],
        [
            "device",
            "K",
            "d",
            "N",
            "vqcodec_vectors_per_s",
            "naive_cdist_vectors_per_s",
            "speedup",
            "agreement_with_fp64_argmin",
        ],
    )
    _print_table(
        "peak memory of one encode (d=64, K=1024)",
        results["memory"],
        ["method", "device", "N", "extra_peak_MiB", "seconds"],
    )
    for name, rows in results.get("rate_distortion", {}).items():
        if name.endswith("_info"):
            continue
        cols = ["quantizer", "setting", "bits_per_vector", "bits_per_dim", "mse_per_dim", "nmse_db"]
        if name.startswith("gaussian"):
            cols.append("shannon_bound_nmse_db")
        _print_table(f"rate-distortion: {name}", rows, cols)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.output.relative_to(REPO) if args.output.is_relative_to(REPO) else args.output}")


if __name__ == "__main__":
    main()
