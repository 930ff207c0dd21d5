"""Options that vector-quantize-pytorch has: tuple results, masks, sync_codebook=False, losses, sampling,
affine codebooks, public expiry, FSQ/LFQ conventions, and the residual-VQ options."""

from __future__ import annotations

import pytest
import torch

from vqcodec.quantize import FSQ, LFQ, ResidualVQ, VectorQuantizer
from vqcodec.quantize.base import lengths_to_mask


def test_results_unpack_like_a_tuple_and_keep_names():
    vq = VectorQuantizer(8, 16).train()
    x = torch.randn(2, 8, 4, 4)
    out = vq(x)
    quantized, codes, loss = out
    assert quantized is out.quantized and codes is out.codes
    assert torch.equal(loss, out.total_loss) and loss.ndim == 0 and loss > 0
    assert out[1] is out.codes and len(out) == 3 and "commitment" in out.loss


def _padded(lengths, dim=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(lengths)
    x = torch.randn(len(lengths), int(lengths.max()), dim, generator=g) * 2
    mask = lengths_to_mask(lengths, x.shape[1])
    x = torch.where(mask[..., None], x, torch.full_like(x, 50.0))  # padding far from the data
    return x, mask


@pytest.mark.parametrize(
    "options",
    [
        dict(kmeans_init=True, threshold_ema_dead_code=0.5),
        dict(kmeans_init=True, dead_code_after_steps=1),
        dict(ema_update=False, threshold_ema_dead_code=2.0, affine_param=True),
    ],
)
def test_masked_padded_batch_updates_the_codebook_exactly_like_the_unpadded_batch(options):
    x, mask = _padded([7, 3, 5])
    padded_vq = VectorQuantizer(6, 8, channel_first=False, seed=3, **options).train()
    plain_vq = VectorQuantizer(6, 8, channel_first=False, seed=3, **options).train()
    plain_vq.load_state_dict(padded_vq.state_dict())
    for step in range(3):
        out = padded_vq(x + step, mask=mask)
        ref = plain_vq((x + step)[mask][None])
        assert torch.equal(out.codes[mask], ref.codes[0]) and bool((out.codes[~mask] == -1).all())
        assert torch.equal(out.quantized[~mask], (x + step)[~mask])  # padding comes back unchanged
        for name in out.loss:
            assert torch.equal(out.loss[name], ref.loss[name]), name
    for key, value in plain_vq.state_dict().items():
        assert torch.equal(padded_vq.state_dict()[key], value), key


def test_masked_rvq_and_lfq_match_unpadded_and_decode_minus_one():
    x, mask = _padded([5, 2, 4], dim=4)
    rvq = ResidualVQ(4, 3, 8, channel_first=False, kmeans_init=True).train()
    ref = ResidualVQ(4, 3, 8, channel_first=False, kmeans_init=True).train()
    ref.load_state_dict(rvq.state_dict())
    out, plain = rvq(x, mask=mask), ref(x[mask][None])
    assert torch.equal(out.codes[mask], plain.codes[0]) and bool((out.codes[~mask] == -1).all())
    assert torch.equal(out.quantized[mask], plain.quantized[0])
    assert torch.equal(out.quantized[~mask], x[~mask])
    for key, value in ref.state_dict().items():
        assert torch.equal(rvq.state_dict()[key], value), key
    decoded = rvq.eval().decode(out.codes)
    assert torch.equal(decoded[~mask], torch.zeros_like(decoded[~mask]))
    lfq = LFQ(4, 4, num_codebooks=2, channel_first=False).train()
    lout, lref = lfq(x, mask=mask), lfq(x[mask][None])
    assert torch.equal(lout.codes[mask], lref.codes[0]) and bool((lout.codes[~mask] == -1).all())
    for name in lout.loss:
        assert torch.allclose(lout.loss[name], lref.loss[name], atol=1e-6), name
    with pytest.raises(ValueError, match="mask shape"):
        rvq(x, mask=mask[:, :2])


def test_sync_codebook_false_runs_no_collectives(monkeypatch):
    import vqcodec.quantize.distributed as distributed

    calls = []
    monkeypatch.setattr(distributed, "is_distributed", lambda: True)
    monkeypatch.setattr(distributed.dist, "all_reduce", lambda *a, **k: calls.append("all_reduce"))
    monkeypatch.setattr(distributed.dist, "broadcast", lambda *a, **k: calls.append("broadcast"))
    monkeypatch.setattr(distributed.dist, "all_gather", lambda *a, **k: calls.append("all_gather"))
    monkeypatch.setattr(distributed.dist, "get_rank", lambda: 0)
    monkeypatch.setattr(distributed.dist, "get_world_size", lambda: 2)
    local = ResidualVQ(
        4, 2, 8, kmeans_init=True, threshold_ema_dead_code=1.0, quantize_dropout=True, sync_codebook=False
    ).train()
    local(torch.randn(3, 4, 5, 5))
    assert calls == []
    synced = VectorQuantizer(4, 8).train()
    synced(torch.randn(3, 4, 5, 5))
    assert "all_reduce" in calls  # the default still synchronises


def test_freeze_codebook_and_public_expire_codes():
    vq = VectorQuantizer(4, 8, dead_code_after_steps=1).train()
    before = {k: v.clone() for k, v in vq.state_dict().items()}
    out = vq(torch.randn(2, 4, 3, 3), freeze_codebook=True)
    assert "commitment" in out.loss
    for key, value in before.items():
        assert torch.equal(vq.state_dict()[key], value), key
    vq.steps_unused[:3] = 5
    batch = torch.randn(2, 4, 3, 3) + 10
    assert vq.expire_codes_(batch) == 3
    assert bool((vq.codebook[:3] > 5).all()) and torch.equal(vq.codebook[3:], before["codebook"][3:])
    assert vq.expire_codes_(batch) == 0


def test_orthogonal_and_diversity_losses_train_a_learned_codebook():
    torch.manual_seed(0)
    vq = VectorQuantizer(4, 6, ema_update=False, orthogonal_reg_weight=1.0, channel_first=False).train()
    with torch.no_grad():
        vq.codebook.copy_(torch.randn(1, 4).repeat(6, 1) + 0.01 * torch.randn(6, 4))
    start = vq(torch.randn(64, 4)).loss["orthogonal"].item()
    optimiser = torch.optim.SGD(vq.parameters(), lr=1.0)
    for _ in range(50):
        optimiser.zero_grad()
        vq(torch.randn(64, 4)).loss["orthogonal"].backward()
        optimiser.step()
    assert vq(torch.randn(64, 4)).loss["orthogonal"].item() < start / 4
    diverse = VectorQuantizer(4, 8, codebook_diversity_loss_weight=1.0, channel_first=False).train()
    x = torch.randn(128, 4, requires_grad=True)
    loss = diverse(x).loss["diversity"]
    assert -torch.log(torch.tensor(8.0)) - 1e-5 <= loss <= 0
    loss.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_sampling_is_stochastic_in_training_only_and_layernorm_after_projection():
    vq = VectorQuantizer(4, 16, sample_codebook_temp=10.0, channel_first=False).train()
    x = torch.randn(256, 4)
    nearest = vq.encode(x)
    sampled = vq(x, freeze_codebook=True).codes
    assert (sampled != nearest).float().mean() > 0.2
    assert torch.equal(vq.eval()(x).codes, nearest)
    normed = VectorQuantizer(6, 16, codebook_dim=4, layernorm_after_project_in=True, channel_first=False)
    z = normed._to_codebook_space(torch.randn(50, 6) * 7 + 3)
    assert torch.allclose(z.mean(1), torch.zeros(50), atol=1e-5)
    with pytest.raises(ValueError, match="layernorm_after_project_in"):
        VectorQuantizer(6, 16, layernorm_after_project_in=True)


def test_affine_codebook_tracks_batch_statistics():
    vq = VectorQuantizer(3, 32, affine_param=True, ema_update=False, channel_first=False).train()
    x = torch.randn(512, 3) * 0.1 + 5.0
    vq(x)
    table = vq._lookup_table()
    assert torch.allclose(table.mean(0), x.mean(0), atol=1e-4)
    assert torch.allclose(table.std(0, unbiased=False), x.std(0, unbiased=False), rtol=1e-3)
    vq.eval()
    assert torch.equal(vq.decode(vq.encode(x)), vq(x).quantized)
    assert "batch_mean" in vq.state_dict() and "batch_mean" not in VectorQuantizer(3, 32).state_dict()


def test_fsq_packs_like_upstream_and_lfq_codebook_size_is_per_codebook():
    fsq = FSQ((8, 5, 3), dim=3)
    codes = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [7, 4, 2]])
    assert fsq.codes_to_indices(codes).tolist() == [1, 8, 40, 119]
    assert torch.equal(fsq.indices_to_codes(fsq.codes_to_indices(codes)), codes)
    assert torch.equal(fsq.indices_to_values(fsq.codes_to_indices(codes)), fsq.decode(codes))
    lfq = LFQ(codebook_size=16, num_codebooks=3)
    assert lfq.dim == 12 and lfq.alphabet == (16, 16, 16)
    bsq = LFQ(codebook_size=16, spherical=True, codebook_scale=2.0).eval()
    q = bsq(torch.randn(5, 4, 3)).quantized
    assert torch.allclose(q.norm(dim=1), torch.full((5, 3), 2.0))


