"""Motion-compensated hybrid block coding of YCbCr 4:2:0 frames whose reference is exact.

The decoder's reference (the reconstructed frame every later P frame predicts from) is built
with integer arithmetic only, so it is bit-identical on every machine and nothing drifts
(formats/vqc-v1.md, "Video payload version 2"):

- planes: Y (H16, W16), Cb and Cr (H16 / 2, W16 / 2) uint8, H16 / W16 the frame size rounded up
  to 16 (the padding is coded like picture content and cropped on output);
- macroblocks of 16 x 16 luma + two 8 x 8 chroma samples; per macroblock a mode: skip (predict
  with the predicted motion vector, no residual), inter (a coded motion-vector difference, then
  per 8 x 8 block a coded-block flag and levels), intra (no prediction: the block minus 128);
- motion vectors in quarter-pel luma units; luma half-pel samples from the 6-tap filter
  (1, -5, 20, 20, -5, 1) with rounding shifts, quarter-pel samples the rounded-up mean of the two
  nearest half-pel samples, chroma at eighth-pel by 2-tap bilinear integer weights
  (``(8 - f) * a + f * b``), all on references padded by edge replication;
- residual levels ``l`` dequantized to ``l * qscale(qp)`` (an integer table) and inverted by
  the integer 8 x 8 transform ``T8`` in two rounding-shift stages (:func:`inverse_transform`);
  ``reconstruction = clip(prediction + residual, 0, 255)``.

Only the encoder uses floats (forward transform, motion search, mode decisions); whatever it
chooses, the decoder's arithmetic is the same integer function of the coded symbols.

Shapes: planes (H, W) uint8 or int32; blocks (N, 8, 8) int32; motion vectors (rows, cols, 2)
int32 (y, x) in quarter-pel units; macroblock modes (rows, cols) int8.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]

MB = 16
BLOCK = 8
#: skip / inter / intra, the macroblock mode symbols
MODE_SKIP, MODE_INTER, MODE_INTRA = 0, 1, 2
#: the largest motion-vector component in quarter-pel units (|mv| <= 64 luma pixels)
MAX_MV = 256
#: reference padding (luma samples) so that every vector within MAX_MV reads inside the array
LUMA_PAD = MAX_MV // 4 + MB + 8
CHROMA_PAD = LUMA_PAD // 2
#: dequantized coefficients are clipped to this range before the inverse transform (int32 bound)
COEFF_LIMIT = 1 << 15
QP_MIN, QP_MAX = 0, 51
#: qscale(qp) = QSCALE_BASE[qp % 6] << (qp // 6): 10 * 2 ** (qp / 6), rounded, in 1/16 units
#: of the orthonormal transform (the same step scale as H.264's QP)
QSCALE_BASE = (10, 11, 13, 14, 16, 18)

#: the 8-point integer transform (HEVC's core matrix): rows ~ 181.02 * orthonormal DCT-II rows
T8 = np.array(
    [
        [64, 64, 64, 64, 64, 64, 64, 64],
        [89, 75, 50, 18, -18, -50, -75, -89],
        [83, 36, -36, -83, -83, -36, 36, 83],
        [75, -18, -89, -50, 50, 89, 18, -75],
        [64, -64, -64, 64, 64, -64, -64, 64],
        [50, -89, 18, 75, -75, -18, 89, -50],
        [36, -83, 83, -36, -36, 83, -83, 36],
        [18, -50, 75, -89, 89, -75, 50, -18],
    ],
    dtype=np.int32,
)
_T8_F = T8.astype(np.float64)
#: luma half-pel filter taps (sum 32)
HALF_PEL_TAPS = (1, -5, 20, 20, -5, 1)


def _zigzag(n: int) -> I64:
    """Flat indices of an n x n block in zigzag order (JPEG / H.264 frame scan)."""
    order = sorted(
        ((i, j) for i in range(n) for j in range(n)),
        key=lambda p: (p[0] + p[1], p[1] if (p[0] + p[1]) % 2 == 0 else p[0]),
    )
    return np.array([i * n + j for i, j in order], dtype=np.int64)


ZIGZAG = _zigzag(BLOCK)


def qscale(qp: int) -> int:
    """Integer dequantization scale of ``qp`` in QP_MIN..QP_MAX."""
    if isinstance(qp, bool) or not isinstance(qp, (int, np.integer)) or not QP_MIN <= qp <= QP_MAX:
        raise ValueError(f"qp must be an integer in {QP_MIN}..{QP_MAX}, got {qp!r}")
    return QSCALE_BASE[int(qp) % 6] << (int(qp) // 6)


# ---------------------------------------------------------------------------------------------
# transform


def forward_transform(blocks: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Residual blocks (N, 8, 8) -> coefficients (N, 8, 8) float64 in dequantized units
    (16 x the orthonormal DCT), the scale :func:`inverse_transform` inverts. Encoder only."""
    x = np.asarray(blocks, dtype=np.float64)
    return (_T8_F @ x @ _T8_F.T) / 2048.0


def inverse_transform(coefficients: npt.ArrayLike) -> I32:
    """Dequantized integer coefficients (N, 8, 8) -> residual (N, 8, 8) int32, exactly.

    ``tmp = (T8^T @ d + 64) >> 7``, ``r = (tmp @ T8 + 2048) >> 12`` (arithmetic shifts, i.e.
    floor division by powers of two). With ``|d| <= 2**15`` every sum stays below 2**31.
    """
    d = np.clip(np.asarray(coefficients, dtype=np.int32), -COEFF_LIMIT, COEFF_LIMIT)
    tmp = (T8.T @ d + 64) >> 7
    return ((tmp @ T8 + 2048) >> 12).astype(np.int32)


def quantize(coefficients: npt.NDArray[np.float64], scale: int, rounding: float) -> I32:
    """Dead-zone scalar quantization (encoder only): ``sign(c) * floor(|c| / scale + rounding)``."""
    magnitude = np.floor(np.abs(coefficients) / scale + rounding)
    limit = COEFF_LIMIT // scale
    return (np.sign(coefficients) * np.minimum(magnitude, limit)).astype(np.int32)


#: RD-optimised quantization: the lambda of :func:`rd_lambda` is scaled by this for the level
#: choices (benchmarks/video_levers.py: 1.2 of 1.0, 1.2 and 1.5 on foreman, mobile and bus)
RDOQ_LAMBDA_FACTOR = 1.2
#: the rate model of those choices (bits): a zero level before the block's last, a nonzero
#: magnitude m costs 3 + 2 log2(m) (the sign, the magnitude symbol), ending a block costs EOB_BITS
RDOQ_ZERO_BITS = 0.7
RDOQ_EOB_BITS = 5.0


