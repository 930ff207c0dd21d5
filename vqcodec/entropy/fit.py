"""Fitting priors from codes: one function for the trainer, and a command line for scripts.

``fit_prior(codes, alphabet, kind="auto", references=None, **opts)`` fits a prior on training codes
[(S, H, W)].  kind "factorized" or "spatial_context" fits that prior; "auto" fits both on all but
every 5th item, measures their bits on the held-out items, and refits the cheaper kind on
everything (the context prior also picks per stream between context and factorized coding).

Command line (codes saved by the trainer or a script as .npz, any array names, each (S, H, W);
optional reference arrays named ``<name>.ref`` hold the previous frame's codes for video)::

    python -m vqcodec.entropy CODES.npz [...] --alphabet 1024,1024,1024 [--kind auto] -o PRIOR.npz

The output .npz holds the prior's ``state_dict()`` arrays and its ``config()`` as JSON text
under ``__config__``; ``load_prior_file`` reads it back.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from vqcodec.entropy.priors import CodePrior, FactorizedPrior, SpatialContextPrior, load_prior

KINDS = ("auto", "factorized", "spatial_context")


def fit_prior(codes: Sequence[npt.ArrayLike], alphabet: Sequence[int], kind: str = "auto", *,
              references: Sequence[npt.ArrayLike | None] | None = None, **opts: Any) -> CodePrior:
    """Fit a prior of ``kind`` (see module doc) from codes [(S, H, W)]; opts go to ``fit``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not codes:
        raise ValueError("no codes to fit on")
    precision = opts.pop("precision", 16)
    smoothing = opts.pop("smoothing", 0.5)
    if kind == "factorized":
        if references is not None and any(r is not None for r in references):
            raise ValueError("the factorized prior does not use references")
        return FactorizedPrior.fit(codes, alphabet, smoothing=smoothing, precision=precision)
    if kind == "spatial_context":
        return SpatialContextPrior.fit(codes, alphabet, references=references, smoothing=smoothing,
                                       precision=precision, **opts)
    if len(codes) < 5:
        return SpatialContextPrior.fit(codes, alphabet, references=references, smoothing=smoothing,
                                       precision=precision, **opts)
    refs: list[npt.ArrayLike | None] = list(references) if references is not None else [None] * len(codes)
    train = [i for i in range(len(codes)) if i % 5 != 4]
    test = [i for i in range(len(codes)) if i % 5 == 4]
    fac = FactorizedPrior.fit([codes[i] for i in train], alphabet, smoothing=smoothing, precision=precision)
    con = SpatialContextPrior.fit([codes[i] for i in train], alphabet, references=[refs[i] for i in train],
                                  smoothing=smoothing, precision=precision, **opts)
    fac_bits = sum(fac.ideal_bits(codes[i]) for i in test)
    con_bits = sum(con.ideal_bits(codes[i], reference=refs[i] if con.reference else None) for i in test)
    if fac_bits <= con_bits:
        return FactorizedPrior.fit(codes, alphabet, smoothing=smoothing, precision=precision)
    return SpatialContextPrior.fit(codes, alphabet, references=references, smoothing=smoothing,
                                   precision=precision, **opts)


def save_prior_file(prior: CodePrior, path: str | Path) -> None:
    arrays: dict[str, Any] = dict(prior.state_dict())
    arrays["__config__"] = np.array(json.dumps(prior.config()))
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def load_prior_file(path: str | Path) -> CodePrior:
    with np.load(path, allow_pickle=False) as z:
        config = json.loads(str(z["__config__"]))
        return load_prior(config, {k: z[k] for k in z.files if k != "__config__"})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vqcodec.entropy",
                                 description="Fit an entropy prior on codes.")
    ap.add_argument("inputs", nargs="+", help=".npz files of codes arrays (S, H, W)")
    ap.add_argument("--alphabet", required=True, help="symbols per stream, comma separated (e.g. 1024,1024)")
    ap.add_argument("--kind", choices=KINDS, default="auto")
    ap.add_argument("--smoothing", type=float, default=0.5)
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args(argv)
    try:
        alphabet = tuple(int(x) for x in args.alphabet.split(","))
        codes: list[np.ndarray] = []
        refs: list[np.ndarray | None] = []
        for name in args.inputs:
            with np.load(name, allow_pickle=False) as z:
                for key in z.files:
                    if key.endswith(".ref"):
                        continue
                    codes.append(z[key])
                    refs.append(z[key + ".ref"] if key + ".ref" in z.files else None)
        use_refs = refs if any(r is not None for r in refs) else None
        prior = fit_prior(codes, alphabet, args.kind, references=use_refs, smoothing=args.smoothing)
        save_prior_file(prior, args.output)
    except (OSError, ValueError, KeyError) as exc:  # bad input files or shapes: one line, exit 1
        print(f"error: {exc}", file=sys.stderr)
        return 1
    total = sum(prior.ideal_bits(c) for c in codes)
    print(f"{prior.name} prior on {len(codes)} items: {total / sum(c.size for c in codes):.3f} bits/code "
          f"(training set), tables {prior.table_bytes()} bytes -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
