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

``--vs-upstream``: side by side with lucidrains' vector-quantize-pytorch (``pip install .[bench]``), same
inputs and settings, CPU, one interleaved run (the two libraries alternate within every repeat):
encode vectors/s (upstream: eval-mode forward under no_grad, its fastest code path) and training
forward+backward steps/s for VQ (K=1024, d=64 and 256), RVQ-8 (K=1024, d=64), FSQ (8,5,5,5) and LFQ
(K=1024) behind a d=64 projection; the extra peak RSS of one training step (fresh subprocess per library
and row); and reconstruction MSE on held-out real image latents after the same number of k-means + EMA
steps (VQ K=256 and RVQ-8 K=256 on 16-d PCA patch latents).  Writes
benchmarks/results/quantize_vs_upstream.json.
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


# ----------------------------------------------------------------------------- vs vector-quantize-pytorch

UPSTREAM = REPO / "benchmarks" / "results" / "quantize_vs_upstream.json"
MSE_SEEDS = 5
VS_ROWS = ("VQ d=64", "VQ d=256", "RVQ-8 d=64", "FSQ 8555 d=64", "LFQ K=1024 d=64")


def _pair(row: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(vqcodec module, upstream module) with the same settings, both taking (B, N, d)."""
    import vector_quantize_pytorch as vqp

    from vqcodec.quantize import LFQ

    torch.manual_seed(0)
    common = dict(decay=0.99, commitment_weight=0.25)
    if row.startswith("VQ"):
        d = int(row.split("=")[1])
        return (
            VectorQuantizer(d, 1024, channel_first=False, **common),
            vqp.VectorQuantize(dim=d, codebook_size=1024, **common),
        )
    if row.startswith("RVQ"):
        return (
            ResidualVQ(64, 8, 1024, channel_first=False, **common),
            vqp.ResidualVQ(dim=64, num_quantizers=8, codebook_size=1024, **common),
        )
    if row.startswith("FSQ"):
        return FSQ((8, 5, 5, 5), dim=64, channel_first=False), vqp.FSQ(levels=[8, 5, 5, 5], dim=64)
    return (
        LFQ(64, 1024, channel_first=False),
        vqp.LFQ(dim=64, codebook_size=1024, entropy_loss_weight=0.1, commitment_loss_weight=0.25),
    )


def _loss_of(out) -> torch.Tensor:
    """Summed auxiliary loss of either library's training output."""
    if hasattr(out, "total_loss"):
        return out.total_loss
    if len(out) < 3:  # upstream FSQ returns (quantized, indices): no loss
        return out[0].new_zeros(())
    loss = out[2]
    return loss.sum() if loss.numel() > 1 else loss.reshape(())


def _vs_functions(row: str, lib: str, module: torch.nn.Module, x: torch.Tensor):
    def encode():
        module.eval()
        with torch.no_grad():
            return module.encode(x) if lib == "vqcodec" else module(x)[1]

    def train_step():
        module.train()
        xg = x.detach().requires_grad_(True)
        out = module(xg)
        quantized = out.quantized if lib == "vqcodec" else out[0]
        ((quantized - x).pow(2).mean() + _loss_of(out)).backward()

    return encode, train_step


def vs_upstream_speed(num: int, repeats: int) -> list[dict]:
    rows = []
    for row in VS_ROWS:
        ours, theirs = _pair(row)
        x = torch.randn(1, num, 64 if "256" not in row else 256)
        fns = {
            "vqcodec": _vs_functions(row, "vqcodec", ours, x),
            "upstream": _vs_functions(row, "upstream", theirs, x),
        }
        times: dict[tuple[str, str], float] = {}
        for kind in (0, 1):
            for lib in fns:  # warm-up (also runs the first training step's initialisation)
                fns[lib][kind]()
            for _ in range(repeats):
                for lib in fns:  # interleaved: both libraries see the same machine state
                    start = time.perf_counter()
                    fns[lib][kind]()
                    elapsed = time.perf_counter() - start
                    times[(lib, str(kind))] = min(times.get((lib, str(kind)), math.inf), elapsed)
        enc = {lib: num / times[(lib, "0")] for lib in fns}
        steps = {lib: 1.0 / times[(lib, "1")] for lib in fns}
        rows.append(
            {
                "row": row,
                "N": num,
                "vqcodec_encode_vps": enc["vqcodec"],
                "upstream_encode_vps": enc["upstream"],
                "encode_ratio": enc["vqcodec"] / enc["upstream"],
                "vqcodec_train_steps_s": steps["vqcodec"],
                "upstream_train_steps_s": steps["upstream"],
                "train_ratio": steps["vqcodec"] / steps["upstream"],
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def _vs_probe(row: str, lib: str, num: int) -> dict:
    """Fresh process: extra peak RSS of the first training forward+backward (module and input built)."""
    ours, theirs = _pair(row)
    module = ours if lib == "vqcodec" else theirs
    x = torch.randn(1, num, 64 if "256" not in row else 256)
    _, train_step = _vs_functions(row, lib, module, x)
    # no warm-up step: its freed memory would stay cached by the allocator and hide the peak
    base = _reset_peak_rss()
    train_step()
    return {"row": row, "lib": lib, "N": num, "extra_peak_MiB": (_peak_rss() - base) / 2**20}


def vs_upstream_memory(num: int, threads: int) -> list[dict]:
    rows = []
    for row in VS_ROWS:
        result = {"row": row, "N": num}
        for lib in ("vqcodec", "upstream"):
            cmd = [sys.executable, __file__, "--vs-probe", row, lib, str(num), "--threads", str(threads)]
            for _attempt in range(2):  # one retry: a probe can be killed when the shared machine is busy
                out = subprocess.run(cmd, capture_output=True, text=True)
                if out.returncode == 0:
                    break
            if out.returncode != 0:
                raise RuntimeError(f"memory probe {row} / {lib} failed: {out.stderr.strip()[-400:]}")
            result[f"{lib}_peak_MiB"] = json.loads(out.stdout.strip().splitlines()[-1])["extra_peak_MiB"]
        result["memory_ratio"] = result["vqcodec_peak_MiB"] / max(result["upstream_peak_MiB"], 1e-9)
        rows.append(result)
    return rows


def vs_upstream_mse(steps: int, batch: int) -> list[dict]:
    """Held-out MSE after the same k-means init + EMA steps, on PCA patch latents (Gaussian without data)."""
    import vector_quantize_pytorch as vqp

    data = image_latents(48, 16)
    source = "image PCA latents"
    if data is None:
        source = "gaussian"
        data = (gaussian_data(16, 1 << 16, 0), gaussian_data(16, 1 << 14, 1))
    train, test = data
    rows = []
    settings = dict(
        decay=0.99, commitment_weight=0.25, kmeans_init=True, kmeans_iters=10, threshold_ema_dead_code=2
    )
    for name in ("VQ K=256", "RVQ-8 K=256"):
        # one seed is noise-level (per-seed ratios range 0.996-1.025 on RVQ-8): average MSE_SEEDS runs
        # that differ in initial state and batch order, the same for both libraries within a seed.
        # vqcodec runs twice per seed: with upstream's settings, and with those plus
        # revive_by_error (an option upstream does not have), on the same batches
        per_seed: dict[str, list[tuple[float, float]]] = {"": [], ", revive_by_error": []}
        for seed in range(MSE_SEEDS):
            torch.manual_seed(seed)
            if name.startswith("VQ"):
                ours = {
                    label: VectorQuantizer(
                        16, 256, channel_first=False, revive_by_error=bool(label), **settings
                    )
                    for label in per_seed
                }
                theirs = vqp.VectorQuantize(dim=16, codebook_size=256, **settings)
            else:
                ours = {
                    label: ResidualVQ(
                        16, 8, 256, channel_first=False, revive_by_error=bool(label), **settings
                    )
                    for label in per_seed
                }
                theirs = vqp.ResidualVQ(dim=16, num_quantizers=8, codebook_size=256, **settings)
            generator = torch.Generator().manual_seed(seed)
            for model in (*ours.values(), theirs):
                model.train()
            for _ in range(steps):  # identical batches for all
                pick = torch.randint(train.shape[0], (batch,), generator=generator)
                with torch.no_grad():
                    for model in (*ours.values(), theirs):
                        model(train[pick][None])
            for model in (*ours.values(), theirs):
                model.eval()
            with torch.no_grad():
                mse_theirs = float((theirs(test[None])[0] - test[None]).pow(2).mean())
                for label, model in ours.items():
                    mse_ours = float((model.decode(model.encode(test[None])) - test[None]).pow(2).mean())
                    per_seed[label].append((mse_ours, mse_theirs))
        for label, pairs in per_seed.items():
            mean_ours = sum(a for a, _ in pairs) / len(pairs)
            mean_theirs = sum(b for _, b in pairs) / len(pairs)
            rows.append(
                {
                    "row": name + label,
                    "data": source,
                    "ema_steps": steps,
                    "seeds": len(pairs),
                    "vqcodec_mse": mean_ours,
                    "upstream_mse": mean_theirs,
                    "mse_ratio": mean_ours / mean_theirs,
                    "per_seed_ratio": [round(a / b, 4) for a, b in pairs],
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def vs_upstream(args: argparse.Namespace) -> None:
    import vector_quantize_pytorch  # noqa: F401  (clear error when the bench extra is missing)

    num = args.vs_n
    sections = set(args.vs_sections.split(","))
    unknown = sections - {"speed", "memory", "mse"}
    if unknown:
        raise SystemExit(f"unknown --vs-sections {sorted(unknown)}; known: speed, memory, mse")
    results: dict = {
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": args.threads},
        "upstream_version": _upstream_version(),
        "speed": vs_upstream_speed(num, args.repeats) if "speed" in sections else [],
        "memory": vs_upstream_memory(num, args.threads) if "memory" in sections else [],
        "mse": vs_upstream_mse(args.vs_steps, 4096) if "mse" in sections else [],
    }
    _print_table(
        f"vs vector-quantize-pytorch: speed (CPU, N={num}, ratio = vqcodec / upstream, > 1 is faster)",
        results["speed"],
        [
            "row",
            "vqcodec_encode_vps",
            "upstream_encode_vps",
            "encode_ratio",
            "vqcodec_train_steps_s",
            "upstream_train_steps_s",
            "train_ratio",
        ],
    )
    _print_table(
        "peak memory of one training step",
        results["memory"],
        ["row", "vqcodec_peak_MiB", "upstream_peak_MiB", "memory_ratio"],
    )
    _print_table(
        "held-out MSE after the same EMA steps (< 1 is better)",
        results["mse"],
        ["row", "data", "ema_steps", "vqcodec_mse", "upstream_mse", "mse_ratio"],
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    out = args.output if args.output != RESULTS else UPSTREAM
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {out}")


def _upstream_version() -> str:
    from importlib.metadata import version

    return version("vector-quantize-pytorch")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller N and fewer steps (development)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--memory-n", type=int, default=1 << 18)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--probe", nargs=4, metavar=("METHOD", "N", "D", "DEVICE"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--vs-upstream", action="store_true", help="side by side with vector-quantize-pytorch"
    )
    parser.add_argument("--vs-n", type=int, default=1 << 16, help="vectors per batch for --vs-upstream")
    parser.add_argument("--vs-steps", type=int, default=200, help="EMA steps for the --vs-upstream MSE rows")
    parser.add_argument(
        "--vs-sections",
        default="speed,memory,mse",
        help="--vs-upstream sections to run (comma-separated; the JSON holds empty lists for the others)",
    )
    parser.add_argument("--vs-probe", nargs=3, metavar=("ROW", "LIB", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.vs_probe:
        row, lib, num = args.vs_probe
        print(json.dumps(_vs_probe(row, lib, int(num))))
        return
    if args.vs_upstream:
        vs_upstream(args)
        return
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
