"""Context-modelled coding of signed transform coefficients (payload prior kind 3).

Codes of one image: an int array (C, H, W) of signed integers (C = 192 coefficients of 8x8 RGB
blocks for ``image-sq20``), quantized at one quality level; ``group`` (0..num_groups-1) selects
the tables fitted for that level's group. Only the first ``C'`` coefficients are coded, where
channels ``C' .. C-1`` are zero everywhere (``C'`` >= 1 is the payload's stream count).

Symbols (all integer arithmetic, identical in encoder and decoder):
- magnitude symbol ``m``: ``|v|`` when ``|v| < ESCAPE``; else ``ESCAPE + k`` with
  ``k = floor(log2(|v| - ESCAPE + 1))`` (Exp-Golomb order 0), 0 <= k <= MAX_EXTRA_BITS - 1;
- for ``m >= ESCAPE``: ``k`` mantissa bits ``|v| - ESCAPE + 1 - 2**k`` (uniform table of 2**k);
- for ``v != 0``: one sign bit (1 = negative): a uniform table of 2, or, in a prior with
  ``sign_context`` (config key ``sign_context: 1``), a binary table chosen by the signs of the
  same-channel neighbours decoded before it (below).

Order: channel by channel (0 .. C'-1); in each channel, the passes of the prior's ``layout``
(each pass in raster order); then every sign bit, then every mantissa (in the magnitudes' order).
Without ``sign_context`` the signs follow the magnitudes' order; with it they go pass by pass
(pass 0 of every channel, channel by channel, each in raster order; then pass 1 ...), so that one
batch holds every sign of a pass. Contexts of magnitudes use magnitude symbols only, so signs and
mantissas can follow all magnitudes.

Passes (``LAYOUT_PASSES``, ``pass_masks``), positions (i, j) of the block grid:
- layout 1 (``image-sq20``, ``image-sq20b``): (i + j) even | (i + j) odd;
- layout 2: i, j both even | both odd | (i + j) odd;
- layout 3: i, j both multiples of 4 | both = 2 mod 4 | the other even-even positions |
  both odd | (i + j) odd. Each pass after the first sees same-channel neighbours from earlier
  passes, so only 1/16 of the positions (not 1/2) are coded without them: at the lowest rates,
  where most neighbours are zero, that is 24 % fewer bits (benchmarks/context_layout.py).

Context of a magnitude symbol at channel c, block (i, j), with ``n = min(m, 15)``:
- ``nbr`` by the pass's source: "previous channel" (the first pass): the sum of n over the 4
  neighbours of channel c - 1 plus 2 n at (i, j) in channel c - 1 (0 for c = 0); a same-channel
  source: the sum of n over its 4 offsets in channel c (``SOURCE_OFFSETS``: adjacent (+-1, 0),
  (0, +-1); diagonal (+-1, +-1); and the same at distance 2), all from earlier passes;
  neighbours outside the picture count 0; bucketed by ``NBR_BUCKETS``;
- ``recent``: how many of channels max(0, c-16) .. c-1 are nonzero at (i, j), bucketed by
  ``RECENT_BUCKETS``;
- the table is ``(((group * CK + ck(c)) * P + pass) * NB + nbr) * NR + recent`` with P the
  layout's pass count and ``ck(c) = c`` for c < 64 and ``64 + (c - 64) // 8`` above (high
  channels share statistics).
Prediction (config key ``predicted``: per table group, a list of channels; none by default): a
listed channel is coded as residuals, at each position of a pass after the first, the code minus
:func:`pass_prediction` (the rounded mean of the codes at the pass's 4 source offsets, all in
earlier passes); everything above and below then applies to those residuals. The decoder adds
the prediction back pass by pass. Low-order coefficients (the block means of the colour planes)
are smooth across blocks, so their residuals are small; ``fit_with_prediction`` keeps a channel
predicted only where that measures fewer bits on the training codes.

Context of a sign (``sign_context`` priors) at channel c, block (i, j) of pass p: ``t`` = the sum
of sign(v) (-1, 0 or 1) over the pass's 4 ``SOURCE_OFFSETS`` in channel c (positions of earlier
passes, so their signs are decoded; outside the picture 0), clipped to -4..4; pass 0, which has
no same-channel neighbour before it, uses t = 0. The sign table is
``((group * CK + ck(c)) * P + p) * SIGN_CONTEXTS + t + 4``. Neighbouring blocks of a transform
coefficient mostly agree in sign (smooth brightness and colour, edges that run across blocks):
on image-sq20c's codes of 8 Kodak images the signs, 20-33 % of the bits, take 1.6-25.9 % fewer
bits in total (most at the lowest rates; benchmarks/context_layout.py, results/context_signs.json).
Everything is integer, so the tables the decoder selects are exactly the encoder's on every
machine; the tables themselves are integers stored in the model (cdf.py, coder.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from vqcodec.entropy.cdf import pack_freqs, quantize_pmf, unpack_freqs
from vqcodec.entropy.coder import CodingTables, SymbolDecoder, encode_batches
from vqcodec.entropy.payload import PRIOR_COEFFICIENT_CONTEXT, build_payload, split_payload
from vqcodec.errors import FormatError

I64 = npt.NDArray[np.int64]

ESCAPE = 14
MAX_EXTRA_BITS = 16
ALPHABET = ESCAPE + MAX_EXTRA_BITS  # magnitude symbols
#: largest magnitude the symbols can express
MAX_MAGNITUDE = ESCAPE - 2 + (1 << MAX_EXTRA_BITS)
CLIP = 15
RECENT_WINDOW = 16
NBR_BUCKETS = np.array([0, 1, 2, 3, 4, 4, 5, 5, 5, 6, 6, 6, 6, 6] + [7] * (4 * CLIP * 3 + 1), dtype=np.int64)
RECENT_BUCKETS = np.array([0, 1, 2, 3, 3, 4, 4, 4, 5, 5, 5, 5] + [6] * (RECENT_WINDOW - 11), dtype=np.int64)
NB = int(NBR_BUCKETS.max()) + 1
NR = int(RECENT_BUCKETS.max()) + 1
DIRECT_CHANNELS = 64
SHARED_CHANNELS = 8
PRECISION = 16
FORMAT_VERSION = 1
#: pass layouts (config key ``layout``; priors without it are layout 1): the source of each pass's
#: ``nbr`` context, in pass order; ``pass_masks`` gives the positions (module docstring)
PREVIOUS_CHANNEL, DIAGONAL, ADJACENT, DIAGONAL_2, ADJACENT_2 = 0, 1, 2, 3, 4
LAYOUT_PASSES = {
    1: (PREVIOUS_CHANNEL, ADJACENT),
    2: (PREVIOUS_CHANNEL, DIAGONAL, ADJACENT),
    3: (PREVIOUS_CHANNEL, DIAGONAL_2, ADJACENT_2, DIAGONAL, ADJACENT),
}
#: zero border of the decoder's padded planes (the largest offset below)
PAD = 2
#: same-channel sources: the 4 (row, column) offsets whose clipped symbols are summed
SOURCE_OFFSETS = {
    DIAGONAL: ((-1, -1), (-1, 1), (1, -1), (1, 1)),
    ADJACENT: ((-1, 0), (1, 0), (0, -1), (0, 1)),
    DIAGONAL_2: ((-2, -2), (-2, 2), (2, -2), (2, 2)),
    ADJACENT_2: ((-2, 0), (2, 0), (0, -2), (0, 2)),
}
#: sign tables per (group, channel key, pass): the neighbour sign sum -4..4
SIGN_CONTEXTS = 9
SIGN_CLIP = 4
#: channels ``fit_with_prediction`` considers predicting (the low-order coefficients)
PREDICT_CANDIDATES = 8
#: mantissas are coded in chunks of at most this many raw bits (uniform tables fit the alphabet)
CHUNK_BITS = 4
CHUNKS = -(-(MAX_EXTRA_BITS - 1) // CHUNK_BITS)
#: rate-distortion quantization (:meth:`CoefficientContextPrior.rd_quantize`): lambda in units of
#: step**2 per bit and context refinement passes, measured on 8 Kodak images against dead-zone
#: rounding (benchmarks/effort.py, image-sq20: lambda 0.10 / 0.15 / 0.20 with 2 passes gave
#: -2.3 / -2.9 / -2.2 %; image-sq20b, whose wider refinement hides more of the dead zone: -0.6 %;
#: image-sq20c, with the 5-pass prior: +0.5 %, results/effort_sq20c.json)
RDO_LAMBDA = 0.15
RDO_PASSES = 2


def channel_keys(channels: int) -> I64:
    c = np.arange(channels, dtype=np.int64)
    return np.where(c < DIRECT_CHANNELS, c, DIRECT_CHANNELS + (c - DIRECT_CHANNELS) // SHARED_CHANNELS)


def magnitude_symbols(codes: I64) -> tuple[I64, I64, I64]:
    """Signed codes -> (magnitude symbols, extra-bit counts k, mantissas), all shaped like codes."""
    a = np.abs(codes)
    big = a >= ESCAPE
    e = np.where(big, a - ESCAPE + 1, 1)
    k = np.floor(np.log2(e.astype(np.float64))).astype(np.int64)  # exact for e < 2**52
    # float log2 can be off by one next to powers of two: fix with integer comparisons
    k = k - (np.left_shift(1, k) > e) + (np.left_shift(1, k + 1) <= e)
    symbols = np.where(big, ESCAPE + k, a)
    return symbols, np.where(big, k, 0), np.where(big, e - np.left_shift(1, k), 0)


def _offset_sum(n: I64, offsets: Sequence[tuple[int, int]]) -> I64:
    """(..., H, W) -> sum over ``offsets`` (di, dj) of n[..., i + di, j + dj] (zero outside)."""
    out = np.zeros_like(n)
    for di, dj in offsets:
        out += _shifted(n, di, dj)
    return out


def pass_prediction(values: I64, source: int) -> I64:
    """values (n, H, W) -> (n, H, W) the prediction of a pass whose context source is ``source``:
    the mean of the values at the source's offsets inside the grid, rounded half up
    (floor((2 * sum + count) / (2 * count)), integers only); 0 where no offset is inside and for
    the "previous channel" source (the first pass). Only the offsets' positions are read, so for a
    pass's own positions it reads earlier passes only."""
    if source == PREVIOUS_CHANNEL:
        return np.zeros_like(values)
    offsets = SOURCE_OFFSETS[source]
    total = _offset_sum(values, offsets)
    count = _offset_sum(np.ones(values.shape[-2:], dtype=np.int64), offsets)
    return np.floor_divide(2 * total + count, 2 * np.maximum(count, 1)) * (count > 0)


