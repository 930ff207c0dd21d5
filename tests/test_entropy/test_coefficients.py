"""CoefficientContextPrior (payload kind 3): exact round trips, escapes, corruption, bad arguments."""

from __future__ import annotations

import numpy as np
import pytest

from vqcodec.entropy import load_prior
from vqcodec.entropy.coefficients import (
    ESCAPE,
    LAYOUT_PASSES,
    MAX_MAGNITUDE,
    PREVIOUS_CHANNEL,
    SOURCE_OFFSETS,
    CoefficientContextPrior,
    magnitude_symbols,
    pass_masks,
)
from vqcodec.errors import FormatError, VQCError

CHANNELS = 24


def _codes(rng, h, w, scale=2.0):
    decay = np.exp(-np.arange(CHANNELS) / 6.0)[:, None, None]
    return np.round(rng.laplace(size=(CHANNELS, h, w)) * scale * decay).astype(np.int64)


@pytest.fixture(scope="module", params=sorted(LAYOUT_PASSES), ids=lambda layout: f"layout{layout}")
def prior(request):
    rng = np.random.default_rng(0)
    codes = [[_codes(rng, 9, 7) for _ in range(12)] for _ in range(2)]
    return CoefficientContextPrior.fit(codes, layout=request.param)


@pytest.mark.parametrize("layout", sorted(LAYOUT_PASSES))
@pytest.mark.parametrize("shape", [(13, 11), (8, 8), (1, 5), (6, 1)])
def test_pass_layouts_partition_the_grid_and_read_only_earlier_passes(layout, shape):
    # every same-channel context position must be decoded in an earlier pass: the encoder sees
    # the whole plane, the decoder only what it has decoded, so a later-pass read would desync
    masks = pass_masks(*shape, layout)
    assert len(masks) == len(LAYOUT_PASSES[layout])
    owner = np.full(shape, -1)
    for index, mask in enumerate(masks):
        assert not (owner[mask] >= 0).any()
        owner[mask] = index
    assert (owner >= 0).all()
    for index, source in enumerate(LAYOUT_PASSES[layout]):
        if source == PREVIOUS_CHANNEL:
            continue
        for i, j in zip(*np.nonzero(masks[index]), strict=True):
            for di, dj in SOURCE_OFFSETS[source]:
                if 0 <= i + di < shape[0] and 0 <= j + dj < shape[1]:
                    assert owner[i + di, j + dj] < index


def test_layout_is_kept_in_the_config_and_layout_one_keeps_its_released_config():
    rng = np.random.default_rng(3)
    codes = [[_codes(rng, 6, 6) for _ in range(4)]]
    one = CoefficientContextPrior.fit(codes)
    three = CoefficientContextPrior.fit(codes, layout=3)
    assert "layout" not in one.config() and three.config()["layout"] == 3
    again = load_prior(three.config(), three.state_dict())
    assert again.layout == 3 and again.context_tables == three.context_tables
    sample = _codes(rng, 6, 6)
    assert again.encode(sample, group=0) == three.encode(sample, group=0)
    assert three.encode(sample, group=0) != one.encode(sample, group=0)
    with pytest.raises(ValueError, match="layout"):
        load_prior(dict(three.config(), layout=9), three.state_dict())
    with pytest.raises(ValueError, match="layout"):
        CoefficientContextPrior.fit(codes, layout=0)


def test_magnitude_symbols_match_the_documented_exp_golomb_split():
    values = np.array([0, 1, -13, 14, 15, -16, 17, 100, -MAX_MAGNITUDE])
    symbols, k, mantissa = magnitude_symbols(values)
    a = np.abs(values)
    assert list(symbols[:3]) == [0, 1, 13]
    big = a >= ESCAPE
    assert np.array_equal(a[big], ESCAPE - 1 + (1 << k[big]) + mantissa[big])
    assert np.all(mantissa[big] < (1 << k[big])) and np.all(symbols[big] == ESCAPE + k[big])


@pytest.mark.parametrize("shape", [(9, 7), (1, 1), (2, 5), (16, 3)])
def test_round_trip_is_exact_including_escapes_and_zero_tails(prior, shape):
    rng = np.random.default_rng(sum(shape))
    codes = _codes(rng, *shape)
    codes[0, 0, 0] = MAX_MAGNITUDE
    codes[1, -1, -1] = -ESCAPE
    codes[CHANNELS - 5 :] = 0  # an all-zero tail is not coded
    for group in (0, 1):
        payload = prior.encode(codes, group=group)
        assert np.array_equal(prior.decode(payload, (CHANNELS, *shape), group=group), codes)


def test_all_zero_codes_cost_almost_nothing(prior):
    zeros = np.zeros((CHANNELS, 8, 8), dtype=np.int64)
    payload = prior.encode(zeros, group=0)
    assert len(payload) < 24 and not prior.decode(payload, zeros.shape, group=0).any()


def test_ideal_bits_track_the_payload_size(prior):
    codes = _codes(np.random.default_rng(5), 12, 12)
    payload = prior.encode(codes, group=1)
    assert abs(prior.ideal_bits(codes, group=1) / 8 - len(payload)) < 0.05 * len(payload) + 16


def test_tables_survive_state_dict_and_config(prior):
    again = load_prior(prior.config(), prior.state_dict())
    codes = _codes(np.random.default_rng(7), 6, 6)
    assert again.encode(codes, group=0) == prior.encode(codes, group=0)


