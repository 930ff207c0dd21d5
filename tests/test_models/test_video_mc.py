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


def test_golden_vector_decodes_bit_exactly():
    from vqcodec.container import ContainerReader

    expect = json.loads((VECTORS / "manifest.json").read_text())["vectors"]["video-mc1"]
    codec = vm.MotionCompensatedCodec()
    with ContainerReader(str(VECTORS / expect["file"])) as reader:
        header = reader.header
        assert header.model_name == vm.MC_MODEL_NAME and bytes(header.model_sha256) == vm.MC_MODEL_SHA256
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
