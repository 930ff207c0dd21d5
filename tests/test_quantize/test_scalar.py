"""FSQ and LFQ: code layout, alphabets, exact encode/decode, losses, layouts, config round trips."""

from __future__ import annotations

import json

import pytest
import torch

from vqcodec.quantize import (
    FSQ,
    LFQ,
    ResidualVQ,
    VectorQuantizer,
    build_quantizer,
    config_from_dict,
    config_to_dict,
)


def test_fsq_codes_per_channel_and_exact_decode():
    torch.manual_seed(0)
    fsq = FSQ((8, 5, 3), dim=3).eval()
    assert fsq.alphabet == (8, 5, 3)
    x = torch.randn(4, 3, 6, 6) * 3
    out = fsq(x)
    assert out.codes.shape == (4, 6, 6, 3) and out.loss == {}
    for i, level in enumerate((8, 5, 3)):
        used = out.codes[..., i].unique()
        assert used.min() >= 0 and used.max() < level
        assert len(used) == level  # wide inputs reach every level, including both extremes
    assert torch.equal(fsq.encode(x), out.codes)
    assert torch.equal(fsq.decode(out.codes), out.quantized)
    indices = fsq.codes_to_indices(out.codes)
    assert indices.max() < 8 * 5 * 3 and torch.equal(fsq.indices_to_codes(indices), out.codes)
    assert 0 < out.metrics["usage"] <= 1


def test_fsq_projection_gradient_and_autocast():
    torch.manual_seed(1)
    fsq = FSQ([7, 5, 5, 4], dim=16, channel_first=False)
    x = torch.randn(10, 20, 16, requires_grad=True)
    out = fsq(x)
    assert out.codes.shape == (10, 20, 4) and out.quantized.shape == x.shape
    out.quantized.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(fsq.encode(x.detach()), out.codes)


def test_lfq_bits_codes_and_losses():
    torch.manual_seed(2)
    lfq = LFQ(dim=6, codebook_size=8, num_codebooks=2).train()
    assert lfq.alphabet == (8, 8)
    x = torch.randn(3, 6, 5, 5, requires_grad=True)
    out = lfq(x)
    assert out.codes.shape == (3, 5, 5, 2)
    # group 0 = channels 0..2, most significant bit first
    bits = (x[:, :3] > 0).long().movedim(1, -1)
    assert torch.equal(out.codes[..., 0], bits[..., 0] * 4 + bits[..., 1] * 2 + bits[..., 2])
    assert set(out.loss) == {"commitment", "entropy"}
    out.total_loss.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    lfq.eval()
    out = lfq(x)
    assert torch.equal(lfq.decode(lfq.encode(x)), out.quantized)
    assert set(out.quantized.unique().tolist()) == {-1.0, 1.0}


def test_lfq_entropy_penalty_rewards_diverse_confident_codes():
    lfq = LFQ(dim=4, codebook_size=16, entropy_loss_weight=1.0, commitment_loss_weight=0.0).train()
    torch.manual_seed(3)
    diverse = torch.randn(512, 4, 1, 1) * 3
    collapsed = torch.full((512, 4, 1, 1), 3.0) + 0.01 * torch.randn(512, 4, 1, 1)
    assert lfq(diverse).loss["entropy"] < lfq(collapsed).loss["entropy"]


@pytest.mark.parametrize(
    "module",
    [
        VectorQuantizer(8, 32, codebook_dim=4, use_cosine_sim=True),
        ResidualVQ(8, 3, 16, quantize_dropout=True, shared_codebook=True, channel_first=False),
        FSQ((5, 5, 4), dim=8),
        LFQ(dim=8, codebook_size=16, num_codebooks=2),
    ],
    ids=["vq", "rvq", "fsq", "lfq"],
)
def test_every_quantizer_rebuilds_from_its_json_config(module):
    data = json.loads(json.dumps(config_to_dict(module.config)))
    config = config_from_dict(data)
    assert config == module.config
    rebuilt = build_quantizer(config)
    assert type(rebuilt) is type(module)
    rebuilt.load_state_dict(module.state_dict())
    shape = (2, 4, 4, 8) if not module.config.channel_first else (2, 8, 4, 4)
    x = torch.randn(shape)
    module.eval()
    rebuilt.eval()
    assert torch.equal(rebuilt.encode(x), module.encode(x))
    assert rebuilt.alphabet == module.alphabet
    with pytest.raises(ValueError):
        config_from_dict({**data, "bogus": 1})
