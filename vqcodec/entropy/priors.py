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

Priors: ``FactorizedPrior`` (payload kind 1: one table per stream) and ``SpatialContextPrior``
(kind 2: neighbour votes, previous-stream agreement and groups, optional reference frame); on
RVQ codes of real images the context prior spends 16-33 % fewer bits (benchmarks/entropy.py).

Table storage: freqs are stored as ``freq - 1`` in uint16 (cdf.pack_freqs) with precision <= 16;
the alphabet in the config restores each table's size.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from vqcodec.entropy import context as ctx
from vqcodec.entropy.cdf import MAX_PRECISION, pack_freqs, quantize_pmf, unpack_freqs
from vqcodec.entropy.coder import CodingTables, SymbolDecoder, encode_batches
from vqcodec.entropy.coefficients import CoefficientContextPrior
from vqcodec.entropy.payload import (
    FLAG_REFERENCE,
    PRIOR_FACTORIZED,
    PRIOR_SPATIAL_CONTEXT,
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


class CodePrior(abc.ABC):
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
    @abc.abstractmethod
    def _batches(self, codes: npt.NDArray[np.int64], reference: npt.NDArray[np.int64] | None
                 ) -> list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]]:
        """The (symbols, tables) batches of codes (S', H, W), in coding order."""

    @abc.abstractmethod
    def _decode_codes(self, decoder: SymbolDecoder, shape: tuple[int, int, int],
                      reference: npt.NDArray[np.int64] | None) -> CodesArray:
        """Codes (S', H, W) pulled batch by batch from ``decoder``, mirroring ``_batches``."""

    @abc.abstractmethod
    def _arrays(self) -> dict[str, np.ndarray]:
        """The integer arrays ``state_dict`` returns."""

    def _options(self) -> dict[str, Any]:
        return {}

    supports_reference: ClassVar[bool] = False

    # -- public API -----------------------------------------------------------------------
    @property
    def num_streams(self) -> int:
        return len(self.alphabet)

    def _context_free_table(self, stream: int) -> int:
        """Index of the table that codes stream ``stream`` without context."""
        return stream

    def code_bits(self, stream: int) -> npt.NDArray[np.float64]:
        """Bits of each code of ``stream`` under its context-free table: (alphabet[stream],).

        An encoder's estimate of what a code costs (rate-distortion code choice); the actual cost
        in a context prior depends on the neighbours.
        """
        if not 0 <= stream < self.num_streams:
            raise ValueError(f"stream must be in 0..{self.num_streams - 1}, got {stream}")
        row = self.tables.freqs[self._context_free_table(stream), : self.alphabet[stream]]
        return self.precision - np.log2(np.maximum(row, 1).astype(np.float64))

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
        ``reference`` (the previous frame's codes, >= S' streams) is used only when the payload
        says it was coded against one (FormatError if it is then missing).
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
        ref = None
        if header.reference:
            # A flag the prior cannot honour, or no reference to decode against: not decodable.
            if not self.supports_reference:
                raise FormatError(f"payload is flagged as reference-coded but the {self.name} prior "
                                  "has no reference contexts", offset=2, field="flags")
            if reference is None:
                raise FormatError("payload is coded against a reference frame; none was given",
                                  offset=2, field="flags")
            ref = self._check_reference(reference, want)
        try:
            decoder = SymbolDecoder(body, self.tables)
            codes = self._decode_codes(decoder, (want[0], want[1], want[2]), ref)
            decoder.finish()
        except FormatError as exc:  # the coder cannot tell where the body starts: add it
            message, suffix = str(exc), f" (field {exc.field})"
            if exc.offset is None and message.endswith(suffix):
                message = message[: -len(suffix)]
            raise type(exc)(message, offset=header.header_size, field="body") from exc
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


Batch = tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]
StreamSamples = tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]


