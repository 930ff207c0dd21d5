"""Entropy-coding benchmark: coded size against ideal bits, speed, and prior comparison.

Sections (all printed as tables and written to benchmarks/results/entropy.json):
  synthetic   coder overhead on ~5 KB payloads (header included), speed on large streams that
              share a few tables, ANS vs constriction's range coder (the design choice).
  patch_rvq   real image codes before a trained codec exists: a residual k-means on PCA'd 16x16
              patches fitted on ../shared/data/train, evaluated on Kodak; factorized vs spatial
              context prior (fitted on train codes), overhead, zstd-19 of the raw codes, speed.
  model       the bundled image model's Kodak codes (when a bundled model exists; --model NAME).

Usage: python benchmarks/entropy.py [--quick] [--model NAME] [--out PATH]
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

import constriction
import numpy as np
import zstandard

from vqcodec.entropy import FactorizedPrior, SpatialContextPrior, quantize_pmf
from vqcodec.entropy.cdf import ideal_bits_of
from vqcodec.entropy.coder import CodingTables, decode_symbols, encode_symbols

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


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


def stage_group_ablation(train: list[np.ndarray], test: list[np.ndarray], k: int, groups: int = 16,
                         smoothing: float = 0.5, iters: int = 10) -> list[dict[str, Any]]:
    """Ideal bits of the alternative context considered: stream s conditioned on the group of the
    stream s-1 code at the same position (codes clustered into ``groups`` by the KL divergence of
    their next-stage distributions, tables per (stream, group)), vs factorized and vs the full
    previous code as context.  Cross-entropy on ``test`` only (no coder), bits per code."""
    rows = []
    for s in range(1, train[0].shape[0]):
        joint = np.zeros((k, k))
        for c in train:
            np.add.at(joint, (c[s - 1].reshape(-1), c[s].reshape(-1)), 1)
        marginal = joint.sum(0) + smoothing
        marginal /= marginal.sum()
        group_of = np.argsort(np.argsort(-joint.sum(1))) % groups  # start: interleave by frequency
        for _ in range(iters):  # Lloyd iterations with the cross-entropy as distance
            counts = np.stack([joint[group_of == g].sum(0) for g in range(groups)]) + smoothing
            log_q = np.log(counts / counts.sum(1, keepdims=True))
            group_of = np.argmax(joint @ log_q.T, axis=1)
        counts = np.stack([joint[group_of == g].sum(0) for g in range(groups)]) + smoothing
        q = counts / counts.sum(1, keepdims=True)
        full = (joint + smoothing) / (joint + smoothing).sum(1, keepdims=True)
        bits = {"factorized": 0.0, f"prev-stage {groups} groups": 0.0, "prev-stage full code": 0.0}
        n = 0
        for c in test:
            a, b = c[s - 1].reshape(-1), c[s].reshape(-1)
            bits["factorized"] -= np.log2(marginal[b]).sum()
            bits[f"prev-stage {groups} groups"] -= np.log2(q[group_of[a], b]).sum()
            bits["prev-stage full code"] -= np.log2(full[a, b]).sum()
            n += b.size
        rows.append({"stream": s, **{name: v / n for name, v in bits.items()}})
    return rows


def patch_rvq(quick: bool) -> dict[str, Any] | None:
    from _patch_rvq import DATA, real_codes

    if not (DATA / "train").is_dir() or not (DATA / "kodak").is_dir():
        print(f"shared data not found under {DATA}: skipping real image codes")
        return None
    codes = real_codes(stages=4, k=1024, dims=64, train_limit=60 if quick else 120)
    pixels = [c.shape[1] * c.shape[2] * 256 for c in codes["kodak"]]
    result = compare_priors(codes["train"], codes["kodak"], (1024,) * 4, pixels)
    result["stage_group_ablation"] = stage_group_ablation(codes["train"], codes["kodak"], 1024)
    con = SpatialContextPrior.fit(codes["train"], (1024,) * 4)
    kodak = codes["kodak"]
    # speed on a large map: 16 landscape Kodak code maps tiled 4 x 4 -> (4, 128, 192)
    land = [c for c in kodak if c.shape == kodak[0].shape][:16]
    if len(land) == 16:
        big = np.concatenate([np.concatenate(land[i * 4 : (i + 1) * 4], axis=2) for i in range(4)], axis=1)
        fac = FactorizedPrior.fit(codes["train"], (1024,) * 4)
        speed = []
        for name, prior in (("factorized", fac), ("spatial_context", con)):
            payload = prior.encode(big)
            t_enc = _best_time(lambda p=prior: p.encode(big), 3)
            t_dec = _best_time(lambda p=prior, d=payload: p.decode(d, big.shape), 3)
            speed.append({"prior": name, "codes": str(big.shape), "encode_Msym_s": big.size / t_enc / 1e6,
                          "decode_Msym_s": big.size / t_dec / 1e6, "bytes": len(payload)})
        result["large_map_speed"] = speed
    result["stage_group_ablation_spatial_context"] = [
        {"stream": s,
         "spatial_context": sum(con.ideal_bits(c[: s + 1]) - con.ideal_bits(c[:s]) for c in kodak)
         / sum(c[s].size for c in kodak)}
        for s in range(1, 4)]
    result["setup"] = ("residual k-means (4 stages x 1024) on 64-d PCA of 16x16 RGB patches, fitted on "
                       f"{len(codes['train'])} train images; priors fitted on their codes; "
                       "Kodak (24) evaluated")
    return result


def video(quick: bool) -> dict[str, Any] | None:
    """Reference (previous frame) coding: priors fitted on video_train clips, evaluated on video/."""
    from _patch_rvq import DATA, video_codes

    if not (DATA / "video_train").is_dir() or not (DATA / "video").is_dir():
        print("video data not found: skipping video codes")
        return None
    frames = 6 if quick else 12
    train = video_codes("video_train", 17, frames)
    test = video_codes("video", 6, frames)
    items = [f for clip in train for f in clip]
    refs = [None if j == 0 else clip[j - 1] for clip in train for j in range(len(clip))]
    alphabet = (1024,) * 4
    fac = FactorizedPrior.fit(items, alphabet)
    con = SpatialContextPrior.fit(items, alphabet, references=refs)
    rows = []
    for label, prior, use_ref in (("factorized", fac, False), ("spatial_context intra", con, False),
                                  ("spatial_context + reference", con, True)):
        actual = ideal = 0.0
        symbols = 0
        t_enc = t_dec = 0.0
        for clip in test:
            for j in range(1, len(clip)):
                ref = clip[j - 1] if use_ref else None
                t0 = time.perf_counter()
                payload = prior.encode(clip[j], reference=ref)
                t1 = time.perf_counter()
                assert np.array_equal(prior.decode(payload, clip[j].shape, reference=ref), clip[j])
                t_dec += time.perf_counter() - t1
                t_enc += t1 - t0
                actual += len(payload)
                ideal += prior.ideal_bits(clip[j], reference=ref) / 8
                symbols += clip[j].size
        rows.append({"prior": label, "bits_per_code": 8 * actual / symbols,
                     "overhead_%": 100 * (actual / ideal - 1),
                     "encode_Msym_s": symbols / t_enc / 1e6, "decode_Msym_s": symbols / t_dec / 1e6})
    base = rows[0]["bits_per_code"]
    for r in rows:
        r["saving_vs_factorized_%"] = 100 * (1 - r["bits_per_code"] / base)
    return {"rows": rows, "setup": f"image-fitted patch RVQ codes of {len(train)} video_train clips x "
            f"{frames} frames (fit) and {len(test)} video/ clips (eval, predicted frames only)",
            "table_bytes": con.table_bytes(), "stage_modes": list(con.stage_modes)}


def checkpoint_codes(checkpoint: str, hparams: str, train_limit: int) -> dict[str, Any] | None:
    """Codes of an image-codec training checkpoint (before a bundle exists): priors fitted on
    the codes of train images, evaluated on Kodak, at the stream counts of the quality levels."""
    import torch
    from _patch_rvq import _load, kodak_images, train_images

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
    try:
        from vqcodec.models.zoo import DEFAULT_IMAGE_MODEL, load_model
    except Exception as exc:  # no model layer yet
        print(f"model zoo unavailable ({exc}): skipping bundled model")
        return None
    name = name or DEFAULT_IMAGE_MODEL
    if not name:
        print("no bundled image model: skipping")
        return None
    import torch
    from _patch_rvq import kodak_images
    from PIL import Image

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
    from _patch_rvq import _load, train_images

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
    ap.add_argument("--skip-patch", action="store_true", help="skip patch-RVQ image and video codes")
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

    real = None if args.skip_patch else patch_rvq(args.quick)
    if real is not None:
        result["patch_rvq"] = real
        print(f"\n== real image codes: {real['setup']} ==")
        print(_table(real["rows"], ["prior", "streams", "bytes_per_image", "ideal_bytes", "overhead_%", "bpp",
                                    "bits_per_code", "zstd19_raw_bytes", "saving_vs_factorized_%",
                                    "encode_ms", "decode_ms"]))
        print(f"stage modes chosen: {real['context_stage_modes']}; tables: {real['num_tables']}; "
              f"table bytes: {real['table_bytes']}")
        if "large_map_speed" in real:
            print("\n== priors on a large code map (Kodak codes tiled), 1 thread ==")
            print(_table(real["large_map_speed"],
                         ["prior", "codes", "encode_Msym_s", "decode_Msym_s", "bytes"]))
        abl = [dict(r, **x) for r, x in zip(real["stage_group_ablation"],
                                            real["stage_group_ablation_spatial_context"])]
        print("\n== context choice, ideal bits per code of stream s on Kodak (alternatives considered) ==")
        print(_table(abl, list(abl[0])))

    vid = None if args.skip_patch else video(args.quick)
    if vid is not None:
        result["video"] = vid
        print(f"\n== video codes, predicted frames: {vid['setup']} ==")
        print(_table(vid["rows"], ["prior", "bits_per_code", "overhead_%", "saving_vs_factorized_%",
                                   "encode_Msym_s", "decode_Msym_s"]))
        print(f"context tables with reference contexts: {vid['table_bytes']} bytes")

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