def test_rvq_all_codes_per_stage_losses_and_minus_one_decode():
    torch.manual_seed(0)
    rvq = ResidualVQ(4, 3, 16, return_all_codes=True, per_stage_losses=True, quantize_dropout=True).train()
    x = torch.randn(2, 4, 3, 3)
    torch.manual_seed(5)
    out = rvq(x)
    active = int(out.metrics["active_stages"])
    assert out.all_codes.shape == (3, 2, 4, 3, 3)
    assert torch.allclose(out.all_codes.sum(0), out.quantized, atol=1e-6)
    assert set(out.loss) == {f"stage{i}/commitment" for i in range(active)}
    rvq.eval()
    codes = rvq.encode(x)
    dropped = codes.clone()
    dropped[..., 2] = -1
    assert torch.equal(rvq.decode(dropped), rvq.decode(codes[..., :2]))
    dropped[0, 0, 0, 2] = -2
    with pytest.raises(ValueError, match="below -1"):
        rvq.decode(dropped)


def test_rvq_dropout_multiple_of_and_fixed_seed():
    def draws(**kw):
        rvq = ResidualVQ(2, 8, 4, quantize_dropout=True, **kw).train()
        return [int(rvq(torch.randn(1, 2, 2, 2)).metrics["active_stages"]) for _ in range(20)]

    multiples = draws(quantize_dropout_multiple_of=4)
    assert set(multiples) <= {4, 8} and len(set(multiples)) == 2
    torch.manual_seed(1)
    first = draws(quantize_dropout_seed=7)
    torch.manual_seed(2)
    assert draws(quantize_dropout_seed=7) == first and len(set(first)) > 2