def _shifted(values: I64, di: int, dj: int) -> I64:
    """values (..., H, W) -> out[..., i, j] = values[..., i + di, j + dj] (0 outside)."""
    h, w = values.shape[-2:]
    out = np.zeros_like(values)
    out[..., max(0, -di) : h - max(0, di), max(0, -dj) : w - max(0, dj)] = values[
        ..., max(0, di) : h - max(0, -di), max(0, dj) : w - max(0, -dj)
    ]
    return out


def _padded_signs(codes: I64) -> I64:
    """Codes (C, H, W) -> their signs (-1, 0, 1) in zero-bordered planes, flattened
    (C, (H + 2 PAD) * (W + 2 PAD)), so a position's offsets are gathers."""
    c_count, h, w = codes.shape
    padded = np.zeros((c_count, h + 2 * PAD, w + 2 * PAD), dtype=np.int64)
    padded[:, PAD:-PAD, PAD:-PAD] = np.sign(codes)
    return padded.reshape(c_count, -1)


def pass_masks(height: int, width: int, layout: int) -> list[npt.NDArray[np.bool_]]:
    """The positions of each pass of ``layout`` in an (height, width) grid (they partition it)."""
    i, j = np.mgrid[0:height, 0:width]
    odd = (i + j) % 2 == 1
    if layout == 1:
        return [~odd, odd]
    both_even = (i % 2 == 0) & (j % 2 == 0)
    if layout == 2:
        return [both_even, ~odd & ~both_even, odd]
    # layout 3: the layout-2 split of the even-even sub-grid, then layout 2's last two passes
    q4 = (i % 4 == 0) & (j % 4 == 0)
    q2 = (i % 4 == 2) & (j % 4 == 2)
    rest_even = both_even & ~q4 & ~q2
    return [q4, q2, rest_even, ~odd & ~both_even, odd]


def check_layout(layout: Any) -> int:
    """``layout`` as a known pass layout (ValueError otherwise)."""
    if isinstance(layout, bool) or layout not in LAYOUT_PASSES:
        raise ValueError(f"unknown coefficient pass layout {layout!r}; known: {sorted(LAYOUT_PASSES)}")
    return int(layout)


def table_count(channels: int, num_groups: int, layout: int) -> int:
    """Context tables of a prior: groups x channel keys x passes x NB x NR."""
    check_layout(layout)
    keys = int(channel_keys(channels).max()) + 1
    return num_groups * keys * len(LAYOUT_PASSES[layout]) * NB * NR


