"""Which prediction should video payload version 2 use? An ideal-rate probe (issue 16, step 1).

    .venv/bin/python benchmarks/video_mc_probe.py                   # foreman, bus, mobile; 17 frames
    .venv/bin/python benchmarks/video_mc_probe.py --clips foreman --frames 10 --qps 26,34

Every variant is the same hybrid block coder on the clip's own YCbCr 4:2:0 planes
(vqcodec.models.video_mc: exact integer 8x8 inverse transform, dead-zone scalar quantization,
macroblock modes skip / inter / intra, RD decisions at H.264's lambda), first frame intra, the
rest predicted from the previous decoded frame; only the prediction differs:

- ``intra``: every frame intra (no prediction; the temporal-saving anchor);
- ``zero``: co-located prediction (motion vector 0), which is also what latent-domain
  co-located prediction with the block-KLT image model amounts to;
- ``mc16-int`` / ``mc8-int``: block motion compensation, integer-pel vectors per 16x16 / 8x8;
- ``mc16-half`` / ``mc8-half``: the same with half-pel vectors (6-tap luma, bilinear chroma);
- ``mc16-quarter`` / ``mc8-quarter``: quarter-pel (mean of the two nearest half-pel samples);
- ``latent-grid``: vectors restricted to multiples of 8 pixels per 16x16 block: the image model
  ``image-sq20`` analyses independent 8x8 blocks with one linear transform, so shifting its integer
  latents by whole latent positions predicts exactly the pixels shifted by multiples of 8; this
  row is the latent-domain design (integer latents, integer vectors at latent precision), measured
  with the pixel-domain transform in place of the RGB block KLT.

Rate: the ideal code length of the frame's symbols (vqcodec.entropy.motion) under adaptive
counts that start empty at the first frame and keep learning over the clip (Krichevsky-Trofimov,
alpha = 1/2 per symbol, the cost of learning included), plus raw sign and Exp-Golomb mantissa bits;
no headers. Distortion: Y-PSNR (and Cb/Cr) of the exact reconstruction, mean over frames.
BD-rate (PSNR-Y, PCHIP) of every variant against x264 preset medium (PyAV, CRF sweep, the same
frames, bitstream bytes) and against ``intra``.

Rows ``coded-intra`` / ``coded-mc16-quarter`` are the real bitstream of video payload version 2
(``MotionCompensatedCodec``: every frame a key frame / one key frame then P frames): payload
bytes (no container), decoded again, with single-thread encode and decode frames per second
(the decode column of the other rows is the reconstruction alone, without entropy decoding).
Writes benchmarks/results/video_mc_probe.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("VQCODEC_DATA", REPO.parent / "shared" / "data"))
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(Path(__file__).resolve().parent))

from image_rd import bd_rate  # noqa: E402
from video_rd import load_clip, run_x26x  # noqa: E402

CLIPS = ("foreman_cif_30f", "bus_cif_17f", "mobile_cif_30f")
QPS = (22, 26, 30, 34, 38)
X264_CRF = (18, 23, 28, 33, 38, 43)


def variants() -> dict[str, Any]:
    from vqcodec.models.video_mc import EncoderSettings

    return {
        "intra": None,
        "zero": EncoderSettings(motion="zero"),
        "latent-grid": EncoderSettings(grid=8, precision=1),
        "mc16-int": EncoderSettings(precision=1),
        "mc8-int": EncoderSettings(precision=1, block=8),
        "mc16-half": EncoderSettings(precision=2),
        "mc8-half": EncoderSettings(precision=2, block=8),
        "mc16-quarter": EncoderSettings(precision=4),
        "mc8-quarter": EncoderSettings(precision=4, block=8),
    }


class AdaptiveEstimate:
    """Ideal adaptive code length: per stream and context, KT counts persisting over frames."""

    def __init__(self) -> None:
        self.counts: dict[str, np.ndarray] = {}

    @staticmethod
    def _cost(counts: np.ndarray) -> float:
        """-log2 of the KT probability of any sequence with these (contexts, alphabet) counts."""
        lg = np.vectorize(math.lgamma, otypes=[np.float64])
        alpha = 0.5
        a = counts.shape[1]
        per_context = lg(counts.sum(1) + a * alpha) - math.lgamma(a * alpha)
        per_symbol = lg(counts + alpha) - math.lgamma(alpha)
        return float((per_context.sum() - per_symbol.sum()) / math.log(2))

    def bits(self, streams: Any) -> float:
        total = float(streams.raw_bits)
        for name, h in streams.counts().items():
            before = self.counts.get(name, np.zeros_like(h))
            after = before + h
            used = after.sum(1) > 0
            total += self._cost(after[used]) - self._cost(before[used])
            self.counts[name] = after
        return total


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * math.log10(255.0**2 / mse)


def run_variant(clip: dict[str, Any], settings: Any, qp: int) -> dict[str, Any]:
    from vqcodec.entropy.motion import FrameSymbols, frame_streams
    from vqcodec.models import video_mc as vm

    info = clip["info"]
    estimate = AdaptiveEstimate()
    ref = None
    previous_modes = None
    hint = None
    bits, ys, cbs, crs, enc_s, rec_s = [], [], [], [], 0.0, 0.0
    modes_total = np.zeros(3, dtype=np.int64)
    for i, source in enumerate(clip["planes"]):
        planes = vm.pad_planes(source, info.width, info.height)
        start = time.perf_counter()
        if i == 0 or settings is None:
            decision, recon = vm.encode_frame(planes, None, qp)
        else:
            decision, recon = vm.encode_frame(planes, ref, qp, settings, hint)
        enc_s += time.perf_counter() - start
        start = time.perf_counter()
        check = vm.reconstruct(decision, ref if not decision.intra_frame else None, qp)
        rec_s += time.perf_counter() - start
        if not all(np.array_equal(a, b) for a, b in zip(recon, check)):
            raise AssertionError("encoder and decoder reconstructions differ")
        sym = FrameSymbols(
            decision.intra_frame, decision.modes, decision.mvd, decision.cbf, decision.levels, previous_modes
        )
        bits.append(estimate.bits(frame_streams(sym)))
        out = vm.crop_planes(recon, info.width, info.height)
        ys.append(psnr(out[0], source[0]))
        cbs.append(psnr(out[1], source[1]))
        crs.append(psnr(out[2], source[2]))
        if not decision.intra_frame:
            modes_total += np.bincount(decision.modes.reshape(-1), minlength=3)
        ref = vm.Reference.from_planes(recon)
        previous_modes = None if decision.intra_frame else decision.modes
        hint = decision.mvs
    n = len(clip["planes"])
    return {
        "qp": qp,
        "kbps": sum(bits) * float(info.fps) / n / 1000.0,
        "bits_first_frame": bits[0],
        "bits_per_p_frame": float(np.mean(bits[1:])) if n > 1 else None,
        "psnr_y": float(np.mean(ys)),
        "psnr_cb": float(np.mean(cbs)),
        "psnr_cr": float(np.mean(crs)),
        "encode_fps": n / enc_s,
        "reconstruct_fps": n / rec_s,
        "p_modes_skip_inter_intra": [int(x) for x in modes_total],
    }


def run_coded(clip: dict[str, Any], qp: int, gop: int) -> dict[str, Any]:
    """The real bitstream: MotionCompensatedCodec payloads (bytes), decoded again and checked."""
    from vqcodec.models import video_mc as vm

    info = clip["info"]
    codec = vm.MotionCompensatedCodec()
    state = None
    payloads = []
    start = time.perf_counter()
    for i, source in enumerate(clip["planes"]):
        payload, state = codec.compress(source, info.width, info.height, state, qp, key=i % gop == 0)
        payloads.append(payload)
    enc_s = time.perf_counter() - start
    dec_state = None
    ys = []
    start = time.perf_counter()
    decoded = []
    for payload in payloads:
        planes, dec_state = codec.decompress(payload, info.width, info.height, dec_state)
        decoded.append(planes)
    dec_s = time.perf_counter() - start
    for planes, source in zip(decoded, clip["planes"]):
        ys.append(psnr(planes[0], source[0]))
    n = len(payloads)
    return {
        "qp": qp,
        "kbps": 8.0 * sum(len(p) for p in payloads) * float(info.fps) / n / 1000.0,
        "bytes_first_frame": len(payloads[0]),
        "bytes_per_p_frame": float(np.mean([len(p) for p in payloads[1:]])) if n > 1 else None,
        "psnr_y": float(np.mean(ys)),
        "encode_fps": n / enc_s,
        "decode_fps": n / dec_s,
    }


def curve(rows: list[dict[str, Any]]) -> tuple[list[float], list[float]]:
    return [r["kbps"] for r in rows], [r["psnr_y"] for r in rows]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clips", default=",".join(CLIPS))
    p.add_argument("--frames", type=int, default=17)
    p.add_argument("--qps", default=",".join(map(str, QPS)))
    p.add_argument("--variants", default=None, help="comma-separated subset of the variants")
    p.add_argument("--x264-crf", default=",".join(map(str, X264_CRF)))
    p.add_argument("--no-coded", action="store_true", help="skip the real-bitstream rows")
    p.add_argument("--out", default=str(RESULTS / "video_mc_probe.json"))
    args = p.parse_args(argv)
    folder = DATA / "video"
    if not folder.is_dir():
        print(f"no evaluation clips at {folder}: nothing to do")
        return 0
    wanted = [c.strip() for c in args.clips.split(",") if c.strip()]
    paths = [folder / f"{c}.y4m" for c in CLIPS if any(w in c for w in wanted)]
    qps = [int(q) for q in args.qps.split(",")]
    all_variants = variants()
    chosen = args.variants.split(",") if args.variants else list(all_variants)
    report: dict[str, Any] = {
        "settings": {
            "frames": args.frames,
            "qps": qps,
            "x264_crf": args.x264_crf,
            "rate": "ideal adaptive (KT)",
        },
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "clips": {},
    }
    for path in paths:
        clip = load_clip(path, args.frames)
        info = clip["info"]
        print(f"\n{path.stem}: {info.width}x{info.height}, {len(clip['planes'])} frames", flush=True)
        rows: dict[str, list[dict[str, Any]]] = {}
        for name in chosen:
            rows[name] = []
            for qp in qps:
                row = run_variant(clip, all_variants[name], qp)
                rows[name].append(row)
                print(
                    f"  {name:12s} qp{qp:<3d} {row['kbps']:8.1f} kbit/s  Y {row['psnr_y']:6.2f} dB"
                    f"  enc {row['encode_fps']:5.1f} fps  rec {row['reconstruct_fps']:6.1f} fps"
                    f"  P modes s/i/I {row['p_modes_skip_inter_intra']}",
                    flush=True,
                )
        for name, gop in (("coded-intra", 1), ("coded-mc16-quarter", 1 << 30)):
            if args.no_coded:
                break
            rows[name] = []
            for qp in qps:
                row = run_coded(clip, qp, gop)
                rows[name].append(row)
                print(
                    f"  {name:12s} qp{qp:<3d} {row['kbps']:8.1f} kbit/s  Y {row['psnr_y']:6.2f} dB"
                    f"  enc {row['encode_fps']:5.1f} fps  dec {row['decode_fps']:6.1f} fps (real bytes)",
                    flush=True,
                )
        rows["x264"] = []
        for crf in (int(c) for c in args.x264_crf.split(",")):
            r = run_x26x(clip, "libx264", crf)
            rows["x264"].append(r)
            print(f"  {'x264':12s} crf{crf:<2d} {r['kbps']:8.1f} kbit/s  Y {r['psnr_y']:6.2f} dB", flush=True)
        bd: dict[str, Any] = {}
        for name in [n for n in rows if n != "x264"]:
            bd[name] = {"vs_x264": bd_rate(curve(rows["x264"]), curve(rows[name]))}
            anchor = "coded-intra" if name.startswith("coded") else "intra"
            if anchor in rows and name != anchor:
                bd[name]["vs_intra"] = bd_rate(curve(rows[anchor]), curve(rows[name]))
        report["clips"][path.stem] = {"rows": rows, "bd_rate_psnr_y": bd}
    print_table(report)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {out}")
    return 0


def print_table(report: dict[str, Any]) -> None:
    def pct(entry: dict[str, Any], key: str) -> str:
        v = entry.get(key, {}).get("bd_rate_percent")
        return "n/a" if v is None else f"{v:+.1f} %"

    print("\nBD-rate on PSNR-Y (ideal adaptive rate; negative = fewer bits)")
    print(
        f"  {'clip':18s} {'variant':12s} {'vs x264':>10s} {'vs intra':>10s} {'enc fps':>8s} {'rec fps':>8s}"
    )
    for clip, entry in report["clips"].items():
        for name, bd in entry["bd_rate_psnr_y"].items():
            rows = entry["rows"][name]
            enc = float(np.median([r["encode_fps"] for r in rows]))
            rec = float(np.median([r.get("reconstruct_fps", r.get("decode_fps")) for r in rows]))
            print(
                f"  {clip:18s} {name:18s} {pct(bd, 'vs_x264'):>10s} {pct(bd, 'vs_intra'):>10s}"
                f" {enc:8.1f} {rec:8.1f}"
            )


if __name__ == "__main__":
    raise SystemExit(main())
