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

from vqcodec.entropy.coder import CodingTables, SymbolDecoder, encode_batches
from vqcodec.entropy.coefficients import ESCAPE, magnitude_symbols
from vqcodec.errors import FormatError

I64 = npt.NDArray[np.int64]

ALPHABET = 30  # magnitude symbols of coefficients.py (ESCAPE 14, 16 Exp-Golomb classes)
#: raw bits (signs, mantissas) are coded in chunks of at most this many bits by uniform tables
RAW_CHUNK_BITS = 4
RAW_CHUNKS = 4  # mantissas have at most 15 bits
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
    """A slice's batches in coding order: ``batches`` (stream name, contexts, symbols), then
    ``raw`` (values, bit widths 1..RAW_CHUNK_BITS) chunks: signs and Exp-Golomb mantissas."""

    batches: list[tuple[str, I64, I64]] = field(default_factory=list)
    raw: list[tuple[I64, I64]] = field(default_factory=list)

    def add(self, name: str, contexts: npt.ArrayLike, symbols: npt.ArrayLike) -> None:
        c = np.asarray(contexts, dtype=np.int64).reshape(-1)
        s = np.asarray(symbols, dtype=np.int64).reshape(-1)
        self.batches.append((name, np.broadcast_to(c, s.shape).copy() if c.size == 1 else c, s))

    def add_raw(self, values: npt.ArrayLike) -> None:
        """Signs of nonzero ``values`` (1 = negative), then their mantissas (in RAW_CHUNK_BITS chunks)."""
        v = np.asarray(values, dtype=np.int64).reshape(-1)
        nz = v != 0
        self.raw.append(((v[nz] < 0).astype(np.int64), np.ones(int(nz.sum()), dtype=np.int64)))
        _, k, mantissa = magnitude_symbols(v)
        for j in range(RAW_CHUNKS):
            has = k > RAW_CHUNK_BITS * j
            width = np.minimum(RAW_CHUNK_BITS, k[has] - RAW_CHUNK_BITS * j)
            chunk = np.right_shift(mantissa[has], RAW_CHUNK_BITS * j) & (np.left_shift(1, width) - 1)
            self.raw.append((chunk, width))

    @property
    def raw_bits(self) -> int:
        return int(sum(int(w.sum()) for _, w in self.raw))

    def counts(self) -> dict[str, I64]:
        """Per stream a (contexts, alphabet) int64 histogram of the slice's symbols."""
        out = {}
        for name, (contexts, alphabet) in STREAMS.items():
            h = np.zeros(contexts * alphabet, dtype=np.int64)
            for n, c, s in self.batches:
                if n == name and c.size:
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
    """The whole frame as one slice (levels not yet DC-differenced); the probe's estimate."""
    intra = _modes(sym) == MODE_INTRA
    diffed = FrameSymbols(
        sym.intra_frame, sym.modes, sym.mvd, sym.cbf, dc_differences(sym.levels, intra), sym.previous_modes
    )
    return slice_streams(diffed)


MODE_SKIP, MODE_INTER, MODE_INTRA = 0, 1, 2
KIND = np.array([0, 0, 0, 0, 1, 2], dtype=np.int64)


def _modes(sym: FrameSymbols) -> I64:
    modes = np.asarray(sym.modes, dtype=np.int64)
    return np.full(modes.shape, MODE_INTRA, dtype=np.int64) if sym.intra_frame else modes


def mode_contexts(previous_modes: npt.NDArray[np.integer] | None, shape: tuple[int, ...]) -> I64:
    if previous_modes is None:
        return np.full(shape, 3, dtype=np.int64)
    return np.asarray(previous_modes, dtype=np.int64)


def cbf_contexts(flags_before: npt.NDArray[np.bool_], b: int, intra: npt.NDArray[np.bool_]) -> I64:
    """Contexts of flag b (0..5) of macroblocks whose flags 0..b-1 are ``flags_before`` (n, b)."""
    luma_before = flags_before[:, : min(b, 4)].sum(-1) if b < 4 else np.zeros(intra.shape, np.int64)
    return (KIND[b] * 2 + intra.astype(np.int64)) * 3 + np.minimum(luma_before, 2)


