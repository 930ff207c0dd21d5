"""ResidualFSQ / ResidualLFQ and the grouped residual quantizers: layout, exact decode, dropout, configs."""

from __future__ import annotations

import json

import pytest
import torch

from vqcodec.quantize import (
    GroupedResidualFSQ,
    GroupedResidualLFQ,
    GroupedResidualVQ,
    LatentQuantize,
    RandomProjectionQuantizer,
    ResidualFSQ,
    ResidualLFQ,
    ResidualSimVQ,
    SimVQ,
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
    lambda: SimVQ(6, 32),
    lambda: LatentQuantize((5, 4, 3), dim=6),
    lambda: ResidualSimVQ(6, 3, 32, quantize_dropout=True),
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
    streams = codes[..., None] if codes.ndim == 3 else codes  # single-stream quantizers: (B, H, W)
    assert torch.equal(codes, out.codes) and streams.shape[:-1] == (2, 4, 4)
    assert streams.shape[-1] == len(module.alphabet)
    for i, size in enumerate(module.alphabet):
        assert 0 <= int(streams[..., i].min()) and int(streams[..., i].max()) < size
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


def test_simvq_trains_its_implicit_codebook_through_the_transform():
    torch.manual_seed(0)
    sim = SimVQ(4, 64, channel_first=False).train()
    x = torch.randn(256, 4) * 3
    start = float((sim(x).quantized - x).pow(2).mean())
    optimiser = torch.optim.Adam(sim.parameters(), lr=0.05)
    for _ in range(60):
        optimiser.zero_grad()
        sim(x).total_loss.backward()
        optimiser.step()
    assert float((sim(x).quantized - x).pow(2).mean()) < start / 2
    assert list(dict(sim.named_parameters())) == ["code_transform.weight"]  # the Gaussian codebook is frozen
    sim.eval()
    assert torch.equal(sim.decode(sim.encode(x[None])), sim(x[None]).quantized)


def test_random_projection_quantizer_is_a_fixed_cosine_target():
    rpq = RandomProjectionQuantizer(16, 32, 8, num_codebooks=2, channel_first=False, seed=1)
    x = torch.randn(2, 50, 16)
    codes = rpq.encode(x)
    assert codes.shape == (2, 50, 2) and rpq.alphabet == (32, 32)
    again = RandomProjectionQuantizer(16, 32, 8, num_codebooks=2, channel_first=False, seed=1)
    assert torch.equal(again.encode(x), codes) and torch.equal(rpq.encode(x * 5.0 + 0.0), codes)
    z = torch.nn.functional.normalize(torch.nn.functional.layer_norm(x, (16,)) @ rpq.rand_projs[0], dim=-1)
    assert torch.equal((z @ rpq.codebooks[0].t()).argmax(-1), codes[..., 0])
    out = rpq(x)
    assert out.loss == {} and out.quantized.shape == (2, 50, 2, 8)


def test_latent_quantize_learns_its_grid_values():
    torch.manual_seed(0)
    lq = LatentQuantize((3, 4), channel_first=False).train()
    assert torch.allclose(lq.values[0, :3], torch.tensor([-0.5, 0.0, 0.5]))
    x = torch.cat([torch.full((64, 1), 0.3), torch.full((64, 1), -0.1)], 1) + 0.01 * torch.randn(64, 2)
    codes = lq.encode(x)
    assert codes.shape == (64, 2) and int(codes[:, 0].max()) < 3
    optimiser = torch.optim.SGD(lq.parameters(), lr=5.0)
    before = float((lq(x).quantized - x).pow(2).mean())
    for _ in range(40):
        optimiser.zero_grad()
        lq(x).loss["commitment"].backward()
        optimiser.step()
    assert float((lq(x).quantized - x).pow(2).mean()) < before / 10
    assert torch.equal(lq.indices_to_codes(lq.codes_to_indices(codes)), codes)


def test_multiscale_vq_tokens_exact_decode_and_refinement():
    from vqcodec.quantize import MultiScaleVQ

    torch.manual_seed(0)
    msvq = MultiScaleVQ(4, 64, scales=(1, 2, 4, 8), kmeans_init=True, shared_codebook=False)
    x = torch.nn.functional.interpolate(torch.randn(3, 4, 4, 4), size=(8, 8), mode="bilinear")
    out = msvq.train()(x)
    assert out.codes.shape == (3, 1 + 4 + 16 + 64) and "commitment" in out.loss
    assert [g.shape for g in msvq.split_codes(out.codes)][-1] == (3, 8, 8)
    before = {k: v.clone() for k, v in msvq.state_dict().items()}
    msvq.eval()
    codes = msvq.encode(x)
    assert all(torch.equal(v, msvq.state_dict()[k]) for k, v in before.items())
    assert torch.equal(codes, msvq(x).codes) and torch.equal(msvq.decode(codes), msvq(x).quantized)
    coarse = codes.clone()
    coarse[:, 5:] = -1  # only the two coarsest levels
    assert (msvq.decode(coarse) - x).pow(2).mean() > (msvq.decode(codes) - x).pow(2).mean()
    rebuilt = build_quantizer(config_from_dict(json.loads(json.dumps(config_to_dict(msvq.config)))))
    rebuilt.load_state_dict(msvq.state_dict())
    assert torch.equal(rebuilt.eval().encode(x), codes)
    with pytest.raises(ValueError, match="decrease"):
        MultiScaleVQ(4, 64, scales=(4, 2))