def rd_quantize(coefficients: npt.NDArray[np.float64], scale: int, lam: float) -> I32:
    """RD-optimised levels (encoder only) of coefficients (..., 8, 8) with step ``scale``.

    Per coefficient the magnitude m among 0, floor(|c| / scale) and that + 1 minimising
    ``(|c| - m * scale) ** 2 / 256 + lam * bits(m)`` (the /256 makes the error squared 8-bit
    samples, the unit of ``lam``); then, in zigzag order, the last coded position minimising the
    block's total cost (later positions zeroed), or no coded level at all where that costs less.
    Any levels decode exactly: this only chooses which.
    """
    c = np.asarray(coefficients, dtype=np.float64)
    z_all = np.abs(c.reshape(-1, 64)[:, ZIGZAG])
    # a coefficient below half a step is zero under any choice (level 1 costs more error and
    # more bits): only blocks with a larger one need the search
    live = np.flatnonzero(z_all.max(-1) >= 0.5 * scale)
    m_all = np.zeros(z_all.shape, dtype=np.int64)
    if live.size:
        z = z_all[live]
        low = np.minimum(np.floor(z / scale), COEFF_LIMIT // scale - 1)
        zeroed = z * z / 256.0
        best, m = zeroed + lam * RDOQ_ZERO_BITS, np.zeros_like(z)
        for cand in (low, low + 1):
            cost = (z - cand * scale) ** 2 / 256.0 + lam * (3.0 + 2.0 * np.log2(np.maximum(cand, 1.0)))
            better = (cand > 0) & (cost < best)
            best, m = np.where(better, cost, best), np.where(better, cand, m)
        # the block's cost when position L is its last: kept costs up to L, zeroed errors after it
        ending = np.cumsum(best, -1) + (zeroed.sum(-1, keepdims=True) - np.cumsum(zeroed, -1))
        ending = np.where(m > 0, ending + lam * RDOQ_EOB_BITS, np.inf)
        last = np.argmin(ending, -1)
        uncoded = zeroed.sum(-1) + lam <= ending[np.arange(last.size), last]
        m_all[live] = np.where((np.arange(64) <= last[:, None]) & ~uncoded[:, None], m, 0)
    natural = np.zeros_like(m_all)
    natural[:, ZIGZAG] = m_all
    return (np.sign(c) * natural.reshape(c.shape)).astype(np.int32)


def to_blocks(plane: npt.NDArray[np.generic], size: int = BLOCK) -> npt.NDArray[np.generic]:
    """Plane (H, W) -> blocks (H / size, W / size, size, size) (a copy)."""
    h, w = plane.shape
    return plane.reshape(h // size, size, w // size, size).swapaxes(1, 2).copy()


def from_blocks(blocks: npt.NDArray[np.integer]) -> I32:
    """Blocks (R, C, s, s) -> plane (R * s, C * s)."""
    r, c, s, _ = blocks.shape
    return np.asarray(blocks.swapaxes(1, 2).reshape(r * s, c * s), dtype=np.int32)


# ---------------------------------------------------------------------------------------------
# 4:2:0 planes


def padded_size(width: int, height: int) -> tuple[int, int]:
    """Coded luma size (W16, H16): each side rounded up to a multiple of 16."""
    return -(-width // MB) * MB, -(-height // MB) * MB


def pad_planes(planes: list[np.ndarray], width: int, height: int) -> list[np.ndarray]:
    """Source planes Y (H, W), Cb, Cr (ceil(H/2), ceil(W/2)) uint8 -> coded planes (edge padding)."""
    w16, h16 = padded_size(width, height)
    out = []
    for i, p in enumerate(planes):
        th, tw = (h16, w16) if i == 0 else (h16 // 2, w16 // 2)
        a = np.asarray(p, dtype=np.uint8)
        out.append(np.pad(a, ((0, th - a.shape[0]), (0, tw - a.shape[1])), mode="edge"))
    return out


def crop_planes(planes: list[np.ndarray], width: int, height: int) -> list[np.ndarray]:
    """Coded planes -> Y (H, W), Cb, Cr (ceil(H/2), ceil(W/2))."""
    ch, cw = -(-height // 2), -(-width // 2)
    return [planes[0][:height, :width], planes[1][:ch, :cw], planes[2][:ch, :cw]]


# ---------------------------------------------------------------------------------------------
# motion compensation (integer arithmetic: the decoder's prediction)


@dataclass(frozen=True)
class Reference:
    """A decoded frame prepared for prediction: luma at the four half-pel phases, chroma padded.

    ``luma[fy * 2 + fx]`` (Hp, Wp) int32 holds the sample at luma position
    (y + fy / 2, x + fx / 2) at index (y + LUMA_PAD, x + LUMA_PAD); ``chroma[c]`` holds Cb / Cr
    padded by CHROMA_PAD (+1 for the bilinear neighbour).
    """

    luma: I32
    chroma: I32

    def windows(self, size: int) -> I32:
        """Every size x size window of every luma phase plane (4, Hp - size + 1, Wp - size + 1, size,
        size), a view (no copy): one fancy index gathers the prediction blocks."""
        cache = self.__dict__.setdefault("_windows", {})
        if size not in cache:
            cache[size] = np.lib.stride_tricks.sliding_window_view(self.luma, (size, size), axis=(1, 2))
        return cache[size]

    @staticmethod
    def from_planes(planes: list[np.ndarray]) -> Reference:
        # The phases are filtered over the plane and a margin of M = 3 samples only: further out,
        # every tap reads the repeated edge sample, so each phase is its own edge sample repeated
        # (the filters see a constant), and the rest of the padding is copied (np.pad "edge").
        m = 3
        y = np.pad(np.asarray(planes[0], dtype=np.int32), m + 3, mode="edge")
        hp, wp = y.shape[0] - 6, y.shape[1] - 6
        small = np.empty((4, hp, wp), dtype=np.int32)
        small[0] = y[3 : 3 + hp, 3 : 3 + wp]
        # horizontal intermediate (unrounded, 32x scale), then the rounded phases
        hor = _six_tap(y, 1)  # (hp+6, wp+1)
        np.clip((hor[3 : 3 + hp, 1 : 1 + wp] + 16) >> 5, 0, 255, out=small[1])
        ver = _six_tap(y[:, 3 : 3 + wp], 0)  # (hp+1, wp)
        np.clip((ver[1 : 1 + hp] + 16) >> 5, 0, 255, out=small[2])
        diag = _six_tap(hor, 0)  # (hp+1, wp+1)
        np.clip((diag[1 : 1 + hp, 1 : 1 + wp] + 512) >> 10, 0, 255, out=small[3])
        luma = np.pad(
            small, ((0, 0), (LUMA_PAD - m, LUMA_PAD - m), (LUMA_PAD - m, LUMA_PAD - m)), mode="edge"
        )
        chroma = np.stack(
            [np.pad(np.asarray(p, dtype=np.int32), CHROMA_PAD + 1, mode="edge") for p in planes[1:3]]
        )
        return Reference(luma=luma, chroma=chroma)


def _six_tap(a: I32, axis: int) -> I32:
    """sum over k of HALF_PEL_TAPS[k] * a[k : n - 5 + k] along ``axis`` (n - 5 long there), in int32:
    the taps (1, -5, 20, 20, -5, 1) are symmetric, so (a0 + a5) - 5 (a1 + a4) + 20 (a2 + a3)."""
    n = a.shape[axis]

    def s(k: int) -> I32:
        return a[k : n - 5 + k] if axis == 0 else a[:, k : n - 5 + k]

    return (s(0) + s(5)) - 5 * (s(1) + s(4)) + 20 * (s(2) + s(3))


def block_origins(rows: int, cols: int, size: int) -> tuple[I64, I64]:
    """Top-left sample (y0, x0) of each block of a (rows, cols) grid of size x size blocks, flat."""
    y0, x0 = np.mgrid[0:rows, 0:cols]
    return (y0.reshape(-1) * size).astype(np.int64), (x0.reshape(-1) * size).astype(np.int64)


def _gather_half(ref: Reference, half: I64, y0: I64, x0: I64, size: int) -> I32:
    """Blocks (N, size, size) of the half-pel-resolution grid at half-pel vectors ``half`` (N, 2)."""
    phase = (half[:, 0] & 1) * 2 + (half[:, 1] & 1)
    iy = y0 + (half[:, 0] >> 1) + LUMA_PAD
    ix = x0 + (half[:, 1] >> 1) + LUMA_PAD
    return np.asarray(ref.windows(size)[phase, iy, ix])


def _luma_blocks(ref: Reference, mv: I64, y0: I64, x0: I64, size: int) -> I32:
    """Luma prediction blocks (N, size, size) of blocks at (y0, x0) for quarter-pel vectors (N, 2)."""
    half = mv >> 1
    a = _gather_half(ref, half, y0, x0, size)
    frac = mv & 1
    if not frac.any():
        return a
    b = _gather_half(ref, half + frac, y0, x0, size)
    return (a + b + 1) >> 1


def predict_luma(ref: Reference, mvs: npt.NDArray[np.integer], size: int) -> I32:
    """Luma prediction blocks (N, size, size) for quarter-pel vectors (rows, cols, 2) of size x size
    blocks: ``(A + B + 1) >> 1`` with A the half-pel sample at ``mv >> 1`` and B the one at
    ``(mv >> 1) + (mv & 1)`` (component-wise), so half-pel vectors read one sample exactly."""
    rows, cols = mvs.shape[:2]
    y0, x0 = block_origins(rows, cols, size)
    return _luma_blocks(ref, mvs.reshape(-1, 2).astype(np.int64), y0, x0, size)


def predict_chroma(ref: Reference, mvs: npt.NDArray[np.integer], size: int) -> I32:
    """Chroma prediction (2, N, size/2, size/2): eighth-pel bilinear, weights (8 - f, f) per axis,
    ``(sum + 32) >> 6``; the chroma vector is the luma quarter-pel vector read in eighth-pel units."""
    rows, cols = mvs.shape[:2]
    half = size // 2
    y0, x0 = block_origins(rows, cols, half)
    mv = mvs.reshape(-1, 2).astype(np.int64)
    fy, fx = (mv[:, 0] & 7)[:, None, None], (mv[:, 1] & 7)[:, None, None]
    iy = y0 + (mv[:, 0] >> 3) + CHROMA_PAD + 1
    ix = x0 + (mv[:, 1] >> 3) + CHROMA_PAD + 1
    # one (half + 1) x (half + 1) window per block and plane holds all four bilinear neighbours
    windows = np.lib.stride_tricks.sliding_window_view(ref.chroma, (half + 1, half + 1), axis=(1, 2))
    blocks = windows[:, iy, ix]  # (2, N, half + 1, half + 1)
    a, b = blocks[..., :half, :half], blocks[..., :half, 1:]
    cc, d = blocks[..., 1:, :half], blocks[..., 1:, 1:]
    s = (8 - fy) * ((8 - fx) * a + fx * b) + fy * ((8 - fx) * cc + fx * d)
    return ((s + 32) >> 6).astype(np.int32)


def median_predictors(mvs: npt.NDArray[np.integer], modes: npt.NDArray[np.integer] | None = None) -> I32:
    """Median motion-vector predictor of every block, given the final vectors in raster order.

    Predictor of block (r, c): the component-wise median of left (r, c-1), top (r-1, c) and
    top-right (r-1, c+1) (top-left (r-1, c-1) where there is no top-right); a neighbour outside
    the picture or coded intra counts as (0, 0); in the first row the predictor is the left
    vector. Only valid when ``mvs`` holds the decoded vectors (the decoder fills them in raster
    order, see :func:`resolve_vectors`).
    """
    v = np.asarray(mvs, dtype=np.int32).copy()
    if modes is not None:
        v[np.asarray(modes) == MODE_INTRA] = 0
    rows, cols = v.shape[:2]
    z = np.zeros((rows + 1, cols + 2, 2), dtype=np.int32)
    z[1:, 1:-1] = v
    left = z[1:, :-2]
    top = z[:-1, 1:-1]
    top_right = z[:-1, 2:].copy()
    top_right[:, -1] = z[:-1, -3] if cols > 1 else 0  # last column: top-left
    med = np.maximum(np.minimum(left, top), np.minimum(np.maximum(left, top), top_right))
    med[0] = left[0]
    return med


def resolve_vectors(mvd: npt.NDArray[np.integer], modes: npt.NDArray[np.integer]) -> I32:
    """Decoded vectors (rows, cols, 2) from differences ``mvd`` (zero where not inter) and modes,
    in raster order: inter = predictor + mvd, skip = predictor, intra = (0, 0)."""
    rows, cols = modes.shape
    out = np.zeros((rows, cols, 2), dtype=np.int32)
    d = np.asarray(mvd, dtype=np.int64)
    m = np.asarray(modes)
    # plain Python ints: one pass over the macroblocks, ~1 us each
    vy = [[0] * (cols + 2) for _ in range(rows + 1)]
    vx = [[0] * (cols + 2) for _ in range(rows + 1)]
    dl = d.tolist()
    ml = m.tolist()
    for r in range(rows):
        for c in range(cols):
            mode = ml[r][c]
            if mode == MODE_INTRA:
                continue
            ly, lx = vy[r + 1][c], vx[r + 1][c]
            if r == 0:
                py, px = ly, lx
            else:
                tc = c + 2 if c + 1 < cols else c
                ty, tx = vy[r][c + 1], vx[r][c + 1]
                ry, rx = vy[r][tc], vx[r][tc]
                py = max(min(ly, ty), min(max(ly, ty), ry))
                px = max(min(lx, tx), min(max(lx, tx), rx))
            if mode == MODE_INTER:
                py += dl[r][c][0]
                px += dl[r][c][1]
            vy[r + 1][c + 1], vx[r + 1][c + 1] = py, px
    out[..., 0] = np.array(vy, dtype=np.int32)[1:, 1:-1]
    out[..., 1] = np.array(vx, dtype=np.int32)[1:, 1:-1]
    return out


# ---------------------------------------------------------------------------------------------
# reconstruction (the decoder's arithmetic; the encoder runs the same function)


@dataclass
class FrameDecision:
    """What a frame codes. ``modes`` (R, C) MODE_*; ``mvs`` (R', C', 2) the final vectors of the
    motion blocks (R' = R * 16 / block); ``mvd`` (R', C', 2) their coded differences (0 where not
    inter); ``cbf`` (R, C, 6) bool; ``levels`` (R, C, 6, 64) int32 in zigzag order (blocks: luma 0..3
    raster, Cb, Cr; levels of uncoded blocks are 0)."""

    intra_frame: bool
    modes: npt.NDArray[np.int8]
    mvs: I32
    mvd: I32
    cbf: npt.NDArray[np.bool_]
    levels: I32

    @property
    def block(self) -> int:
        return MB * self.modes.shape[0] // self.mvs.shape[0]


def _mb_blocks(planes: list[npt.NDArray[np.int32]]) -> I32:
    """Coded planes -> macroblock blocks (R, C, 6, 8, 8) (luma 0..3 raster, Cb, Cr)."""
    y = planes[0]
    r, c = y.shape[0] // MB, y.shape[1] // MB
    luma = y.reshape(r, 2, BLOCK, c, 2, BLOCK).transpose(0, 3, 1, 4, 2, 5).reshape(r, c, 4, BLOCK, BLOCK)
    chroma = [p.reshape(r, BLOCK, c, BLOCK).transpose(0, 2, 1, 3)[:, :, None] for p in planes[1:3]]
    return np.concatenate([luma, *chroma], axis=2)


def _mb_planes(blocks: npt.NDArray[np.integer]) -> list[np.ndarray]:
    """Inverse of :func:`_mb_blocks`."""
    r, c = blocks.shape[:2]
    luma = (
        blocks[:, :, :4].reshape(r, c, 2, 2, BLOCK, BLOCK).transpose(0, 2, 4, 1, 3, 5).reshape(r * MB, c * MB)
    )
    chroma = [blocks[:, :, k].transpose(0, 2, 1, 3).reshape(r * BLOCK, c * BLOCK) for k in (4, 5)]
    return [luma, *chroma]


def predict_planes(ref: Reference, mvs: I32, block: int) -> list[I32]:
    """Motion-compensated prediction planes (Y, Cb, Cr) of vectors (R', C', 2) of block x block."""
    rows, cols = mvs.shape[:2]
    y = from_blocks(predict_luma(ref, mvs, block).reshape(rows, cols, block, block))
    ch = predict_chroma(ref, mvs, block).reshape(2, rows, cols, block // 2, block // 2)
    return [y, from_blocks(ch[0]), from_blocks(ch[1])]


def dequantized_residual(levels: npt.NDArray[np.integer], cbf: npt.NDArray[np.bool_], qp: int) -> I32:
    """Zigzag levels (R, C, 6, 64) -> residual blocks (R, C, 6, 8, 8) int32 (``cbf``: the blocks with
    a nonzero level; the others are zero without a transform)."""
    out = np.zeros(levels.shape[:3] + (BLOCK, BLOCK), dtype=np.int32)
    if not cbf.any():
        return out
    coded = np.asarray(levels)[cbf].astype(np.int64)
    natural = np.zeros_like(coded)
    natural[:, ZIGZAG] = coded
    d = np.clip(natural * qscale(qp), -COEFF_LIMIT, COEFF_LIMIT).reshape(-1, BLOCK, BLOCK)
    out[cbf] = inverse_transform(d)
    return out


def reconstruct(decision: FrameDecision, ref: Reference | None, qp: int) -> list[np.ndarray]:
    """The decoded planes (uint8) of a frame: prediction + integer residual, clipped to 0..255."""
    modes = decision.modes
    rows, cols = modes.shape
    pred = np.full((rows, cols, 6, BLOCK, BLOCK), 128, dtype=np.int32)
    if not decision.intra_frame:
        if ref is None:
            raise ValueError("a predicted frame needs a reference")
        motion = _mb_blocks(predict_planes(ref, decision.mvs, decision.block))
        predicted = modes != MODE_INTRA
        pred[predicted] = motion[predicted]
    nonzero = (np.asarray(decision.levels) != 0).any(-1)
    out = pred + dequantized_residual(decision.levels, nonzero, qp)
    return [np.clip(p, 0, 255).astype(np.uint8) for p in _mb_planes(out)]


# ---------------------------------------------------------------------------------------------
# in-loop deblocking (video-mc2): integer edge smoothing on the 8 x 8 block grid

#: edge thresholds by qp (H.264's alpha and beta tables, indexed by the frame's qp): an edge is
#: smoothed only where the step across it is below alpha (a real edge of the picture is larger) and
#: each side is flat to within beta
# fmt: off
DEBLOCK_ALPHA = (0,) * 16 + (
    4, 4, 5, 6, 7, 8, 9, 10, 12, 13, 15, 17, 20, 22, 25, 28, 32, 36, 40, 45,
    50, 56, 63, 71, 80, 90, 101, 113, 127, 144, 162, 182, 203, 226, 255, 255,
)
DEBLOCK_BETA = (0,) * 16 + (
    2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 6, 6, 7, 7, 8, 8, 9, 9,
    10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15, 16, 16, 17, 17, 18, 18,
)
# fmt: on
#: the largest change of an edge sample, minus one (H.264's tc0 for its strongest non-intra edges)
DEBLOCK_TC0 = (0,) * 23 + (1,) * 10 + (2,) * 4 + (3,) * 3 + (4,) * 3 + (5, 6, 6, 7, 8, 9, 10, 11, 13)
#: vectors whose components differ by this much (quarter samples) make an edge between them
DEBLOCK_MV_STEP = 4
#: the tables are read at the frame's qp + this (clipped to QP_MAX): a stronger filter than
#: H.264's at the same step, measured better by benchmarks/video_levers.py (rows deblock+N and
#: default: offsets 0, 3, 9 and 6 on foreman, mobile and bus)
DEBLOCK_QP_OFFSET = 6


def _smooth_edges(x: I32, qp: int, active: npt.NDArray[np.bool_]) -> None:
    """Smooth the vertical edges at columns 8, 16, ... of plane ``x`` (H, W) int32 in place where
    ``active`` (H, W / 8 - 1) holds: with p1 p0 | q0 q1 the samples beside an edge,
    ``delta = clip(((q0 - p0) * 4 + (p1 - q1) + 4) >> 3, -tc, tc)``, tc = DEBLOCK_TC0[qp] + 1 (``qp``
    here the table index, the frame's qp + DEBLOCK_QP_OFFSET),
    p0 += delta, q0 -= delta (clipped to 0..255) where |p0 - q0| < alpha, |p1 - p0| < beta and
    |q1 - q0| < beta. Each edge reads and writes only its own four columns, so the edges are
    independent and one array operation does all of them."""
    alpha, beta, tc = DEBLOCK_ALPHA[qp], DEBLOCK_BETA[qp], DEBLOCK_TC0[qp] + 1
    if alpha == 0:
        return
    cols = np.arange(BLOCK, x.shape[1], BLOCK)
    p1, p0, q0, q1 = x[:, cols - 2], x[:, cols - 1], x[:, cols], x[:, cols + 1]
    on = active & (np.abs(p0 - q0) < alpha) & (np.abs(p1 - p0) < beta) & (np.abs(q1 - q0) < beta)
    delta = np.clip(((q0 - p0) * 4 + (p1 - q1) + 4) >> 3, -tc, tc)
    x[:, cols - 1] = np.where(on, np.clip(p0 + delta, 0, 255), p0)
    x[:, cols] = np.where(on, np.clip(q0 - delta, 0, 255), q0)


def edge_flags(
    strong: npt.NDArray[np.bool_], vectors: npt.NDArray[np.integer]
) -> tuple[np.ndarray, np.ndarray]:
    """Which edges of a grid of 8 x 8 blocks (N, M) are smoothed: between horizontal neighbours
    (N, M - 1) and vertical ones (N - 1, M), where either block is ``strong`` (intra, or with a
    coded level in this plane) or their vectors (N, M, 2) differ by DEBLOCK_MV_STEP or more."""
    v = np.asarray(vectors, dtype=np.int64)
    across_x = strong[:, 1:] | strong[:, :-1] | (np.abs(v[:, 1:] - v[:, :-1]).max(-1) >= DEBLOCK_MV_STEP)
    across_y = strong[1:] | strong[:-1] | (np.abs(v[1:] - v[:-1]).max(-1) >= DEBLOCK_MV_STEP)
    return across_x, across_y


def deblock(
    planes: list[np.ndarray], decision: FrameDecision, qp: int, qp_offset: int = DEBLOCK_QP_OFFSET
) -> list[np.ndarray]:
    """The in-loop filter of video-mc2 (formats/vqc-v1.md, "Deblocking"): decoded planes (uint8)
    -> filtered planes (uint8): first every vertical edge of the 8 x 8 grid of each plane, then
    every horizontal edge of the result, by :func:`_smooth_edges` where :func:`edge_flags` says."""
    rows, cols = decision.modes.shape
    index = min(max(qp + qp_offset, QP_MIN), QP_MAX)
    coded = (np.asarray(decision.levels) != 0).any(-1)  # (R, C, 6)
    intra = decision.modes == MODE_INTRA
    mb_vectors = decision.mvs if decision.mvs.shape[0] == rows else decision.mvs[::2, ::2]
    out = []
    for k, plane in enumerate(planes):
        if k == 0:  # luma: four blocks per macroblock, a vector per motion block
            strong = (
                coded[:, :, :4].reshape(rows, cols, 2, 2).transpose(0, 2, 1, 3).reshape(2 * rows, 2 * cols)
            )
            strong = strong | np.repeat(np.repeat(intra, 2, 0), 2, 1)
            vectors = (
                decision.mvs
                if decision.mvs.shape[0] == 2 * rows
                else np.repeat(np.repeat(decision.mvs, 2, 0), 2, 1)
            )
        else:  # chroma: one block per macroblock
            strong, vectors = coded[:, :, 3 + k] | intra, mb_vectors
        across_x, across_y = edge_flags(strong, vectors)
        x = plane.astype(np.int32)
        _smooth_edges(x, index, np.repeat(across_x, BLOCK, 0))
        xt = np.ascontiguousarray(x.T)
        _smooth_edges(xt, index, np.repeat(across_y.T, BLOCK, 0))
        out.append(xt.T.astype(np.uint8))
    return out


# ---------------------------------------------------------------------------------------------
# the encoder (float decisions; any choice decodes exactly)


#: the default qp cascade of EncoderSettings (benchmarks/video_levers.py, row "cascade8"):
#: relative to the base qp, key frames -3, predicted frames +2, +1, +2, +1, +2, +1, +2, -1 repeating
KEY_QP_OFFSET = -3
P_QP_OFFSETS = (2, 1, 2, 1, 2, 1, 2, -1)


@dataclass(frozen=True)
class EncoderSettings:
    """Encoder choices. ``motion``: "search" or "zero" (co-located prediction); ``precision``:
    vector precision searched, 1 integer, 2 half, 4 quarter pel;
    ``block``: motion block side (16; 8 = four vectors per inter macroblock, a probe variant with
    no skip mode); ``grid``: vector components restricted to multiples of ``grid`` luma pixels (8 =
    the image model's latent grid); ``rdoq``: RD-optimised levels (:func:`rd_quantize` at
    ``rdoq_lambda_factor`` times the lambda), else
    dead-zone rounding with ``intra_rounding`` / ``inter_rounding``; ``lambda_scale`` scales the RD
    lambda. ``key_qp_offset`` and ``p_qp_offsets`` move a frame's qp from the base qp the caller
    gives: key frames by ``key_qp_offset``, the n-th predicted frame after a key frame (n = 0, 1,
    ...) by ``p_qp_offsets[n % len(p_qp_offsets)]`` (a low-delay qp cascade: every eighth frame,
    finer, is the better reference of the frames after it), clipped to QP_MIN..QP_MAX. Each frame
    records its own qp, so decoders need none of this."""

    motion: str = "search"
    precision: int = 4
    block: int = 16
    grid: int = 1
    intra_rounding: float = 1.0 / 3.0
    inter_rounding: float = 1.0 / 6.0
    lambda_scale: float = 1.0
    rdoq: bool = True
    rdoq_lambda_factor: float = RDOQ_LAMBDA_FACTOR
    key_qp_offset: int = KEY_QP_OFFSET
    p_qp_offsets: tuple[int, ...] = P_QP_OFFSETS

    def __post_init__(self) -> None:
        if self.motion not in ("search", "zero"):
            raise ValueError(f"motion must be 'search' or 'zero', got {self.motion!r}")
        if self.precision not in (1, 2, 4):
            raise ValueError(f"precision must be 1, 2 or 4, got {self.precision}")
        if self.block not in (8, 16):
            raise ValueError(f"block must be 8 or 16, got {self.block}")
        offsets = (self.key_qp_offset, *self.p_qp_offsets)
        if not self.p_qp_offsets or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets):
            raise ValueError(
                "qp offsets must be integers and p_qp_offsets not empty, got "
                f"key_qp_offset={self.key_qp_offset!r}, p_qp_offsets={self.p_qp_offsets!r}"
            )

    def frame_qp(self, qp: int, key: bool, position: int) -> int:
        """The qp of a frame of base qp ``qp``: a key frame, or predicted frame ``position`` (0 =
        the first after its key frame)."""
        offset = self.key_qp_offset if key else self.p_qp_offsets[position % len(self.p_qp_offsets)]
        return min(max(int(qp) + offset, QP_MIN), QP_MAX)


def rd_lambda(qp: int, scale: float = 1.0) -> float:
    """Mode-decision lambda (per bit, in squared 8-bit sample error): H.264's 0.85 * 2**((qp-12)/3)."""
    return scale * 0.85 * 2.0 ** ((qp - 12) / 3.0)


def estimated_bits(levels: npt.NDArray[np.integer]) -> npt.NDArray[np.float64]:
    """Rough bits (...,) of coding zigzag levels (..., 64) as one block (for decisions only)."""
    a = np.abs(np.asarray(levels)).astype(np.float64)
    nz = a > 0
    last = np.where(nz.any(-1), 63 - np.argmax(nz[..., ::-1], axis=-1), -1)
    upto = np.arange(64) <= last[..., None]
    per = np.where(nz, 3.0 + 2.0 * np.log2(np.maximum(a, 1.0)), 0.7)
    return np.where(last >= 0, 5.0 + (per * upto).sum(-1), 1.0)


def _mv_bits(d: npt.NDArray[np.integer]) -> npt.NDArray[np.float64]:
    a = np.abs(np.asarray(d, dtype=np.float64))
    return (1.0 + 2.0 * np.log2(1.0 + a)).sum(-1)


def motion_search(
    luma: I32, ref: Reference, lam_sad: float, settings: EncoderSettings, hint: I32 | None = None
) -> I32:
    """Vectors (R', C', 2) quarter-pel minimising SAD + lam_sad * bits(mv - predictor), by a
    predictive square search (steps 8, 4, 2, 1 pixels, then half- and quarter-pel as the settings
    allow), two passes: the second
    prices vectors against the median of the first pass's field. ``hint``: the previous frame's
    vectors (tried as candidates)."""
    b = settings.block
    rows, cols = luma.shape[0] // b, luma.shape[1] // b
    cur = np.asarray(to_blocks(luma, b), dtype=np.int32).reshape(-1, b, b)
    n = rows * cols
    y0, x0 = block_origins(rows, cols, b)
    everything = np.arange(n)

    def cost(mv: I64, pred: I64, blocks: I64 = everything) -> npt.NDArray[np.float64]:
        """SAD + lam_sad * bits of vectors ``mv`` for the blocks ``blocks`` (their rows of ``pred``)."""
        p = _luma_blocks(ref, mv, y0[blocks], x0[blocks], b)
        return np.abs(cur[blocks] - p).sum((1, 2)) + lam_sad * _mv_bits(mv - pred[blocks])

    def refine(best: I64, best_cost: npt.NDArray[np.float64], pred: I64, steps: list[int], repeats: int):
        for step in steps:
            # a block that did not move in a pass would try the same candidates again and keep its
            # vector: later passes visit only the blocks that moved (the same result, faster)
            active = everything
            for _ in range(repeats):
                moved = np.zeros(active.size, dtype=bool)
                for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1)):
                    cand = np.clip(best[active] + np.array([dy * step, dx * step]), -MAX_MV, MAX_MV)
                    c = cost(cand, pred, active)
                    better = c < best_cost[active]
                    chosen = active[better]
                    best[chosen], best_cost[chosen] = cand[better], c[better]
                    moved |= better
                if not moved.any():
                    break
                active = active[moved]
        return best, best_cost

    def try_candidates(best: I64, best_cost: npt.NDArray[np.float64], pred: I64, cands: list[I64]):
        for cand in cands:
            cand = np.clip(cand, -MAX_MV, MAX_MV)
            q = 4 * settings.grid if settings.grid > 1 else 4 // settings.precision
            if q > 1:
                cand = (np.floor_divide(cand + q // 2, q) * q).astype(np.int64)
            c = cost(cand, pred)
            better = c < best_cost
            best[better], best_cost[better] = cand[better], c[better]
        return best, best_cost

    zero = np.zeros((n, 2), dtype=np.int64)
    best, best_cost = zero.copy(), cost(zero, zero)
    if hint is not None and hint.shape[:2] == (rows, cols):
        best, best_cost = try_candidates(best, best_cost, zero, [hint.reshape(-1, 2).astype(np.int64)])
    if settings.grid > 1:
        steps, fine = [4 * settings.grid], [4 * settings.grid]
        repeats = 6
    else:
        steps, fine, repeats = [32, 16, 8, 4], [4], 3
    best, best_cost = refine(best, best_cost, zero, steps, repeats)
    # pass 2: price against the spatial median of pass 1, try the neighbours' vectors
    pred = median_predictors(best.reshape(rows, cols, 2)).reshape(-1, 2).astype(np.int64)
    best_cost = cost(best, pred)
    field = best.reshape(rows, cols, 2)
    shifted = []
    for dy, dx in ((0, -1), (-1, 0), (0, 1), (1, 0)):
        s = np.roll(field, (-dy, -dx), axis=(0, 1)).reshape(-1, 2)
        shifted.append(s)
    best, best_cost = try_candidates(best, best_cost, pred, [pred, *shifted])
    best, best_cost = refine(best, best_cost, pred, fine, 2)
    if settings.grid == 1 and settings.precision > 1:
        sub_steps = [2] if settings.precision == 2 else [2, 1]  # half-pel, then quarter-pel
        best, best_cost = refine(best, best_cost, pred, sub_steps, 1)
    return best.reshape(rows, cols, 2).astype(np.int32)


def encode_frame(
    planes: list[np.ndarray],
    ref: Reference | None,
    qp: int,
    settings: EncoderSettings = EncoderSettings(),
    hint: I32 | None = None,
) -> tuple[FrameDecision, list[np.ndarray]]:
    """Coded planes (uint8, padded) -> (decision, reconstructed planes). ``ref`` None: key frame."""
    from vqcodec.entropy.motion import coded_block_flags

    src = [np.asarray(p, dtype=np.int32) for p in planes]
    rows, cols = src[0].shape[0] // MB, src[0].shape[1] // MB
    scale = qscale(qp)
    lam = rd_lambda(qp, settings.lambda_scale)
    cur = _mb_blocks(src)  # (R, C, 6, 8, 8)
    intra_coef = forward_transform(cur.reshape(-1, BLOCK, BLOCK) - 128).reshape(cur.shape)
    rdoq_lam = lam * settings.rdoq_lambda_factor
    if settings.rdoq:
        intra_levels = rd_quantize(intra_coef, scale, rdoq_lam)
    else:
        intra_levels = quantize(intra_coef, scale, settings.intra_rounding)
    zz = lambda a: a.reshape(a.shape[:3] + (64,))[..., ZIGZAG]  # noqa: E731
    intra_zz = zz(intra_levels)
    b = settings.block
    grid_shape = (rows * MB // b, cols * MB // b, 2)
    if ref is None:
        intra_mask = np.ones((rows, cols), dtype=bool)
        decision = FrameDecision(
            intra_frame=True,
            modes=np.full((rows, cols), MODE_INTRA, dtype=np.int8),
            mvs=np.zeros(grid_shape, dtype=np.int32),
            mvd=np.zeros(grid_shape, dtype=np.int32),
            cbf=coded_block_flags(intra_zz, intra_mask),
            levels=intra_zz.astype(np.int32),
        )
        return decision, reconstruct(decision, None, qp)
    d_intra = ((intra_coef - intra_levels * scale) ** 2).sum((-1, -2)) / 256.0
    j_intra = (d_intra + lam * estimated_bits(intra_zz)).sum(-1) + lam * 3.0
    if settings.motion == "zero":
        mvs = np.zeros(grid_shape, dtype=np.int32)
    else:
        mvs = motion_search(src[0], ref, math.sqrt(lam), settings, hint)
    pred = _mb_blocks(predict_planes(ref, mvs, b))
    residual = cur - pred
    coef = forward_transform(residual.reshape(-1, BLOCK, BLOCK)).reshape(cur.shape)
    if settings.rdoq:
        levels = rd_quantize(coef, scale, rdoq_lam)
    else:
        levels = quantize(coef, scale, settings.inter_rounding)
    inter_zz = zz(levels)
    d_zero = (residual.astype(np.float64) ** 2).sum((-1, -2))
    d_coded = ((coef - levels * scale) ** 2).sum((-1, -2)) / 256.0
    j_zero = d_zero + lam * 1.0
    j_coded = d_coded + lam * (estimated_bits(inter_zz) + 1.0)
    keep = (j_coded < j_zero) & (inter_zz != 0).any(-1)
    inter_zz = np.where(keep[..., None], inter_zz, 0)
    pred_est = median_predictors(mvs)
    mv_cost = _mv_bits(mvs - pred_est)
    if b == 8:
        mv_cost = mv_cost.reshape(rows, 2, cols, 2).sum((1, 3))
    j_inter = np.where(keep, j_coded, j_zero).sum(-1) + lam * (mv_cost + 1.0)
    intra_mask = j_intra < j_inter
    modes = np.where(intra_mask, MODE_INTRA, MODE_INTER).astype(np.int8)
    levels_zz = np.where(intra_mask[..., None, None], intra_zz, inter_zz).astype(np.int32)
    chosen = np.minimum(j_intra, j_inter)
    final = mvs.copy()
    final[np.repeat(np.repeat(intra_mask, MB // b, 0), MB // b, 1)] = 0
    if b == MB:
        modes, final, levels_zz = _skip_pass(
            src, ref, modes, mvs, median_predictors(final, modes), levels_zz, chosen, lam
        )
    mvd = np.zeros(grid_shape, dtype=np.int32)
    inter_grid = np.repeat(np.repeat(modes == MODE_INTER, MB // b, 0), MB // b, 1)
    mvd[inter_grid] = (final - median_predictors(final, _grid_modes(modes, b)))[inter_grid]
    decision = FrameDecision(
        intra_frame=False,
        modes=modes,
        mvs=final,
        mvd=mvd,
        cbf=coded_block_flags(levels_zz, modes == MODE_INTRA) & (modes != MODE_SKIP)[..., None],
        levels=levels_zz,
    )
    return decision, reconstruct(decision, ref, qp)


def _grid_modes(modes: npt.NDArray[np.integer], block: int) -> npt.NDArray[np.integer]:
    f = MB // block
    return np.repeat(np.repeat(modes, f, 0), f, 1)


def _skip_pass(
    src: list[I32],
    ref: Reference,
    modes: npt.NDArray[np.int8],
    mvs: I32,
    pred_est: I32,
    levels: I32,
    chosen: npt.NDArray[np.float64],
    lam: float,
) -> tuple[npt.NDArray[np.int8], I32, I32]:
    """Turn macroblocks into skips where predicting with the median vector and no residual costs
    less (in D + lam * R) than the chosen mode; raster order, because a skip's vector is its
    predictor and feeds the predictors after it. Returns (modes, final vectors, levels)."""
    cur = _mb_blocks(src)
    skip_pred = _mb_blocks(predict_planes(ref, pred_est, MB))
    j_skip = ((cur - skip_pred).astype(np.float64) ** 2).sum((2, 3, 4)) + lam * 1.0
    candidate = (j_skip <= chosen).tolist()
    rows, cols = modes.shape
    m = modes.copy()
    est = pred_est.tolist()
    mv = mvs.tolist()
    ml = m.tolist()
    vy = [[0] * (cols + 2) for _ in range(rows + 1)]
    vx = [[0] * (cols + 2) for _ in range(rows + 1)]
    for r in range(rows):
        for c in range(cols):
            ly, lx = vy[r + 1][c], vx[r + 1][c]
            if r == 0:
                py, px = ly, lx
            else:
                tc = c + 2 if c + 1 < cols else c
                py = max(min(ly, vy[r][c + 1]), min(max(ly, vy[r][c + 1]), vy[r][tc]))
                px = max(min(lx, vx[r][c + 1]), min(max(lx, vx[r][c + 1]), vx[r][tc]))
            if candidate[r][c] and [py, px] == est[r][c]:
                ml[r][c] = MODE_SKIP
                vy[r + 1][c + 1], vx[r + 1][c + 1] = py, px
            elif ml[r][c] == MODE_INTER:
                vy[r + 1][c + 1], vx[r + 1][c + 1] = mv[r][c]
    out_modes = np.array(ml, dtype=np.int8)
    final = np.stack([np.array(vy, dtype=np.int32)[1:, 1:-1], np.array(vx, dtype=np.int32)[1:, 1:-1]], -1)
    out_levels = np.where((out_modes == MODE_SKIP)[..., None, None], 0, levels).astype(np.int32)
    return out_modes, final, out_levels


# ---------------------------------------------------------------------------------------------
# the video model of payload version 2: one frame given a typed reference state

#: first byte of a version-2 frame payload
FRAME_KEY, FRAME_PREDICTED = 0, 1
#: how a container header names this model (there are no weights: the name pins the spec section)
MC_MODEL_NAME = "video-mc1"
MC_MODEL_SHA256 = hashlib.sha256(b"vqcodec video payload 2").digest()
#: the same payload with the in-loop deblocking filter (:func:`deblock`): model ``video-mc2``
MC2_MODEL_NAME = "video-mc2"
MC2_MODEL_SHA256 = hashlib.sha256(b"vqcodec video payload 2 deblocked").digest()
MC_CODEC_PARAMS_VERSION = 2
MC_TEMPORAL_MODE = "motion-compensated"
#: key frames are coded in slices of this many macroblock rows (tables adapt between slices)
KEY_SLICE_ROWS = 2
DEFAULT_QP = 30
#: quality level q = 1..12 -> the encoder's base qp: 3 qp apart (each level a 2 ** (1/2) finer
#: step), level 7 (the default, just above the middle) = qp 28. An encoder choice: the header
#: records the qp, never the level
QUALITY_QP = (46, 43, 40, 37, 34, 31, 28, 25, 22, 19, 16, 13)
#: key-frame interval of the encoder when none is given (frames)
DEFAULT_MC_GOP = 64


def qp_for_quality(quality: int, table: tuple[int, ...] = QUALITY_QP) -> int:
    """The base qp of quality level ``quality`` (1..len(table)); ValueError naming it otherwise."""
    if (
        isinstance(quality, bool)
        or not isinstance(quality, (int, np.integer))
        or not 1 <= int(quality) <= len(table)
    ):
        raise ValueError(f"quality must be an integer in 1..{len(table)}, got {quality!r}")
    return table[int(quality) - 1]


class MotionCodecModel:
    """What ``load_model("video-mc1")`` returns: the identity of video payload version 2 and its
    encoder's quality table. There are no weights: ``name`` and ``sha256`` (MC_MODEL_SHA256) pin the
    spec section, as a bundle's file sha256 pins its weights; ``codec()`` is the coder itself.

    ``config``: the catalogue entry's config (``quality_qp``: base qp per level, ``gop``: default
    key-frame interval, ``deblock``: the in-loop deblocking filter of video-mc2, whose identity is
    MC2_MODEL_SHA256).
    """

    weightless = True
    media = "video"
    path = None

    def __init__(self, name: str = MC_MODEL_NAME, description: str = "", config: dict | None = None):
        config = dict(config or {})
        self.name = name
        deblock = config.get("deblock", False)
        if not isinstance(deblock, bool):
            raise ValueError(f"deblock must be true or false, got {deblock!r}")
        self.deblock = deblock
        self.sha256 = MC2_MODEL_SHA256 if deblock else MC_MODEL_SHA256
        self.description = description
        self.quality_qp = tuple(int(q) for q in config.get("quality_qp", QUALITY_QP))
        if not self.quality_qp or not all(QP_MIN <= q <= QP_MAX for q in self.quality_qp):
            raise ValueError(f"quality_qp must be qps in {QP_MIN}..{QP_MAX}, got {self.quality_qp}")
        self.gop = int(config.get("gop", DEFAULT_MC_GOP))
        self.config = config

    @property
    def quality_levels(self) -> int:
        return len(self.quality_qp)

    def qp_for_quality(self, quality: int) -> int:
        return qp_for_quality(quality, self.quality_qp)

    def codec(self, settings: EncoderSettings | None = None) -> MotionCompensatedCodec:
        return MotionCompensatedCodec(settings or EncoderSettings(), deblock=self.deblock)

    def __repr__(self) -> str:
        return f"MotionCodecModel(name={self.name!r}, sha256={self.sha256.hex()[:16]}..., media='video')"


@dataclass
class ReferenceState:
    """What the decoder keeps between frames (and the encoder mirrors): the decoded planes at the
    coded size, their prediction form, the last frame's modes (R, C) and vectors (R, C, 2), and
    the adaptive entropy tables. ``None`` before the first frame; a key frame starts a new one."""

    width: int
    height: int
    planes: list[np.ndarray]
    reference: Reference
    modes: npt.NDArray[np.int8]
    vectors: I32
    tables: object  # vqcodec.entropy.motion.AdaptiveTables (entropy sits above models)
    frames_since_key: int


class MotionCompensatedCodec:
    """Video payload version 2 (formats/vqc-v1.md): ``compress`` / ``decompress`` one frame of
    Y'CbCr 4:2:0 planes given the previous ``ReferenceState``. No learned part: everything that
    feeds the reference is integer arithmetic; ``settings`` are encoder choices only.
    ``deblock``: the in-loop deblocking filter (video-mc2) on every decoded frame."""

    def __init__(self, settings: EncoderSettings = EncoderSettings(), deblock: bool = False):
        self.settings = settings
        self.deblock = deblock

    def compress(
        self,
        planes: list[np.ndarray],
        width: int,
        height: int,
        state: ReferenceState | None,
        qp: int = DEFAULT_QP,
        key: bool = False,
    ) -> tuple[bytes, ReferenceState]:
        """Source planes Y (H, W), Cb, Cr (ceil(H/2), ceil(W/2)) uint8 -> (payload, new state).
        ``key`` (or no state, or a state of another size) codes a key frame. ``qp``: the base qp;
        the frame's own (recorded in its payload) is ``settings.frame_qp`` of it."""
        from vqcodec.entropy.motion import AdaptiveTables, FrameSymbols, dc_differences, encode_slice
        from vqcodec.entropy.payload import write_varint

        qscale(qp)
        coded = pad_planes(planes, width, height)
        key = key or state is None or (state.width, state.height) != (width, height)
        qp = self.settings.frame_qp(qp, key, 0 if key else state.frames_since_key)  # type: ignore[union-attr]
        if key:
            decision, recon = encode_frame(coded, None, qp, self.settings)
            tables = AdaptiveTables()
            previous_modes = None
        else:
            assert state is not None
            hint = state.vectors
            decision, recon = encode_frame(coded, state.reference, qp, self.settings, hint)
            # a copy: the caller's state stays valid (a trial encode may be thrown away)
            tables = state.tables.copy()  # type: ignore[attr-defined]
            previous_modes = None if state.frames_since_key == 0 else state.modes
        if self.deblock:
            recon = deblock(recon, decision, qp)
        rows = decision.modes.shape[0]
        slice_rows = KEY_SLICE_ROWS if key else rows
        levels = dc_differences(decision.levels, decision.modes == MODE_INTRA)
        out = bytearray([FRAME_KEY if key else FRAME_PREDICTED, qp, slice_rows])
        for r0 in range(0, rows, slice_rows):
            r1 = min(rows, r0 + slice_rows)
            part = FrameSymbols(
                key,
                decision.modes[r0:r1],
                decision.mvd[r0:r1],
                decision.cbf[r0:r1],
                levels[r0:r1],
                None if previous_modes is None else previous_modes[r0:r1],
            )
            body, streams = encode_slice(part, tables)
            tables.update(streams.counts())
            out += write_varint(len(body)) + body
        new_state = ReferenceState(
            width,
            height,
            recon,
            Reference.from_planes(recon),
            decision.modes,
            decision.mvs,
            tables,
            0 if key else state.frames_since_key + 1,  # type: ignore[union-attr]
        )
        return bytes(out), new_state

    def decompress(
        self,
        payload: bytes,
        width: int,
        height: int,
        state: ReferenceState | None,
        key: bool | None = None,
    ) -> tuple[list[np.ndarray], ReferenceState]:
        """Payload -> (planes Y (H, W), Cb, Cr (ceil(H/2), ceil(W/2)) uint8, new state).
        FormatError (naming the offset and field) for a payload that does not decode exactly.
        ``key``: the container's key flag of the frame, when known; a frame type that disagrees
        with it is a FormatError (field ``frame type``)."""
        from vqcodec.entropy.motion import AdaptiveTables, dc_from_differences, decode_slice
        from vqcodec.entropy.payload import read_varint
        from vqcodec.errors import FormatError

        data = bytes(payload)
        if len(data) < 3:
            raise FormatError(
                f"frame payload of {len(data)} bytes is shorter than its 3-byte head", field="frame payload"
            )
        kind, qp, slice_rows = data[0], data[1], data[2]
        if kind not in (FRAME_KEY, FRAME_PREDICTED):
            raise FormatError(f"unknown frame type {kind}", offset=0, field="frame type")
        if key is not None and bool(key) != (kind == FRAME_KEY):
            raise FormatError(
                f"{'predicted' if key else 'key'} frame type in a {'key' if key else 'non-key'} frame",
                offset=0,
                field="frame type",
            )
        if not QP_MIN <= qp <= QP_MAX:
            raise FormatError(f"qp {qp} outside {QP_MIN}..{QP_MAX}", offset=1, field="qp")
        w16, h16 = padded_size(width, height)
        rows, cols = h16 // MB, w16 // MB
        if not 1 <= slice_rows <= rows:
            raise FormatError(f"slice rows {slice_rows} outside 1..{rows}", offset=2, field="slice rows")
        key = kind == FRAME_KEY
        if key:
            tables = AdaptiveTables()
            previous_modes = None
            ref = None
        else:
            if state is None or (state.width, state.height) != (width, height):
                raise FormatError(
                    "a predicted frame without a decoded reference frame", offset=0, field="frame type"
                )
            tables = state.tables  # type: ignore[assignment]
            tables = tables.copy()  # a failed decode leaves the caller's state untouched
            previous_modes = None if state.frames_since_key == 0 else state.modes
            ref = state.reference
        parts = []
        pos = 3
        for r0 in range(0, rows, slice_rows):
            r1 = min(rows, r0 + slice_rows)
            length, pos = read_varint(data, pos, "slice length")
            if length > len(data) - pos:
                raise FormatError(
                    f"slice of {length} bytes, {len(data) - pos} left", offset=pos, field="slice length"
                )
            body = data[pos : pos + length]
            try:
                sym, hist = decode_slice(
                    body,
                    tables,
                    r1 - r0,
                    cols,
                    key,
                    None if previous_modes is None else previous_modes[r0:r1],
                )
            except FormatError as exc:
                raise FormatError(str(exc).split(" (")[0], offset=pos, field="slice body") from None
            except (ValueError, IndexError, OverflowError) as exc:  # symbols no encoder writes
                raise FormatError(f"corrupt slice: {exc}", offset=pos, field="slice body") from None
            tables.update(hist)
            parts.append(sym)
            pos += length
        if pos != len(data):
            raise FormatError(
                f"{len(data) - pos} bytes after the last slice", offset=pos, field="frame payload"
            )
        modes = np.concatenate([p.modes for p in parts]).astype(np.int8)
        mvd = np.concatenate([p.mvd for p in parts]).astype(np.int64)
        cbf = np.concatenate([p.cbf for p in parts])
        levels = dc_from_differences(np.concatenate([p.levels for p in parts]), modes == MODE_INTRA)
        vectors = resolve_vectors(mvd, modes) if not key else np.zeros((rows, cols, 2), dtype=np.int32)
        if np.abs(vectors).max(initial=0) > MAX_MV:
            raise FormatError(f"a motion vector exceeds {MAX_MV} quarter samples", field="motion vector")
        decision = FrameDecision(key, modes, vectors, mvd.astype(np.int32), cbf, levels.astype(np.int32))
        recon = reconstruct(decision, ref, qp)
        if self.deblock:
            recon = deblock(recon, decision, qp)
        new_state = ReferenceState(
            width,
            height,
            recon,
            Reference.from_planes(recon),
            modes,
            vectors,
            tables,
            0 if key else state.frames_since_key + 1,  # type: ignore[union-attr]
        )
        return crop_planes(recon, width, height), new_state


__all__ = [
    "BLOCK",
    "FRAME_KEY",
    "FRAME_PREDICTED",
    "MC_CODEC_PARAMS_VERSION",
    "MC_MODEL_NAME",
    "MC_MODEL_SHA256",
    "MC2_MODEL_NAME",
    "MC2_MODEL_SHA256",
    "deblock",
    "edge_flags",
    "MC_TEMPORAL_MODE",
    "DEFAULT_MC_GOP",
    "MotionCodecModel",
    "MotionCompensatedCodec",
    "QUALITY_QP",
    "qp_for_quality",
    "ReferenceState",
    "EncoderSettings",
    "FrameDecision",
    "MB",
    "MODE_INTER",
    "MODE_INTRA",
    "MODE_SKIP",
    "Reference",
    "T8",
    "ZIGZAG",
    "forward_transform",
    "inverse_transform",
    "median_predictors",
    "predict_chroma",
    "predict_luma",
    "predict_planes",
    "reconstruct",
    "encode_frame",
    "qscale",
    "quantize",
    "resolve_vectors",
]
