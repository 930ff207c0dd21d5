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
from vqcodec.registry import Registry

# quantizer class name (the "type" key of a saved config) -> class; its config class is cls.config_class
QUANTIZERS: Registry[type[Quantizer]] = Registry("quantizer type")
for _cls in (
    VectorQuantizer,
    ResidualVQ,
    FSQ,
    LFQ,
    ResidualFSQ,
    ResidualLFQ,
    GroupedResidualVQ,
    GroupedResidualFSQ,
    GroupedResidualLFQ,
    SimVQ,
    LatentQuantize,
    MultiScaleVQ,
    ResidualSimVQ,
    RandomProjectionQuantizer,
):
    QUANTIZERS.register(_cls.__name__, _cls)


def quantizer_class_for(config: Any) -> type[Quantizer]:
    """The registered quantizer whose config class is exactly ``type(config)`` (ResidualVQConfig ->
    ResidualVQ; a GroupedResidualVQConfig, a subclass, maps to GroupedResidualVQ only)."""
    for cls in QUANTIZERS.values():
        if type(config) is cls.config_class:
            return cls
    raise TypeError(f"not a quantizer config: {type(config).__name__}")


def build_quantizer(config: Any) -> Quantizer:
    """The quantizer a config dataclass describes."""
    return quantizer_class_for(config).from_config(config)


def config_to_dict(config: Any) -> dict[str, Any]:
    """A quantizer config as a JSON-able dict, with "type" naming the quantizer class."""
    cls = quantizer_class_for(config)
    values = dataclasses.asdict(config)
    for key, value in values.items():
        if isinstance(value, tuple):
            values[key] = list(value)
    return {"type": cls.__name__, **values}


def config_from_dict(data: dict[str, Any]) -> Any:
    """Inverse of ``config_to_dict``; unknown types or fields raise ValueError."""
    values = dict(data)
    name = values.pop("type", None)
    config_class = QUANTIZERS.get(str(name)).config_class
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
    "QUANTIZERS",
    "build_quantizer",
    "quantizer_class_for",
    "config_to_dict",
    "config_from_dict",
]