def slice_streams(sym: FrameSymbols) -> Streams:
    """A slice's (context, symbol) batches in coding order; ``sym.levels`` DC-differenced.

    Order: modes (P frames), vector differences (y of every inter block, then x), coded-block
    flags 0..5 (each a batch over the non-skip macroblocks), last positions, levels zigzag 0..63,
    then raw: vector-difference signs and mantissas, level signs and mantissas.
    """
    out = Streams()
    modes = _modes(sym)
    d = np.zeros((0, 2), dtype=np.int64)
    if not sym.intra_frame:
        out.add("mode", mode_contexts(sym.previous_modes, modes.shape), modes)
        mvd = np.asarray(sym.mvd, dtype=np.int64)
        f = mvd.shape[0] // modes.shape[0]  # 2: four vectors per macroblock (a probe variant)
        inter = np.repeat(np.repeat(modes == MODE_INTER, f, 0), f, 1)
        d = mvd[inter]  # (n, 2)
        my, _, _ = magnitude_symbols(d[:, 0])
        mx, _, _ = magnitude_symbols(d[:, 1])
        out.add("mvd", np.zeros_like(my), my)
        out.add("mvd", 1 + np.minimum(my, 2), mx)
    intra = modes == MODE_INTRA
    coded_mb = modes != MODE_SKIP
    cbf = np.asarray(sym.cbf, dtype=bool)
    flags = cbf[coded_mb]  # (n, 6)
    intra_mb = intra[coded_mb]
    for b in range(6):
        out.add("cbf", cbf_contexts(flags[:, :b], b, intra_mb), flags[:, b])
    levels = np.asarray(sym.levels, dtype=np.int64)
    coded = cbf & coded_mb[..., None]
    blocks = levels[coded]  # (n, 64)
    classes = block_classes(intra)[coded]
    last = last_positions(blocks)
    if np.any(last < 0):
        raise ValueError("a block flagged as coded has no nonzero level")
    out.add("last", classes, last)
    mags, _, _ = magnitude_symbols(blocks)
    for k in range(64):
        active = last >= k
        if not active.any():
            break
        out.add("level", level_contexts(mags, classes, last, k, active), mags[active, k])
    out.add_raw(d.reshape(-1))
    out.add_raw(blocks.reshape(-1))  # zeros carry no sign or mantissa
    return out


def level_contexts(mags: I64, classes: I64, last: I64, k: int, active: npt.NDArray[np.bool_]) -> I64:
    """Contexts of zigzag position k of the ``active`` blocks (mags: (n, 64) decoded so far)."""
    p1 = np.minimum(mags[active, k - 1], 2) if k >= 1 else 0
    p2 = np.minimum(mags[active, k - 2], 2) if k >= 2 else 0
    return ((classes[active] * 8 + BANDS[k]) * 5 + p1 + p2) * 2 + (last[active] == k)


# ---------------------------------------------------------------------------------------------
# adaptive integer tables and the slice coder

#: a context row's counts are halved (rounding up) once their sum exceeds this
COUNT_LIMIT = 1 << 13
PRECISION = 16


def initial_counts() -> dict[str, I64]:
    """The counts every key frame starts from (integers; formats/vqc-v1.md): modes (2, 4, 1) over
    skip/inter/intra, vector and level magnitudes ``max(1, 64 >> 2s)`` for symbol s (geometric),
    flags and last positions 1 each."""
    out: dict[str, I64] = {}
    for name, (contexts, alphabet) in STREAMS.items():
        if name in ("mvd", "level"):
            row = np.maximum(1, np.right_shift(64, np.minimum(2 * np.arange(alphabet), 62)))
        elif name == "mode":
            row = np.array([2, 4, 1], dtype=np.int64)
        else:
            row = np.ones(alphabet, dtype=np.int64)
        out[name] = np.tile(row.astype(np.int64), (contexts, 1))
    return out


