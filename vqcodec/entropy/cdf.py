"""Deterministic conversion of float probabilities into integer frequency tables.

A frequency table is one row of non-negative integers that sums to exactly ``2**precision``;
the entropy coder spends ``-log2(freq / 2**precision)`` bits on a symbol.  Encoder and decoder
must use bit-identical tables, so tables are computed once (when a prior is fitted), stored in
the model file as integers, and never recomputed from floats at decode time.

``quantize_pmf`` still aims to give the same integers on every platform for the same float
input, so that a prior refitted from the same statistics is reproducible.  It applies exactly
one float operation per entry, ``floor(p_i / max_j p_j * 2**WEIGHT_BITS)`` (an IEEE-754
correctly rounded division followed by a multiplication by a power of two, which is exact,
and a floor: identical on every conforming machine), and then works in integers only:

    R      = 2**precision - K                         (mass left after giving each symbol 1)
    freq_i = 1 + floor(w_i * R / W)                    W = sum_j w_j
    the R - sum_i floor(...) units that remain go one each to the entries with the largest
    remainder (w_i * R mod W), ties broken by the smaller symbol index.

All integers stay below 2**63 (w_i <= 2**40, R < 2**17).  Every symbol gets a nonzero
frequency, so any symbol of the alphabet can be coded.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

#: Largest supported table precision: freq - 1 of any table fits in uint16 (see ``pack_freqs``).
MAX_PRECISION = 16
#: Bits of the integer weights the floats are rounded to (the one float -> int step).
WEIGHT_BITS = 40

IntArray = npt.NDArray[np.int64]


def quantize_pmf(probs: npt.ArrayLike, precision: int = 16) -> IntArray:
    """Quantize probabilities into integer frequency tables.

    probs: (T, K) or (K,) non-negative finite floats (need not be normalized; a row of zeros
    becomes uniform).  Returns int64 freqs of the same shape, every entry >= 1, every row
    summing to exactly ``2**precision``.  Requires ``1 <= K <= 2**precision``.
    """
    p = np.asarray(probs, dtype=np.float64)
    squeeze = p.ndim == 1
    if squeeze:
        p = p[None, :]
    if p.ndim != 2:
        raise ValueError(f"probs must be (T, K) or (K,), got shape {np.shape(probs)}")
    if not 1 <= precision <= MAX_PRECISION:
        raise ValueError(f"precision must be in 1..{MAX_PRECISION}, got {precision}")
    num_tables, alphabet = p.shape
    total = 1 << precision
    if alphabet < 1 or alphabet > total:
        raise ValueError(f"alphabet size {alphabet} does not fit precision {precision} (1..{total})")
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise ValueError("probs must be finite and non-negative")
    if num_tables == 0:
        return np.zeros((0, alphabet), dtype=np.int64)

    pmax = p.max(axis=1, keepdims=True)
    safe_max = np.where(pmax > 0, pmax, 1.0)
    weights = np.floor(p / safe_max * float(1 << WEIGHT_BITS)).astype(np.int64)
    weights[pmax[:, 0] <= 0] = 1  # all-zero row: uniform
    free = total - alphabet
    weight_sum = weights.sum(axis=1, keepdims=True)  # >= 2**WEIGHT_BITS, exact in int64
    scaled = weights * free
    freqs = 1 + scaled // weight_sum
    remainders = scaled % weight_sum
    missing = total - freqs.sum(axis=1)  # in [0, K): one extra unit for that many entries
    if np.any(missing):
        index = np.broadcast_to(np.arange(alphabet), freqs.shape)
        # Largest remainder first, smaller index first on ties: a total order, so deterministic.
        order = np.lexsort((index, -remainders), axis=-1)
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.arange(alphabet)[None, :].repeat(num_tables, 0), axis=-1)
        freqs += rank < missing[:, None]
    return freqs[0] if squeeze else freqs


def validate_freqs(freqs: npt.ArrayLike) -> tuple[IntArray, int]:
    """Check integer tables (T, K) and return them as int64 with their precision.

    Every row must sum to the same power of two ``2**precision`` (precision <= 16).  Zeros
    are allowed only as a trailing run (padding of a table whose stream has fewer symbols);
    the first entry of each row must be nonzero.
    """
    f = np.asarray(freqs)
    if f.ndim != 2 or f.shape[1] < 1:
        raise ValueError(f"freqs must be a (T, K) integer array, got shape {f.shape}")
    if not np.issubdtype(f.dtype, np.integer):
        raise ValueError(f"freqs must be integers, got {f.dtype}")
    f = f.astype(np.int64)
    if f.shape[0] == 0:
        return f, MAX_PRECISION
    if np.any(f < 0):
        raise ValueError("freqs must be non-negative")
    sums = f.sum(axis=1)
    total = int(sums[0])
    if total <= 0 or total & (total - 1) or np.any(sums != total):
        raise ValueError("every freqs row must sum to the same power of two")
    precision = total.bit_length() - 1
    if precision > MAX_PRECISION:
        raise ValueError(f"table precision {precision} is over {MAX_PRECISION}")
    nonzero = f > 0
    # Trailing padding only: once a zero is seen, the rest of the row must be zero.
    if np.any(~nonzero[:, 0]) or np.any(np.diff(nonzero.astype(np.int8), axis=1) > 0):
        raise ValueError("zero frequencies are only allowed as trailing padding")
    return f, precision


def table_sizes(freqs: IntArray) -> npt.NDArray[np.int64]:
    """Active alphabet size of each row (index of the last nonzero entry + 1), shape (T,)."""
    return np.asarray((freqs > 0).sum(axis=1), dtype=np.int64)


def pack_freqs(freqs: npt.ArrayLike) -> npt.NDArray[np.uint16]:
    """Store tables compactly: ``freq - 1`` as uint16 (padding zeros stored as 0 too).

    Works for precision <= 16 because an entry is at most ``2**16 - (K - 1)``.  The active
    alphabet sizes must be kept beside the packed array to undo the padding (``unpack_freqs``).
    """
    f = np.asarray(freqs, dtype=np.int64)
    return np.maximum(f - 1, 0).astype(np.uint16)


def unpack_freqs(packed: npt.ArrayLike, sizes: npt.ArrayLike) -> IntArray:
    """Inverse of ``pack_freqs``: packed (T, K) uint16, sizes (T,) -> freqs (T, K) int64."""
    p = np.asarray(packed)
    if p.ndim != 2:
        raise ValueError(f"packed freqs must be 2-D, got shape {p.shape}")
    if p.dtype == np.int16:  # a uint16 array that went through a signed-only store
        p = p.view(np.uint16)
    f = p.astype(np.int64) + 1
    n = np.asarray(sizes, dtype=np.int64).reshape(-1)
    if n.shape[0] != f.shape[0] or np.any(n < 1) or np.any(n > f.shape[1]):
        raise ValueError("table sizes do not match the packed freqs")
    f[np.arange(f.shape[1])[None, :] >= n[:, None]] = 0
    return f


def ideal_bits_of(symbols: npt.ArrayLike, tables: npt.ArrayLike, freqs: npt.ArrayLike) -> float:
    """Cross-entropy in bits of symbols (N,) under rows ``tables`` (N,) of integer freqs (T, K)."""
    f, precision = validate_freqs(freqs)
    s = np.asarray(symbols, dtype=np.int64).reshape(-1)
    t = np.asarray(tables, dtype=np.int64).reshape(-1)
    if s.size == 0:
        return 0.0
    chosen = f[t, s]
    if np.any(chosen <= 0):
        raise ValueError("a symbol has zero frequency in its table")
    return float(precision * s.size - np.log2(chosen).sum())


__all__ = [
    "MAX_PRECISION",
    "WEIGHT_BITS",
    "quantize_pmf",
    "validate_freqs",
    "table_sizes",
    "pack_freqs",
    "unpack_freqs",
    "ideal_bits_of",
]
