"""Symbols and contexts of a motion-compensated frame (video payload version 2).

A frame's decisions (``FrameSymbols``: macroblock modes, motion-vector differences, coded-block
flags, transform levels) become batches of (symbols, context) pairs in one fixed order, each
context an integer function of symbols decoded before it (formats/vqc-v1.md, "Video payload
version 2"). The batches are coded with integer frequency tables that adapt from frame to frame
(:class:`AdaptiveTables`): the tables of frame t are quantized from integer counts of the
symbols of the frames since the last key frame, so encoder and decoder hold the same tables on
every machine without sending them.

Streams (``STREAMS``: name -> (contexts, alphabet)):
- ``mode``: per macroblock of a P frame, 0 skip / 1 inter / 2 intra; context = the co-located
  macroblock's mode in the previous frame (3 after a key frame);
- ``mvd``: per inter macroblock, the magnitude symbols of the vector difference (y, then x;
  :func:`magnitude_symbols` of vqcodec.entropy.coefficients); context 0 for y, 1 + min(sym_y, 2)
  for x; signs and Exp-Golomb mantissas go to the raw part;
- ``cbf``: per non-skip macroblock, 6 coded-block flags (4 luma 8 x 8 in raster order, Cb, Cr);
  context = (kind * 2 + intra) * 3 + min(coded luma flags before it in the macroblock, 2), kind
  0 luma, 1 Cb, 2 Cr (chroma flags: 0 there, so the min term is 0);
- ``last``: per coded block, the zigzag index 0..63 of its last nonzero level; context = class
  (luma/chroma * 2 + intra);
- ``level``: per coded block, the magnitude symbols at zigzag 0..last; context =
  ((class * 8 + band(k)) * 5 + min(m[k-1], 2) + min(m[k-2], 2)) * 2 + (k == last);
  intra blocks code the DC (k = 0) as its difference to the previous intra block's DC of the same
  plane in raster order (0 for the first in each frame).

Shapes: modes (R, C) int; mvd (R, C, 2) (y, x); cbf (R, C, 6) bool; levels (R, C, 6, 64) int32 in
zigzag order, block b of a macroblock = luma 0..3, Cb, Cr.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from vqcodec.entropy.coefficients import magnitude_symbols

I64 = npt.NDArray[np.int64]

ALPHABET = 30  # magnitude symbols of coefficients.py (ESCAPE 14, 16 Exp-Golomb classes)
NUM_CLASSES = 4
BANDS = np.array([0, 1, 1, 2, 2, 2] + [3] * 4 + [4] * 5 + [5] * 13 + [6] * 14 + [7] * 27, dtype=np.int64)
STREAMS: dict[str, tuple[int, int]] = {
    "mode": (4, 3),
    "mvd": (4, ALPHABET),
    "cbf": (18, 2),
    "last": (NUM_CLASSES, 64),
    "level": (NUM_CLASSES * 8 * 5 * 2, ALPHABET),
}


@dataclass
class FrameSymbols:
    """One frame's decisions (see the module docstring for shapes). ``intra_frame``: a key frame
    (every macroblock intra, no modes or vectors coded)."""

    intra_frame: bool
    modes: npt.NDArray[np.integer]
    mvd: npt.NDArray[np.integer]
    cbf: npt.NDArray[np.bool_]
    levels: npt.NDArray[np.integer]
    previous_modes: npt.NDArray[np.integer] | None = None


@dataclass
class Streams:
    """(contexts, symbols) per stream name, and the raw bits (signs and mantissas) of the frame."""

    pairs: dict[str, list[tuple[I64, I64]]] = field(default_factory=dict)
    raw_bits: int = 0

    def add(self, name: str, contexts: npt.ArrayLike, symbols: npt.ArrayLike) -> None:
        c = np.asarray(contexts, dtype=np.int64).reshape(-1)
        s = np.asarray(symbols, dtype=np.int64).reshape(-1)
        self.pairs.setdefault(name, []).append((c, s))

    def counts(self) -> dict[str, I64]:
        """Per stream a (contexts, alphabet) int64 histogram of this frame's symbols."""
        out = {}
        for name, (contexts, alphabet) in STREAMS.items():
            h = np.zeros(contexts * alphabet, dtype=np.int64)
            for c, s in self.pairs.get(name, []):
                if c.size:
                    h += np.bincount(c * alphabet + s, minlength=contexts * alphabet)
            out[name] = h.reshape(contexts, alphabet)
        return out