_OFFSETS: dict[str, int] = {}
_row = 0
for _name, (_contexts, _alphabet) in STREAMS.items():
    _OFFSETS[_name] = _row
    _row += _contexts
#: table rows: every stream's contexts, then uniform rows of 2**b symbols, b = 1..RAW_CHUNK_BITS
RAW_OFFSET = _row
NUM_TABLES = _row + RAW_CHUNK_BITS
MAX_ALPHABET = max(a for _, a in STREAMS.values())


class AdaptiveTables:
    """Integer counts per stream and context, and the coding tables quantized from them.

    ``tables()``: a CodingTables whose row of (stream, context) is :func:`counts_to_freqs` of its
    counts (integer arithmetic only), padded with zeros to MAX_ALPHABET; ``update(counts)`` adds a
    slice's histogram and halves (rounding up) a row until its sum is at most COUNT_LIMIT.
    """

    def __init__(self, counts: dict[str, I64] | None = None):
        self.counts = {k: v.copy() for k, v in (counts or initial_counts()).items()}
        self._tables: CodingTables | None = None

    def copy(self) -> AdaptiveTables:
        return AdaptiveTables(self.counts)

    def tables(self) -> CodingTables:
        if self._tables is None:
            freqs = np.zeros((NUM_TABLES, MAX_ALPHABET), dtype=np.int64)
            for name, (_, alphabet) in STREAMS.items():
                rows = self.counts[name]
                freqs[_OFFSETS[name] : _OFFSETS[name] + rows.shape[0], :alphabet] = counts_to_freqs(rows)
            for b in range(1, RAW_CHUNK_BITS + 1):
                freqs[RAW_OFFSET + b - 1, : 1 << b] = 1 << (PRECISION - b)
            self._tables = CodingTables(freqs)
        return self._tables

    def update(self, counts: dict[str, I64]) -> None:
        for name, h in counts.items():
            c = self.counts[name] + h
            big = c.sum(1) > COUNT_LIMIT
            while big.any():
                c[big] = (c[big] + 1) >> 1
                big = c.sum(1) > COUNT_LIMIT
            self.counts[name] = c
        self._tables = None


def counts_to_freqs(counts: I64) -> I64:
    """Integer counts (T, K), every entry >= 1 -> frequencies (T, K) summing to 2**PRECISION:
    ``1 + floor(c_i * (2**16 - K) / sum(c))``, the shortfall added to the first largest count."""
    c = np.asarray(counts, dtype=np.int64)
    k = c.shape[1]
    total = c.sum(1, keepdims=True)
    f = 1 + (c * ((1 << PRECISION) - k)) // total
    f[np.arange(c.shape[0]), np.argmax(c, axis=1)] += (1 << PRECISION) - f.sum(1)
    return f


def encode_slice(sym: FrameSymbols, tables: AdaptiveTables) -> tuple[bytes, Streams]:
    """Body bytes of one slice (``sym.levels`` DC-differenced) and its streams (for ``update``)."""
    streams = slice_streams(sym)
    batches = [(s, _OFFSETS[name] + c) for name, c, s in streams.batches]
    batches += [(v, RAW_OFFSET + w - 1) for v, w in streams.raw]
    return encode_batches(batches, tables.tables()), streams


