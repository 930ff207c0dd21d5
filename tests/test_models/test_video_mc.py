"""Video payload version 2 (vqcodec.models.video_mc, vqcodec.entropy.motion): the integer
decoder arithmetic against the spec's formulas, round trips, damaged payloads, the golden vector."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from vqcodec.entropy import motion
from vqcodec.errors import FormatError, VQCError
from vqcodec.models import video_mc as vm

REPO = Path(__file__).resolve().parents[2]
VECTORS = REPO / "formats" / "vectors" / "video_mc"
TAPS = (1, -5, 20, 20, -5, 1)


def orbit(frames: int, width: int = 96, height: int = 64) -> list[list[np.ndarray]]:
    from vqcodec.codec.video_io import Y4MReader

    out = []
    with Y4MReader(str(REPO / "vqcodec" / "samples" / "orbit.y4m")) as reader:
        for y, cb, cr in reader.planes():
            out.append(
                [
                    y[:height, :width].copy(),
                    cb[: (height + 1) // 2, : (width + 1) // 2].copy(),
                    cr[: (height + 1) // 2, : (width + 1) // 2].copy(),
                ]
            )
            if len(out) == frames:
                return out
    return out


# --- integer arithmetic against the spec ----------------------------------------------------


def test_inverse_transform_matches_exact_integer_arithmetic_at_the_limits():
    rng = np.random.default_rng(0)
    d = rng.integers(-(1 << 15), (1 << 15) + 1, size=(200, 8, 8))
    d[0] = 1 << 15
    d[1] = -(1 << 15)
    d[2] = np.where(vm.T8 > 0, 1 << 15, -(1 << 15))  # the largest first-stage sums
    t = [[int(v) for v in row] for row in vm.T8]
    got = vm.inverse_transform(d)
    for n in range(0, 200, 37):
        block = [[int(v) for v in row] for row in d[n]]
        tmp = [[(sum(t[u][i] * block[u][v] for u in range(8)) + 64) >> 7 for v in range(8)] for i in range(8)]
        want = [
            [(sum(tmp[i][v] * t[v][j] for v in range(8)) + 2048) >> 12 for j in range(8)] for i in range(8)
        ]
        assert got[n].tolist() == want


def test_forward_then_inverse_transform_is_close_to_identity():
    rng = np.random.default_rng(1)
    x = rng.integers(-255, 256, size=(500, 8, 8))
    back = vm.inverse_transform(np.rint(vm.forward_transform(x)).astype(np.int32))
    assert np.abs(back - x).max() <= 2


def test_qscale_table():
    assert [vm.qscale(q) for q in (0, 5, 6, 30, 51)] == [10, 18, 20, 10 << 5, 14 << 8]
    with pytest.raises(ValueError):
        vm.qscale(52)


def _luma_sample_spec(y: np.ndarray, qy: int, qx: int) -> int:
    """The spec's quarter-sample luma value at quarter position (qy, qx) (edge-clamped reads)."""
    h, w = y.shape

    def at(r: int, c: int) -> int:
        return int(y[min(max(r, 0), h - 1), min(max(c, 0), w - 1)])

    def hsum(r: int, c: int) -> int:
        return sum(TAPS[k] * at(r, c - 2 + k) for k in range(6))

    def grid(gy: int, gx: int) -> int:
        r, c = gy >> 1, gx >> 1
        clip = lambda v: min(max(v, 0), 255)  # noqa: E731
        if gy & 1 == 0 and gx & 1 == 0:
            return at(r, c)
        if gy & 1 == 0:
            return clip((hsum(r, c) + 16) >> 5)
        if gx & 1 == 0:
            return clip((sum(TAPS[k] * at(r - 2 + k, c) for k in range(6)) + 16) >> 5)
        return clip((sum(TAPS[k] * hsum(r - 2 + k, c) for k in range(6)) + 512) >> 10)

    hy, hx = qy >> 1, qx >> 1
    return (grid(hy, hx) + grid(hy + (qy & 1), hx + (qx & 1)) + 1) >> 1


