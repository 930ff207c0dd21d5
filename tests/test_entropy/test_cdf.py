import hashlib
import subprocess
import sys

import numpy as np
import pytest

from vqcodec.entropy.cdf import pack_freqs, quantize_pmf, unpack_freqs, validate_freqs


def test_rows_sum_and_nonzero():
    rng = np.random.default_rng(0)
    for k in (1, 2, 3, 17, 1024, 4096):
        probs = rng.dirichlet(np.full(k, 0.1), size=5)
        probs[0, : k // 2] = 0.0  # exact zeros still get frequency 1
        probs[1] = 1e-300  # near-zero everywhere
        for precision in (12, 16):
            if k > 1 << precision:
                continue
            f = quantize_pmf(probs, precision)
            assert f.dtype == np.int64
            assert f.shape == probs.shape
            assert np.all(f >= 1)
            assert np.all(f.sum(axis=1) == 1 << precision)


def test_one_symbol_and_full_alphabet():
    assert quantize_pmf(np.array([[0.3]]), 16).tolist() == [[65536]]
    assert np.all(quantize_pmf(np.ones((1, 256)), 8) == 1)
    with pytest.raises(ValueError):
        quantize_pmf(np.ones((1, 257)), 8)


def test_known_values_and_tie_break():
    # 4 equal weights over precision 4: 12 free units split 3 each, nothing left.
    assert quantize_pmf([1.0, 1.0, 1.0, 1.0], 4).tolist() == [4, 4, 4, 4]
    # 3 equal weights, 13 free units: 4 each, the 1 left over goes to the lowest index.
    assert quantize_pmf([1.0, 1.0, 1.0], 4).tolist() == [6, 5, 5]
    # The largest remainder wins over the index.
    assert quantize_pmf([1.0, 2.0], 2).tolist() == [2, 2]
    assert quantize_pmf([0.0, 1.0, 0.0], 4).tolist() == [1, 14, 1]
    assert quantize_pmf([[0.0, 0.0]], 4).tolist() == [[8, 8]]  # zero row -> uniform


def test_rejects_bad_input():
    for bad in ([np.nan, 1.0], [-0.1, 1.0], [np.inf, 1.0]):
        with pytest.raises(ValueError):
            quantize_pmf(bad)
    with pytest.raises(ValueError):
        quantize_pmf([1.0, 1.0], precision=17)


def test_proportional_to_probabilities():
    p = np.array([0.5, 0.25, 0.125, 0.125])
    f = quantize_pmf(p, 16)
    assert np.allclose(f / 65536, p, atol=1e-4)


def test_identical_tables_in_two_processes():
    code = (
        "import hashlib, numpy as np\n"
        "from vqcodec.entropy.cdf import quantize_pmf\n"
        "p = ((np.arange(16000).reshape(16, 1000) * 7919) % 1013) ** 3 / 977.0\n"
        "print(hashlib.sha256(quantize_pmf(p, 16).astype('<i8').tobytes()).hexdigest())\n"
    )
    digests = {subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                              text=True).stdout.strip() for _ in range(2)}
    # Inputs from exact integer arithmetic and one correctly rounded division: portable.
    p = ((np.arange(16000).reshape(16, 1000) * 7919) % 1013) ** 3 / 977.0

    here = hashlib.sha256(quantize_pmf(p, 16).astype("<i8").tobytes()).hexdigest()
    assert digests == {here}
    # Pinned value: a change in this digest means tables differ from earlier releases.
    assert here == PINNED_DIGEST


PINNED_DIGEST = "b13492be6c1581b06b3465c87c15aaf1ded73ef3c9ef3db0f4baf502f018dbdd"


def test_pack_unpack_and_validate():
    f = np.zeros((2, 5), dtype=np.int64)
    f[0] = quantize_pmf(np.arange(1, 6), 16)
    f[1, :3] = quantize_pmf([1.0, 0.0, 3.0], 16)
    packed = pack_freqs(f)
    assert packed.dtype == np.uint16
    assert np.array_equal(unpack_freqs(packed, [5, 3]), f)
    assert np.array_equal(unpack_freqs(packed.view(np.int16), [5, 3]), f)
    got, precision = validate_freqs(f)
    assert precision == 16
    bad = f.copy()
    bad[1, 1], bad[1, 3] = 0, bad[1, 1]
    with pytest.raises(ValueError):
        validate_freqs(bad)  # a zero inside the row, not trailing padding
    with pytest.raises(ValueError):
        validate_freqs(f[:, :4])  # rows no longer sum to a power of two