def decode_slice(
    body: bytes,
    tables: AdaptiveTables,
    rows: int,
    cols: int,
    intra_frame: bool,
    previous_modes: npt.NDArray[np.integer] | None,
) -> tuple[FrameSymbols, dict[str, I64]]:
    """Inverse of :func:`encode_slice` for a slice of rows x cols macroblocks: its symbols (levels
    DC-differenced) and its histogram. FormatError for a body that does not decode exactly."""
    decoder = SymbolDecoder(body, tables.tables())
    hist = {name: np.zeros((c, a), dtype=np.int64) for name, (c, a) in STREAMS.items()}

    def get(name: str, contexts: I64) -> I64:
        c = np.asarray(contexts, dtype=np.int64).reshape(-1)
        sym = decoder.decode(_OFFSETS[name] + c).astype(np.int64)
        np.add.at(hist[name], (c, sym), 1)
        return sym

    shape = (rows, cols)
    mvd = np.zeros((rows, cols, 2), dtype=np.int64)
    if intra_frame:
        modes = np.full(shape, MODE_INTRA, dtype=np.int64)
    else:
        modes = get("mode", mode_contexts(previous_modes, shape)).reshape(shape)
        inter = modes == MODE_INTER
        n = int(inter.sum())
        my = get("mvd", np.zeros(n, dtype=np.int64))
        mx = get("mvd", 1 + np.minimum(my, 2))
    intra = modes == MODE_INTRA
    coded_mb = modes != MODE_SKIP
    n_mb = int(coded_mb.sum())
    flags = np.zeros((n_mb, 6), dtype=bool)
    intra_mb = intra[coded_mb]
    for b in range(6):
        flags[:, b] = get("cbf", cbf_contexts(flags[:, :b], b, intra_mb)) == 1
    cbf = np.zeros((rows, cols, 6), dtype=bool)
    cbf[coded_mb] = flags
    coded = cbf & coded_mb[..., None]
    classes = block_classes(intra)[coded]
    last = get("last", classes)
    n_blocks = last.shape[0]
    mags = np.zeros((n_blocks, 64), dtype=np.int64)
    for k in range(64):
        active = last >= k
        if not active.any():
            break
        mags[active, k] = get("level", level_contexts(mags, classes, last, k, active))
    if n_blocks and np.any(mags[np.arange(n_blocks), last] == 0):
        raise FormatError("a coded block's last level is zero", field="body")
    if not intra_frame:
        d = _raw_values(decoder, np.stack([my, mx], -1).reshape(-1)).reshape(-1, 2)
        mvd[inter] = d
    blocks = _raw_values(decoder, mags.reshape(-1)).reshape(n_blocks, 64)
    decoder.finish()
    levels = np.zeros((rows, cols, 6, 64), dtype=np.int64)
    levels[coded] = blocks
    sym = FrameSymbols(intra_frame, modes.astype(np.int8), mvd, cbf, levels, previous_modes)
    return sym, hist


def _raw_values(decoder: SymbolDecoder, symbols: I64) -> I64:
    """Signed values from magnitude symbols: signs, then mantissa chunks (see Streams.add_raw)."""
    nz = symbols > 0
    signs = decoder.decode(np.full(int(nz.sum()), RAW_OFFSET, dtype=np.int64))
    k = np.where(symbols >= ESCAPE, symbols - ESCAPE, 0)
    mantissa = np.zeros(symbols.shape, dtype=np.int64)
    for j in range(RAW_CHUNKS):
        has = k > RAW_CHUNK_BITS * j
        width = np.minimum(RAW_CHUNK_BITS, k[has] - RAW_CHUNK_BITS * j)
        chunk = decoder.decode(RAW_OFFSET + width - 1).astype(np.int64)
        mantissa[has] |= np.left_shift(chunk, RAW_CHUNK_BITS * j)
    magnitude = np.where(symbols >= ESCAPE, ESCAPE - 1 + np.left_shift(1, k) + mantissa, symbols)
    out = magnitude.copy()
    out[nz] = np.where(signs == 1, -magnitude[nz], magnitude[nz])
    return out


__all__ = [
    "ALPHABET",
    "AdaptiveTables",
    "decode_slice",
    "encode_slice",
    "counts_to_freqs",
    "initial_counts",
    "slice_streams",
    "STREAMS",
    "FrameSymbols",
    "Streams",
    "coded_block_flags",
    "dc_differences",
    "dc_from_differences",
    "frame_streams",
    "last_positions",
]