class SpatialContextPrior(CodePrior):
    """Context model: each code is predicted from already decoded codes (context.py).

    Per stream s, the map is coded coarse to fine in passes (``context.pass_plan``).  A code's
    spatial context is the vote of its decoded neighbours (and, for video, of the reference
    frame's co-located code), with votes boosted where the previous stream's codes agree.

    * Strong votes (top vote > ``weak_vote``, or any vote on stream 0): the candidates are
      swapped to the front of the alphabet and the table is picked by the context key
      (context.py).
    * Weak votes on streams s >= 1 (``groups`` > 0): the code is coded as is, with the table of
      the *group* of the previous stream's code at the same position; ``group_of`` maps every
      code of stream s-1 to one of ``groups`` groups, learned by clustering the codes whose
      next-stream distributions are alike (Lloyd iterations on cross-entropy).

    Tables per stream: [0] factorized (raw codes: stream 0's root pass, "factorized" mode),
    [1] pooled backoff for rare keys, then the group tables, then one per frequent key.
    ``fit`` keeps the context mode for a stream only where it saves bits on held-out images
    (every 5th image), so the prior never does worse than ``FactorizedPrior`` there.
    Measured choices (benchmarks/entropy.py): swap-to-front + vote keys saves 33 % on stream 0
    of RVQ codes; on later streams the previous-stream groups matter more where votes are weak.
    """

    kind = PRIOR_SPATIAL_CONTEXT
    name = "spatial_context"

    def _context_free_table(self, stream: int) -> int:
        return int(self.context_table[stream, 0])

    def __init__(self, alphabet: Sequence[int], freqs: npt.ArrayLike, precision: int, *,
                 context_table: npt.ArrayLike, stage_modes: Sequence[str], max_levels: int = 6,
                 reference: bool = False, group_of: npt.ArrayLike | None = None,
                 group_table: npt.ArrayLike | None = None, weak_vote: int = 2):
        super().__init__(alphabet, freqs, precision)
        table = np.asarray(context_table, dtype=np.int64)
        if table.shape != (self.num_streams, ctx.NUM_KEYS):
            raise ValueError(f"context_table must be ({self.num_streams}, {ctx.NUM_KEYS}), got {table.shape}")
        if table.size and (table.min() < 0 or table.max() >= self.tables.num_tables):
            raise ValueError("context_table points outside the tables")
        modes = tuple(str(m) for m in stage_modes)
        if len(modes) != self.num_streams or any(m not in ("context", "factorized") for m in modes):
            raise ValueError(f"stage_modes must be one of context/factorized per stream: {modes}")
        sizes = self.tables.sizes[table]
        if np.any(sizes != np.asarray(self.alphabet)[:, None]):
            raise ValueError("a context table's alphabet differs from its stream's alphabet")
        k_max = max(self.alphabet)
        if group_table is None or np.asarray(group_table).size == 0:
            self.groups = 0
            self.group_of = np.zeros((self.num_streams, k_max), dtype=np.int64)
            self.group_table = np.zeros((self.num_streams, 0), dtype=np.int64)
        else:
            gt = np.asarray(group_table, dtype=np.int64)
            go = np.asarray(group_of, dtype=np.int64)
            if gt.ndim != 2 or gt.shape[0] != self.num_streams or go.shape != (self.num_streams, k_max):
                raise ValueError("group_table must be (S, G) and group_of (S, max alphabet)")
            if gt.min() < 0 or gt.max() >= self.tables.num_tables or go.min() < 0 or go.max() >= gt.shape[1]:
                raise ValueError("group_of / group_table point outside the groups / tables")
            if np.any(self.tables.sizes[gt] != np.asarray(self.alphabet)[:, None]):
                raise ValueError("a group table's alphabet differs from its stream's alphabet")
            self.groups = int(gt.shape[1])
            self.group_of, self.group_table = go, gt
        self.context_table = table
        self.stage_modes = modes
        self.max_levels = int(max_levels)
        self.reference = bool(reference)
        self.weak_vote = int(weak_vote)

    @property
    def supports_reference(self) -> bool:  # type: ignore[override]
        return self.reference

    # -- contexts -------------------------------------------------------------------------
    def _stream_passes(self, s: int, height: int, width: int) -> tuple[ctx.Pass, ...]:
        if self.stage_modes[s] == "factorized":
            return ctx.pass_plan(height, width, 0)[:1]  # every position in one raster pass
        return ctx.pass_plan(height, width, ctx.num_levels(height, width, self.max_levels))

    def _contexts(self, p: ctx.Pass, current: npt.NDArray[np.int64], prev: npt.NDArray[np.int64] | None,
                  ref_s: npt.NDArray[np.int64] | None, ref_prev: npt.NDArray[np.int64] | None
                  ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.bool_],
                             npt.NDArray[np.int64]]:
        """Candidates (n, C), context keys (n,), weak-vote mask (n,), previous-stream codes (n,).

        current / prev / ref_s / ref_prev: (H, W) maps, or (B, H, W) with a tiled pass."""
        cand, keys = ctx.candidates(current, p, prev, ref_s, ref_prev)
        n = keys.shape[0]
        if prev is None or self.groups == 0:
            return cand, keys, np.zeros(n, dtype=bool), np.zeros(n, dtype=np.int64)
        top = (keys // (ctx.SECOND_VOTE_CAP + 1)) % (ctx.TOP_VOTE_CAP + 1)
        return cand, keys, top <= self.weak_vote, prev.reshape(-1)[p.flat]

    def _pass_batch(self, s: int, p: ctx.Pass, current: npt.NDArray[np.int64],
                    prev: npt.NDArray[np.int64] | None, ref: npt.NDArray[np.int64] | None
                    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Candidates (n, C) (none where the code is coded as is) and table indices (n,)."""
        n = p.rows.shape[0]
        if self.stage_modes[s] == "factorized":
            return (np.full((n, ctx.MAX_CANDIDATES), ctx.NO_CANDIDATE, dtype=np.int64),
                    np.full(n, self.context_table[s, 0], dtype=np.int64))
        ref_s = ref[s] if ref is not None else None
        ref_prev = ref[s - 1] if ref is not None and s > 0 else None
        cand, keys, weak, prev_codes = self._contexts(p, current, prev, ref_s, ref_prev)
        tables = self.context_table[s, keys]
        if weak.any():
            tables = np.where(weak, self.group_table[s, self.group_of[s, prev_codes]] if self.groups else 0,
                              tables)
            cand = np.where(weak[:, None], ctx.NO_CANDIDATE, cand)
        return cand, tables

    def _batches(self, codes: npt.NDArray[np.int64], reference: npt.NDArray[np.int64] | None
                 ) -> list[Batch]:
        out = []
        _, height, width = codes.shape
        for s in range(codes.shape[0]):
            prev = codes[s - 1] if s > 0 else None
            for p in self._stream_passes(s, height, width):
                cand, tables = self._pass_batch(s, p, codes[s], prev, reference)
                symbols = ctx.to_front(codes[s, p.rows, p.cols], cand, self.alphabet[s])
                out.append((symbols, tables))
        return out

    def _decode_codes(self, decoder: SymbolDecoder, shape: tuple[int, int, int],
                      reference: npt.NDArray[np.int64] | None) -> CodesArray:
        streams, height, width = shape
        codes = np.zeros(shape, dtype=np.int64)
        for s in range(streams):
            prev = codes[s - 1] if s > 0 else None
            for p in self._stream_passes(s, height, width):
                cand, tables = self._pass_batch(s, p, codes[s], prev, reference)
                symbols = decoder.decode(tables).astype(np.int64)
                codes[s, p.rows, p.cols] = ctx.from_front(symbols, cand, self.alphabet[s])
        return codes.astype(np.int32)

    # -- fitting --------------------------------------------------------------------------
    @classmethod
    def fit(cls, codes: Sequence[npt.ArrayLike], alphabet: Sequence[int], *,
            references: Sequence[npt.ArrayLike | None] | None = None, smoothing: float = 0.5,
            backoff_weight: float = 300.0, min_count: int = 64, max_key_tables: int = 48,
            max_levels: int = 6, groups: int = 8, weak_vote: int = 2, precision: int = 16,
            select_stages: bool = True) -> SpatialContextPrior:
        """Fit from codes [(S, H, W)] (and, for video, ``references``: the previous frame's codes
        per item, None for key frames).  ``smoothing`` is added to raw counts; a context table
        is ``counts + backoff_weight * pooled distribution``; keys seen fewer than ``min_count``
        times share the pooled table, and so do all but the ``max_key_tables`` most used keys
        (this bounds the tables to 2 + groups + max_key_tables per stream, about 120 KB per
        stream of 1024 symbols); ``groups`` previous-stream groups (0: none) serve the positions
        whose top vote is at most ``weak_vote``."""
        a = _check_alphabet(alphabet, precision)
        if not 0 <= groups <= 256:
            raise ValueError("groups must be in 0..256")
        items = _stack_codes(codes, a)
        refs: list[npt.NDArray[np.int64] | None] = [None] * len(items)
        if references is not None:
            if len(references) != len(items):
                raise ValueError("references must align with codes")
            refs = [None if r is None else _stack_codes([r], a)[0] for r in references]
            for c, r in zip(items, refs):
                if r is not None and r.shape != c.shape:
                    raise ValueError(f"reference shape {r.shape} != codes shape {c.shape}")
        use_ref = any(r is not None for r in refs)
        # Samples per item and stream with every stream in context mode (contexts do not depend
        # on the tables, so one pass over the data serves every fit below).
        probe = cls._unfitted(a, precision, max_levels, use_ref, weak_vote, groups)
        held_out = [i % 5 == 4 for i in range(len(items))] if select_stages and len(items) >= 5 \
            else [False] * len(items)
        # Items of one shape (and reference presence, held-out flag) are processed as one batch.
        by_kind: dict[tuple[Any, ...], list[int]] = {}
        for i, c in enumerate(items):
            by_kind.setdefault((c.shape, refs[i] is not None, held_out[i]), []).append(i)
        samples, sample_held_out = [], []
        for (_, has_ref, is_held_out), members in by_kind.items():
            for start in range(0, len(members), 256):  # bounded scratch memory
                chunk = members[start : start + 256]
                batch = np.stack([items[i] for i in chunk])
                ref_batch = np.stack([refs[i] for i in chunk]) if has_ref else None  # type: ignore[misc]
                samples.append([probe._stream_samples(batch, ref_batch, s) for s in range(len(a))])
                sample_held_out.append(is_held_out)
        held_out = sample_held_out
        opts = (smoothing, backoff_weight, min_count, max_key_tables, groups, precision)
        k_max = max(a)
        modes, freqs_list, key_rows, group_rows, group_maps = [], [], [], [], []
        offset = 0
        for s in range(len(a)):
            k_prev = a[s - 1] if s > 0 else 0
            mode = "context"
            if any(held_out):
                fit_part = [x[s] for x, h in zip(samples, held_out) if not h]
                test_part = [x[s] for x, h in zip(samples, held_out) if h]
                fitted = cls._stream_tables(fit_part, a[s], k_prev, *opts)
                ctx_bits = _stream_bits(fitted, test_part)
                fac_bits = _bits(fitted[0][np.zeros(sum(x.raw.size for x in test_part), dtype=np.int64)],
                                 np.concatenate([x.raw for x in test_part]))
                mode = "context" if ctx_bits < fac_bits else "factorized"
            tables, key_map, group_of, group_ids = cls._stream_tables([x[s] for x in samples], a[s], k_prev,
                                                                      *opts)
            if mode == "factorized":
                tables, key_map = tables[:1], np.zeros_like(key_map)
                group_ids = np.zeros_like(group_ids)
            padded = np.zeros((tables.shape[0], k_max), dtype=np.int64)
            padded[:, : a[s]] = tables
            go = np.zeros(k_max, dtype=np.int64)
            go[: group_of.size] = group_of
            modes.append(mode)
            freqs_list.append(padded)
            key_rows.append(key_map + offset)
            group_rows.append(group_ids + offset)
            group_maps.append(go)
            offset += tables.shape[0]
        return cls(a, np.concatenate(freqs_list), precision, context_table=np.stack(key_rows),
                   stage_modes=modes, max_levels=max_levels, reference=use_ref,
                   group_of=np.stack(group_maps) if groups else None,
                   group_table=np.stack(group_rows) if groups else None, weak_vote=weak_vote)

    @classmethod
    def _unfitted(cls, alphabet: tuple[int, ...], precision: int, max_levels: int, use_ref: bool,
                  weak_vote: int, groups: int) -> SpatialContextPrior:
        """A prior with uniform tables, only used to compute contexts while fitting."""
        k_max = max(alphabet)
        freqs = np.zeros((len(alphabet), k_max), dtype=np.int64)
        for s, k in enumerate(alphabet):
            freqs[s, :k] = quantize_pmf(np.ones(k), precision)
        table = np.repeat(np.arange(len(alphabet))[:, None], ctx.NUM_KEYS, axis=1)
        g = max(groups, 1)
        return cls(alphabet, freqs, precision, context_table=table, stage_modes=["context"] * len(alphabet),
                   max_levels=max_levels, reference=use_ref,
                   group_of=np.zeros((len(alphabet), k_max), dtype=np.int64) if groups else None,
                   group_table=np.repeat(np.arange(len(alphabet))[:, None], g, axis=1) if groups else None,
                   weak_vote=weak_vote)

    def _stream_samples(self, codes: npt.NDArray[np.int64], reference: npt.NDArray[np.int64] | None,
                        s: int) -> _Samples:
        """Context samples of stream s of a batch of items (B, S, H, W) (reference likewise),
        stream in context mode."""
        batch, _, height, width = codes.shape
        prev = codes[:, s - 1] if s > 0 else None
        ref_s = reference[:, s] if reference is not None else None
        ref_prev = reference[:, s - 1] if reference is not None and s > 0 else None
        parts: list[tuple[np.ndarray, ...]] = []
        for plain in self._stream_passes(s, height, width):
            p = plain.tiled(batch, height * width)
            cand, keys, weak, prev_codes = self._contexts(p, codes[:, s], prev, ref_s, ref_prev)
            raw = codes[:, s].reshape(-1)[p.flat]
            parts.append((keys, ctx.to_front(raw, cand, self.alphabet[s]), raw, weak, prev_codes))
        cols = [np.concatenate([part[i] for part in parts]) for i in range(5)] if parts else \
            [np.zeros(0, dtype=np.int64)] * 3 + [np.zeros(0, dtype=bool), np.zeros(0, dtype=np.int64)]
        return _Samples(*cols)

    @staticmethod
    def _stream_tables(samples: list[_Samples], alphabet: int, prev_alphabet: int, smoothing: float,
                       backoff_weight: float, min_count: int, max_key_tables: int, groups: int, precision: int
                       ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64],
                                  npt.NDArray[np.int64]]:
        """Tables (T, alphabet), key -> table (NUM_KEYS,), previous code -> group (prev_alphabet,),
        group -> table (groups,) for one stream (tables: raw, pooled, groups..., keys...)."""
        x = _Samples.join(samples)
        raw_counts = np.bincount(x.raw, minlength=alphabet).astype(np.float64) + smoothing
        per_key = (ctx.TOP_VOTE_CAP + 1) * (ctx.SECOND_VOTE_CAP + 1)
        contextual = (x.keys % per_key >= ctx.SECOND_VOTE_CAP + 1) & ~x.weak
        pooled = np.bincount(x.symbols[contextual], minlength=alphabet).astype(np.float64) + smoothing
        pooled /= pooled.sum()
        rows = [raw_counts, pooled]
        group_of = np.zeros(prev_alphabet, dtype=np.int64)
        group_ids = np.zeros(groups, dtype=np.int64)
        if groups and prev_alphabet:
            group_of = _cluster_previous(x.prev[x.weak], x.raw[x.weak], prev_alphabet, alphabet, groups,
                                         smoothing)
            weak_counts = np.zeros((groups, alphabet), dtype=np.float64)
            np.add.at(weak_counts, (group_of[x.prev[x.weak]], x.raw[x.weak]), 1.0)
            rows.extend(weak_counts + smoothing)
            group_ids = 2 + np.arange(groups)
        first_key_table = len(rows)
        key_counts = np.bincount(x.keys[contextual], minlength=ctx.NUM_KEYS)
        frequent = np.flatnonzero(key_counts >= max(1, min_count))
        if frequent.size > max_key_tables:  # keep the most used keys (ties: lower key), in key order
            keep = np.argsort(-key_counts[frequent], kind="stable")[:max_key_tables]
            frequent = np.sort(frequent[keep])
        if frequent.size:
            order = np.argsort(x.keys[contextual], kind="stable")
            sorted_keys = x.keys[contextual][order]
            sorted_symbols = x.symbols[contextual][order]
            for key in frequent:
                lo, hi = np.searchsorted(sorted_keys, [key, key + 1])
                counts = np.bincount(sorted_symbols[lo:hi], minlength=alphabet).astype(np.float64)
                rows.append(counts + backoff_weight * pooled)
        key_map = np.ones(ctx.NUM_KEYS, dtype=np.int64)  # rare keys: pooled table
        key_map[frequent] = first_key_table + np.arange(frequent.size)
        # keys with no neighbour vote (root pass without reference) use the raw-code table
        key_map[np.arange(ctx.NUM_KEYS) % per_key < ctx.SECOND_VOTE_CAP + 1] = 0
        return quantize_pmf(np.stack(rows), precision), key_map, group_of, group_ids

    # -- storage --------------------------------------------------------------------------
    def _options(self) -> dict[str, Any]:
        return {"stage_modes": list(self.stage_modes), "max_levels": self.max_levels,
                "reference": self.reference, "num_keys": ctx.NUM_KEYS, "groups": self.groups,
                "weak_vote": self.weak_vote}

    def _arrays(self) -> dict[str, np.ndarray]:
        stage_of_table = np.zeros(self.tables.num_tables, dtype=np.int16)
        for s in range(self.num_streams):
            stage_of_table[np.unique(self.context_table[s])] = s
            stage_of_table[np.unique(self.group_table[s])] = s
        index_type = np.int16 if self.tables.num_tables < 1 << 15 else np.int32
        arrays: dict[str, np.ndarray] = {
            "freqs": pack_freqs(self.tables.freqs),
            "table_stream": stage_of_table,
            "context_table": self.context_table.astype(index_type),
        }
        if self.groups:
            arrays["group_of"] = self.group_of.astype(np.int16)
            arrays["group_table"] = self.group_table.astype(np.int32)
        return arrays

    @classmethod
    def from_arrays(cls, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> SpatialContextPrior:
        alphabet = tuple(int(k) for k in config["alphabet"])
        if int(config.get("num_keys", -1)) != ctx.NUM_KEYS:
            raise ValueError(f"prior was built for {config.get('num_keys')} context keys, not {ctx.NUM_KEYS}")
        table_stream = np.asarray(arrays["table_stream"], dtype=np.int64)
        if table_stream.size and (table_stream.min() < 0 or table_stream.max() >= len(alphabet)):
            raise ValueError("table_stream names a stream that does not exist")
        sizes = np.asarray(alphabet, dtype=np.int64)[table_stream]
        freqs = unpack_freqs(np.asarray(arrays["freqs"]), sizes)
        groups = int(config.get("groups", 0))  # priors written before groups existed have none
        return cls(alphabet, freqs, int(config["precision"]), context_table=arrays["context_table"],
                   stage_modes=config["stage_modes"], max_levels=int(config["max_levels"]),
                   reference=bool(config["reference"]),
                   group_of=arrays["group_of"] if groups else None,
                   group_table=arrays["group_table"] if groups else None,
                   weak_vote=int(config.get("weak_vote", 2)))


class _Samples:
    """Per-position fitting data of one stream, in coding order: context keys, swapped symbols,
    raw codes, weak-vote mask, previous-stream codes."""

    __slots__ = ("keys", "symbols", "raw", "weak", "prev")

    def __init__(self, keys: np.ndarray, symbols: np.ndarray, raw: np.ndarray, weak: np.ndarray,
                 prev: np.ndarray):
        self.keys, self.symbols, self.raw, self.weak, self.prev = keys, symbols, raw, weak, prev

    @classmethod
    def join(cls, parts: Sequence[_Samples]) -> _Samples:
        if not parts:
            empty = np.zeros(0, dtype=np.int64)
            return cls(empty, empty, empty, np.zeros(0, dtype=bool), empty)
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in cls.__slots__))


def _cluster_previous(prev: npt.NDArray[np.int64], cur: npt.NDArray[np.int64], prev_alphabet: int,
                      alphabet: int, groups: int, smoothing: float, iterations: int = 10
                      ) -> npt.NDArray[np.int64]:
    """Map previous-stream codes (prev_alphabet,) to groups whose current-code distributions
    are alike: Lloyd iterations that assign each previous code to the group table giving its
    observed current codes the fewest bits.  Deterministic (ties go to the lower group)."""
    if prev_alphabet * alphabet > 1 << 24 or prev.size == 0:  # too large to tabulate: one group
        return np.zeros(prev_alphabet, dtype=np.int64)
    joint = np.zeros((prev_alphabet, alphabet), dtype=np.float64)
    np.add.at(joint, (prev, cur), 1.0)
    frequency_rank = np.argsort(np.argsort(-joint.sum(axis=1), kind="stable"), kind="stable")
    group_of = frequency_rank % groups
    for _ in range(iterations):
        counts = np.zeros((groups, alphabet), dtype=np.float64)
        np.add.at(counts, group_of, joint)
        counts += smoothing
        log_q = np.log(counts / counts.sum(axis=1, keepdims=True))
        new = np.argmax(joint @ log_q.T, axis=1)
        if np.array_equal(new, group_of):
            break
        group_of = new
    return group_of.astype(np.int64)


def _stream_bits(fitted: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64],
                               npt.NDArray[np.int64]], samples: list[_Samples]) -> float:
    """Bits of held-out samples under tables fitted by ``_stream_tables`` (context mode)."""
    tables, key_map, group_of, group_ids = fitted
    x = _Samples.join(samples)
    if x.raw.size == 0:
        return 0.0
    table = key_map[x.keys]
    symbols = x.symbols
    if group_ids.size and group_of.size:
        table = np.where(x.weak, group_ids[group_of[x.prev]], table)
        symbols = np.where(x.weak, x.raw, symbols)
    return _bits(tables[table], symbols)


def _bits(freqs: npt.NDArray[np.int64], symbols: npt.NDArray[np.int64]) -> float:
    """Bits of symbols (n,) each under its own row freqs (n, K) (rows sum to the same total)."""
    if symbols.size == 0:
        return 0.0
    total = freqs[0].sum()
    return float(-np.log2(np.take_along_axis(freqs, symbols[:, None], axis=1)[:, 0] / total).sum())


PRIOR_CLASSES: dict[str, Any] = {FactorizedPrior.name: FactorizedPrior,
                                 SpatialContextPrior.name: SpatialContextPrior,
                                 CoefficientContextPrior.name: CoefficientContextPrior}


def load_prior(config: dict[str, Any], arrays: dict[str, np.ndarray]) -> CodePrior:
    """Rebuild a prior from ``config()`` and ``state_dict()`` (e.g. read from a model file)."""
    kind = config.get("kind")
    cls = PRIOR_CLASSES.get(str(kind))
    if cls is None:
        raise ValueError(f"unknown prior kind {kind!r}; known: {sorted(PRIOR_CLASSES)}")
    if int(config.get("format_version", -1)) != PRIOR_FORMAT_VERSION:
        raise ValueError(f"prior format_version {config.get('format_version')} is not {PRIOR_FORMAT_VERSION}")
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    prior: Any = cls.from_arrays(config, arrays)
    return prior


__all__ = ["CodePrior", "FactorizedPrior", "SpatialContextPrior", "PRIOR_CLASSES", "PRIOR_FORMAT_VERSION",
           "load_prior"]
