"""Probability models (priors) over VQ codes, fitted on data and frozen into integer tables.

Codes of one image are an int array (S, H, W): S code streams (RVQ stages, FSQ channels...),
each an H x W map; stream s takes values in ``0 .. alphabet[s] - 1``.  A prior may code only
the first S' <= S streams (lower quality levels) with the same tables.

Every prior has:
  ``fit(codes_list, alphabet, **opts)``        classmethod; codes_list = [(S, H, W) int arrays]
  ``encode(codes (S', H, W), reference=None)`` -> self-delimiting payload bytes (payload.py)
  ``decode(payload, shape=(S', H, W), reference=None)`` -> (S', H, W) int32
  ``ideal_bits(codes, reference=None)``        cross-entropy in bits under the integer tables
  ``state_dict()`` (integer numpy arrays only) and ``config()`` (JSON-able dict),
  ``load_prior(config, arrays)`` rebuilds any prior from those two.
Priors that do not use ``reference`` (the previous frame's codes) raise ValueError if given one.

Table storage: freqs are stored as ``freq - 1`` in uint16 (cdf.pack_freqs) with precision <= 16;
the alphabet in the config restores each table's size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from vqcodec.entropy.cdf import MAX_PRECISION, pack_freqs, quantize_pmf, unpack_freqs
from vqcodec.entropy.coder import CodingTables, SymbolDecoder, encode_batches
from vqcodec.entropy.payload import (
    FLAG_REFERENCE,
    PRIOR_FACTORIZED,
    build_payload,
    split_payload,
)
from vqcodec.errors import FormatError

CodesArray = npt.NDArray[np.int32]

#: Bumped when the meaning of a prior's stored arrays changes.
PRIOR_FORMAT_VERSION = 1


def _check_alphabet(alphabet: Sequence[int], precision: int) -> tuple[int, ...]:
    a = tuple(int(k) for k in alphabet)
    if not a:
        raise ValueError("alphabet must name at least one stream")
    if not 1 <= precision <= MAX_PRECISION:
        raise ValueError(f"precision must be in 1..{MAX_PRECISION}")
    if any(k < 1 or k > 1 << precision for k in a):
        raise ValueError(f"every alphabet size must be in 1..{1 << precision}: {a}")
    return a


def _stack_codes(codes_list: Sequence[npt.ArrayLike],
                 alphabet: tuple[int, ...]) -> list[npt.NDArray[np.int64]]:
    out = []
    for i, c in enumerate(codes_list):
        a = np.asarray(c)
        if a.ndim == 2:
            a = a[None]
        if a.ndim != 3 or a.shape[0] != len(alphabet):
            raise ValueError(f"codes[{i}] must be (S={len(alphabet)}, H, W), got {a.shape}")
        a = a.astype(np.int64)
        for s, k in enumerate(alphabet):
            if a[s].size and (a[s].min() < 0 or a[s].max() >= k):
                raise ValueError(f"codes[{i}] stream {s} has values outside 0..{k - 1}")
        out.append(a)
    return out


def _pmf_rows(counts: npt.NDArray[np.float64], sizes: Sequence[int], k_max: int,
              precision: int) -> npt.NDArray[np.int64]:
    """Quantize count rows (R, k_max) where row r uses its first sizes[r] entries; zero padding."""
    freqs = np.zeros((counts.shape[0], k_max), dtype=np.int64)
    for size in sorted(set(sizes)):
        rows = np.flatnonzero(np.asarray(sizes) == size)
        freqs[rows, :size] = quantize_pmf(counts[rows, :size], precision)
    return freqs


class CodePrior:
    """Common machinery: validation, payload header, table storage."""

    kind: ClassVar[int]
    name: ClassVar[str]

    def __init__(self, alphabet: Sequence[int], freqs: npt.ArrayLike, precision: int):
        self.alphabet = _check_alphabet(alphabet, precision)
        self.precision = int(precision)
        self.tables = CodingTables(freqs)
        if self.tables.num_tables and self.tables.precision != self.precision:
            raise ValueError("freqs rows do not sum to 2**precision")

    # -- subclass hooks -------------------------------------------------------------------
    def _batches(self, codes: npt.NDArray[np.int64], reference: npt.NDArray[np.int64] | None
                 ) -> list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]]:
        raise NotImplementedError

    def _decode_codes(self, decoder: SymbolDecoder, shape: tuple[int, int, int],
                      reference: npt.NDArray[np.int64] | None) -> CodesArray:
        raise NotImplementedError

    def _arrays(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _options(self) -> dict[str, Any]:
        return {}

    supports_reference: ClassVar[bool] = False

    # -- public API -----------------------------------------------------------------------
    @property
    def num_streams(self) -> int:
        return len(self.alphabet)

    def _check_codes(self, codes: npt.ArrayLike) -> npt.NDArray[np.int64]:
        c = np.asarray(codes)
        if c.ndim != 3 or not 1 <= c.shape[0] <= self.num_streams:
            raise ValueError(f"codes must be (S', H, W) with 1 <= S' <= {self.num_streams}, got {c.shape}")
        if c.size and not np.issubdtype(c.dtype, np.integer):
            raise ValueError(f"codes must be integers, got {c.dtype}")
        c = c.astype(np.int64)
        for s in range(c.shape[0]):
            if c[s].size and (c[s].min() < 0 or c[s].max() >= self.alphabet[s]):
                raise ValueError(f"codes of stream {s} outside 0..{self.alphabet[s] - 1}")
        return c

    def _check_reference(self, reference: npt.ArrayLike | None, shape: tuple[int, ...]
                         ) -> npt.NDArray[np.int64] | None:
        if reference is None:
            return None
        if not self.supports_reference:
            raise ValueError(f"{self.name} prior does not support reference codes")
        r = np.asarray(reference)
        if r.ndim != 3 or r.shape[1:] != tuple(shape[1:]) or r.shape[0] < shape[0]:
            raise ValueError(f"reference codes {r.shape} do not cover codes {tuple(shape)}")
        return self._check_codes(r[: shape[0]])

    def encode(self, codes: npt.ArrayLike, reference: npt.ArrayLike | None = None) -> bytes:
        """Codes (S', H, W) -> payload bytes (header + coded body)."""
        c = self._check_codes(codes)
        ref = self._check_reference(reference, c.shape)
        body = encode_batches(self._batches(c, ref), self.tables)
        flags = FLAG_REFERENCE if ref is not None else 0
        return build_payload(self.kind, flags, (int(c.shape[0]), int(c.shape[1]), int(c.shape[2])), body)

    def decode(self, payload: bytes, shape: tuple[int, int, int],
               reference: npt.ArrayLike | None = None) -> CodesArray:
        """Payload bytes -> codes (S', H, W) int32; ``shape`` is what the caller expects.

        Raises TruncatedError / FormatError (with offset and field) for bad payloads, and
        before allocating anything sized by the payload, checks its shape against ``shape``.
        """
        want = tuple(int(v) for v in shape)
        if len(want) != 3 or not 1 <= want[0] <= self.num_streams or min(want) < 0:
            raise ValueError(f"shape must be (S', H, W) with 1 <= S' <= {self.num_streams}, got {shape}")
        header, body, end = split_payload(payload)
        if header.prior_kind != self.kind:
            raise FormatError(f"payload was made by prior kind {header.prior_kind}, not {self.kind} "
                              f"({self.name})", offset=1, field="prior_kind")
        if header.shape != want:
            raise FormatError(f"payload holds codes {header.shape}, expected {want}", offset=3, field="shape")
        if end != len(payload):
            raise FormatError(f"{len(payload) - end} bytes after the payload body", offset=end, field="body")
        ref = self._check_reference(reference, want) if header.reference else None
        if header.reference and ref is None:
            raise ValueError("payload was coded against reference codes; pass reference=")
        decoder = SymbolDecoder(body, self.tables)
        codes = self._decode_codes(decoder, (want[0], want[1], want[2]), ref)
        decoder.finish()
        return codes

    def ideal_bits(self, codes: npt.ArrayLike, reference: npt.ArrayLike | None = None) -> float:
        """Cross-entropy of codes (S', H, W) under the integer tables, in bits (no header)."""
        c = self._check_codes(codes)
        ref = self._check_reference(reference, c.shape)
        total = 0.0
        f = self.tables.freqs
        for symbols, tables in self._batches(c, ref):
            if symbols.size:
                total += float(self.precision * symbols.size - np.log2(f[tables, symbols]).sum())
        return total

    def config(self) -> dict[str, Any]:
        return {"kind": self.name, "format_version": PRIOR_FORMAT_VERSION, "alphabet": list(self.alphabet),
                "precision": self.precision, **self._options()}

    def state_dict(self) -> dict[str, np.ndarray]:
        return self._arrays()

    def table_bytes(self) -> int:
        """Bytes the stored arrays take (for size reports)."""
        return int(sum(a.nbytes for a in self.state_dict().values()))


class FactorizedPrior(CodePrior):
    """One table per code stream: p(codes) = prod_s prod_{h,w} p_s(codes[s, h, w])."""

    kind = PRIOR_FACTORIZED
    name = "factorized"

    @classmethod
    def fit(cls, codes: Sequence[npt.ArrayLike], alphabet: Sequence[int], *, smoothing: float = 0.5,
            precision: int = 16) -> FactorizedPrior:
        """Fit from codes [(S, H, W)]: per-stream counts plus ``smoothing`` per symbol."""
        a = _check_alphabet(alphabet, precision)
        k_max = max(a)
        counts = np.zeros((len(a), k_max), dtype=np.float64)
        for c in _stack_codes(codes, a):
            for s in range(len(a)):
                counts[s] += np.bincount(c[s].reshape(-1), minlength=k_max)[:k_max]
        counts += smoothing
        return cls(a, _pmf_rows(counts, a, k_max, precision), precision)

    def _batches(self, codes: npt.NDArray[np.int64], reference: npt.NDArray[np.int64] | None
                 ) -> list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]]:
        streams = codes.shape[0]
        tables = np.repeat(np.arange(streams, dtype=np.int64), codes[0].size)
        return [(codes.reshape(-1), tables)]

    def _decode_codes(self, decoder: SymbolDecoder, shape: tuple[int, int, int],
                      reference: npt.NDArray[np.int64] | None) -> CodesArray:
        streams, height, width = shape
        tables = np.repeat(np.arange(streams, dtype=np.int64), height * width)
        return decoder.decode(tables).reshape(shape)

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"freqs": pack_freqs(self.tables.freqs)}

    @classmethod
    def from_arrays(cls, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> FactorizedPrior:
        alphabet = tuple(int(k) for k in config["alphabet"])
        freqs = unpack_freqs(np.asarray(arrays["freqs"]), alphabet)
        return cls(alphabet, freqs, int(config["precision"]))


PRIOR_CLASSES: dict[str, Any] = {FactorizedPrior.name: FactorizedPrior}


def load_prior(config: dict[str, Any], arrays: dict[str, np.ndarray]) -> CodePrior:
    """Rebuild a prior from ``config()`` and ``state_dict()`` (e.g. read from a model file)."""
    kind = config.get("kind")
    cls = PRIOR_CLASSES.get(str(kind))
    if cls is None:
        raise ValueError(f"unknown prior kind {kind!r}; known: {sorted(PRIOR_CLASSES)}")
    if int(config.get("format_version", -1)) != PRIOR_FORMAT_VERSION:
        raise ValueError(f"prior format_version {config.get('format_version')} is not {PRIOR_FORMAT_VERSION}")
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    prior: CodePrior = cls.from_arrays(config, arrays)
    return prior


__all__ = ["CodePrior", "FactorizedPrior", "PRIOR_CLASSES", "PRIOR_FORMAT_VERSION", "load_prior"]
