"""Golden payloads: bytes written by an earlier version that must decode to the same codes forever.

The cases are built from integer arithmetic only, so regenerating them is reproducible:
``VQCODEC_REGEN_GOLDEN=1 pytest tests/test_entropy/test_golden.py`` rewrites golden/*.json.
Only do that for a deliberate, versioned format change.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from vqcodec.entropy import load_prior
from vqcodec.entropy.cdf import quantize_pmf
from vqcodec.entropy.coder import decode_symbols, encode_symbols
from vqcodec.entropy.priors import FactorizedPrior, SpatialContextPrior

GOLDEN = Path(__file__).parent / "golden"
REGEN = os.environ.get("VQCODEC_REGEN_GOLDEN") == "1"


def _lcg(n: int, seed: int, modulus: int) -> np.ndarray:
    """Portable pseudo-random integers (no dependence on numpy's generators)."""
    out = np.empty(n, dtype=np.int64)
    x = seed
    for i in range(n):
        x = (x * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        out[i] = (x >> 33) % modulus
    return out


def _skewed(n: int, seed: int, k: int) -> np.ndarray:
    u = _lcg(n, seed, 1 << 20)
    return np.minimum((u * u) >> 30, k - 1) if k > 1 else np.zeros(n, dtype=np.int64)


def _cases() -> dict[str, dict]:
    cases: dict[str, dict] = {}
    # raw coder: 3 tables of 40 symbols, table indices interleaved
    probs = (((np.arange(120).reshape(3, 40) * 37) % 41) ** 2 + 1) / 7.0
    freqs = quantize_pmf(probs, 16)
    tables = _lcg(500, 1, 3)
    symbols = _skewed(500, 2, 40)
    cases["coder"] = {"freqs": freqs.tolist(), "tables": tables.tolist(), "symbols": symbols.tolist(),
                      "data": encode_symbols(symbols, tables, freqs).hex()}
    # factorized prior, 3 streams of different alphabets
    alphabet = (200, 9, 1)
    codes = np.stack([_skewed(12 * 10, 10 + s, k).reshape(12, 10) for s, k in enumerate(alphabet)])
    prior = FactorizedPrior.fit([codes], alphabet, smoothing=0.5)
    cases["factorized"] = {
        "config": prior.config(),
        "arrays": {k: v.tolist() for k, v in prior.state_dict().items()},
        "codes": codes.tolist(),
        "payload": prior.encode(codes).hex(),
        "payload_2_streams": prior.encode(codes[:2]).hex(),
    }
    # spatial context prior, with and without a reference frame
    alphabet = (50, 20)
    def blocky(seed: int) -> np.ndarray:
        small = np.stack([_skewed(5 * 7, seed + s, k).reshape(5, 7) for s, k in enumerate(alphabet)])
        big = np.kron(small, np.ones((1, 2, 2), dtype=np.int64))[:, :9, :13]
        flip = _lcg(big.size, seed + 7, 5).reshape(big.shape) == 0
        return np.where(flip, _lcg(big.size, seed + 9, 20).reshape(big.shape), big)
    frames = [blocky(100 + 10 * i) for i in range(8)]
    following = [np.where(_lcg(f.size, 300 + i, 4).reshape(f.shape) == 0, blocky(500 + i), f)
                 for i, f in enumerate(frames)]
    cprior = SpatialContextPrior.fit(frames + following, alphabet, references=[None] * 8 + frames,
                                     min_count=4, select_stages=False, groups=0)
    test, ref = blocky(900), blocky(910)
    cases["spatial_context"] = {
        "config": cprior.config(),
        "arrays": {k: v.tolist() for k, v in cprior.state_dict().items()},
        "codes": test.tolist(),
        "reference": ref.tolist(),
        "payload": cprior.encode(test).hex(),
        "payload_2_streams": cprior.encode(test[:2]).hex(),
        "payload_reference": cprior.encode(test, reference=ref).hex(),
    }
    # with previous-stream groups for weak votes (3 streams so that two use groups)
    alphabet3 = (50, 20, 30)
    def blocky3(seed: int) -> np.ndarray:
        small = np.stack([_skewed(5 * 7, seed + s, k).reshape(5, 7) for s, k in enumerate(alphabet3)])
        big = np.kron(small, np.ones((1, 2, 2), dtype=np.int64))[:, :9, :13]
        flip = _lcg(big.size, seed + 7, 3).reshape(big.shape) == 0
        return np.where(flip, _lcg(big.size, seed + 9, 20).reshape(big.shape), big)
    gprior = SpatialContextPrior.fit([blocky3(1000 + 10 * i) for i in range(10)], alphabet3, min_count=4,
                                     groups=4, weak_vote=2, select_stages=False)
    test3 = blocky3(1900)
    cases["spatial_context_groups"] = {
        "config": gprior.config(),
        "arrays": {k: v.tolist() for k, v in gprior.state_dict().items()},
        "codes": test3.tolist(),
        "payload": gprior.encode(test3).hex(),
        "payload_2_streams": gprior.encode(test3[:2]).hex(),
    }
    return cases


def _load(name: str) -> dict:
    path = GOLDEN / f"{name}.json"
    if REGEN and (os.environ.get("VQCODEC_REGEN_GOLDEN_CASES", name) == name or not path.exists()):
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(json.dumps(_cases()[name], sort_keys=True, separators=(",", ":")) + "\n")
    return json.loads(path.read_text())


def test_golden_coder():
    case = _load("coder")
    freqs, tables = np.array(case["freqs"]), np.array(case["tables"])
    symbols = np.array(case["symbols"])
    assert np.array_equal(decode_symbols(bytes.fromhex(case["data"]), tables, freqs), symbols)
    # the encoder must still produce the very same bytes (pins constriction's model building)
    assert encode_symbols(symbols, tables, freqs).hex() == case["data"]


@pytest.mark.parametrize("name", ["factorized", "spatial_context", "spatial_context_groups"])
def test_golden_prior(name):
    case = _load(name)
    arrays = {k: np.array(v, dtype=np.uint16 if k.startswith("freqs") else np.int64)
              for k, v in case["arrays"].items()}
    prior = load_prior(case["config"], arrays)
    codes = np.array(case["codes"])
    assert np.array_equal(prior.decode(bytes.fromhex(case["payload"]), codes.shape), codes)
    s2 = (2, *codes.shape[1:])
    assert np.array_equal(prior.decode(bytes.fromhex(case["payload_2_streams"]), s2), codes[:2])
    assert prior.encode(codes).hex() == case["payload"]
    if "reference" in case:
        ref = np.array(case["reference"])
        data = bytes.fromhex(case["payload_reference"])
        assert np.array_equal(prior.decode(data, codes.shape, reference=ref), codes)
        assert prior.encode(codes, reference=ref) == data


def test_golden_tables_are_reproducible():
    """quantize_pmf of the fixed inputs still gives the stored tables (no silent table drift)."""
    case = _load("coder")
    probs = (((np.arange(120).reshape(3, 40) * 37) % 41) ** 2 + 1) / 7.0
    assert quantize_pmf(probs, 16).tolist() == case["freqs"]