def test_rvq_per_stage_sizes_shared_projection_and_grad_frac():
    rvq = ResidualVQ(6, 3, 8, codebook_sizes=(4, 8, 16), codebook_dim=3, shared_projection=True).eval()
    assert rvq.alphabet == (4, 8, 16) and rvq.stage(2).codebook.shape == (16, 3)
    assert rvq.project_in is not None and rvq.stage(0).project_in is None
    x = torch.randn(2, 6, 4, 4)
    codes = rvq.encode(x)
    assert int(codes[..., 0].max()) < 4 and torch.equal(rvq.decode(codes), rvq(x).quantized)
    rebuilt = ResidualVQ.from_config(rvq.config)
    assert rebuilt.state_dict().keys() == rvq.state_dict().keys()
    with pytest.raises(ValueError, match="codebook_sizes"):
        ResidualVQ(6, 3, 8, codebook_sizes=(4, 8))

    def input_grad(frac):
        torch.manual_seed(0)
        model = ResidualVQ(4, 2, 8, quant_grad_frac=frac, channel_first=False).train()
        x = torch.randn(32, 4, requires_grad=True)
        model(x).loss["commitment"].backward()
        return x.grad

    # stage 1's commitment gradient w.r.t. its residual: with frac 0 it reaches x once (the residual
    # is x - sg(q0)); with frac 0.5 the straight-through path through q0 cancels half of it
    g0, g_half = input_grad(0.0), input_grad(0.5)
    assert not torch.allclose(g0, g_half)


