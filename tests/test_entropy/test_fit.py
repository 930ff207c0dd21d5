import subprocess
import sys

import numpy as np
import pytest

from vqcodec.entropy.fit import fit_prior, load_prior_file, save_prior_file
from vqcodec.entropy.priors import FactorizedPrior, SpatialContextPrior


def _blocky(rng, n, k=64):
    out = []
    for _ in range(n):
        small = rng.integers(0, k, size=(1, 5, 6))
        out.append(np.kron(small, np.ones((1, 3, 3), dtype=np.int64)))
    return out


def test_auto_picks_by_held_out_bits():
    rng = np.random.default_rng(0)
    assert isinstance(fit_prior(_blocky(rng, 10), (64,), "auto", min_count=4), SpatialContextPrior)
    iid = [rng.integers(0, 64, size=(1, 15, 18)) for _ in range(10)]
    assert isinstance(fit_prior(iid, (64,), "auto"), FactorizedPrior)
    with pytest.raises(ValueError):
        fit_prior(iid, (64,), "nope")
    with pytest.raises(ValueError):
        fit_prior([], (64,))


def test_fit_command_line(tmp_path):
    rng = np.random.default_rng(1)
    codes = _blocky(rng, 6)
    np.savez(tmp_path / "codes.npz", **{f"img{i}": c for i, c in enumerate(codes)})
    out = tmp_path / "prior.npz"
    cmd = [sys.executable, "-m", "vqcodec.entropy", str(tmp_path / "codes.npz"), "--alphabet", "64",
           "--kind", "spatial_context", "-o", str(out)]
    subprocess.run(cmd, check=True, capture_output=True)
    prior = load_prior_file(out)
    assert isinstance(prior, SpatialContextPrior)
    assert np.array_equal(prior.decode(prior.encode(codes[0]), codes[0].shape), codes[0])
    save_prior_file(prior, tmp_path / "again.npz")
    assert load_prior_file(tmp_path / "again.npz").encode(codes[1]) == prior.encode(codes[1])
