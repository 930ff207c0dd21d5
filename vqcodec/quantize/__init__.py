"""vqcodec.quantize: drop-in quantizer modules with one interface (see base.py for the code layout).

Public: VectorQuantizer, ResidualVQ, QuantizerOutput and their config dataclasses.
"""

from vqcodec.quantize.base import Quantizer, QuantizerOutput
from vqcodec.quantize.residual import ResidualVQ, ResidualVQConfig
from vqcodec.quantize.vq import VectorQuantizer, VectorQuantizerConfig

__all__ = [
    "Quantizer",
    "QuantizerOutput",
    "VectorQuantizer",
    "VectorQuantizerConfig",
    "ResidualVQ",
    "ResidualVQConfig",
]
