"""Causal contexts for the spatial context prior: a coarse-to-fine pass plan and neighbour candidates.

Coding order of one (H, W) code map (one stream).  The decoder must know a symbol's context
before decoding it, and everything is vectorized, so the map is split into passes, each coded
as one batch whose contexts depend only on earlier passes:

* root pass: the grid of positions that are multiples of ``2**levels`` in both axes;
* then for level l = levels-1 .. 0 (step st = 2**l, g = 2 * st), among the positions that are
  multiples of st: phase A  (i % g, j % g) == (st, st), neighbours at (+-st, +-st);
                   phase B  (0, st),  neighbours (0, +-st), (+-st, 0);
                   phase C  (st, 0),  neighbours (0, +-st), (+-st, 0), (+-st, +-st).
  Every neighbour listed lies on a coarser grid or in an earlier phase of the same level, so it
  is decoded already (checked by a test).  Positions within a pass go in raster order.

Context of one position.  Its available neighbours (in the order listed above; outside the map
= absent; plus, for video, the co-located code of the reference frame, last) vote for their
code values.  A vote weighs 1, or 1 + PREV_AGREE_WEIGHT when the position and that neighbour
have equal codes in the previous stream (s - 1): two patches that matched at stage s-1 tend to
match at stage s.  The reference vote weighs REF_WEIGHT (same bonus rule).  The distinct values,
ordered by total vote (ties: first neighbour in list order), are the candidates; the first
MAX_CANDIDATES are swapped to the front of the alphabet (``to_front``): the symbol actually coded
is 0 when the code equals the best candidate, 1 for the second, ...; other codes keep their own
index except the few displaced by the swaps.  The table is chosen by the context key (phase,
finest level or not, reference present, top vote, second vote), so a table learns "how likely is
a copy of the best neighbour in this situation" while the rest of its mass stays close to the
stream's marginal.  All integer operations: exactly reproducible by the decoder.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]

MAX_CANDIDATES = 4
PREV_AGREE_WEIGHT = 2
REF_WEIGHT = 2
TOP_VOTE_CAP = 12
SECOND_VOTE_CAP = 6
PHASE_ROOT, PHASE_A, PHASE_B, PHASE_C = 0, 1, 2, 3
NUM_PHASES = 4
#: Number of distinct context keys: (ref, phase, finest, top vote, second vote).
NUM_KEYS = 2 * NUM_PHASES * 2 * (TOP_VOTE_CAP + 1) * (SECOND_VOTE_CAP + 1)
NO_CANDIDATE = np.int64(1) << 40  # larger than any symbol

_DIAG = ((-1, -1), (-1, 1), (1, -1), (1, 1))
_CROSS = ((0, -1), (0, 1), (-1, 0), (1, 0))
_PHASE_OFFSETS = {PHASE_A: _DIAG, PHASE_B: _CROSS, PHASE_C: _CROSS + _DIAG}


def num_levels(height: int, width: int, max_levels: int) -> int:
    """Levels of the coarse-to-fine plan: enough that the root grid is (nearly) one position."""
    side = max(height, width, 1)
    return int(min(max_levels, max(0, (side - 1).bit_length())))


class Pass:
    """One batch of positions of an (H, W) map.

    rows, cols (n,): the positions; offsets (m, 2): neighbour offsets; phase, finest: for the
    context key; neighbours (n, m): flat indices (row * W + col) of the neighbours, clipped into
    the map; inside (n, m): which neighbours really are inside the map; flat (n,): own indices.
    """

    __slots__ = ("rows", "cols", "offsets", "phase", "finest", "neighbours", "inside", "flat")
    neighbours: npt.NDArray[np.integer]

    def __init__(self, rows: I64, cols: I64, offsets: I64, phase: int, finest: bool, height: int, width: int):
        self.rows, self.cols, self.offsets, self.phase, self.finest = rows, cols, offsets, phase, finest
        r = rows[:, None] + offsets[None, :, 0]
        c = cols[:, None] + offsets[None, :, 1]
        self.inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
        index = np.clip(r, 0, max(height - 1, 0)) * width + np.clip(c, 0, max(width - 1, 0))
        self.neighbours = index.astype(np.int32) if height * width < 1 << 31 else index
        self.flat = rows * width + cols
        for a in (self.rows, self.cols, self.inside, self.neighbours, self.flat):
            a.setflags(write=False)


    def tiled(self, batch: int, plane: int) -> Pass:
        """The same pass over ``batch`` maps stored back to back (flat indices + b * plane)."""
        out = object.__new__(Pass)
        base = np.arange(batch, dtype=np.int64) * plane
        out.rows, out.cols = np.tile(self.rows, batch), np.tile(self.cols, batch)
        out.offsets, out.phase, out.finest = self.offsets, self.phase, self.finest
        n, m = self.neighbours.shape
        out.neighbours = (self.neighbours[None].astype(np.int64) + base[:, None, None]).reshape(batch * n, m)
        out.inside = np.tile(self.inside, (batch, 1))
        out.flat = (self.flat[None] + base[:, None]).reshape(-1)
        return out


@lru_cache(maxsize=8)  # a plan takes about 45 bytes per position
def pass_plan(height: int, width: int, levels: int) -> tuple[Pass, ...]:
    """The passes covering an (H, W) map exactly once, in decoding order (see module doc)."""
    rows, cols = np.mgrid[0:height, 0:width]
    rows, cols = rows.reshape(-1).astype(np.int64), cols.reshape(-1).astype(np.int64)
    top = 1 << levels
    plan = []
    root = (rows % top == 0) & (cols % top == 0)
    no_offsets = np.zeros((0, 2), dtype=np.int64)
    plan.append(Pass(rows[root], cols[root], no_offsets, PHASE_ROOT, levels == 0, height, width))
    for level in range(levels - 1, -1, -1):
        st, g = 1 << level, 2 << level
        on = (rows % st == 0) & (cols % st == 0)
        for phase, (ri, ci) in ((PHASE_A, (st, st)), (PHASE_B, (0, st)), (PHASE_C, (st, 0))):
            sel = on & (rows % g == ri) & (cols % g == ci)
            offsets = np.array(_PHASE_OFFSETS[phase], dtype=np.int64) * st
            plan.append(Pass(rows[sel], cols[sel], offsets, phase, level == 0, height, width))
    return tuple(plan)


def candidates(
    current: I64,
    p: Pass,
    prev: I64 | None,
    ref: I64 | None,
    ref_prev: I64 | None,
) -> tuple[I64, I64]:
    """Candidates (n, MAX_CANDIDATES) (NO_CANDIDATE where fewer) and context keys (n,) of a pass.

    current: (H, W) codes of this stream, valid at positions of earlier passes; prev: (H, W)
    codes of the previous stream or None; ref / ref_prev: the reference frame's codes of this
    stream and of the previous stream (video), or None.  With a pass ``tiled`` over B maps, the
    arrays are (B, H, W) and the results cover the B maps one after the other.
    """
    n, m0 = p.neighbours.shape
    flat_cur = current.reshape(-1)
    v = flat_cur[p.neighbours]
    w = p.inside.astype(np.int64)
    here_prev = None
    if prev is not None:
        flat_prev = prev.reshape(-1)
        here_prev = flat_prev[p.flat]
        w = w * (1 + PREV_AGREE_WEIGHT * (flat_prev[p.neighbours] == here_prev[:, None]))
    if ref is not None:
        wr = np.full((n, 1), REF_WEIGHT, dtype=np.int64)
        if ref_prev is not None and here_prev is not None:
            wr = wr * (1 + PREV_AGREE_WEIGHT * (ref_prev.reshape(-1)[p.flat] == here_prev))[:, None]
        v = np.concatenate([v, ref.reshape(-1)[p.flat][:, None]], axis=1)
        w = np.concatenate([w, wr], axis=1)
    m = v.shape[1]
    cand = np.full((n, MAX_CANDIDATES), NO_CANDIDATE, dtype=np.int64)
    top = np.zeros(n, dtype=np.int64)
    second = np.zeros(n, dtype=np.int64)
    if m and n:
        # absent neighbours get distinct negative values so that they never pool with anything
        avail = w > 0
        v = np.where(avail, v, -1 - np.arange(m)[None, :])
        votes = np.zeros((n, m), dtype=np.int64)
        first = np.ones((n, m), dtype=bool)  # first neighbour (in list order) with its value
        for k in range(m):
            same = v == v[:, k : k + 1]
            votes += same * w[:, k : k + 1]
            if k:
                first[:, k] = ~same[:, :k].any(axis=1)
        votes = np.where(avail & first, votes, 0)
        # order: larger vote first, then earlier neighbour (stable sort keeps list order on ties)
        order = np.argsort(-votes, axis=1, kind="stable")
        votes = np.take_along_axis(votes, order, axis=1)
        v = np.take_along_axis(v, order, axis=1)
        k = min(m, MAX_CANDIDATES)
        cand[:, :k] = np.where(votes[:, :k] > 0, v[:, :k], NO_CANDIDATE)
        top = np.minimum(votes[:, 0], TOP_VOTE_CAP)
        if m > 1:
            second = np.minimum(votes[:, 1], SECOND_VOTE_CAP)
    has_ref = int(ref is not None)
    key = (((has_ref * NUM_PHASES + p.phase) * 2 + int(p.finest)) * (TOP_VOTE_CAP + 1) + top) \
        * (SECOND_VOTE_CAP + 1) + second
    return cand, key


def _swaps(cand: I64, alphabet: int) -> list[tuple[int, I64, npt.NDArray[np.bool_]]]:
    """The transpositions (j <-> value) that move candidate j to slot j, in application order."""
    cur = cand.copy()
    out = []
    for j in range(min(cand.shape[1], alphabet)):
        cj = cur[:, j].copy()
        active = cj < NO_CANDIDATE
        out.append((j, cj, active))
        rest = cur[:, j + 1 :]
        act = active[:, None]
        swapped = np.where(act & (rest == cj[:, None]), j, rest)
        cur[:, j + 1 :] = np.where(act & (rest == j), cj[:, None], swapped)
    return out


def _apply(x: I64, swaps: list[tuple[int, I64, npt.NDArray[np.bool_]]]) -> I64:
    for j, cj, active in swaps:
        x = np.where(active & (x == j), cj, np.where(active & (x == cj), j, x))
    return x


def to_front(codes: I64, cand: I64, alphabet: int) -> I64:
    """Coded symbols (n,) from codes (n,): a permutation of 0..alphabet-1 per position."""
    return _apply(codes, _swaps(cand, alphabet))


def from_front(symbols: I64, cand: I64, alphabet: int) -> I64:
    """Inverse of ``to_front`` (transpositions undone in reverse order)."""
    return _apply(symbols, _swaps(cand, alphabet)[::-1])