def test_beam_search_never_loses_to_greedy_and_combines_with_rate():
    torch.manual_seed(0)
    rvq = ResidualVQ(4, 4, 8, channel_first=False).eval()
    for i in range(4):
        rvq.stage(i).codebook.copy_(torch.randn(8, 4) * 0.7**i)
    x = torch.randn(400, 4)
    greedy, beam = rvq.encode(x), rvq.encode(x, beam_size=8)
    err_greedy = (rvq.decode(greedy) - x).pow(2).sum(1)
    err_beam = (rvq.decode(beam) - x).pow(2).sum(1)
    assert bool((err_beam <= err_greedy + 1e-5).all()) and err_beam.mean() < err_greedy.mean()
    assert torch.equal(rvq.encode(x, beam_size=1), greedy)
    bits = [torch.linspace(1.0, 8.0, 8) for _ in range(4)]
    cheap = rvq.encode(x, beam_size=4, code_bits=bits, rate_weight=2.0)
    rate = sum(bits[i][cheap[:, i]].sum() for i in range(4))
    assert rate < sum(bits[i][beam[:, i]].sum() for i in range(4))


@pytest.mark.parametrize("separate", [False, True])
def test_multi_head_codes_layout_exact_decode_and_masks(separate):
    torch.manual_seed(0)
    options = dict(heads=2, separate_codebook_per_head=separate, kmeans_init=True)
    vq = VectorQuantizer(8, 16, codebook_dim=4, **options)
    x = torch.randn(3, 8, 4, 4)
    out = vq.train()(x)
    assert out.codes.shape == (3, 4, 4, 2) and vq.alphabet == (16, 16)
    assert len(vq.head_quantizers) == (2 if separate else 1) and bool(vq.head(1).initted)
    vq.eval()
    codes = vq.encode(x)
    assert torch.equal(vq.decode(codes), vq(x).quantized) and torch.equal(codes, vq(x).codes)
    mask = torch.rand(3, 4, 4) > 0.3
    masked = vq(x, mask=mask)
    assert bool((masked.codes[~mask] == -1).all()) and torch.equal(masked.codes[mask], codes[mask])
    with pytest.raises(ValueError, match="heads"):
        ResidualVQ(8, 2, 16, heads=2)


@pytest.mark.parametrize("preserve_symmetry", [False, True])
def test_fsq_options_and_indices_match_upstream(preserve_symmetry):
    upstream = pytest.importorskip("vector_quantize_pytorch")
    levels = [8, 5, 4]
    theirs = upstream.FSQ(levels=levels, preserve_symmetry=preserve_symmetry)
    ours = FSQ(levels, channel_first=False, preserve_symmetry=preserve_symmetry).eval()
    x = torch.randn(2, 50, 3) * 2
    their_out, their_indices = theirs(x)
    codes = ours.encode(x)
    assert torch.equal(ours.codes_to_indices(codes), their_indices)
    assert torch.allclose(ours.decode(codes), their_out, atol=1e-6)
    assert torch.allclose(
        ours.indices_to_values(their_indices), theirs.indices_to_codes(their_indices), atol=1e-6
    )


def test_fsq_num_codebooks_noise_dropout_and_scale():
    fsq = FSQ(
        (5, 3), num_codebooks=2, preserve_symmetry=True, noise_dropout=1.0, scale=0.5, channel_first=False
    )
    assert fsq.dim == 4 and fsq.alphabet == (5, 3, 5, 3)
    x = torch.randn(64, 4)
    codes = fsq.encode(x)
    assert fsq.codes_to_indices(codes).shape == (64, 2)
    assert torch.equal(fsq.indices_to_codes(fsq.codes_to_indices(codes)), codes)
    clean = fsq.eval()(x).quantized
    assert torch.equal(clean, fsq.decode(codes)) and float(clean.abs().max()) <= 0.5
    noisy = fsq.train()(x).quantized
    assert not torch.equal(noisy, clean) and torch.equal(fsq(x).codes, codes)
    with pytest.raises(ValueError, match="preserve_symmetry"):
        FSQ((5, 3), noise_dropout=0.1)
