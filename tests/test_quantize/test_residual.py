"""ResidualVQ: stage layout, num_stages, dropout, shared codebooks, exactness."""

from __future__ import annotations

import pytest
import torch

from vqcodec.quantize import ResidualVQ, ResidualVQConfig


def _trained(rvq: ResidualVQ, x: torch.Tensor, steps: int = 5) -> ResidualVQ:
    rvq.train()
    for _ in range(steps):
        rvq(x)
    return rvq.eval()


@pytest.mark.parametrize("shared", [False, True])
def test_codes_layout_and_rates(shared):
    torch.manual_seed(0)
    x = torch.randn(4, 8, 6, 6)
    rvq = _trained(ResidualVQ(8, 4, 64, kmeans_init=True, shared_codebook=shared), x)
    assert len(rvq.layers) == (1 if shared else 4)
    assert rvq.alphabet == (64, 64, 64, 64)
    out = rvq(x)
    assert out.codes.shape == (4, 6, 6, 4)
    assert torch.equal(rvq.encode(x), out.codes)
    assert torch.equal(rvq.decode(out.codes), out.quantized)
    errors = []
    for k in range(1, 5):
        codes = rvq.encode(x, num_stages=k)
        assert codes.shape == (4, 6, 6, k)
        assert torch.equal(codes, out.codes[..., :k])  # a prefix of the full code
        errors.append((rvq.decode(codes) - x).pow(2).mean().item())
    if not shared:  # a greedy stage can overshoot with one codebook for every stage's residual
        assert errors == sorted(errors, reverse=True)
    assert errors[-1] < (0.9 if shared else 0.6) * errors[0]
    with pytest.raises(ValueError):
        rvq.encode(x, num_stages=5)


def test_video_and_sequence_layouts():
    torch.manual_seed(1)
    video = torch.randn(2, 8, 3, 4, 5)
    rvq = ResidualVQ(8, 3, 32).eval()
    assert rvq.encode(video).shape == (2, 3, 4, 5, 3)
    assert rvq.decode(rvq.encode(video)).shape == video.shape
    seq = ResidualVQ(8, 3, 32, channel_first=False).eval()
    tokens = torch.randn(2, 10, 8)
    assert seq.encode(tokens).shape == (2, 10, 3)
    assert seq(tokens).quantized.shape == tokens.shape


def test_quantize_dropout_uses_random_leading_stages_in_training_only():
    torch.manual_seed(2)
    rvq = ResidualVQ(8, 6, 16, quantize_dropout=True, quantize_dropout_cutoff_index=1).train()
    x = torch.randn(2, 8, 4, 4)
    seen = set()
    for _ in range(40):
        out = rvq(x)
        active = int(out.metrics["active_stages"])
        seen.add(active)
        assert (out.codes[..., :active] >= 0).all() and (out.codes[..., active:] == -1).all()
    assert seen == {2, 3, 4, 5, 6}
    rvq.eval()
    assert (rvq(x).codes >= 0).all()


def test_gradient_reaches_the_input_through_every_stage():
    x = torch.randn(2, 8, 4, 4, requires_grad=True)
    rvq = ResidualVQ(8, 3, 16, commitment_weight=0.0).train()
    rvq(x).quantized.sum().backward()
    assert torch.equal(x.grad, torch.full_like(x, 3.0))  # one straight-through path per stage


def test_encode_batch_independent_and_config_roundtrip():
    torch.manual_seed(3)
    rvq = ResidualVQ(8, 4, 128, codebook_dim=4, channel_first=False)
    x = torch.randn(300, 8)
    full = rvq.encode(x)
    assert torch.equal(torch.cat([rvq.encode(x[i : i + 7]) for i in range(0, 300, 7)]), full)
    cfg = rvq.config
    assert isinstance(cfg, ResidualVQConfig) and cfg.num_quantizers == 4
    rebuilt = ResidualVQ.from_config(cfg)
    rebuilt.load_state_dict(rvq.state_dict())
    assert torch.equal(rebuilt.encode(x), full)


