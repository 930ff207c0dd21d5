"""Entropy-coding benchmark: coded size against ideal bits, speed, and prior comparison.

Sections (all printed as tables and written to benchmarks/results/entropy.json):
  synthetic   coder overhead on ~5 KB payloads (header included), speed on large streams that
              share a few tables, ANS vs constriction's range coder (the design choice).
  checkpoint  (--checkpoint/--hparams) codes of an image-codec training checkpoint before it is
              bundled: factorized vs spatial-context prior fitted on train codes, on Kodak.
  model       the bundled image model's Kodak codes (--model NAME): coded vs ideal size, speed,
              and factorized vs spatial-context priors refitted on the model's train codes.

Usage: python benchmarks/entropy.py [--quick] [--model NAME] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import constriction
import numpy as np
import zstandard
from PIL import Image

from vqcodec.entropy import FactorizedPrior, SpatialContextPrior, quantize_pmf
from vqcodec.entropy.cdf import ideal_bits_of
from vqcodec.entropy.coder import CodingTables, decode_symbols, encode_symbols

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("VQCODEC_DATA", HERE.parents[1] / "shared" / "data"))


def _load(path: Path, max_side: int) -> np.ndarray:
    """An image as (H, W, 3) float32 in [0, 1], downscaled (Lanczos) so its longer side is <= max_side."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        scale = max_side / max(im.size)
        if scale < 1:
            im = im.resize((max(16, round(im.width * scale)), max(16, round(im.height * scale))),
                           Image.Resampling.LANCZOS)
        return np.asarray(im, dtype=np.float32) / 255.0


