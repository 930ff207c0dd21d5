"""Would neighbour-block contexts pay for video payload 2's levels? Ideal bits of alternative contexts.

    .venv/bin/python benchmarks/video_contexts.py                    # foreman, mobile, bus
    .venv/bin/python benchmarks/video_contexts.py --clips mobile_cif_30f --qps 28

A probe for a future payload (nothing here changes the format): the default model (video-mc2)
codes each clip at base qps 34, 28, 22; the symbols of every predicted frame are collected from
the encoder and re-costed under context sets that add information the decoder would already hold:

- ``level`` (transform-level magnitudes, most of the bits): the released contexts (class, band,
  the two previous magnitudes, last flag), and the same times a neighbour term, min(2, min(m_left,
  2) + min(m_top, 2)), the magnitudes at the same zigzag position of the left and top 8 x 8 blocks
  of the same plane (0 where that block is not coded or outside the frame);
- ``last`` (each coded block's last position): class alone (released) and class times the bucket
  of the neighbours' last positions (none coded, below 8, below 24, higher).

Bits are ideal adaptive costs under one estimator for every context set (counts from 1, each
frame costed with the counts of the frames before it since the key frame, as the codec's tables
adapt), so the difference between rows is what the contexts are worth, not coder overhead.
Writes benchmarks/results/video_contexts.json.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from video_probe import run  # noqa: E402

ALPHABET = 30


def _plane_grid(values: np.ndarray, plane: int) -> np.ndarray:
    """Per-block values (R, C, 6, ...) -> the plane's 8 x 8 block grid (N, M, ...)."""
    rows, cols = values.shape[:2]
    if plane == 0:
        v = values[:, :, :4].reshape(rows, cols, 2, 2, *values.shape[3:])
        return v.swapaxes(1, 2).reshape(rows * 2, cols * 2, *values.shape[3:])
    return values[:, :, 3 + plane]


def _from_plane_grid(grid: np.ndarray, plane: int, rows: int, cols: int) -> np.ndarray:
    if plane == 0:
        g = grid.reshape(rows, 2, cols, 2, *grid.shape[2:]).swapaxes(1, 2)
        return g.reshape(rows, cols, 4, *grid.shape[2:])
    return grid[:, :, None]