def test_kmeans_init_can_wait_for_enough_vectors_stage_by_stage():
    torch.manual_seed(4)
    rvq = ResidualVQ(4, 2, 64, kmeans_init=True, kmeans_init_vectors=250, channel_first=False).train()
    batches = [torch.randn(100, 4) for _ in range(5)]
    stages = [rvq.stage(0), rvq.stage(1)]
    random_codebook = stages[0].codebook.clone()
    for step, batch in enumerate(batches, start=1):
        rvq(batch)
        initted = [bool(s.initted) for s in stages]
        # stage 0 needs 3 batches; stage 1 starts collecting once stage 0 is ready, and needs 3 more
        assert initted == [step >= 3, step >= 5], step
        if step < 3:
            assert torch.equal(stages[0].codebook, random_codebook) and int(stages[0].num_updates) == 0
    assert int(stages[0].num_updates) == 3 and int(stages[1].num_updates) == 1


def test_bf16_autocast_codes_and_no_side_effects_in_training_mode():
    torch.manual_seed(5)
    rvq = ResidualVQ(16, 4, 128, codebook_dim=8, kmeans_init=True, quantize_dropout=True).train()
    x = torch.randn(2, 16, 8, 8)
    before = {k: v.clone() for k, v in rvq.state_dict().items()}
    reference = rvq.encode(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(rvq.encode(x), reference)
    rvq.decode(reference)
    after = rvq.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    # the training step itself under autocast: fp32 statistics, finite codebooks
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = rvq(x)
    assert out.quantized.dtype == torch.float32
    assert all(rvq.stage(i).codebook.dtype == torch.float32 for i in range(4))
    assert all(torch.isfinite(rvq.stage(i).codebook).all() for i in range(4))


def test_rate_weighted_encode_trades_distortion_for_cheaper_codes():
    from vqcodec.quantize.kmeans import nearest_codes, penalised_codes

    torch.manual_seed(0)
    x = torch.randn(512, 8)
    rvq = _trained(ResidualVQ(dim=8, num_quantizers=3, codebook_size=16, channel_first=False), x)
    books = [rvq.stage(i).vectors_from_codes(torch.arange(16)) for i in range(3)]
    assert torch.equal(penalised_codes(x, books[0], torch.zeros(16)), nearest_codes(x, books[0]))

    nearest = rvq.encode(x)
    bits = [torch.full((16,), 8.0) for _ in range(3)]
    for b in bits:
        b[3] = 0.5  # one cheap code per stage
    assert torch.equal(rvq.encode(x, code_bits=bits, rate_weight=0.0), nearest)
    chosen = rvq.encode(x, code_bits=bits, rate_weight=0.5)

    def total_bits(codes):
        return sum(float(bits[s][codes[:, s]].sum()) for s in range(3))

    def error(codes):
        return float(((rvq.decode(codes) - x) ** 2).sum())

    assert total_bits(chosen) < total_bits(nearest)
    assert error(chosen) > error(nearest)
    assert (chosen == 3).float().mean() > (nearest == 3).float().mean()
    # a huge weight picks the cheap code everywhere
    assert bool((rvq.encode(x, code_bits=bits, rate_weight=1e6) == 3).all())
    with pytest.raises(ValueError, match="code_bits"):
        rvq.encode(x, code_bits=bits[:1], rate_weight=0.5)


def test_greedy_residual_codes_is_the_residual_vq_search_and_scripts():
    """The one plain greedy search (encoder fast paths, export programs, training tools) gives the
    quantizer's codes away from near ties, reports the error left after each stage, and is TorchScript."""
    from vqcodec.quantize.kmeans import greedy_residual_codes

    torch.manual_seed(0)
    rvq = ResidualVQ(dim=8, num_quantizers=3, codebook_size=16, kmeans_init=False)
    vectors = torch.randn(200, 8)
    tables = [rvq.stage(i).codebook.float() for i in range(3)]
    codes, left = greedy_residual_codes(vectors, tables)
    assert codes.shape == (200, 3) and codes.dtype == torch.int64 and left.shape == (200, 3)
    assert torch.equal(codes, rvq.encode(vectors[:, :, None]).reshape(200, 3))
    for k in range(1, 4):
        reconstruction = rvq.decode(codes[:, None, :k]).reshape(200, 8)
        assert torch.allclose(left[:, k - 1], ((vectors - reconstruction) ** 2).sum(1), atol=1e-4)
    norms = [(t * t).sum(1) for t in tables]
    scripted = torch.jit.script(greedy_residual_codes)
    assert torch.equal(scripted(vectors, tables, norms)[0], codes)
    empty_codes, empty_left = greedy_residual_codes(vectors, [])
    assert empty_codes.shape == (200, 0) and empty_left.shape == (200, 0)