def train_images(limit: int) -> list[Path]:
    """``limit`` training photos spread evenly over ../shared/data/train (never Kodak)."""
    files = sorted(p for p in (DATA / "train").rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    step = max(1, len(files) // limit)
    return files[::step][:limit]


def kodak_images() -> list[Path]:
    return sorted((DATA / "kodak").glob("*.png"))


def _best_time(fn: Any, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _sample(rng: np.random.Generator, freqs: np.ndarray, tables: np.ndarray) -> np.ndarray:
    out = np.empty(tables.shape[0], dtype=np.int64)
    for t in range(freqs.shape[0]):
        idx = np.flatnonzero(tables == t)
        out[idx] = rng.choice(freqs.shape[1], size=idx.size, p=freqs[t] / freqs[t].sum())
    return out


def _zstd_raw(codes: np.ndarray) -> int:
    raw = np.ascontiguousarray(codes, dtype="<u2").tobytes()
    return len(zstandard.ZstdCompressor(level=19).compress(raw))


def _table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3e}"
        return str(v)

    cells = [[fmt(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(x[i]) for x in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(x.rjust(w) for x, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def synthetic(quick: bool) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    k, num_tables = 1024, 4
    freqs = quantize_pmf(rng.dirichlet(np.full(k, 0.05), size=num_tables), 16)
    # ~5 KB payloads: a factorized prior over 4 streams of 32x32 codes
    prior = FactorizedPrior(alphabet=(k,) * num_tables, freqs=freqs, precision=16)
    small = []
    for _trial in range(20):
        codes = np.stack([_sample(rng, freqs[s : s + 1], np.zeros(1024, dtype=np.int64)).reshape(32, 32)
                          for s in range(num_tables)])
        payload = prior.encode(codes)
        assert np.array_equal(prior.decode(payload, codes.shape), codes)
        small.append((prior.ideal_bits(codes) / 8, len(payload), _zstd_raw(codes)))
    ideal, actual, zstd = (float(np.mean([s[i] for s in small])) for i in range(3))
    rows = [{"case": "5KB payload (4x32x32, K=1024)", "symbols": 4096, "ideal_bytes": ideal,
             "payload_bytes": actual, "overhead_%": 100 * (actual / ideal - 1), "zstd19_raw_bytes": zstd}]

    n = 1_000_000 if quick else 4_000_000
    tables = rng.integers(0, num_tables, n)
    symbols = _sample(rng, freqs, tables)
    ct = CodingTables(freqs)
    repeat = 2 if quick else 3
    data = encode_symbols(symbols, tables, ct)
    assert np.array_equal(decode_symbols(data, tables, ct), symbols)
    ideal_big = ideal_bits_of(symbols, tables, freqs) / 8
    t_enc = _best_time(lambda: encode_symbols(symbols, tables, ct), repeat)
    t_dec = _best_time(lambda: decode_symbols(data, tables, ct), repeat)
    speed = [{"case": f"coder, {n} symbols, 4 tables interleaved", "encode_Msym_s": n / t_enc / 1e6,
              "decode_Msym_s": n / t_dec / 1e6, "overhead_%": 100 * (len(data) / ideal_big - 1)}]
    # the same through the factorized prior, codes (4, H, W) already grouped per stream
    side = int(np.sqrt(n / num_tables))
    flat = np.zeros(side * side, dtype=np.int64)
    codes = np.stack([_sample(rng, freqs[s : s + 1], flat).reshape(side, side) for s in range(num_tables)])
    payload = prior.encode(codes)
    m = codes.size
    t_enc = _best_time(lambda: prior.encode(codes), repeat)
    t_dec = _best_time(lambda: prior.decode(payload, codes.shape), repeat)
    speed.append({"case": f"FactorizedPrior, codes {codes.shape}", "encode_Msym_s": m / t_enc / 1e6,
                  "decode_Msym_s": m / t_dec / 1e6,
                  "overhead_%": 100 * (len(payload) / (prior.ideal_bits(codes) / 8) - 1)})

    # design choice: constriction's range coder (queue) vs ANS (stack), same grouped symbols
    order = np.argsort(tables.astype(np.uint16), kind="stable")
    grouped = symbols[order].astype(np.int32)
    counts = np.bincount(tables, minlength=num_tables)
    models = [ct.model(t) for t in range(num_tables)]

    def range_encode() -> np.ndarray:
        enc = constriction.stream.queue.RangeEncoder()
        start = 0
        for t in range(num_tables):
            enc.encode(grouped[start : start + counts[t]], models[t])
            start += counts[t]
        return enc.get_compressed()

    def range_decode(words: np.ndarray) -> None:
        dec = constriction.stream.queue.RangeDecoder(words)
        for t in range(num_tables):
            dec.decode(models[t], int(counts[t]))

    def ans_encode() -> np.ndarray:
        enc = constriction.stream.stack.AnsCoder()
        end = int(counts.sum())
        for t in range(num_tables - 1, -1, -1):
            enc.encode_reverse(grouped[end - counts[t] : end], models[t])
            end -= counts[t]
        return enc.get_compressed()

    def ans_decode(words: np.ndarray) -> None:
        dec = constriction.stream.stack.AnsCoder(words)
        for t in range(num_tables):
            dec.decode(models[t], int(counts[t]))

    for label, enc_fn, dec_fn in (("range coder (queue)", range_encode, range_decode),
                                  ("ANS (stack)", ans_encode, ans_decode)):
        words = enc_fn()
        t_enc = _best_time(enc_fn, repeat)
        t_dec = _best_time(lambda: dec_fn(words), repeat)  # noqa: B023 (used right here)
        speed.append({"case": f"{label}, raw constriction calls, pre-grouped",
                      "encode_Msym_s": n / t_enc / 1e6, "decode_Msym_s": n / t_dec / 1e6,
                      "overhead_%": 100 * (words.nbytes / ideal_big - 1)})
    return {"payload_5kb": rows, "speed": speed}


def _prior_rows(name: str, prior: Any, items: list[np.ndarray], streams: int, pixels: list[int]
                ) -> dict[str, Any]:
    ideal = actual = zstd = 0.0
    t_enc = t_dec = 0.0
    for codes in items:
        c = codes[:streams]
        t0 = time.perf_counter()
        payload = prior.encode(c)
        t1 = time.perf_counter()
        out = prior.decode(payload, c.shape)
        t2 = time.perf_counter()
        assert np.array_equal(out, c)
        t_enc += t1 - t0
        t_dec += t2 - t1
        ideal += prior.ideal_bits(c) / 8
        actual += len(payload)
        zstd += _zstd_raw(c)
    n = len(items)
    symbols = sum(c[:streams].size for c in items)
    return {"prior": name, "streams": streams, "bytes_per_image": actual / n, "ideal_bytes": ideal / n,
            "overhead_%": 100 * (actual / ideal - 1), "bpp": 8 * actual / sum(pixels),
            "bits_per_code": 8 * actual / symbols, "zstd19_raw_bytes": zstd / n,
            "encode_ms": 1e3 * t_enc / n, "decode_ms": 1e3 * t_dec / n,
            "encode_Msym_s": symbols / t_enc / 1e6, "decode_Msym_s": symbols / t_dec / 1e6}


def compare_priors(train: list[np.ndarray], test: list[np.ndarray], alphabet: tuple[int, ...],
                   pixels: list[int], stream_counts: list[int] | None = None) -> dict[str, Any]:
    t0 = time.perf_counter()
    fac = FactorizedPrior.fit(train, alphabet)
    t1 = time.perf_counter()
    con = SpatialContextPrior.fit(train, alphabet)
    t2 = time.perf_counter()
    rows = []
    for streams in stream_counts or range(1, len(alphabet) + 1):
        a = _prior_rows("factorized", fac, test, streams, pixels)
        b = _prior_rows("spatial_context", con, test, streams, pixels)
        b["saving_vs_factorized_%"] = 100 * (1 - b["bytes_per_image"] / a["bytes_per_image"])
        rows += [a, b]
    return {"rows": rows, "context_stage_modes": list(con.stage_modes),
            "table_bytes": {"factorized": fac.table_bytes(), "spatial_context": con.table_bytes()},
            "num_tables": {"factorized": fac.tables.num_tables, "spatial_context": con.tables.num_tables},
            "fit_seconds": {"factorized": t1 - t0, "spatial_context": t2 - t1}}


def checkpoint_codes(checkpoint: str, hparams: str, train_limit: int) -> dict[str, Any] | None:
    """Codes of an image-codec training checkpoint (before a bundle exists): priors fitted on
    the codes of train images, evaluated on Kodak, at the stream counts of the quality levels."""
    import torch

    from vqcodec.train.export import network_from_checkpoint

    config = json.loads(Path(hparams).read_text())["module"]["config"]
    network = network_from_checkpoint(checkpoint, config)
    cfg = network.config
    top = cfg.quality_levels

    def codes_of(img: np.ndarray) -> np.ndarray:
        st = 16
        img = np.ascontiguousarray(img[: img.shape[0] // st * st, : img.shape[1] // st * st])
        x = torch.from_numpy(img).permute(2, 0, 1)[None]
        with torch.no_grad():
            return network.to_codes(x, top)[0].numpy().astype(np.int64)

    train = [codes_of(_load(p, 768)) for p in train_images(train_limit)]
    kodak = [codes_of(_load(p, 10**6)) for p in kodak_images()]
    alphabet = (cfg.codebook_size,) * train[0].shape[0]
    counts = sorted({cfg.stages_for_quality(q) for q in range(1, top + 1)})
    pixels = [c.shape[1] * c.shape[2] * 256 for c in kodak]
    result = compare_priors(train, kodak, alphabet, pixels, counts)
    result["setup"] = (f"checkpoint {Path(checkpoint).name} of {Path(hparams).parent.name}: codes of "
                       f"{len(train)} train images (fit), Kodak (eval), stream counts {counts}")
    return result


def bundled_model(name: str | None, train_limit: int = 40) -> dict[str, Any] | None:
    from vqcodec.models.zoo import DEFAULT_IMAGE_MODEL, load_model

    if not kodak_images():
        print(f"no Kodak images under {DATA}: skipping the bundled model")
        return None
    name = name or DEFAULT_IMAGE_MODEL
    if not name:
        print("no bundled image model: skipping")
        return None
    import torch

    model = load_model(name)
    if model.prior is None:
        print(f"model {name} has no prior: skipping")
        return None
    rows = []
    for quality in sorted({1, model.quality_levels}):
        ideal = actual = 0.0
        pixels = 0
        t_enc = t_dec = 0.0
        for path in kodak_images():
            with Image.open(path) as im:
                x = torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)
            with torch.no_grad():
                c = model.to_codes(x[None], quality)[0].numpy()
            t0 = time.perf_counter()
            payload = model.prior.encode(c)
            t1 = time.perf_counter()
            assert np.array_equal(model.prior.decode(payload, c.shape), c)
            t_dec += time.perf_counter() - t1
            t_enc += t1 - t0
            ideal += model.prior.ideal_bits(c) / 8
            actual += len(payload)
            pixels += x.shape[1] * x.shape[2]
        n = len(kodak_images())
        rows.append({"model": name, "quality": quality, "prior": model.prior.name,
                     "bytes_per_image": actual / n, "ideal_bytes": ideal / n,
                     "overhead_%": 100 * (actual / ideal - 1), "bpp": 8 * actual / pixels,
                     "encode_ms": 1e3 * t_enc / n, "decode_ms": 1e3 * t_dec / n})
    result: dict[str, Any] = {"rows": rows, "table_bytes": model.prior.table_bytes()}
    # factorized vs context prior on this model's codes: fit on train images, evaluate on Kodak

    def codes_of(img: np.ndarray) -> np.ndarray:
        st = model.stride
        img = img[: img.shape[0] // st * st, : img.shape[1] // st * st]
        x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None]
        with torch.no_grad():
            return model.to_codes(x, model.quality_levels)[0].numpy().astype(np.int64)

    train = [codes_of(_load(p, 768)) for p in train_images(train_limit)]
    kodak = [codes_of(_load(p, 10**6)) for p in kodak_images()]
    alphabet = tuple(int(max(c[s].max() for c in train + kodak)) + 1 for s in range(train[0].shape[0]))
    if hasattr(model.prior, "alphabet"):
        alphabet = tuple(model.prior.alphabet)[: len(alphabet)]
    pixels = [c.shape[1] * c.shape[2] * model.stride**2 for c in kodak]
    result["priors_on_model_codes"] = compare_priors(train, kodak, alphabet, pixels)
    result["priors_on_model_codes"]["setup"] = f"codes of {len(train)} train images (fit), Kodak (eval)"
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller streams and fewer images")
    ap.add_argument("--model", default=None, help="bundled model name (default: the default image model)")
    ap.add_argument("--out", default=str(HERE / "results" / "entropy.json"))
    ap.add_argument("--checkpoint", default=None, help="image-codec training checkpoint to take codes from")
    ap.add_argument("--hparams", default=None, help="hparams.json of that training run")
    ap.add_argument("--skip-synthetic", action="store_true")
    args = ap.parse_args(argv)

    result: dict[str, Any] = {"machine": {"python": platform.python_version(), "numpy": np.__version__,
                                          "cpu": platform.processor() or platform.machine(),
                                          "cpu_count": os.cpu_count(),
                                          "load_average_at_start": os.getloadavg()}}
    print(f"load average at start: {os.getloadavg()} on {os.cpu_count()} CPUs (timings are single-threaded)")
    if args.checkpoint:
        ck = checkpoint_codes(args.checkpoint, args.hparams, 20 if args.quick else 60)
        if ck is not None:
            result["checkpoint"] = ck
            print(f"\n== {ck['setup']} ==")
            print(_table(ck["rows"], ["prior", "streams", "bytes_per_image", "ideal_bytes", "overhead_%",
                                      "bpp", "bits_per_code", "zstd19_raw_bytes", "saving_vs_factorized_%",
                                      "encode_ms", "decode_ms"]))
            print(f"stage modes: {ck['context_stage_modes']}; tables: {ck['num_tables']}; "
                  f"table bytes: {ck['table_bytes']}")
    if not args.skip_synthetic:
        syn = synthetic(args.quick)
        result["synthetic"] = syn
        print("\n== synthetic: ~5 KB payloads (ideal = cross-entropy under the integer tables) ==")
        print(_table(syn["payload_5kb"], ["case", "symbols", "ideal_bytes", "payload_bytes", "overhead_%",
                                          "zstd19_raw_bytes"]))
        print("\n== synthetic: throughput (1 thread) ==")
        print(_table(syn["speed"], ["case", "encode_Msym_s", "decode_Msym_s", "overhead_%"]))

    model = bundled_model(args.model, 20 if args.quick else 60)
    if model is not None:
        result["model"] = model
        print("\n== bundled model on Kodak ==")
        print(_table(model["rows"], ["model", "quality", "prior", "bytes_per_image", "ideal_bytes",
                                     "overhead_%", "bpp", "encode_ms", "decode_ms"]))
        cmp = model["priors_on_model_codes"]
        print(f"\n== priors refitted on the model's codes: {cmp['setup']} ==")
        print(_table(cmp["rows"], ["prior", "streams", "bytes_per_image", "ideal_bytes", "overhead_%", "bpp",
                                   "bits_per_code", "zstd19_raw_bytes", "saving_vs_factorized_%"]))
        print(f"stage modes chosen: {cmp['context_stage_modes']}; table bytes: {cmp['table_bytes']}")

    return _write(result, args.out)


def _write(result: dict[str, Any], path: str) -> int:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