def dc_differences(levels: npt.NDArray[np.integer], intra: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    """Levels (R, C, 6, 64) zigzag -> the same with each intra block's DC replaced by its
    difference to the previous intra block's DC of its plane (raster order over the plane's 8 x 8
    blocks; luma blocks of a macroblock row interleave as the plane's rows do)."""
    out = np.asarray(levels, dtype=np.int64).copy()
    rows, cols = out.shape[:2]
    for plane in range(3):
        dc, where = _plane_dc(out, intra, plane, rows, cols)
        values = dc[where]
        diffs = np.diff(values, prepend=0)
        dc[where] = diffs
        _set_plane_dc(out, dc, plane, rows, cols)
    return out


def dc_from_differences(
    levels: npt.NDArray[np.integer], intra: npt.NDArray[np.bool_]
) -> npt.NDArray[np.int64]:
    """Inverse of :func:`dc_differences` (a cumulative sum per plane)."""
    out = np.asarray(levels, dtype=np.int64).copy()
    rows, cols = out.shape[:2]
    for plane in range(3):
        dc, where = _plane_dc(out, intra, plane, rows, cols)
        dc[where] = np.cumsum(dc[where])
        _set_plane_dc(out, dc, plane, rows, cols)
    return out


def _plane_dc(
    levels: I64, intra: npt.NDArray[np.bool_], plane: int, rows: int, cols: int
) -> tuple[I64, npt.NDArray[np.bool_]]:
    """DC levels of one plane on its own 8 x 8 grid, and the intra mask on that grid."""
    if plane == 0:
        dc = levels[:, :, :4, 0].reshape(rows, cols, 2, 2).swapaxes(1, 2).reshape(rows * 2, cols * 2)
        mask = np.repeat(np.repeat(intra, 2, axis=0), 2, axis=1)
    else:
        dc = levels[:, :, 3 + plane, 0].copy()
        mask = intra
    return dc.copy(), mask


def _set_plane_dc(levels: I64, dc: I64, plane: int, rows: int, cols: int) -> None:
    if plane == 0:
        levels[:, :, :4, 0] = dc.reshape(rows, 2, cols, 2).swapaxes(1, 2).reshape(rows, cols, 4)
    else:
        levels[:, :, 3 + plane, 0] = dc


def coded_block_flags(levels: npt.NDArray[np.integer], intra: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """Flags (R, C, 6): a block is coded when a level it codes is nonzero (intra: after the DC
    difference, so an intra block repeating the previous DC with no AC is not coded)."""
    return np.any(dc_differences(levels, intra) != 0, axis=-1)


def block_classes(intra: npt.NDArray[np.bool_]) -> I64:
    """Class (R, C, 6) of each block: (chroma * 2 + intra)."""
    chroma = np.array([0, 0, 0, 0, 1, 1], dtype=np.int64)
    return chroma[None, None, :] * 2 + np.asarray(intra, dtype=np.int64)[..., None]


def last_positions(levels: npt.NDArray[np.integer]) -> I64:
    """Zigzag index of the last nonzero level of each block (-1 for an all-zero block)."""
    nz = np.asarray(levels) != 0
    return np.where(nz.any(-1), 63 - np.argmax(nz[..., ::-1], axis=-1), -1).astype(np.int64)


def frame_streams(sym: FrameSymbols) -> Streams:
    """The frame's (context, symbol) pairs in coding order, and its raw-bit count."""
    out = Streams()
    modes = np.asarray(sym.modes, dtype=np.int64)
    if sym.intra_frame:
        modes = np.full(modes.shape, 2, dtype=np.int64)
    else:
        prev = (
            np.full(modes.shape, 3, dtype=np.int64)
            if sym.previous_modes is None
            else np.asarray(sym.previous_modes, dtype=np.int64)
        )
        out.add("mode", prev, modes)
        mvd = np.asarray(sym.mvd, dtype=np.int64)
        f = mvd.shape[0] // modes.shape[0]  # 2: four vectors per macroblock (a probe variant)
        inter = np.repeat(np.repeat(modes == 1, f, 0), f, 1)
        d = mvd[inter]  # (n, 2)
        my, ky, _ = magnitude_symbols(d[:, 0])
        mx, kx, _ = magnitude_symbols(d[:, 1])
        out.add("mvd", np.zeros_like(my), my)
        out.add("mvd", 1 + np.minimum(my, 2), mx)
        out.raw_bits += int((d != 0).sum() + ky.sum() + kx.sum())
    intra = modes == 2
    coded_mb = modes != 0
    cbf = np.asarray(sym.cbf, dtype=bool)
    kind = np.array([0, 0, 0, 0, 1, 2], dtype=np.int64)
    luma_before = np.concatenate(
        [np.zeros(cbf.shape[:2] + (1,), np.int64), np.cumsum(cbf[..., :3], axis=-1)], axis=-1
    )
    luma_before = np.concatenate([luma_before, np.zeros(cbf.shape[:2] + (2,), np.int64)], axis=-1)
    ctx = (kind[None, None, :] * 2 + intra[..., None]) * 3 + np.minimum(luma_before, 2)
    for b in range(6):
        out.add("cbf", ctx[..., b][coded_mb], cbf[..., b][coded_mb])
    levels = dc_differences(sym.levels, intra)
    coded = cbf & coded_mb[..., None]
    blocks = levels[coded]  # (n, 64)
    classes = block_classes(intra)[coded]
    last = last_positions(blocks)
    if np.any(last < 0):
        raise ValueError("a block flagged as coded has no nonzero level")
    out.add("last", classes, last)
    mags, extra, _ = magnitude_symbols(blocks)
    out.raw_bits += int((blocks != 0).sum() + extra.sum())
    for k in range(64):
        active = last >= k
        if not active.any():
            break
        out.add("level", level_contexts(mags, classes, last, k, active), mags[active, k])
    return out


def level_contexts(mags: I64, classes: I64, last: I64, k: int, active: npt.NDArray[np.bool_]) -> I64:
    """Contexts of zigzag position k of the ``active`` blocks (mags: (n, 64) decoded so far)."""
    p1 = np.minimum(mags[active, k - 1], 2) if k >= 1 else 0
    p2 = np.minimum(mags[active, k - 2], 2) if k >= 2 else 0
    return ((classes[active] * 8 + BANDS[k]) * 5 + p1 + p2) * 2 + (last[active] == k)


__all__ = [
    "ALPHABET",
    "STREAMS",
    "FrameSymbols",
    "Streams",
    "coded_block_flags",
    "dc_differences",
    "dc_from_differences",
    "frame_streams",
    "last_positions",
]