def neighbour_terms(mags: np.ndarray, last: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """mags (R, C, 6, 64) magnitude symbols of coded blocks (0 elsewhere), last (R, C, 6) (-1: not
    coded) -> (level term (R, C, 6, 64) in 0..2, last bucket (R, C, 6) in 0..3)."""
    rows, cols = mags.shape[:2]
    level_term = np.zeros(mags.shape, dtype=np.int64)
    last_bucket = np.zeros(last.shape, dtype=np.int64)
    for plane in range(3):
        m = np.minimum(_plane_grid(mags, plane), 2)
        left = np.zeros_like(m)
        left[:, 1:] = m[:, :-1]
        top = np.zeros_like(m)
        top[1:] = m[:-1]
        term = np.minimum(left + top, 2)
        g_last = _plane_grid(last, plane)
        nb = np.full(g_last.shape, -1)
        nb[:, 1:] = np.maximum(nb[:, 1:], g_last[:, :-1])
        nb[1:] = np.maximum(nb[1:], g_last[:-1])
        bucket = np.select([nb < 0, nb < 8, nb < 24], [0, 1, 2], 3)
        if plane == 0:
            level_term[:, :, :4] = _from_plane_grid(term, 0, rows, cols)
            last_bucket[:, :, :4] = _from_plane_grid(bucket, 0, rows, cols)
        else:
            level_term[:, :, 3 + plane] = term
            last_bucket[:, :, 3 + plane] = bucket
    return level_term, last_bucket


class AdaptiveCost:
    """Ideal bits of (context, symbol) pairs, frame by frame, counts from 1 (a KT-like estimator)."""

    def __init__(self) -> None:
        self.counts: dict[int, np.ndarray] = {}
        self.bits = 0.0

    def frame(self, contexts: np.ndarray, symbols: np.ndarray, alphabet: int) -> None:
        pending: dict[int, np.ndarray] = {}
        for ctx in np.unique(contexts):
            syms = symbols[contexts == ctx]
            c = self.counts.get(int(ctx), np.ones(alphabet))
            self.bits -= float(np.log2(c[syms] / c.sum()).sum())
            pending[int(ctx)] = np.bincount(syms, minlength=alphabet)
        for ctx, h in pending.items():
            self.counts[ctx] = self.counts.get(ctx, np.ones(alphabet)) + h


def collect(clip: dict[str, Any], qp: int) -> tuple[list[Any], int]:
    """The FrameSymbols of every predicted frame's slice, and the clip's payload bytes."""
    from vqcodec.entropy import motion
    from vqcodec.models.zoo import load_model

    captured: list[Any] = []
    original = motion.encode_slice

    def spy(sym: Any, tables: Any) -> Any:
        if not sym.intra_frame:
            captured.append(sym)
        return original(sym, tables)

    motion.encode_slice = spy  # type: ignore[assignment]
    try:
        codec = load_model(None, media="video").codec()
        info, state, total = clip["info"], None, 0
        for planes in clip["planes"]:
            payload, state = codec.compress(planes, info.width, info.height, state, qp=qp)
            total += len(payload)
    finally:
        motion.encode_slice = original  # type: ignore[assignment]
    return captured, total


def costs(frames: list[Any]) -> dict[str, float]:
    from vqcodec.entropy import motion
    from vqcodec.entropy.coefficients import magnitude_symbols

    rows: dict[str, AdaptiveCost] = {n: AdaptiveCost() for n in ("level", "level+nb", "last", "last+nb")}
    for sym in frames:
        modes = np.asarray(sym.modes, dtype=np.int64)
        intra = modes == motion.MODE_INTRA
        coded = np.asarray(sym.cbf, bool) & (modes != motion.MODE_SKIP)[..., None]
        levels = np.where(coded[..., None], np.asarray(sym.levels, dtype=np.int64), 0)
        mags, _, _ = magnitude_symbols(levels)
        last = np.where(coded, motion.last_positions(levels), -1)
        level_term, last_bucket = neighbour_terms(np.where(coded[..., None], mags, 0), last)
        classes = motion.block_classes(intra)[coded]
        blocks, blast, bterm = mags[coded], last[coded], level_term[coded]
        rows["last"].frame(classes, blast, 64)
        rows["last+nb"].frame(classes * 4 + last_bucket[coded], blast, 64)
        ctx_all, ctx_nb_all, sym_all = [], [], []
        for k in range(64):
            active = blast >= k
            if not active.any():
                break
            ctx = motion.level_contexts(blocks, classes, blast, k, active)
            ctx_all.append(ctx)
            ctx_nb_all.append(ctx * 3 + bterm[active, k])
            sym_all.append(blocks[active, k])
        if sym_all:
            s = np.concatenate(sym_all)
            rows["level"].frame(np.concatenate(ctx_all), s, ALPHABET)
            rows["level+nb"].frame(np.concatenate(ctx_nb_all), s, ALPHABET)
    return {n: r.bits for n, r in rows.items()}


def probe(clip: dict[str, Any], qp: int) -> dict[str, Any]:
    frames, total = collect(clip, qp)
    bits = costs(frames)
    return {
        "payload_bits": 8 * total,
        "bits": bits,
        "level_saving_percent": 100.0 * (bits["level+nb"] / bits["level"] - 1.0),
        "last_saving_percent": 100.0 * (bits["last+nb"] / bits["last"] - 1.0),
        "file_saving_percent": 100.0
        * ((bits["level+nb"] - bits["level"]) + (bits["last+nb"] - bits["last"]))
        / (8 * total),
    }


def describe(row: dict[str, Any]) -> str:
    return (
        f"level bits {row['level_saving_percent']:+5.1f} %  last bits {row['last_saving_percent']:+5.1f} %  "
        f"of the file {row['file_saving_percent']:+5.1f} %  "
        f"(levels {row['bits']['level'] / row['payload_bits'] * 100:.0f} % of it)"
    )


if __name__ == "__main__":
    raise SystemExit(run(None, __doc__, "video_contexts", probe, describe))
