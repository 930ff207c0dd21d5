"""``single``: one process on one device (CPU or one GPU)."""

from __future__ import annotations

from vqcodec.train.strategies.base import Strategy


class SingleDeviceStrategy(Strategy):
    name = "single"


__all__ = ["SingleDeviceStrategy"]
