import subprocess
import sys

import numpy as np
import pytest

from vqcodec.entropy import FactorizedPrior, load_prior
from vqcodec.entropy.payload import FLAG_REFERENCE, build_payload, parse_header, split_payload
from vqcodec.errors import FormatError, LimitError, TruncatedError, UnsupportedVersionError


def _codes(rng, n, shape, alphabet, skew=0.02):
    out = []
    for _ in range(n):
        c = np.stack([np.minimum(rng.geometric(skew, size=shape) - 1, k - 1) for k in alphabet])
        out.append(c)
    return out


def test_no_torch_in_entropy():
    code = (
        "import sys, vqcodec.entropy, vqcodec.entropy.priors, vqcodec.entropy.coder, "
        "vqcodec.entropy.payload, vqcodec.entropy.cdf\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_factorized_round_trip_and_prefix_streams():
    rng = np.random.default_rng(0)
    alphabet = (512, 64, 2, 1)
    codes = _codes(rng, 4, (12, 17), alphabet)
    prior = FactorizedPrior.fit(codes, alphabet)
    c = codes[0]
    payload = prior.encode(c)
    assert np.array_equal(prior.decode(payload, c.shape), c)
    for s in (1, 2, 3):
        p = prior.encode(c[:s])
        out = prior.decode(p, (s, 12, 17))
        assert out.dtype == np.int32 and np.array_equal(out, c[:s])
    # an empty map still makes a valid payload
    empty = np.zeros((2, 0, 5), dtype=np.int64)
    assert prior.decode(prior.encode(empty), (2, 0, 5)).shape == (2, 0, 5)
    # ideal bits are the cross-entropy; the payload costs at most header + a few bytes more
    bits = prior.ideal_bits(c)
    assert bits / 8 <= len(payload) <= bits / 8 + 16


def test_state_dict_round_trip_is_exact():
    rng = np.random.default_rng(1)
    alphabet = (300, 7)
    prior = FactorizedPrior.fit(_codes(rng, 2, (8, 8), alphabet), alphabet, smoothing=0.1, precision=15)
    arrays = prior.state_dict()
    assert all(np.issubdtype(a.dtype, np.integer) for a in arrays.values())
    import json

    config = json.loads(json.dumps(prior.config()))
    again = load_prior(config, arrays)
    assert np.array_equal(again.tables.freqs, prior.tables.freqs)
    c = _codes(rng, 1, (8, 8), alphabet)[0]
    assert again.encode(c) == prior.encode(c)
    with pytest.raises(ValueError):
        load_prior({**config, "kind": "nope"}, arrays)


def test_reference_unsupported_and_bad_codes():
    rng = np.random.default_rng(2)
    alphabet = (16,)
    prior = FactorizedPrior.fit(_codes(rng, 1, (4, 4), alphabet), alphabet)
    c = _codes(rng, 1, (4, 4), alphabet)[0]
    with pytest.raises(ValueError):
        prior.encode(c, reference=c)
    with pytest.raises(ValueError):
        prior.encode(np.full((1, 4, 4), 16))
    with pytest.raises(ValueError):
        prior.encode(np.zeros((2, 4, 4), dtype=int))  # more streams than the prior has


def test_payload_header_errors():
    rng = np.random.default_rng(3)
    alphabet = (256, 256)
    prior = FactorizedPrior.fit(_codes(rng, 2, (16, 16), alphabet), alphabet)
    c = _codes(rng, 1, (16, 16), alphabet)[0]
    payload = prior.encode(c)
    header = parse_header(payload)
    assert header.shape == (2, 16, 16) and header.body_length + header.header_size == len(payload)
    # every truncation raises TruncatedError (header or body), never hangs
    for cut in range(len(payload)):
        with pytest.raises(TruncatedError):
            prior.decode(payload[:cut], c.shape)
    with pytest.raises(UnsupportedVersionError):
        prior.decode(b"\x02" + payload[1:], c.shape)
    with pytest.raises(FormatError, match="prior_kind"):
        prior.decode(payload[:1] + b"\x09" + payload[2:], c.shape)
    with pytest.raises(FormatError, match="flags"):
        prior.decode(payload[:2] + b"\x80" + payload[3:], c.shape)
    with pytest.raises(FormatError, match="shape"):
        prior.decode(payload, (2, 16, 15))
    with pytest.raises(FormatError):
        prior.decode(payload + b"\x00", c.shape)
    with pytest.raises(LimitError):
        parse_header(build_payload(1, 0, (1, 1 << 17, 1), b""))
    with pytest.raises(FormatError):
        parse_header(bytes([1, 1, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]))  # 6-byte varint
    with pytest.raises(FormatError):
        parse_header(bytes([1, 1, 0, 0x81, 0x00, 1, 1, 0]))  # non-minimal varint
    # body corruption is caught by the coder's end-state check
    for pos in range(header.header_size, len(payload), 7):
        bad = bytearray(payload)
        bad[pos] ^= 0x04
        with pytest.raises(FormatError):
            prior.decode(bytes(bad), c.shape)
    # a payload flagged as reference-coded needs reference=
    flagged = payload[:2] + bytes([FLAG_REFERENCE]) + payload[3:]
    with pytest.raises(FormatError, match="flags"):
        prior.decode(flagged, c.shape)
    with pytest.raises(FormatError, match="flags"):
        prior.decode(flagged, c.shape, reference=c)


def test_concatenated_payloads_split():
    rng = np.random.default_rng(4)
    alphabet = (32,)
    prior = FactorizedPrior.fit(_codes(rng, 1, (5, 5), alphabet), alphabet)
    a, b = (_codes(rng, 1, (5, 5), alphabet)[0] for _ in range(2))
    joined = prior.encode(a) + prior.encode(b)
    _, _, end = split_payload(joined)
    assert np.array_equal(prior.decode(joined[:end], a.shape), a)
    assert np.array_equal(prior.decode(joined[end:], b.shape), b)


def test_code_bits_are_the_context_free_tables():
    from vqcodec.entropy import SpatialContextPrior

    rng = np.random.default_rng(1)
    alphabet = (64, 16)
    codes = _codes(rng, 6, (10, 12), alphabet, skew=0.1)
    for prior in (
        FactorizedPrior.fit(codes, alphabet),
        SpatialContextPrior.fit(codes, alphabet, min_count=8),
    ):
        for s, k in enumerate(alphabet):
            bits = prior.code_bits(s)
            assert bits.shape == (k,) and np.all(bits > 0)
            np.testing.assert_allclose(np.sum(2.0**-bits), 1.0, rtol=1e-9)
            assert bits[0] < bits[k - 2]  # frequent codes (geometric: small values) are cheap
        with pytest.raises(ValueError, match="stream"):
            prior.code_bits(len(alphabet))
    factorized = FactorizedPrior.fit(codes, alphabet)
    c = codes[0]
    # the factorized prior's ideal bits are exactly the sum of its code bits
    expected = sum(float(factorized.code_bits(s)[c[s]].sum()) for s in range(2))
    assert abs(factorized.ideal_bits(c) - expected) < 1e-6
