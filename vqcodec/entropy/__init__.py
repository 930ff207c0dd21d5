"""Entropy coding of VQ codes: integer frequency tables, a bit-exact ANS coder, learned priors.

numpy + constriction only (never torch).  Public API:
  cdf:      quantize_pmf(probs (T, K), precision=16) -> (T, K) int64 freqs
  coder:    encode_symbols(symbols (N,), tables (N,), freqs (T, K)) -> bytes,
            decode_symbols(data, tables, freqs) -> (N,) int32
  coefficients: CoefficientContextPrior (signed transform coefficients, payload kind 3)
  priors:   FactorizedPrior, SpatialContextPrior (fit / encode / decode / ideal_bits /
            state_dict / config), load_prior(config, arrays)
  fit:      fit_prior(codes, alphabet, kind="auto"|"factorized"|"spatial_context", references=None)
            (auto = pick by held-out bits); python -m vqcodec.entropy for scripts
  payload:  the self-delimiting payload header (formats/vqc-v1.md, "Entropy payload")
"""

from __future__ import annotations

from vqcodec.entropy.cdf import quantize_pmf
from vqcodec.entropy.coder import CodingTables, decode_symbols, encode_symbols
from vqcodec.entropy.coefficients import CoefficientContextPrior
from vqcodec.entropy.fit import fit_prior, load_prior_file, save_prior_file
from vqcodec.entropy.payload import PayloadHeader, parse_header, split_payload
from vqcodec.entropy.priors import CodePrior, FactorizedPrior, SpatialContextPrior, load_prior

__all__ = [
    "quantize_pmf",
    "CodingTables",
    "encode_symbols",
    "decode_symbols",
    "PayloadHeader",
    "parse_header",
    "split_payload",
    "CodePrior",
    "FactorizedPrior",
    "SpatialContextPrior",
    "CoefficientContextPrior",
    "load_prior",
    "fit_prior",
    "load_prior_file",
    "save_prior_file",
]
