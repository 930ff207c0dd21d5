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


# (layout, sign_context, predicted channels of groups 0 and 1)
VARIANTS = [(layout, False, None) for layout in sorted(LAYOUT_PASSES)] + [
    (1, True, None),
    (3, True, None),
    (3, True, [[0], [0, 1, 2]]),
    (2, False, [[], [1]]),
]


def _variant_id(v):
    return f"layout{v[0]}" + ("-signs" if v[1] else "") + ("-predicted" if v[2] else "")


@pytest.fixture(scope="module", params=VARIANTS, ids=_variant_id)
def prior(request):
    rng = np.random.default_rng(0)
    codes = [[_smooth_codes(rng, 9, 7) for _ in range(12)] for _ in range(2)]
    layout, sign_context, predicted = request.param
    return CoefficientContextPrior.fit(codes, layout=layout, sign_context=sign_context, predicted=predicted)


def _ramp_codes(rng, h, w):
    """Codes whose first channels are large smooth ramps (DC-like), the rest small noise."""
    codes = _codes(rng, h, w, scale=1.0)
    i, j = np.mgrid[0:h, 0:w]
    for c in range(3):
        slope = rng.normal(size=2) * 3
        codes[c] = np.round(40 + slope[0] * i + slope[1] * j + rng.normal(size=(h, w)) * 0.7).astype(np.int64)
    return codes


def _smooth_codes(rng, h, w, scale=2.0):
    """Codes whose first channels have spatially coherent signs (as smooth pictures give)."""
    codes = _codes(rng, h, w, scale)
    field = np.sign(np.cumsum(np.cumsum(rng.normal(size=(3, h, w)), axis=1), axis=2))
    codes[:3] = np.abs(codes[:3]) * np.where(field == 0, 1, field)
    return codes


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


def test_sign_context_is_kept_in_the_config_and_uniform_priors_keep_their_released_config():
    rng = np.random.default_rng(4)
    codes = [[_smooth_codes(rng, 8, 8) for _ in range(6)]]
    plain = CoefficientContextPrior.fit(codes, layout=3)
    signed = CoefficientContextPrior.fit(codes, layout=3, sign_context=True)
    assert "sign_context" not in plain.config() and "sign_freqs" not in plain.state_dict()
    assert signed.config()["sign_context"] == 1
    again = load_prior(signed.config(), signed.state_dict())
    assert again.sign_context and np.array_equal(again.sign_freqs, signed.sign_freqs)
    sample = _smooth_codes(rng, 8, 8)
    assert again.encode(sample, group=0) == signed.encode(sample, group=0)
    # the magnitudes are the same symbols under the same tables: only the sign bits differ
    assert np.array_equal(plain.freqs, signed.freqs)
    assert signed.ideal_bits(sample, group=0) < plain.ideal_bits(sample, group=0)
    state = signed.state_dict()
    with pytest.raises(ValueError, match="sign_freqs"):
        load_prior(signed.config(), {"freqs": state["freqs"]})
    with pytest.raises(ValueError, match="sign_context"):
        load_prior(dict(signed.config(), sign_context=2), state)
    with pytest.raises(ValueError, match="sign_freqs must be"):
        CoefficientContextPrior(CHANNELS, 1, signed.freqs, layout=3, sign_freqs=signed.sign_freqs[:-1])


@pytest.mark.parametrize("layout", sorted(LAYOUT_PASSES))
def test_sign_tables_read_only_signs_of_earlier_passes(layout):
    # the decoder knows a pass's signs only after decoding it, so flipping the signs of pass p
    # and later must leave the tables of pass p unchanged (and pass 0 has no sign context)
    rng = np.random.default_rng(layout)
    prior = CoefficientContextPrior.fit([[_smooth_codes(rng, 9, 11)]], layout=layout, sign_context=True)
    codes = _smooth_codes(rng, 13, 10)
    masks = pass_masks(13, 10, layout)
    for p, mask in enumerate(masks):
        flipped = codes.copy()
        later = np.zeros_like(mask)
        for q in range(p, len(masks)):
            later |= masks[q]
        flipped[:, later] *= -1
        before = prior.sign_bits(codes, group=0, negative=np.zeros(codes.shape, bool))
        after = prior.sign_bits(flipped, group=0, negative=np.zeros(codes.shape, bool))
        assert np.array_equal(before[:, mask], after[:, mask])
        if p == 0:
            assert np.unique(before[:, mask][0]).size == 1  # one table per channel


@pytest.mark.parametrize("layout", sorted(LAYOUT_PASSES))
def test_prediction_round_trips_and_reads_only_earlier_passes(layout):
    rng = np.random.default_rng(10 + layout)
    codes = [[_ramp_codes(rng, 9, 7) for _ in range(4)]]
    prior = CoefficientContextPrior.fit(codes, layout=layout, predicted=[[0, 2]])
    sample = _ramp_codes(rng, 11, 13)
    residual = prior.predict(sample, group=0)
    assert np.array_equal(residual[[1, 3]], sample[[1, 3]])  # channels not listed stay as they are
    assert np.array_equal(prior.unpredict(residual, group=0), sample)
    masks = pass_masks(11, 13, layout)
    first = masks[0]
    assert np.array_equal(residual[0][first], sample[0][first])  # the first pass has no prediction
    # elsewhere the ramp is mostly predicted
    assert np.abs(residual[0][~first]).sum() < np.abs(sample[0][~first]).sum() / 4
    for p, mask in enumerate(masks):
        # changing the codes of pass p and later must leave pass p's prediction unchanged
        later = np.zeros_like(mask)
        for q in range(p, len(masks)):
            later |= masks[q]
        changed = sample.copy()
        changed[:, later] += 5
        moved = prior.predict(changed, group=0) - changed
        assert np.array_equal(moved[:, mask], (residual - sample)[:, mask])