def test_corrupted_and_truncated_payloads_raise_vqc_errors(prior):
    codes = _codes(np.random.default_rng(9), 9, 7)
    payload = prior.encode(codes, group=0)
    rng = np.random.default_rng(1)
    for _ in range(40):
        broken = bytearray(payload)
        broken[int(rng.integers(0, len(broken)))] ^= 1 << int(rng.integers(0, 8))
        try:
            out = prior.decode(bytes(broken), codes.shape, group=0)
        except VQCError:
            continue
        assert out.shape == codes.shape  # a flip the coder cannot detect still gives codes
    for cut in (0, 3, len(payload) // 2, len(payload) - 1):
        with pytest.raises(VQCError):
            prior.decode(payload[:cut], codes.shape, group=0)
    with pytest.raises(FormatError, match="after the payload"):
        prior.decode(payload + b"\0", codes.shape, group=0)


def test_bad_arguments_are_value_errors(prior):
    codes = np.zeros((CHANNELS, 2, 2), dtype=np.int64)
    with pytest.raises(ValueError, match="group"):
        prior.encode(codes, group=2)
    with pytest.raises(ValueError, match="codes must be"):
        prior.encode(codes[:3], group=0)
    with pytest.raises(ValueError, match="lie in"):
        prior.encode(codes + MAX_MAGNITUDE + 1, group=0)
    payload = prior.encode(codes, group=0)
    with pytest.raises(FormatError, match="expected"):
        prior.decode(payload, (CHANNELS, 3, 2), group=0)


@pytest.mark.parametrize("shape", [(24, 9, 7), (24, 1, 1), (24, 2, 13), (24, 16, 11)])
def test_fast_contexts_give_the_reference_batches_and_payload(prior, shape):
    # the gather-based context path must reproduce the full-plane mask reference exactly: same
    # (symbols, tables) batches in the same order, hence byte-identical payloads and codes
    from vqcodec.entropy.coder import encode_batches
    from vqcodec.entropy.payload import build_payload

    rng = np.random.default_rng(shape[1] * 31 + shape[2])
    for scale in (0.4, 2.0, 40.0):
        codes = np.round(rng.laplace(size=shape) * scale).astype(np.int64)
        codes[-2:] = 0  # a zero tail, so coded_channels < C
        for group in range(prior.num_groups):
            symbols, k, mantissa = magnitude_symbols(codes)
            fast = prior._magnitude_batches(symbols, group)
            reference = prior._reference_magnitude_batches(symbols, group)
            assert len(fast) == len(reference)
            for (fs, ft), (rs, rt) in zip(fast, reference, strict=True):
                assert np.array_equal(fs, rs) and np.array_equal(ft, rt)
            coded = prior.coded_channels(codes)
            ref_body = encode_batches(
                prior._reference_magnitude_batches(symbols[:coded], group)
                + prior._raw_batches(codes[:coded], k[:coded], mantissa[:coded]),
                prior.tables,
            )
            payload = prior.encode(codes, group=group)
            assert payload == build_payload(prior.kind, 0, (coded, shape[1], shape[2]), ref_body)
            assert np.array_equal(prior.decode(payload, codes.shape, group=group), codes)


# --- rate-distortion quantization (the encoder's effort 1) ---------------------------------------


def test_magnitude_tables_and_code_cost_add_up_to_the_ideal_bits(prior):
    rng = np.random.default_rng(5)
    codes = _codes(rng, 8, 6, scale=4.0)
    codes[-1, 0, 0] = 3  # every channel coded, so nothing is trimmed from the payload
    tables = prior.magnitude_tables(codes, group=1)
    assert tables.shape == codes.shape
    total = float(prior.code_cost(tables, np.abs(codes)).sum())
    assert total == pytest.approx(prior.ideal_bits(codes, group=1), rel=1e-9)


def test_rd_quantize_limits_zero_lambda_nearest_huge_lambda_cheapest(prior):
    rng = np.random.default_rng(6)
    coefficients = rng.laplace(size=(CHANNELS, 7, 9)) * 3.0
    step = 0.7
    nearest = np.sign(coefficients) * np.floor(np.abs(coefficients) / step + 0.5)
    assert np.array_equal(prior.rd_quantize(coefficients, step, group=0, lam=0.0), nearest)
    # a huge lambda keeps the cheapest candidate: mostly zeros, far fewer bits
    cheapest = prior.rd_quantize(coefficients, step, group=0, lam=1e9)
    assert prior.ideal_bits(cheapest, group=0) < 0.5 * prior.ideal_bits(nearest.astype(np.int64), group=0)
    assert np.count_nonzero(cheapest) < 0.5 * np.count_nonzero(nearest)
    # no passes: the dead-zone start
    dead = np.sign(coefficients) * np.floor(np.abs(coefficients) / step + 0.35)
    assert np.array_equal(prior.rd_quantize(coefficients, step, group=0, passes=0), dead)


def test_rd_quantize_lowers_the_rd_cost_and_its_codes_round_trip(prior):
    rng = np.random.default_rng(7)
    step, lam = 0.5, 0.15
    coefficients = _codes(rng, 9, 7, scale=2.0) * step + rng.uniform(-0.5, 0.5, size=(CHANNELS, 9, 7)) * step

    def rd_cost(codes):
        error = ((coefficients / step - codes) ** 2).sum()
        return error + lam * prior.ideal_bits(codes, group=0)

    dead = prior.rd_quantize(coefficients, step, group=0, passes=0)
    chosen = prior.rd_quantize(coefficients, step, group=0, lam=lam)
    assert rd_cost(chosen) < rd_cost(dead)
    shape = (CHANNELS, 9, 7)
    assert np.array_equal(prior.decode(prior.encode(chosen, group=0), shape, group=0), chosen)
    with pytest.raises(ValueError, match="coefficients must be"):
        prior.rd_quantize(coefficients[:3], step, group=0)
    with pytest.raises(ValueError, match="step > 0"):
        prior.rd_quantize(coefficients, 0.0, group=0)
