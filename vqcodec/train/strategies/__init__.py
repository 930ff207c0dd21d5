"""Strategy registry: ``single``, ``ddp``, ``fsdp`` (add more with ``register_strategy``).

``make_strategy("ddp", find_unused_parameters=True)`` builds one by name with options; a Strategy
instance is passed through.
"""

from __future__ import annotations

from typing import Any

from vqcodec.registry import Registry
from vqcodec.train.strategies.base import Strategy
from vqcodec.train.strategies.ddp import DDPStrategy
from vqcodec.train.strategies.fsdp import FSDPStrategy
from vqcodec.train.strategies.single import SingleDeviceStrategy

STRATEGIES: Registry[type[Strategy]] = Registry("strategy")


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    """Add a Strategy subclass under its ``name`` (usable as a class decorator)."""
    return STRATEGIES.register(cls.name, cls)


for _cls in (SingleDeviceStrategy, DDPStrategy, FSDPStrategy):
    register_strategy(_cls)


def make_strategy(strategy: str | Strategy = "single", **options: Any) -> Strategy:
    if isinstance(strategy, Strategy):
        if options:
            raise ValueError("strategy options go to the Strategy constructor when passing an instance")
        return strategy
    return STRATEGIES.get(strategy)(**options)


__all__ = [
    "DDPStrategy",
    "FSDPStrategy",
    "STRATEGIES",
    "SingleDeviceStrategy",
    "Strategy",
    "make_strategy",
    "register_strategy",
]