def test_predicted_priors_code_ramps_in_fewer_bits_and_keep_their_config():
    rng = np.random.default_rng(11)
    codes = [[_ramp_codes(rng, 12, 12) for _ in range(8)], [_codes(rng, 12, 12) for _ in range(8)]]
    plain = CoefficientContextPrior.fit(codes, layout=3, sign_context=True)
    chosen = CoefficientContextPrior.fit_with_prediction(codes, layout=3, sign_context=True, candidates=4)
    predicted = chosen.config()["predicted"]
    assert predicted[0] == [0, 1, 2] and predicted[1] == []  # ramps predicted, noise not
    assert "predicted" not in plain.config()
    sample = _ramp_codes(rng, 12, 12)
    assert chosen.ideal_bits(sample, group=0) < 0.8 * plain.ideal_bits(sample, group=0)
    bits = chosen.channel_bits(sample, group=0)
    assert bits.shape == (CHANNELS,) and bits.sum() == pytest.approx(chosen.ideal_bits(sample, group=0))
    again = load_prior(chosen.config(), chosen.state_dict())
    assert again.encode(sample, group=0) == chosen.encode(sample, group=0)
    assert np.array_equal(again.decode(chosen.encode(sample, group=0), sample.shape, group=0), sample)
    for bad in ([[0]], [[1, 0], []], [[0], [CHANNELS]], "0", [[True], []]):
        with pytest.raises(ValueError, match="predicted"):
            load_prior(dict(chosen.config(), predicted=bad), chosen.state_dict())


def test_predicted_residuals_beyond_the_symbols_are_refused_both_ways():
    prior = CoefficientContextPrior.fit([[np.zeros((CHANNELS, 4, 4), np.int64)]], layout=1, predicted=[[0]])
    codes = np.zeros((CHANNELS, 4, 4), dtype=np.int64)
    codes[0, ::2, ::2] = MAX_MAGNITUDE  # pass-0 positions of layout 1 at i, j even
    codes[0, 0, 1] = -MAX_MAGNITUDE  # residual -MAX - MAX
    with pytest.raises(ValueError, match="residuals"):
        prior.encode(codes, group=0)
    # a payload whose residuals, once the prediction is added back, leave the code range
    big = np.zeros_like(codes)
    big[0, 0, 0] = MAX_MAGNITUDE
    big[0, 0, 1] = MAX_MAGNITUDE  # residual at (0, 1): its prediction is MAX, so its code is 2 MAX
    plain = CoefficientContextPrior.fit([[np.zeros((CHANNELS, 4, 4), np.int64)]], layout=1)
    forged = CoefficientContextPrior(CHANNELS, 1, plain.freqs, layout=1, predicted=[[0]])
    payload = plain.encode(big, group=0)
    with pytest.raises(FormatError, match="beyond"):
        forged.decode(payload, big.shape, group=0)


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
            coded_values = prior.predict(codes, group=group)
            symbols, k, mantissa = magnitude_symbols(coded_values)
            fast = prior._magnitude_batches(symbols, group)
            reference = prior._reference_magnitude_batches(symbols, group)
            assert len(fast) == len(reference)
            for (fs, ft), (rs, rt) in zip(fast, reference, strict=True):
                assert np.array_equal(fs, rs) and np.array_equal(ft, rt)
            coded = prior.coded_channels(codes)
            ref_body = encode_batches(
                prior._reference_magnitude_batches(symbols[:coded], group)
                + prior._raw_batches(coded_values[:coded], k[:coded], mantissa[:coded], group),
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
    coded = prior.predict(codes, group=1)
    tables = prior.magnitude_tables(coded, group=1)
    assert tables.shape == codes.shape
    signs = prior.sign_bits(coded, group=1)
    assert signs.shape == codes.shape and (prior.sign_context or (signs == 1).all())
    total = float(prior.code_cost(tables, np.abs(coded), signs).sum())
    assert total == pytest.approx(prior.ideal_bits(codes, group=1), rel=1e-9)


def test_rd_quantize_limits_zero_lambda_nearest_huge_lambda_cheapest(prior):
    rng = np.random.default_rng(6)
    coefficients = rng.laplace(size=(CHANNELS, 7, 9)) * 3.0
    step = 0.7
    nearest = np.sign(coefficients) * np.floor(np.abs(coefficients) / step + 0.5)
    dead = np.sign(coefficients) * np.floor(np.abs(coefficients) / step + 0.35)
    # predicted channels keep dead-zone rounding (their choices move their neighbours' residuals)
    kept = prior.predicted[0][:, None, None]
    assert np.array_equal(
        prior.rd_quantize(coefficients, step, group=0, lam=0.0), np.where(kept, dead, nearest)
    )
    # a huge lambda keeps the cheapest candidate: mostly zeros, far fewer bits
    cheapest = prior.rd_quantize(coefficients, step, group=0, lam=1e9)
    assert prior.ideal_bits(cheapest, group=0) < 0.5 * prior.ideal_bits(nearest.astype(np.int64), group=0)
    assert np.count_nonzero(cheapest) < 0.5 * np.count_nonzero(nearest)
    # no passes: the dead-zone start
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
