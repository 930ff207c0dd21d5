import json

import numpy as np
import pytest

from vqcodec.entropy import context as ctx
from vqcodec.entropy.priors import FactorizedPrior, SpatialContextPrior, load_prior
from vqcodec.errors import FormatError


def _smooth_codes(rng, n, streams, shape, k):
    """Codes with spatial repetition (blocky maps) so that contexts have something to learn."""
    out = []
    for _ in range(n):
        maps = []
        for _s in range(streams):
            block = rng.integers(1, 4)
            small = rng.integers(0, k, size=(shape[0] // block + 1, shape[1] // block + 1))
            small = np.minimum(small, rng.geometric(0.05, size=small.shape) - 1) % k
            m = np.kron(small, np.ones((block, block), dtype=np.int64))[: shape[0], : shape[1]]
            noise = rng.random(shape) < 0.2
            maps.append(np.where(noise, rng.integers(0, k, size=shape), m))
        out.append(np.stack(maps))
    return out


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (5, 1), (2, 2), (9, 13), (16, 16), (33, 20)])
def test_pass_plan_covers_once_and_is_causal(shape):
    h, w = shape
    for levels in {0, 1, ctx.num_levels(h, w, 6), 2}:
        seen = np.full(shape, -1)
        for i, p in enumerate(ctx.pass_plan(h, w, levels)):
            assert np.all(seen[p.rows, p.cols] == -1)
            for dr, dc in p.offsets:
                r, c = p.rows + dr, p.cols + dc
                ok = (r >= 0) & (r < h) & (c >= 0) & (c < w)
                assert np.all(seen[r[ok], c[ok]] >= 0), "neighbour not decoded yet"
                assert np.all(seen[r[ok], c[ok]] < i)
            seen[p.rows, p.cols] = i
        assert np.all(seen >= 0)


def test_to_front_is_a_permutation():
    rng = np.random.default_rng(0)
    for k in (1, 2, 3, 5, 64):
        n = 200
        cand = rng.integers(0, k, size=(n, ctx.MAX_CANDIDATES))
        cand[rng.random(cand.shape) < 0.3] = ctx.NO_CANDIDATE
        for row in cand:  # candidates are distinct
            seen = set()
            for j, v in enumerate(row):
                if v in seen:
                    row[j] = ctx.NO_CANDIDATE
                seen.add(v)
        for x in range(k):
            codes = np.full(n, x)
            y = ctx.to_front(codes, cand, k)
            assert np.all((y >= 0) & (y < k))
            assert np.array_equal(ctx.from_front(y, cand, k), codes)
        first = cand[:, 0]
        has = first < ctx.NO_CANDIDATE
        assert np.all(ctx.to_front(np.where(has, first, 0), cand, k)[has] == 0)


def test_context_prior_round_trips():
    rng = np.random.default_rng(1)
    alphabet = (64, 16, 3, 1)
    train = _smooth_codes(rng, 10, 4, (12, 18), 64)
    train = [np.stack([c[s] % k for s, k in enumerate(alphabet)]) for c in train]
    prior = SpatialContextPrior.fit(train, alphabet, min_count=8)
    test = _smooth_codes(rng, 3, 4, (12, 18), 64)
    for c in test:
        c = np.stack([c[s] % k for s, k in enumerate(alphabet)])
        for streams in range(1, 5):
            payload = prior.encode(c[:streams])
            out = prior.decode(payload, (streams, 12, 18))
            assert out.dtype == np.int32 and np.array_equal(out, c[:streams])
            bits = prior.ideal_bits(c[:streams])
            assert bits / 8 <= len(payload) <= bits / 8 + 16
    for shape in [(2, 1, 1), (1, 0, 4), (2, 3, 1), (1, 40, 3)]:
        c = rng.integers(0, 3, size=shape)
        assert np.array_equal(prior.decode(prior.encode(c), shape), c)


def test_context_prior_beats_factorized_on_structured_codes():
    rng = np.random.default_rng(2)
    alphabet = (128, 128)
    train = _smooth_codes(rng, 15, 2, (16, 16), 128)
    test = _smooth_codes(rng, 5, 2, (16, 16), 128)
    fac = FactorizedPrior.fit(train, alphabet)
    con = SpatialContextPrior.fit(train, alphabet, min_count=16)
    assert sum(con.ideal_bits(c) for c in test) < 0.9 * sum(fac.ideal_bits(c) for c in test)


def test_stage_selection_falls_back_to_factorized():
    rng = np.random.default_rng(3)
    alphabet = (256,)
    train = [rng.integers(0, 256, size=(1, 16, 16)) for _ in range(10)]  # i.i.d.: nothing to learn
    prior = SpatialContextPrior.fit(train, alphabet)
    assert prior.stage_modes == ("factorized",)
    c = train[0]
    assert np.array_equal(prior.decode(prior.encode(c), c.shape), c)


def test_reference_coding():
    rng = np.random.default_rng(4)
    alphabet = (64, 64)
    frames = _smooth_codes(rng, 12, 2, (10, 14), 64)
    # next frames mostly copy the previous one
    nxt = [np.where(rng.random(f.shape) < 0.8, f, rng.integers(0, 64, size=f.shape)) for f in frames]
    prior = SpatialContextPrior.fit(frames + nxt, alphabet, references=[None] * 12 + frames, min_count=8)
    assert prior.config()["reference"] is True
    with_ref = sum(prior.ideal_bits(n, reference=f) for f, n in zip(frames, nxt))
    without = sum(prior.ideal_bits(n) for n in nxt)
    assert with_ref < 0.8 * without
    payload = prior.encode(nxt[0], reference=frames[0])
    assert np.array_equal(prior.decode(payload, nxt[0].shape, reference=frames[0]), nxt[0])
    with pytest.raises(FormatError, match="flags"):
        prior.decode(payload, nxt[0].shape)  # reference required
    plain = SpatialContextPrior.fit(frames, alphabet)
    with pytest.raises(ValueError):
        plain.encode(nxt[0], reference=frames[0])


def test_context_state_dict_round_trip():
    rng = np.random.default_rng(5)
    alphabet = (32, 8)
    train = [np.stack([c[0], c[1] % 8]) for c in _smooth_codes(rng, 6, 2, (8, 8), 32)]
    prior = SpatialContextPrior.fit(train, alphabet, min_count=4)
    arrays = prior.state_dict()
    assert all(np.issubdtype(a.dtype, np.integer) for a in arrays.values())
    again = load_prior(json.loads(json.dumps(prior.config())), arrays)
    c = np.stack([_smooth_codes(rng, 1, 1, (8, 8), 32)[0][0], rng.integers(0, 8, (8, 8))])
    assert again.encode(c) == prior.encode(c)
    assert prior.table_bytes() == sum(a.nbytes for a in arrays.values())


def test_fit_mixed_shapes_is_order_invariant():
    rng = np.random.default_rng(6)
    alphabet = (40, 40)
    items = _smooth_codes(rng, 4, 2, (8, 12), 40) + _smooth_codes(rng, 3, 2, (5, 5), 40) \
        + _smooth_codes(rng, 2, 2, (1, 9), 40)
    a = SpatialContextPrior.fit(items, alphabet, min_count=4, select_stages=False)
    b = SpatialContextPrior.fit(items[::-1], alphabet, min_count=4, select_stages=False)
    assert np.array_equal(a.tables.freqs, b.tables.freqs)
    assert np.array_equal(a.context_table, b.context_table) and np.array_equal(a.group_of, b.group_of)
    for c in items:
        assert np.array_equal(a.decode(a.encode(c), c.shape), c)
