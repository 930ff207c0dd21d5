"""``python -m vqcodec.entropy CODES.npz ... --alphabet ... -o PRIOR.npz``: fit a prior (see fit.py)."""

from __future__ import annotations

import sys

from vqcodec.entropy.fit import main

sys.exit(main())
