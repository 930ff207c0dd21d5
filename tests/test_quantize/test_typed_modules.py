"""The type annotations of buffers and module lists change nothing at run time."""

from __future__ import annotations

from torch import nn

from vqcodec.quantize import FSQ, ResidualFSQ, ResidualVQ, VectorQuantizer
from vqcodec.quantize.base import TypedModuleList


def test_typed_module_list_is_a_plain_module_list():
    assert TypedModuleList is nn.ModuleList
    rvq = ResidualVQ(dim=8, num_quantizers=3, codebook_size=16)
    assert type(rvq.layers) is nn.ModuleList
    assert "(layers): ModuleList(" in repr(rvq)
    assert all(isinstance(stage, VectorQuantizer) for stage in rvq.layers)
    assert rvq.stage(2) is rvq.layers[2]


def test_annotated_buffers_stay_buffers():
    # class-level annotations create no class attributes: the buffers live in the module's _buffers
    names = {"codebook", "embed_avg", "cluster_size", "steps_unused", "initted", "num_updates"}
    assert not names & set(vars(VectorQuantizer))
    vq = VectorQuantizer(dim=4, codebook_size=8)
    assert set(vq.state_dict()) == names
    learned = VectorQuantizer(dim=4, codebook_size=8, ema_update=False)
    assert isinstance(learned.codebook, nn.Parameter) and "embed_avg" not in learned.state_dict()
    fsq = FSQ((8, 5, 5))
    assert fsq.state_dict() == {}  # all of FSQ's buffers are non-persistent
    assert {"_levels_f", "_half_l", "_offset", "_shift", "_half_width", "_basis"} <= set(fsq._buffers)
    rfsq = ResidualFSQ((8, 5), num_quantizers=2)
    assert tuple(rfsq.stage_scales.shape) == (2, 2) and rfsq.config.num_quantizers == 2