def _chroma_sample_spec(p: np.ndarray, y: int, x: int, vy: int, vx: int) -> int:
    h, w = p.shape

    def at(r: int, c: int) -> int:
        return int(p[min(max(r, 0), h - 1), min(max(c, 0), w - 1)])

    iy, ix, fy, fx = y + (vy >> 3), x + (vx >> 3), vy & 7, vx & 7
    s = (8 - fy) * ((8 - fx) * at(iy, ix) + fx * at(iy, ix + 1)) + fy * (
        (8 - fx) * at(iy + 1, ix) + fx * at(iy + 1, ix + 1)
    )
    return (s + 32) >> 6


def test_motion_compensation_matches_the_spec_formulas_including_far_outside_vectors():
    rng = np.random.default_rng(2)
    planes = [
        rng.integers(0, 256, (32, 48), dtype=np.uint8),
        rng.integers(0, 256, (16, 24), dtype=np.uint8),
        rng.integers(0, 256, (16, 24), dtype=np.uint8),
    ]
    ref = vm.Reference.from_planes(planes)
    mvs = rng.integers(-vm.MAX_MV, vm.MAX_MV + 1, size=(2, 3, 2)).astype(np.int32)
    mvs[0, 0] = (-vm.MAX_MV, vm.MAX_MV)
    mvs[1, 2] = (3, -5)
    luma = vm.predict_luma(ref, mvs, 16).reshape(2, 3, 16, 16)
    chroma = vm.predict_chroma(ref, mvs, 16).reshape(2, 2, 3, 8, 8)
    for r in range(2):
        for c in range(3):
            vy, vx = (int(v) for v in mvs[r, c])
            for i, j in ((0, 0), (5, 11), (15, 15)):
                y, x = r * 16 + i, c * 16 + j
                assert luma[r, c, i, j] == _luma_sample_spec(planes[0], 4 * y + vy, 4 * x + vx)
            for i, j in ((0, 0), (7, 3)):
                for k in range(2):
                    want = _chroma_sample_spec(planes[1 + k], r * 8 + i, c * 8 + j, vy, vx)
                    assert chroma[k, r, c, i, j] == want


def test_resolve_vectors_agrees_with_median_predictors():
    rng = np.random.default_rng(3)
    for cols in (1, 2, 5):
        modes = rng.integers(0, 3, size=(4, cols)).astype(np.int8)
        mvd = rng.integers(-9, 10, size=(4, cols, 2)).astype(np.int32)
        mvd[modes != vm.MODE_INTER] = 0
        final = vm.resolve_vectors(mvd, modes)
        assert np.all(final[modes == vm.MODE_INTRA] == 0)
        pred = vm.median_predictors(final, modes)
        assert np.array_equal(final[modes == vm.MODE_SKIP], pred[modes == vm.MODE_SKIP])
        inter = modes == vm.MODE_INTER
        assert np.array_equal(final[inter] - pred[inter], mvd[inter])


def test_counts_to_freqs_and_halving():
    rng = np.random.default_rng(4)
    counts = rng.integers(1, 5000, size=(50, 30))
    f = motion.counts_to_freqs(counts)
    assert np.all(f >= 1) and np.all(f.sum(1) == 1 << 16)
    tables = motion.AdaptiveTables()
    tables.update({"level": np.full((320, 30), 10_000, dtype=np.int64)})
    assert np.all(tables.counts["level"].sum(1) <= motion.COUNT_LIMIT)
    assert np.all(tables.counts["level"] >= 1)


# --- round trips ------------------------------------------------------------------------------


def _round_trip(frames, width, height, qps, keys=(0,), codec=None):
    codec = codec or vm.MotionCompensatedCodec()
    enc_state = dec_state = None
    payloads, modes = [], []
    for i, planes in enumerate(frames):
        payload, enc_state = codec.compress(
            planes, width, height, enc_state, qps[i % len(qps)], key=i in keys
        )
        out, dec_state = codec.decompress(payload, width, height, dec_state)
        for a, b in zip(out, vm.crop_planes(enc_state.planes, width, height)):
            assert np.array_equal(a, b)
        assert np.array_equal(dec_state.vectors, enc_state.vectors)
        assert np.array_equal(dec_state.modes, enc_state.modes)
        for name in motion.STREAMS:
            assert np.array_equal(dec_state.tables.counts[name], enc_state.tables.counts[name])
        payloads.append(payload)
        modes.append(enc_state.modes)
    return payloads, modes, enc_state


