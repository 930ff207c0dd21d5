"""ResidualFSQ / ResidualLFQ and the grouped residual quantizers: layout, exact decode, dropout, configs."""

from __future__ import annotations

import json

import pytest
import torch

from vqcodec.quantize import (
    GroupedResidualFSQ,
    GroupedResidualLFQ,
    GroupedResidualVQ,
    ResidualFSQ,
    ResidualLFQ,
    build_quantizer,
    config_from_dict,
    config_to_dict,
)

MODULES = [
    lambda: ResidualFSQ((8, 5, 5), 3, dim=6),
    lambda: ResidualLFQ(16, 3, dim=6),
    lambda: GroupedResidualVQ(8, 2, 16, groups=2, kmeans_init=True),
    lambda: GroupedResidualFSQ((5, 3), 2, dim=8, groups=2),
    lambda: GroupedResidualLFQ(8, 2, groups=2),
]


@pytest.mark.parametrize("make", MODULES)
def test_codes_alphabet_exact_decode_rates_and_config(make):
    torch.manual_seed(0)
    module = make()
    x = torch.randn(2, module.dim, 4, 4)
    module.train()(x)  # training step first (k-means, dropout paths)
    module.eval()
    out = module(x)
    codes = module.encode(x)
    assert torch.equal(codes, out.codes) and codes.shape[:-1] == (2, 4, 4)
    assert codes.shape[-1] == len(module.alphabet)
    assert all(
        int(codes[..., i].max()) < a and int(codes[..., i].min()) >= 0 for i, a in enumerate(module.alphabet)
    )
    assert torch.equal(module.decode(codes), out.quantized)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(module.encode(x), codes)
    assert torch.equal(module.encode(x[:1]), codes[:1])  # batch-independent
    rebuilt = build_quantizer(config_from_dict(json.loads(json.dumps(config_to_dict(module.config)))))
    rebuilt.load_state_dict(module.state_dict())
    assert torch.equal(rebuilt.eval().encode(x), codes)


def test_residual_scalar_stages_refine_and_dropped_stages_decode():
    torch.manual_seed(0)
    rfsq = ResidualFSQ((8, 8, 8), 4, quantize_dropout=True).eval()
    x = torch.randn(64, 3, 2, 2) * 0.3  # where tanh is near the identity, so each stage refines x
    errors = [float((rfsq.decode(rfsq.encode(x, num_stages=k)) - x).pow(2).mean()) for k in (1, 2, 4)]
    assert errors[0] > errors[1] > errors[2]
    codes = rfsq.encode(x)
    dropped = codes.clone()
    dropped[..., 2:] = -1
    assert torch.equal(rfsq.decode(dropped), rfsq.decode(codes[..., :2]))
    rfsq.train()
    torch.manual_seed(3)
    seen = {int(rfsq(x).metrics["active_stages"]) for _ in range(12)}
    assert len(seen) > 1
    rlfq = ResidualLFQ(16, 3).train()
    out = rlfq(torch.randn(4, 4, 3, 3))
    assert {"commitment", "entropy"} <= set(out.loss) and out.codes.shape == (4, 3, 3, 3)


def test_grouped_vq_groups_are_independent_residual_vqs():
    torch.manual_seed(0)
    grouped = GroupedResidualVQ(8, 2, 16, groups=2, channel_first=False).eval()
    x = torch.randn(10, 8)
    codes = grouped.encode(x[None])[0]
    for g in range(2):
        alone = grouped.group(g).encode(x[None, :, 4 * g : 4 * g + 4])[0]
        assert torch.equal(codes.unflatten(-1, (2, 2))[:, g], alone)
    with pytest.raises(ValueError, match="divisible"):
        GroupedResidualVQ(9, 2, 16, groups=2)
