"""vqcodec.quantize: drop-in quantizer modules with one interface.

Public: VectorQuantizer, ResidualVQ, FSQ, LFQ, ResidualFSQ, ResidualLFQ, GroupedResidualVQ/FSQ/LFQ, SimVQ,
ResidualSimVQ, RandomProjectionQuantizer, LatentQuantize, MultiScaleVQ (all
``Quantizer`` subclasses; see docs/migrating-from-vector-quantize-pytorch.md), QuantizerOutput, their frozen
config dataclasses, and helpers to save/rebuild a quantizer from its config alone:
``config_to_dict(cfg) -> dict`` (JSON-able, with a "type" key), ``config_from_dict(d) -> cfg`` and
``build_quantizer(cfg) -> Quantizer``.  Latent and code layouts are specified in ``base.py``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from vqcodec.quantize.base import Quantizer, QuantizerOutput
from vqcodec.quantize.fsq import FSQ, FSQConfig
from vqcodec.quantize.grouped import (
    GroupedResidualFSQ,
    GroupedResidualFSQConfig,
    GroupedResidualLFQ,
    GroupedResidualLFQConfig,
    GroupedResidualVQ,
    GroupedResidualVQConfig,
)
from vqcodec.quantize.latent_quantize import LatentQuantize, LatentQuantizeConfig
from vqcodec.quantize.lfq import LFQ, LFQConfig
from vqcodec.quantize.multiscale import MultiScaleVQ, MultiScaleVQConfig
from vqcodec.quantize.residual import ResidualVQ, ResidualVQConfig
from vqcodec.quantize.residual_scalar import ResidualFSQ, ResidualFSQConfig, ResidualLFQ, ResidualLFQConfig
from vqcodec.quantize.sim_vq import (
    RandomProjectionQuantizer,
    RandomProjectionQuantizerConfig,
    ResidualSimVQ,
    ResidualSimVQConfig,
    SimVQ,
    SimVQConfig,
)
from vqcodec.quantize.vq import VectorQuantizer, VectorQuantizerConfig

_BY_CONFIG: dict[type, type[Quantizer]] = {
    VectorQuantizerConfig: VectorQuantizer,
    ResidualVQConfig: ResidualVQ,
    FSQConfig: FSQ,
    LFQConfig: LFQ,
    ResidualFSQConfig: ResidualFSQ,
    ResidualLFQConfig: ResidualLFQ,
    GroupedResidualVQConfig: GroupedResidualVQ,
    GroupedResidualFSQConfig: GroupedResidualFSQ,
    GroupedResidualLFQConfig: GroupedResidualLFQ,
    SimVQConfig: SimVQ,
    LatentQuantizeConfig: LatentQuantize,
    MultiScaleVQConfig: MultiScaleVQ,
    ResidualSimVQConfig: ResidualSimVQ,
    RandomProjectionQuantizerConfig: RandomProjectionQuantizer,
}
_BY_NAME: dict[str, type] = {cls.__name__: cfg for cfg, cls in _BY_CONFIG.items()}


def build_quantizer(config: Any) -> Quantizer:
    """The quantizer a config dataclass describes (exact type match: ResidualVQConfig -> ResidualVQ)."""
    cls = _BY_CONFIG.get(type(config))
    if cls is None:
        raise TypeError(f"not a quantizer config: {type(config).__name__}")
    return cls.from_config(config)


def config_to_dict(config: Any) -> dict[str, Any]:
    """A quantizer config as a JSON-able dict, with "type" naming the quantizer class."""
    if type(config) not in _BY_CONFIG:
        raise TypeError(f"not a quantizer config: {type(config).__name__}")
    values = dataclasses.asdict(config)
    for key, value in values.items():
        if isinstance(value, tuple):
            values[key] = list(value)
    return {"type": _BY_CONFIG[type(config)].__name__, **values}


def config_from_dict(data: dict[str, Any]) -> Any:
    """Inverse of ``config_to_dict``; unknown types or fields raise ValueError."""
    values = dict(data)
    name = values.pop("type", None)
    config_class = _BY_NAME.get(str(name))
    if config_class is None:
        raise ValueError(f"unknown quantizer type {name!r}; known: {sorted(_BY_NAME)}")
    known = {f.name for f in dataclasses.fields(config_class)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown {name} config fields: {sorted(unknown)}")
    if "levels" in values:
        values["levels"] = tuple(values["levels"])
    if "scales" in values:
        values["scales"] = tuple(tuple(s) for s in values["scales"])
    return config_class(**values)


__all__ = [
    "Quantizer",
    "QuantizerOutput",
    "VectorQuantizer",
    "VectorQuantizerConfig",
    "ResidualVQ",
    "ResidualVQConfig",
    "FSQ",
    "FSQConfig",
    "LFQ",
    "LFQConfig",
    "ResidualFSQ",
    "ResidualFSQConfig",
    "ResidualLFQ",
    "ResidualLFQConfig",
    "GroupedResidualVQ",
    "GroupedResidualVQConfig",
    "GroupedResidualFSQ",
    "GroupedResidualFSQConfig",
    "GroupedResidualLFQ",
    "GroupedResidualLFQConfig",
    "SimVQ",
    "LatentQuantize",
    "MultiScaleVQ",
    "MultiScaleVQConfig",
    "LatentQuantizeConfig",
    "SimVQConfig",
    "ResidualSimVQ",
    "ResidualSimVQConfig",
    "RandomProjectionQuantizer",
    "RandomProjectionQuantizerConfig",
    "build_quantizer",
    "config_to_dict",
    "config_from_dict",
]