def test_round_trip_on_a_moving_clip_reproduces_the_encoders_reference():
    frames = orbit(5, 88, 56)
    payloads, modes, state = _round_trip(frames, 88, 56, (30, 30, 30, 24, 24), keys=(0, 3))
    assert payloads[0][0] == vm.FRAME_KEY and payloads[1][0] == vm.FRAME_PREDICTED
    assert payloads[3][0] == vm.FRAME_KEY
    assert sum(len(p) for p in payloads[1:3]) < len(payloads[0])  # prediction pays


def test_round_trip_with_deblocking_reproduces_the_encoders_filtered_reference():
    frames = orbit(5, 88, 56)
    plain = vm.MotionCompensatedCodec(vm.EncoderSettings())
    filtered = vm.MotionCompensatedCodec(vm.EncoderSettings(), deblock=True)
    _, _, state = _round_trip(frames, 88, 56, (36, 36, 36, 30, 30), keys=(0, 3), codec=filtered)
    payload, unfiltered = plain.compress(frames[0], 88, 56, None, 36, key=True)
    assert not np.array_equal(state.planes[0], unfiltered.planes[0])  # the filter reached the reference


def _decision(rows, cols, modes, mvs=None, levels=None):
    return vm.FrameDecision(
        intra_frame=False,
        modes=np.full((rows, cols), modes, dtype=np.int8)
        if np.isscalar(modes)
        else np.asarray(modes, np.int8),
        mvs=np.zeros((rows, cols, 2), np.int32) if mvs is None else np.asarray(mvs, np.int32),
        mvd=np.zeros((rows, cols, 2), np.int32),
        cbf=np.zeros((rows, cols, 6), bool),
        levels=np.zeros((rows, cols, 6, 64), np.int32) if levels is None else levels,
    )


def test_deblocking_smooths_small_block_steps_and_keeps_real_edges():
    qp = 34
    index = qp + vm.DEBLOCK_QP_OFFSET
    y = np.full((16, 32), 100, np.uint8)
    y[:, 8:16] = 104  # a small step at column 8 (a block edge): smoothed
    y[:, 16:] = 104 + vm.DEBLOCK_ALPHA[index]  # a step of alpha at column 16: a real edge, kept
    chroma = [np.full((8, 16), 128, np.uint8)] * 2
    out = vm.deblock([y, *chroma], _decision(1, 2, vm.MODE_INTRA), qp)
    # delta = clip(((104 - 100) * 4 + 0 + 4) >> 3, -tc, tc) = 2 (tc >= 2 at this qp)
    assert vm.DEBLOCK_TC0[index] + 1 >= 2
    assert out[0][0, 6:10].tolist() == [100, 102, 102, 104]
    assert np.array_equal(out[0][:, 12:20], y[:, 12:20])
    assert np.array_equal(out[0][:, :6], y[:, :6]) and all(
        np.array_equal(a, b) for a, b in zip(out[1:], chroma)
    )
    assert out[0].dtype == np.uint8
    # below qp 16 - offset the thresholds are 0: nothing changes
    low = vm.deblock([y, *chroma], _decision(1, 2, vm.MODE_INTRA), 15 - vm.DEBLOCK_QP_OFFSET)
    assert np.array_equal(low[0], y)


def test_deblocking_leaves_edges_between_uncoded_blocks_with_equal_vectors():
    y = np.full((16, 32), 100, np.uint8)
    y[:, 16:] = 103  # a small step on the macroblock edge
    chroma = [np.full((8, 16), 128, np.uint8)] * 2
    same = vm.deblock([y, *chroma], _decision(1, 2, vm.MODE_SKIP, mvs=[[[4, 4], [4, 4]]]), 30)
    assert np.array_equal(same[0], y)
    moved = vm.deblock(
        [y, *chroma], _decision(1, 2, vm.MODE_SKIP, mvs=[[[4, 4], [4, 4 + vm.DEBLOCK_MV_STEP]]]), 30
    )
    assert not np.array_equal(moved[0][:, 15:17], y[:, 15:17]) and np.array_equal(moved[0][:, :14], y[:, :14])
    levels = np.zeros((1, 2, 6, 64), np.int32)
    levels[0, 1, 2, 0] = 1  # luma block 2 (bottom left) of the right macroblock is coded
    coded = vm.deblock([y, *chroma], _decision(1, 2, vm.MODE_INTER, levels=levels), 30)
    assert np.array_equal(coded[0][:8], y[:8]) and not np.array_equal(coded[0][8:, 15:17], y[8:, 15:17])
    strong, vectors = np.array([[True, False, False]]), np.zeros((1, 3, 2), np.int64)
    across_x, across_y = vm.edge_flags(strong, vectors)
    assert across_x.tolist() == [[True, False]] and across_y.shape == (0, 3)