def sign_table_count(channels: int, num_groups: int, layout: int) -> int:
    """Sign tables of a ``sign_context`` prior: groups x channel keys x passes x SIGN_CONTEXTS."""
    keys = int(channel_keys(channels).max()) + 1
    return num_groups * keys * len(LAYOUT_PASSES[check_layout(layout)]) * SIGN_CONTEXTS


def _flat_row() -> I64:
    """A valid (not fitted) table row: near-uniform frequencies summing to 2**PRECISION."""
    row = np.full(ALPHABET, (1 << PRECISION) // ALPHABET, dtype=np.int64)
    row[0] += (1 << PRECISION) - int(row.sum())
    return row


def _mosaics(
    codes_list: Sequence[npt.ArrayLike],
    per_side: int = 16,
    *,
    aligned: bool = False,
    transform: Callable[[npt.ArrayLike], I64] | None = None,
) -> Iterator[tuple[I64, npt.NDArray[np.bool_]]]:
    """Many small code arrays (C, h, w) -> mosaics (C, H, W) with zero blocks between tiles, and
    the mask of positions that belong to a tile. Zeros around a tile are exactly what the
    contexts see outside a picture, so counting over a mosaic equals counting tile by tile, up to
    the pass phase of each tile (statistically the same); one pass over a mosaic is ~100x faster
    than over its tiles. Made one at a time: holding every mosaic (and int64 copies of every
    tile) at once ran a 1,000-crop fit out of 24 GB.

    The released priors were fitted with one zero block between tiles (kept, so their recipes
    reproduce them). ``aligned``: at least ``PAD`` zero blocks and a tile pitch that is a multiple
    of 4, so every tile keeps its own pass phase (each layout repeats every 4 positions) and no
    offset reaches a neighbouring tile; needed when ``transform`` (applied to each tile before it
    is placed, e.g. :meth:`CoefficientContextPrior.predict`) depends on the passes."""
    by_shape: dict[tuple[int, ...], list[npt.ArrayLike]] = {}
    for codes in codes_list:
        by_shape.setdefault(np.shape(codes), []).append(codes)
    for (c, h, w), arrays in by_shape.items():
        gap_h = PAD + (-(h + PAD)) % 4 if aligned else 1
        gap_w = PAD + (-(w + PAD)) % 4 if aligned else 1
        pitch_h, pitch_w = h + gap_h, w + gap_w
        for start in range(0, len(arrays), per_side * per_side):
            chunk = arrays[start : start + per_side * per_side]
            rows = -(-len(chunk) // per_side)
            cols = min(per_side, len(chunk))
            mosaic = np.zeros((c, rows * pitch_h, cols * pitch_w), dtype=np.int64)
            valid = np.zeros(mosaic.shape[1:], dtype=bool)
            for index, a in enumerate(chunk):
                r, q = divmod(index, per_side)
                tile = a if transform is None else transform(a)
                mosaic[:, r * pitch_h : r * pitch_h + h, q * pitch_w : q * pitch_w + w] = tile
                valid[r * pitch_h : r * pitch_h + h, q * pitch_w : q * pitch_w + w] = True
            yield mosaic, valid


class CoefficientContextPrior:
    """Integer context tables for signed coefficient codes; see the module docstring."""

    kind = PRIOR_COEFFICIENT_CONTEXT
    name = "coefficient_context"

    def __init__(
        self,
        channels: int,
        num_groups: int,
        freqs: npt.ArrayLike,
        *,
        layout: int = 1,
        sign_freqs: npt.ArrayLike | None = None,
        predicted: Sequence[Sequence[int]] | None = None,
    ):
        """``freqs``: (table_count, ALPHABET) magnitude tables; ``sign_freqs``: None (uniform sign
        bits) or (sign_table_count, 2) binary tables, one per sign context; ``predicted``: None or,
        per table group, the channels coded as residuals of their pass prediction (module
        docstring)."""
        self.channels = int(channels)
        self.num_groups = int(num_groups)
        self.layout = check_layout(layout)
        self.pass_sources = LAYOUT_PASSES[self.layout]
        self.num_passes = len(self.pass_sources)
        self.keys = channel_keys(self.channels)
        self.num_keys = int(self.keys.max()) + 1
        self.context_tables = table_count(self.channels, self.num_groups, self.layout)
        f = np.asarray(freqs, dtype=np.int64)
        if f.shape != (self.context_tables, ALPHABET):
            raise ValueError(f"freqs must be ({self.context_tables}, {ALPHABET}), got {f.shape}")
        self.predicted = np.zeros((self.num_groups, self.channels), dtype=bool)
        if predicted is not None:
            if len(predicted) != self.num_groups:
                raise ValueError(f"predicted needs one channel list per group ({self.num_groups})")
            for g, chans in enumerate(predicted):
                listed = [int(c) for c in chans]
                if listed != sorted(set(listed)) or any(not 0 <= c < self.channels for c in listed):
                    raise ValueError(
                        f"predicted[{g}] must be sorted distinct channels in 0..{self.channels - 1}"
                    )
                self.predicted[g, listed] = True
        self.sign_context = sign_freqs is not None
        self.sign_tables = sign_table_count(self.channels, self.num_groups, self.layout)
        if sign_freqs is not None:
            sf = np.asarray(sign_freqs, dtype=np.int64)
            if sf.shape != (self.sign_tables, 2):
                raise ValueError(f"sign_freqs must be ({self.sign_tables}, 2), got {sf.shape}")
        # rows: magnitude tables; uniform tables of 2**b symbols, b = 1..CHUNK_BITS, for raw bits
        # (uniform signs use b = 1); then the sign tables of a sign_context prior
        self.sign_table_start = self.context_tables + CHUNK_BITS
        rows = self.sign_table_start + (self.sign_tables if sign_freqs is not None else 0)
        table = np.zeros((rows, ALPHABET), dtype=np.int64)
        table[: self.context_tables] = f
        for b in range(1, CHUNK_BITS + 1):
            table[self.context_tables + b - 1, : 1 << b] = 1 << (PRECISION - b)
        if sign_freqs is not None:
            table[self.sign_table_start :, :2] = sf
        self.sign_freqs = None if sign_freqs is None else np.asarray(sign_freqs, dtype=np.int64)
        self.freqs = f
        self.tables = CodingTables(table)
        self._symbol_bits: npt.NDArray[np.float64] | None = None

    @property
    def num_streams(self) -> int:
        return self.channels

    # --- contexts ------------------------------------------------------------------------------

    def _pass_masks(self, height: int, width: int) -> list[npt.NDArray[np.bool_]]:
        return pass_masks(height, width, self.layout)

    def _table_base(self, group: int, c: int, pass_index: int) -> int:
        return int(((group * self.num_keys + int(self.keys[c])) * self.num_passes + pass_index) * NB * NR)

    def _contexts(
        self, n: I64, recent: I64, c: int, pass_index: int, where: npt.NDArray[np.bool_], group: int
    ) -> I64:
        """Table indices of channel c's pass ``pass_index`` positions (n: (C, H, W) clipped so far)."""
        source = self.pass_sources[pass_index]
        if source != PREVIOUS_CHANNEL:
            nbr = _offset_sum(n[c], SOURCE_OFFSETS[source])[where]
        elif c > 0:
            nbr = _offset_sum(n[c - 1], SOURCE_OFFSETS[ADJACENT])[where] + 2 * n[c - 1][where]
        else:
            nbr = np.zeros(int(where.sum()), dtype=np.int64)
        rb = RECENT_BUCKETS[recent[where]]
        nb = NBR_BUCKETS[np.minimum(nbr, NBR_BUCKETS.size - 1)]
        return self._table_base(group, c, pass_index) + nb * NR + rb

    def _pass_positions(self, height: int, width: int) -> list[tuple[I64, I64]]:
        """Per pass: (flat positions in (H, W) raster order, the same positions in the zero-padded
        (H + 2 PAD, W + 2 PAD) plane)."""
        out = []
        for where in self._pass_masks(height, width):
            i, j = np.nonzero(where)
            out.append((i * width + j, (i + PAD) * (width + 2 * PAD) + j + PAD))
        return out

    def _fast_contexts(
        self,
        padded: I64,
        recent: I64,
        c: int,
        pass_index: int,
        where: I64,
        inner: I64,
        padded_width: int,
        group: int,
    ) -> I64:
        """:meth:`_contexts` from gathers: padded (C, (H + 2 PAD) * (W + 2 PAD)) clipped symbols so far
        with a zero border, recent (H * W,), where/inner the pass's positions from :meth:`_pass_positions`."""
        source = self.pass_sources[pass_index]
        if source != PREVIOUS_CHANNEL or c > 0:
            plane = padded[c] if source != PREVIOUS_CHANNEL else padded[c - 1]
            offsets = SOURCE_OFFSETS[ADJACENT if source == PREVIOUS_CHANNEL else source]
            nbr = 2 * plane[inner] if source == PREVIOUS_CHANNEL else np.zeros(inner.size, dtype=np.int64)
            for di, dj in offsets:
                nbr += plane[inner + di * padded_width + dj]
        else:
            nbr = np.zeros(where.size, dtype=np.int64)
        rb = RECENT_BUCKETS[recent[where]]
        nb = NBR_BUCKETS[np.minimum(nbr, NBR_BUCKETS.size - 1)]
        return self._table_base(group, c, pass_index) + nb * NR + rb

    def predict(self, codes: npt.ArrayLike, *, group: int) -> I64:
        """Codes (C, H, W) -> the integers the payload codes: the codes, except that each channel
        in ``predicted[group]`` holds, at the positions of every pass after the first, the code
        minus :func:`pass_prediction` of the codes."""
        c = np.array(codes, dtype=np.int64)
        g = self._check_group(group)
        chosen = np.flatnonzero(self.predicted[g, : c.shape[0]])
        if chosen.size:
            values = c[chosen]
            residual = values.copy()
            for where, source in zip(self._pass_masks(*c.shape[1:]), self.pass_sources, strict=True):
                residual[:, where] -= pass_prediction(values, source)[:, where]
            c[chosen] = residual
        return c

    def unpredict(self, coded: npt.ArrayLike, *, group: int) -> I64:
        """Inverse of :meth:`predict`: pass by pass, so each pass's prediction reads the codes of
        earlier passes, already restored (exactly what the encoder read)."""
        c = np.array(coded, dtype=np.int64)
        g = self._check_group(group)
        chosen = np.flatnonzero(self.predicted[g, : c.shape[0]])
        if chosen.size:
            values = c[chosen]
            for where, source in zip(self._pass_masks(*c.shape[1:]), self.pass_sources, strict=True):
                values[:, where] += pass_prediction(values, source)[:, where]
            c[chosen] = values
        return c

    def _check_group(self, group: int) -> int:
        integer = isinstance(group, (int, np.integer)) and not isinstance(group, bool)
        if not integer or not 0 <= group < self.num_groups:
            raise ValueError(f"group must be in 0..{self.num_groups - 1}, got {group!r}")
        return int(group)

    def _magnitude_batches(self, symbols: I64, group: int) -> list[tuple[I64, I64]]:
        """(symbols, tables) per (channel, pass), as the decoder will ask for them."""
        c_count, h, w = symbols.shape
        flat = symbols.reshape(c_count, h * w)
        padded = np.zeros((c_count, h + 2 * PAD, w + 2 * PAD), dtype=np.int64)
        padded[:, PAD:-PAD, PAD:-PAD] = np.minimum(symbols, CLIP)
        padded_flat = padded.reshape(c_count, -1)
        nonzero = (flat > 0).astype(np.int64)
        positions = self._pass_positions(h, w)
        recent = np.zeros(h * w, dtype=np.int64)
        batches = []
        for c in range(c_count):
            for p, (where, inner) in enumerate(positions):
                tables = self._fast_contexts(padded_flat, recent, c, p, where, inner, w + 2 * PAD, group)
                batches.append((flat[c, where], tables))
            recent = recent + nonzero[c] - (nonzero[c - RECENT_WINDOW] if c >= RECENT_WINDOW else 0)
        return batches

    def _reference_magnitude_batches(self, symbols: I64, group: int) -> list[tuple[I64, I64]]:
        """The straightforward form of :meth:`_magnitude_batches` (full-plane masks), kept as the
        reference the fast path is tested against."""
        c_count, h, w = symbols.shape
        n = np.minimum(symbols, CLIP)
        nonzero = (symbols > 0).astype(np.int64)
        masks = self._pass_masks(h, w)
        recent = np.zeros((h, w), dtype=np.int64)
        batches = []
        for c in range(c_count):
            for p, where in enumerate(masks):
                batches.append((symbols[c][where], self._contexts(n, recent, c, p, where, group)))
            recent = recent + nonzero[c] - (nonzero[c - RECENT_WINDOW] if c >= RECENT_WINDOW else 0)
        return batches

    def _raw_table(self, bits: I64) -> I64:
        """Index of the uniform table of 2**bits symbols (1 <= bits <= CHUNK_BITS)."""
        return self.context_tables - 1 + bits

    def _sign_tables_of_pass(
        self, signs_padded: I64, p: int, inner: I64, padded_width: int, group: int
    ) -> I64:
        """Sign tables (C', n) of pass p's positions ``inner`` (in the padded plane) of every channel,
        from signs_padded (C', (H + 2 PAD) * (W + 2 PAD)): -1/0/1 of the passes before p (zero
        border)."""
        c_count = signs_padded.shape[0]
        base = ((group * self.num_keys + self.keys[:c_count]) * self.num_passes + p) * SIGN_CONTEXTS
        source = self.pass_sources[p]
        t = np.zeros((c_count, inner.size), dtype=np.int64)
        if source != PREVIOUS_CHANNEL:
            for di, dj in SOURCE_OFFSETS[source]:
                t += signs_padded[:, inner + di * padded_width + dj]
        return self.sign_table_start + base[:, None] + np.clip(t, -SIGN_CLIP, SIGN_CLIP) + SIGN_CLIP

    def _sign_batches(self, codes: I64, group: int) -> list[tuple[I64, I64]]:
        """Sign bits of a sign_context prior: one batch per pass (every channel of the pass)."""
        c_count, h, w = codes.shape
        padded_flat = _padded_signs(codes)
        flat = codes.reshape(c_count, h * w)
        batches = []
        for p, (where, inner) in enumerate(self._pass_positions(h, w)):
            values = flat[:, where]
            nonzero = values != 0
            tables = self._sign_tables_of_pass(padded_flat, p, inner, w + 2 * PAD, group)
            batches.append(((values[nonzero] < 0).astype(np.int64), tables[nonzero]))
        return batches

    def _raw_batches(self, codes: I64, k: I64, mantissa: I64, group: int) -> list[tuple[I64, I64]]:
        """Sign bits (uniform: in coding order; sign_context: :meth:`_sign_batches`), then mantissa
        chunks j = 0, 1, ... (bits 4j .. 4j+3), each in coding order."""
        order = self._coding_order(codes.shape)
        flat_codes, flat_k = codes.reshape(-1)[order], k.reshape(-1)[order]
        flat_m = mantissa.reshape(-1)[order]
        if self.sign_context:
            batches = self._sign_batches(codes, group)
        else:
            signs = (flat_codes[flat_codes != 0] < 0).astype(np.int64)
            batches = [(signs, self._raw_table(np.ones(signs.shape, dtype=np.int64)))]
        for j in range(CHUNKS):
            has = flat_k > CHUNK_BITS * j
            width = np.minimum(CHUNK_BITS, flat_k[has] - CHUNK_BITS * j)
            chunk = np.right_shift(flat_m[has], CHUNK_BITS * j) & (np.left_shift(1, width) - 1)
            batches.append((chunk, self._raw_table(width)))
        return batches

    def _coding_order(self, shape: tuple[int, ...]) -> I64:
        """Flat indices of a (C', H, W) array in coding order (channel, pass, raster)."""
        c_count, h, w = shape
        plane = np.concatenate([np.flatnonzero(mask) for mask in self._pass_masks(h, w)])
        return (np.arange(c_count, dtype=np.int64)[:, None] * (h * w) + plane[None, :]).reshape(-1)

    # --- rate-distortion quantization (encoder only) -----------------------------------------------

    def symbol_bits(self) -> npt.NDArray[np.float64]:
        """(context tables, ALPHABET) bits of each magnitude symbol under each context table
        (inf for a zero frequency). Built once; only the encoder's rate estimates read it."""
        bits = self._symbol_bits
        if bits is None:
            with np.errstate(divide="ignore"):
                bits = PRECISION - np.log2(self.freqs.astype(np.float64))
            self._symbol_bits = bits  # a race builds the same array twice: harmless
        return bits

    def magnitude_tables(self, codes: npt.ArrayLike, *, group: int) -> I64:
        """Coded values (C, H, W) (:meth:`predict` of the codes) -> the context table (C, H, W)
        each magnitude symbol is coded with."""
        c = self._check_codes(codes)
        g = self._check_group(group)
        symbols, _, _ = magnitude_symbols(c)
        channels, h, w = symbols.shape
        out = np.zeros((channels, h * w), dtype=np.int64)
        positions = self._pass_positions(h, w)
        passes = self.num_passes
        for index, (_, tables) in enumerate(self._magnitude_batches(symbols, g)):
            out[index // passes, positions[index % passes][0]] = tables
        return out.reshape(channels, h, w)

    def sign_bits(
        self, codes: npt.ArrayLike, *, group: int, negative: npt.ArrayLike | None = None
    ) -> npt.NDArray[np.float64]:
        """Coded values (C, H, W) (:meth:`predict` of the codes) -> (C, H, W) bits the sign at each
        position costs: 1 with uniform sign
        bits; with ``sign_context``, under the table that the signs of ``codes`` around it select,
        for the sign ``negative`` (bool (C, H, W); default ``codes < 0``). Zero codes take part
        as 0 in their neighbours' contexts, yet get the price their sign would have."""
        c = self._check_codes(codes)
        g = self._check_group(group)
        if not self.sign_context:
            return np.ones(c.shape, dtype=np.float64)
        neg = (c < 0) if negative is None else np.asarray(negative, dtype=bool)
        c_count, h, w = c.shape
        padded_flat = _padded_signs(c)
        tables = np.zeros((c_count, h * w), dtype=np.int64)
        for p, (where, inner) in enumerate(self._pass_positions(h, w)):
            tables[:, where] = self._sign_tables_of_pass(padded_flat, p, inner, w + 2 * PAD, g)
        f = self.tables.freqs[tables.reshape(c.shape), neg.astype(np.int64)]
        return PRECISION - np.log2(f.astype(np.float64))

    def code_cost(
        self, tables: I64, magnitudes: I64, sign_bits: float | npt.NDArray[np.float64] = 1.0
    ) -> npt.NDArray[np.float64]:
        """Bits of magnitudes (any shape, >= 0) coded with ``tables`` (same shape): the magnitude
        symbol, its escape bits and, for a nonzero value, its sign (``sign_bits``: 1 for uniform
        sign bits, or per position from :meth:`sign_bits`)."""
        symbols, k, _ = magnitude_symbols(magnitudes)
        return self.symbol_bits()[tables, symbols] + k + (magnitudes > 0) * sign_bits

    def rd_quantize(
        self,
        coefficients: npt.ArrayLike,
        step: float,
        *,
        group: int,
        lam: float = RDO_LAMBDA,
        passes: int = RDO_PASSES,
        rounding: float = 0.35,
    ) -> I64:
        """Coefficients (C, H, W) float -> signed codes (C, H, W) minimising squared error + lambda
        * bits under these tables (the encoder's ``effort`` 1; any codes decode, so the format is
        unchanged).

        Starts from dead-zone rounding (``rounding``); each pass prices, for every coefficient, the
        nearest magnitude, the one below it and zero under the context tables the current codes
        select, and keeps the cheapest of ``(|c|/step - m)**2 + lam * bits``. A pass fixes the
        contexts while it decides (its neighbours' tables move afterwards), so a second pass sees
        the first one's choices (signs are priced the same way, under the sign contexts of the
        current codes). Distortion is in the transform domain, equal to pixel MSE because the
        transform is orthonormal.
        """
        x = np.asarray(coefficients, dtype=np.float64)
        if x.ndim != 3 or x.shape[0] != self.channels:
            raise ValueError(f"coefficients must be ({self.channels}, H, W), got {x.shape}")
        if not (step > 0 and lam >= 0 and passes >= 0):
            raise ValueError(f"need step > 0, lam >= 0 and passes >= 0, got {step}, {lam}, {passes}")
        scaled = np.abs(x) / float(step)
        sign = np.where(x < 0, -1, 1)
        cap = float(MAX_MAGNITUDE)
        nearest = np.minimum(np.floor(scaled + 0.5), cap).astype(np.int64)
        candidates = (nearest, np.maximum(nearest - 1, 0), np.zeros_like(nearest))
        rounded = np.minimum(np.floor(scaled + rounding), cap).astype(np.int64)
        magnitude = rounded
        # predicted channels keep dead-zone rounding: a change there moves their neighbours'
        # residuals too, which this per-coefficient search does not price
        keep = self.predicted[self._check_group(group)][:, None, None]
        for _ in range(passes):
            coded = self.predict(sign * magnitude, group=group)
            tables = self.magnitude_tables(coded, group=group)
            signs = self.sign_bits(coded, group=group, negative=x < 0)
            best_cost = np.full(x.shape, np.inf)
            for m in candidates:
                cost = (scaled - m) ** 2 + lam * self.code_cost(tables, m, signs)
                better = cost < best_cost
                best_cost = np.where(better, cost, best_cost)
                magnitude = np.where(better, m, magnitude)
            magnitude = np.where(keep, rounded, magnitude)
        return sign * magnitude

    # --- public API ------------------------------------------------------------------------------

    def _check_codes(self, codes: npt.ArrayLike) -> I64:
        c = np.asarray(codes)
        if c.ndim != 3 or c.shape[0] != self.channels:
            raise ValueError(f"codes must be ({self.channels}, H, W), got {c.shape}")
        if c.size and not np.issubdtype(c.dtype, np.integer):
            raise ValueError(f"codes must be integers, got {c.dtype}")
        c = c.astype(np.int64)
        if c.size and int(np.abs(c).max()) > MAX_MAGNITUDE:
            raise ValueError(f"codes must lie in -{MAX_MAGNITUDE}..{MAX_MAGNITUDE}")
        return c

    @staticmethod
    def coded_channels(codes: I64) -> int:
        """1 + the last channel with a nonzero code (at least 1)."""
        used = np.flatnonzero(np.any(codes != 0, axis=(1, 2))) if codes.size else np.zeros(0, np.int64)
        return int(used[-1]) + 1 if used.size else 1

    def _all_batches(self, codes: I64, group: int) -> list[tuple[I64, I64]]:
        symbols, k, mantissa = magnitude_symbols(codes)
        return self._magnitude_batches(symbols, group) + self._raw_batches(codes, k, mantissa, group)

    def encode(self, codes: npt.ArrayLike, *, group: int) -> bytes:
        """Codes (C, H, W) signed ints -> payload bytes (header + body)."""
        c = self._check_codes(codes)
        g = self._check_group(group)
        coded = self.coded_channels(c)
        u = self._coded_values(c[:coded], g)
        body = encode_batches(self._all_batches(u, g), self.tables)
        return build_payload(self.kind, 0, (coded, int(c.shape[1]), int(c.shape[2])), body)

    def _coded_values(self, codes: I64, group: int) -> I64:
        """:meth:`predict`, refusing residuals beyond what the symbols can express."""
        u = self.predict(codes, group=group)
        if u.size and int(np.abs(u).max()) > MAX_MAGNITUDE:
            raise ValueError(f"predicted residuals must lie in -{MAX_MAGNITUDE}..{MAX_MAGNITUDE}")
        return u

    def ideal_bits(self, codes: npt.ArrayLike, *, group: int) -> float:
        """Bits of the body under the integer tables (cross-entropy; raw bits count 1 each)."""
        return float(self.channel_bits(codes, group=group).sum())

    def channel_bits(self, codes: npt.ArrayLike, *, group: int) -> npt.NDArray[np.float64]:
        """Codes (C, H, W) -> (C,) ideal bits of each channel's magnitudes, signs and mantissas (0
        for the uncoded tail); they add up to :meth:`ideal_bits`."""
        c = self._check_codes(codes)
        g = self._check_group(group)
        coded = self.coded_channels(c)
        u = self._coded_values(c[:coded], g)
        f = self.tables.freqs
        out = np.zeros(self.channels, dtype=np.float64)
        symbols, k, _ = magnitude_symbols(u)
        passes = self.num_passes
        for index, (sym, tab) in enumerate(self._magnitude_batches(symbols, g)):
            out[index // passes] += float(PRECISION * sym.size - np.log2(f[tab, sym]).sum())
        if self.sign_context:
            flat = u.reshape(coded, -1)
            sign_batches = self._sign_batches(u, g)
            for (bits, tab), (where, _) in zip(sign_batches, self._pass_positions(*u.shape[1:]), strict=True):
                channel = np.broadcast_to(np.arange(coded)[:, None], (coded, where.size))[flat[:, where] != 0]
                np.add.at(out, channel, PRECISION - np.log2(f[tab, bits].astype(np.float64)))
        else:
            out[:coded] += np.count_nonzero(u.reshape(coded, -1), axis=1)
        out[:coded] += k.reshape(coded, -1).sum(axis=1)
        return out

    def decode(self, payload: bytes, shape: tuple[int, int, int], *, group: int) -> npt.NDArray[np.int32]:
        """Payload -> codes (C, H, W) int32; ``shape`` is what the caller expects (C = channels)."""
        g = self._check_group(group)
        want = tuple(int(v) for v in shape)
        if len(want) != 3 or want[0] != self.channels or min(want) < 0:
            raise ValueError(f"shape must be ({self.channels}, H, W), got {shape}")
        header, body, end = split_payload(payload)
        if header.prior_kind != self.kind:
            raise FormatError(
                f"payload was made by prior kind {header.prior_kind}, not {self.kind} ({self.name})",
                offset=1,
                field="prior_kind",
            )
        coded, h, w = header.shape
        if (h, w) != want[1:] or not 1 <= coded <= self.channels:
            raise FormatError(
                f"payload holds codes {header.shape}, expected up to {want}", offset=3, field="shape"
            )
        if header.flags:
            raise FormatError(
                f"flags 0x{header.flags:02x} are not defined for this prior", offset=2, field="flags"
            )
        if end != len(payload):
            raise FormatError(f"{len(payload) - end} bytes after the payload body", offset=end, field="body")
        try:
            decoder = SymbolDecoder(body, self.tables)
            codes = self.unpredict(self._decode_body(decoder, coded, h, w, g), group=g)
            decoder.finish()
            if codes.size and int(np.abs(codes).max()) > MAX_MAGNITUDE:
                raise FormatError(f"a predicted code lies beyond +-{MAX_MAGNITUDE}")
        except FormatError as exc:
            raise FormatError(str(exc).split(" (field")[0], offset=header.header_size, field="body") from exc
        out = np.zeros(want, dtype=np.int32)
        out[:coded] = codes
        return out

    def _decode_body(self, decoder: SymbolDecoder, coded: int, h: int, w: int, group: int) -> I64:
        symbols = np.zeros((coded, h, w), dtype=np.int64)
        flat = symbols.reshape(coded, h * w)
        # clipped symbols in zero-padded planes, so a position's 4 neighbours are 4 gathers
        padded = np.zeros((coded, (h + 2 * PAD) * (w + 2 * PAD)), dtype=np.int64)
        positions = self._pass_positions(h, w)
        recent = np.zeros(h * w, dtype=np.int64)
        for c in range(coded):
            for p, (where, inner) in enumerate(positions):
                tables = self._fast_contexts(padded, recent, c, p, where, inner, w + 2 * PAD, group)
                decoded = decoder.decode(tables)
                flat[c, where] = decoded
                padded[c, inner] = np.minimum(decoded, CLIP)  # pass 1's contexts read pass 0's
            nonzero = (flat[c] > 0).astype(np.int64)
            old = (flat[c - RECENT_WINDOW] > 0).astype(np.int64) if c >= RECENT_WINDOW else 0
            recent = recent + nonzero - old
        order = self._coding_order(symbols.shape)
        flat_symbols = symbols.reshape(-1)[order]
        nonzero_positions = np.flatnonzero(flat_symbols > 0)
        if self.sign_context:
            # negative[c, position] of every nonzero, pass by pass; read back in coding order
            negative = np.zeros((coded, h * w), dtype=np.int64)
            signs_padded = np.zeros_like(padded)
            for p, (where, inner) in enumerate(positions):
                nonzero = flat[:, where] > 0
                tables = self._sign_tables_of_pass(signs_padded, p, inner, w + 2 * PAD, group)
                bits = decoder.decode(tables[nonzero]).astype(np.int64)
                pass_negative = np.zeros(nonzero.shape, dtype=np.int64)
                pass_negative[nonzero] = bits
                negative[:, where] = pass_negative
                signs_padded[:, inner] = nonzero.astype(np.int64) - 2 * pass_negative
            signs = negative.reshape(-1)[order][nonzero_positions]
        else:
            signs = decoder.decode(self._raw_table(np.ones(nonzero_positions.shape, dtype=np.int64))).astype(
                np.int64
            )
        escaped_positions = np.flatnonzero(flat_symbols >= ESCAPE)
        k = flat_symbols[escaped_positions] - ESCAPE
        mantissa = np.zeros(k.shape, dtype=np.int64)
        for j in range(CHUNKS):
            has = k > CHUNK_BITS * j
            width = np.minimum(CHUNK_BITS, k[has] - CHUNK_BITS * j)
            chunk = decoder.decode(self._raw_table(width)).astype(np.int64)
            mantissa[has] |= np.left_shift(chunk, CHUNK_BITS * j)
        magnitudes = flat_symbols.copy()
        magnitudes[escaped_positions] = ESCAPE - 1 + np.left_shift(1, k) + mantissa
        values = magnitudes.copy()
        values[nonzero_positions] = np.where(
            signs == 1, -magnitudes[nonzero_positions], magnitudes[nonzero_positions]
        )
        out = np.empty(coded * h * w, dtype=np.int64)
        out[order] = values
        return out.reshape(coded, h, w)

    # --- fitting and storage ----------------------------------------------------------------------

    @classmethod
    def fit(
        cls,
        codes_by_group: Sequence[Sequence[npt.ArrayLike]],
        *,
        smoothing: float = 4.0,
        layout: int = 1,
        sign_context: bool = False,
        predicted: Sequence[Sequence[int]] | None = None,
    ) -> CoefficientContextPrior:
        """Fit tables from training codes: ``codes_by_group[g]`` = list of (C, H, W) signed codes;
        ``predicted``: per group, the channels coded as prediction residuals (:meth:`predict`).

        Counts are smoothed towards the context's parent (the same table pooled over ``recent``),
        which is smoothed towards the channel's marginal: sparse contexts borrow their neighbours'
        statistics instead of falling back to uniform. Sign tables (``sign_context``) are smoothed
        towards their (group, channel key, pass) marginal the same way.
        """
        channels = int(np.asarray(codes_by_group[0][0]).shape[0])
        num_groups = len(codes_by_group)
        # an instance with placeholder tables computes the contexts exactly as coding does
        num_tables = table_count(channels, num_groups, layout)
        num_sign_tables = sign_table_count(channels, num_groups, layout)
        half = 1 << (PRECISION - 1)
        proto = cls(
            channels,
            num_groups,
            np.broadcast_to(_flat_row(), (num_tables, ALPHABET)),
            layout=layout,
            sign_freqs=np.full((num_sign_tables, 2), half) if sign_context else None,
            predicted=predicted,
        )
        counts = np.zeros(num_tables * ALPHABET, dtype=np.float64)
        sign_counts = np.zeros(num_sign_tables * 2, dtype=np.float64)
        for g, codes_list in enumerate(codes_by_group):
            lift = None
            if proto.predicted[g].any():

                def lift(a: npt.ArrayLike, g: int = g) -> I64:
                    return proto.predict(a, group=g)

            tiles = _mosaics(codes_list, aligned=predicted is not None, transform=lift)
            for mosaic, valid in tiles:
                symbols, _, _ = magnitude_symbols(mosaic)
                masks = proto._pass_masks(*mosaic.shape[1:])
                pairs = proto._magnitude_batches(symbols, g)
                index = np.concatenate(
                    [
                        (tab * ALPHABET + sym)[valid[masks[i % proto.num_passes]]]
                        for i, (sym, tab) in enumerate(pairs)
                    ]
                )
                counts += np.bincount(index, minlength=num_tables * ALPHABET)
                if sign_context:
                    flat = mosaic.reshape(mosaic.shape[0], -1)
                    for p, (bits, tab) in enumerate(proto._sign_batches(mosaic, g)):
                        where = masks[p].reshape(-1)
                        keep = np.broadcast_to(valid.reshape(-1)[where], (flat.shape[0], int(where.sum())))
                        keep = keep[flat[:, where] != 0]
                        sign_index = (tab - proto.sign_table_start) * 2 + bits
                        sign_counts += np.bincount(sign_index[keep], minlength=num_sign_tables * 2)
        grid = counts.reshape(-1, NB, NR, ALPHABET)
        marginal = grid.sum(axis=(1, 2), keepdims=True)
        marginal_p = (marginal + 0.01) / (marginal + 0.01).sum(-1, keepdims=True)
        parent = grid.sum(axis=2, keepdims=True)
        parent_p = (parent + smoothing * marginal_p) / (parent.sum(-1, keepdims=True) + smoothing)
        probs = (grid + smoothing * parent_p) / (grid.sum(-1, keepdims=True) + smoothing)
        freqs = quantize_pmf(probs.reshape(num_tables, ALPHABET), PRECISION)
        sign_freqs = None
        if sign_context:
            sign_grid = sign_counts.reshape(-1, SIGN_CONTEXTS, 2)
            pooled = sign_grid.sum(axis=1, keepdims=True)
            pooled_p = (pooled + 0.5) / (pooled.sum(-1, keepdims=True) + 1.0)
            sign_probs = (sign_grid + smoothing * pooled_p) / (sign_grid.sum(-1, keepdims=True) + smoothing)
            sign_freqs = quantize_pmf(sign_probs.reshape(num_sign_tables, 2), PRECISION)
        return cls(channels, num_groups, freqs, layout=layout, sign_freqs=sign_freqs, predicted=predicted)

    @classmethod
    def fit_with_prediction(
        cls,
        codes_by_group: Sequence[Sequence[npt.ArrayLike]],
        *,
        candidates: int = PREDICT_CANDIDATES,
        selection_stride: int = 4,
        margin: float = 0.01,
        **fit_options: Any,
    ) -> CoefficientContextPrior:
        """:meth:`fit`, choosing per group which of channels 0..candidates-1 to predict: a channel
        is predicted when, on every ``selection_stride``-th training array, its bits with all
        candidates predicted are more than ``margin`` below its bits with none (both priors
        fitted on all arrays); then the tables are fitted again with that choice."""
        groups = len(codes_by_group)
        channels = int(np.asarray(codes_by_group[0][0]).shape[0])
        every = list(range(min(candidates, channels)))
        plain = cls.fit(codes_by_group, predicted=[[] for _ in range(groups)], **fit_options)
        lifted = cls.fit(codes_by_group, predicted=[every for _ in range(groups)], **fit_options)
        chosen: list[list[int]] = []
        for g, codes_list in enumerate(codes_by_group):
            sample = codes_list[::selection_stride]
            bits_plain = sum((plain.channel_bits(a, group=g) for a in sample), np.zeros(channels))
            bits_lifted = sum((lifted.channel_bits(a, group=g) for a in sample), np.zeros(channels))
            chosen.append([c for c in every if bits_lifted[c] < (1 - margin) * bits_plain[c]])
        return cls.fit(codes_by_group, predicted=chosen, **fit_options)

    def config(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.name,
            "format_version": FORMAT_VERSION,
            "channels": self.channels,
            "num_groups": self.num_groups,
        }
        if self.layout != 1:  # layout-1 priors keep the config they were released with
            out["layout"] = self.layout
        if self.sign_context:  # so do priors with uniform sign bits
            out["sign_context"] = 1
        if self.predicted.any():  # and priors without prediction
            out["predicted"] = [np.flatnonzero(row).tolist() for row in self.predicted]
        return out

    def state_dict(self) -> dict[str, np.ndarray]:
        out = {"freqs": pack_freqs(self.freqs)}
        if self.sign_freqs is not None:
            out["sign_freqs"] = pack_freqs(self.sign_freqs)
        return out

    @classmethod
    def from_arrays(cls, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> CoefficientContextPrior:
        channels, groups = int(config["channels"]), int(config["num_groups"])
        if not 1 <= channels <= 256 or not 1 <= groups <= 64:
            raise ValueError(f"bad coefficient prior config {config}")
        packed = np.asarray(arrays["freqs"])
        layout = check_layout(config.get("layout", 1))
        sizes = np.full(packed.shape[0], ALPHABET, dtype=np.int64)
        sign_context = config.get("sign_context", 0)
        if sign_context not in (0, 1) or isinstance(sign_context, bool):
            raise ValueError(f"bad coefficient prior config {config}: sign_context must be 0 or 1")
        sign_freqs = None
        if sign_context:
            if "sign_freqs" not in arrays:
                raise ValueError("a sign_context coefficient prior needs its sign_freqs tables")
            signs = np.asarray(arrays["sign_freqs"])
            sign_freqs = unpack_freqs(signs, np.full(signs.shape[0], 2, dtype=np.int64))
        predicted = config.get("predicted")
        if predicted is not None and (
            not isinstance(predicted, list)
            or not all(isinstance(row, list) and all(type(c) is int for c in row) for row in predicted)
        ):
            raise ValueError(f"bad coefficient prior config {config}: predicted must be lists of channels")
        return cls(
            channels,
            groups,
            unpack_freqs(packed, sizes),
            layout=layout,
            sign_freqs=sign_freqs,
            predicted=predicted,
        )

    def table_bytes(self) -> int:
        return int(sum(a.nbytes for a in self.state_dict().values()))


__all__ = ["CoefficientContextPrior", "magnitude_symbols", "ESCAPE", "MAX_MAGNITUDE"]