def _spec_block(decision, plane, i, j):
    """(strong, vector) of 8 x 8 block (i, j) of ``plane`` (0 luma, 1 Cb, 2 Cr), as the spec says."""
    r, c, b = (i // 2, j // 2, 2 * (i % 2) + (j % 2)) if plane == 0 else (i, j, 3 + plane)
    intra = decision.modes[r, c] == vm.MODE_INTRA
    return bool(intra or np.asarray(decision.levels)[r, c, b].any()), [int(v) for v in decision.mvs[r, c]]


def _spec_active(decision, plane, a, b):
    (sa, va), (sb, vb) = _spec_block(decision, plane, *a), _spec_block(decision, plane, *b)
    return sa or sb or max(abs(va[0] - vb[0]), abs(va[1] - vb[1])) >= vm.DEBLOCK_MV_STEP


def _spec_smooth(line, at, qp):
    """Filter the edge before index ``at`` of the sample list ``line`` in place."""
    t = min(qp + vm.DEBLOCK_QP_OFFSET, 51)
    alpha, beta, tc = vm.DEBLOCK_ALPHA[t], vm.DEBLOCK_BETA[t], vm.DEBLOCK_TC0[t] + 1
    p1, p0, q0, q1 = line[at - 2 : at + 2]
    if abs(p0 - q0) < alpha and abs(p1 - p0) < beta and abs(q1 - q0) < beta:
        delta = min(max(((q0 - p0) * 4 + (p1 - q1) + 4) >> 3, -tc), tc)
        line[at - 1], line[at] = min(max(p0 + delta, 0), 255), min(max(q0 - delta, 0), 255)


def _deblock_spec(planes, decision, qp):
    """formats/vqc-v1.md "Deblocking", line by line, edge by edge."""
    out = []
    for k, plane in enumerate(planes):
        x = [[int(v) for v in row] for row in plane]
        h, w = len(x), len(x[0])
        for col in range(8, w, 8):
            for y in range(h):
                if _spec_active(decision, k, (y // 8, col // 8 - 1), (y // 8, col // 8)):
                    _spec_smooth(x[y], col, qp)
        for row in range(8, h, 8):
            for c in range(w):
                if _spec_active(decision, k, (row // 8 - 1, c // 8), (row // 8, c // 8)):
                    column = [x[y][c] for y in range(h)]
                    _spec_smooth(column, row, qp)
                    x[row - 1][c], x[row][c] = column[row - 1], column[row]
        out.append(np.array(x, dtype=np.uint8))
    return out


def test_deblocking_matches_the_spec_on_random_frames():
    rng = np.random.default_rng(11)
    rows, cols = 2, 3
    for qp in (20, 30, 40, 51):
        # smooth planes with small steps, so that many edges pass the thresholds
        planes = [
            np.clip(128 + np.cumsum(rng.integers(-3, 4, (16 * rows // s, 16 * cols // s)), 1), 0, 255).astype(
                np.uint8
            )
            for s in (1, 2, 2)
        ]
        levels = np.where(rng.random((rows, cols, 6, 64)) < 0.02, rng.integers(-2, 3, (rows, cols, 6, 64)), 0)
        decision = _decision(
            rows,
            cols,
            rng.integers(0, 3, (rows, cols)),
            mvs=rng.integers(-6, 7, (rows, cols, 2)),
            levels=levels.astype(np.int32),
        )
        got = vm.deblock(planes, decision, qp)
        assert all(np.array_equal(a, b) for a, b in zip(got, _deblock_spec(planes, decision, qp))), qp
        assert not np.array_equal(got[0], planes[0])


def test_spec_states_the_deblocking_constants():
    spec = (REPO / "formats" / "vqc-v1.md").read_text()
    assert f"`DEBLOCK_QP_OFFSET` = {vm.DEBLOCK_QP_OFFSET}" in spec
    assert f"`DEBLOCK_MV_STEP` ({vm.DEBLOCK_MV_STEP})" in spec
    for name in ("DEBLOCK_ALPHA", "DEBLOCK_BETA", "DEBLOCK_TC0"):
        table = getattr(vm, name)
        assert not any(table[:16]) and f"`{name}` = {', '.join(map(str, table[16:]))}" in spec, name
    assert vm.MC2_MODEL_SHA256 == hashlib.sha256(b"vqcodec video payload 2 deblocked").digest()


def test_deblocking_models_are_named_by_their_filter():
    assert vm.MotionCodecModel("video-mc2", config={"deblock": True}).sha256 == vm.MC2_MODEL_SHA256
    assert vm.MotionCodecModel("video-mc1").sha256 == vm.MC_MODEL_SHA256
    assert vm.MotionCodecModel("video-mc2", config={"deblock": True}).codec().deblock
    with pytest.raises(ValueError, match="deblock"):
        vm.MotionCodecModel("x", config={"deblock": "yes"})


def test_qp_cascade_moves_each_frame_from_the_base_qp_within_range():
    s = vm.EncoderSettings()
    assert s.frame_qp(28, True, 0) == 28 + vm.KEY_QP_OFFSET
    assert [s.frame_qp(28, False, n) for n in range(9)] == [28 + o for o in vm.P_QP_OFFSETS] + [
        28 + vm.P_QP_OFFSETS[0]
    ]
    assert s.frame_qp(1, True, 0) == vm.QP_MIN and s.frame_qp(51, False, 0) == vm.QP_MAX
    flat = vm.EncoderSettings(key_qp_offset=0, p_qp_offsets=(0,))
    assert {flat.frame_qp(30, key, n) for key in (True, False) for n in range(8)} == {30}
    for bad in ({"p_qp_offsets": ()}, {"p_qp_offsets": (1.5,)}, {"key_qp_offset": True}):
        with pytest.raises(ValueError, match="qp offsets"):
            vm.EncoderSettings(**bad)


def test_rd_quantize_keeps_large_levels_drops_isolated_small_ones_and_decodes_exactly():
    scale, lam = vm.qscale(30), vm.rd_lambda(30)
    coef = np.zeros((3, 8, 8))
    coef[0, 0, 0] = 10.4 * scale  # a large DC: kept within one step of rounding
    coef[1, 7, 7] = 0.7 * scale  # one small high-frequency level: cheaper dropped
    coef[2] = 0.3 * scale  # below half a step everywhere: zero under any choice
    levels = vm.rd_quantize(coef, scale, lam)
    assert (
        levels.dtype == np.int32
        and levels[0, 0, 0] in (10, 11)
        and not levels[1].any()
        and not levels[2].any()
    )
    assert np.array_equal(vm.rd_quantize(-coef, scale, lam), -levels)
    plain = vm.quantize(coef, scale, 0.5)
    assert plain[1, 7, 7] == 1  # rounding would have coded it


def test_round_trip_with_translated_noise_uses_fractional_vectors_and_every_mode():
    rng = np.random.default_rng(5)
    big = rng.integers(0, 256, (120, 140)).astype(np.float64)
    smooth = (big + np.roll(big, 1, 0) + np.roll(big, 1, 1) + np.roll(big, (1, 1), (0, 1))) / 4
    frames = []
    for t in range(4):
        y = np.clip(smooth[10 + 2 * t : 10 + 2 * t + 45, 7 + 3 * t : 7 + 3 * t + 70], 0, 255).astype(np.uint8)
        if t == 2:
            y[:16, :16] = rng.integers(0, 256, (16, 16))  # new content: intra
        c = np.full((23, 35), 128, dtype=np.uint8)
        frames.append([y, c, c.copy()])
    codec = vm.MotionCompensatedCodec()
    _, modes, state = _round_trip(frames, 70, 45, (28,), codec=codec)
    seen = np.concatenate([m.reshape(-1) for m in modes[1:]])
    assert set(seen.tolist()) >= {vm.MODE_INTER, vm.MODE_INTRA}
    still = [frames[0]] * 3
    _, still_modes, _ = _round_trip(still, 70, 45, (28,))
    assert np.all(still_modes[2] == vm.MODE_SKIP)


def test_round_trip_with_escaped_levels_and_extreme_qps():
    rng = np.random.default_rng(6)
    frames = [
        [
            rng.integers(0, 256, (32, 32), dtype=np.uint8),
            rng.integers(0, 256, (16, 16), dtype=np.uint8),
            rng.integers(0, 256, (16, 16), dtype=np.uint8),
        ]
        for _ in range(3)
    ]
    payloads, _, _ = _round_trip(frames, 32, 32, (0, 51, 0))
    assert len(payloads[0]) > len(payloads[1])


# --- damaged input ----------------------------------------------------------------------------


def test_damaged_payloads_raise_format_errors_never_other_exceptions():
    frames = orbit(2, 64, 48)
    codec = vm.MotionCompensatedCodec()
    key, state = codec.compress(frames[0], 64, 48, None, 30)
    inter, _ = codec.compress(frames[1], 64, 48, state, 30)
    _, dec_state = codec.decompress(key, 64, 48, None)
    with pytest.raises(FormatError, match="frame type"):
        codec.decompress(bytes([7]) + key[1:], 64, 48, None)
    with pytest.raises(FormatError, match="qp"):
        codec.decompress(key[:1] + bytes([60]) + key[2:], 64, 48, None)
    with pytest.raises(FormatError, match="slice rows"):
        codec.decompress(key[:2] + bytes([0]) + key[3:], 64, 48, None)
    with pytest.raises(FormatError, match="reference"):
        codec.decompress(inter, 64, 48, None)
    with pytest.raises(FormatError, match="after the last slice"):
        codec.decompress(key + b"\0", 64, 48, None)
    rng = np.random.default_rng(7)
    for payload, state in ((key, None), (inter, dec_state)):
        for cut in range(0, len(payload), max(1, len(payload) // 25)):
            with pytest.raises(VQCError):
                codec.decompress(payload[:cut], 64, 48, state)
        for _ in range(40):
            bad = bytearray(payload)
            pos = int(rng.integers(3, len(bad)))
            bad[pos] ^= 1 << int(rng.integers(0, 8))
            try:
                codec.decompress(bytes(bad), 64, 48, state)
            except VQCError:
                pass
    # a failed decode leaves the caller's state usable
    out, _ = codec.decompress(inter, 64, 48, dec_state)
    assert out[0].shape == (48, 64)


# --- golden vector ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, sha256, deblock",
    [(vm.MC_MODEL_NAME, vm.MC_MODEL_SHA256, False), (vm.MC2_MODEL_NAME, vm.MC2_MODEL_SHA256, True)],
)
def test_golden_vector_decodes_bit_exactly(name, sha256, deblock):
    from vqcodec.container import ContainerReader

    expect = json.loads((VECTORS / "manifest.json").read_text())["vectors"][name]
    codec = vm.MotionCompensatedCodec(deblock=deblock)
    with ContainerReader(str(VECTORS / expect["file"])) as reader:
        header = reader.header
        assert header.model_name == name and bytes(header.model_sha256) == sha256
        params = json.loads(header.codec_params)
        assert params["v"] == vm.MC_CODEC_PARAMS_VERSION and params["temporal"] == vm.MC_TEMPORAL_MODE
        assert (header.width, header.height, header.pixel_format) == (
            expect["width"],
            expect["height"],
            "yuv420p",
        )
        state = None
        frames = list(reader.frames())
    assert len(frames) == len(expect["frames"])
    for frame, want in zip(frames, expect["frames"]):
        assert frame.key == want["key"] and frame.payload[0] == (
            vm.FRAME_KEY if want["key"] else vm.FRAME_PREDICTED
        )
        assert frame.payload[1] == want["qp"] and len(frame.payload) == want["payload_bytes"]
        planes, state = codec.decompress(frame.payload, header.width, header.height, state)
        digest = hashlib.sha256(b"".join(np.ascontiguousarray(p).tobytes() for p in planes)).hexdigest()
        assert digest == want["planes_sha256"]
