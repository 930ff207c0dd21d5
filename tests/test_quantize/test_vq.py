"""VectorQuantizer: layouts, exactness of encode/decode, determinism, EMA, k-means, revival, autocast."""

from __future__ import annotations

import copy

import pytest
import torch

from vqcodec.quantize import VectorQuantizer, VectorQuantizerConfig
from vqcodec.quantize.kmeans import kmeans, kmeans_plusplus, nearest_codes


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def _same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    ("shape", "channel_first", "code_shape"),
    [
        ((2, 8, 5, 7), True, (2, 5, 7)),
        ((2, 8, 3, 5, 7), True, (2, 3, 5, 7)),
        ((2, 11, 8), False, (2, 11)),
    ],
)
def test_layouts_and_roundtrip(shape, channel_first, code_shape):
    torch.manual_seed(0)
    vq = VectorQuantizer(8, 32, channel_first=channel_first).eval()
    x = torch.randn(shape)
    out = vq(x)
    assert out.quantized.shape == x.shape
    assert out.codes.shape == code_shape and out.codes.dtype == torch.int64
    assert torch.equal(vq.encode(x), out.codes)
    assert torch.equal(vq.decode(out.codes), out.quantized)
    # quantized vectors are codebook rows
    flat = out.quantized.movedim(1, -1) if channel_first else out.quantized
    assert torch.equal(flat.reshape(-1, 8), vq.codebook[out.codes.reshape(-1)])


def test_wrong_channel_count_is_a_clear_error():
    vq = VectorQuantizer(8, 16)
    with pytest.raises(ValueError, match="expected dim=8"):
        vq(torch.randn(2, 4, 3, 3))
    with pytest.raises(ValueError, match="out of range"):
        vq.decode(torch.full((1, 2, 2), 16))


def test_nearest_codes_matches_brute_force_and_chunking():
    torch.manual_seed(1)
    z, codebook = torch.randn(3000, 24), torch.randn(300, 24)
    reference = torch.cdist(z.double(), codebook.double()).argmin(1)
    assert torch.equal(nearest_codes(z, codebook), reference)
    assert torch.equal(nearest_codes(z, codebook, chunk_rows=7), reference)


def test_exact_ties_go_to_the_lowest_index_in_any_batch():
    torch.manual_seed(2)
    codebook = torch.randn(64, 16)
    codebook[40] = codebook[3]  # duplicated codeword: the tie must resolve to 3 everywhere
    z = codebook[3].repeat(50, 1) + 1e-3 * torch.randn(50, 16)
    full = nearest_codes(z, codebook)
    assert (full == 3).all()
    singles = torch.cat([nearest_codes(z[i : i + 1], codebook) for i in range(50)])
    assert torch.equal(full, singles)


@pytest.mark.parametrize("codebook_dim", [None, 6])
def test_encode_is_independent_of_batch_size(codebook_dim):
    torch.manual_seed(3)
    vq = VectorQuantizer(12, 512, codebook_dim=codebook_dim, channel_first=False)
    x = torch.randn(700, 12)
    full = vq.encode(x)
    for size in (1, 3, 64, 333):
        parts = torch.cat([vq.encode(x[i : i + size]) for i in range(0, 700, size)])
        assert torch.equal(parts, full)


def test_encode_and_decode_have_no_side_effects_in_training_mode():
    torch.manual_seed(4)
    vq = VectorQuantizer(8, 32, kmeans_init=True, threshold_ema_dead_code=2.0).train()
    before = _state(vq)
    codes = vq.encode(torch.randn(2, 8, 4, 4))
    vq.decode(codes)
    assert _same_state(before, _state(vq))
    vq(torch.randn(2, 8, 4, 4))  # forward in training mode does update
    assert not _same_state(before, _state(vq))


def test_ema_update_follows_the_data_with_configured_decay():
    torch.manual_seed(5)
    vq = VectorQuantizer(4, 1, decay=0.5, channel_first=False).train()
    start = vq.codebook.clone()
    data = torch.full((10, 4), 3.0)
    vq(data)
    # EMA sums / EMA counts with Laplace smoothing: (0.5 c + 0.5 * 30) / (0.5 + 0.5 * 10), eps ~ 0
    expected = (0.5 * start + 0.5 * 30.0) / 5.5
    assert torch.allclose(vq.codebook, expected, atol=1e-4)
    for _ in range(30):
        vq(data)
    assert torch.allclose(vq.codebook, data[:1], atol=1e-3)


def test_kmeans_init_fits_the_first_batch():
    torch.manual_seed(6)
    centers = torch.randn(8, 16) * 5
    x = (centers[torch.randint(8, (2048,))] + 0.1 * torch.randn(2048, 16))
    random_init = VectorQuantizer(16, 64, channel_first=False).eval()
    vq = VectorQuantizer(16, 64, kmeans_init=True, channel_first=False)
    assert not bool(vq.initted)
    vq.train()
    vq(x)
    assert bool(vq.initted)
    vq.eval()
    mse = (vq(x).quantized - x).pow(2).mean()
    assert mse < 0.05
    assert mse < (random_init(x).quantized - x).pow(2).mean()


@pytest.mark.parametrize("criterion", [{"threshold_ema_dead_code": 0.5}, {"dead_code_after_steps": 3}])
def test_dead_codes_are_revived_with_current_latents(criterion):
    torch.manual_seed(7)
    vq = VectorQuantizer(4, 16, decay=0.8, channel_first=False, **criterion).train()
    with torch.no_grad():
        vq.codebook[8:] += 100.0  # codes 8.. are never the nearest: they must die and be replaced
        vq.embed_avg.copy_(vq.codebook)
    x = torch.randn(512, 4)
    metrics = [vq(x).metrics for _ in range(12)]
    assert (vq.codebook.abs().max(dim=1).values < 10).all()
    assert metrics[-1]["usage"] > 0.5  # revived codes (drawn from the batch) are in use
    assert any(m["dead_codes"] > 0 for m in metrics)
    assert set(metrics[-1]) >= {"usage", "perplexity", "dead_codes"}


@pytest.mark.parametrize("through", ["forward", "expire_codes_"])
def test_revive_by_error_draws_the_latents_the_codebook_fits_worst(through):
    # 1,000 latents sit exactly on code 0 (error 0), 6 far ones have all the error: the 5 revived
    # codes must come from those 6, while uniform draws would almost surely take the near ones
    near = torch.zeros(1000, 4)
    far = torch.full((6, 4), 5.0) + torch.arange(6.0)[:, None]
    x = torch.cat([near, far])
    for by_error in (True, False):
        vq = VectorQuantizer(4, 6, threshold_ema_dead_code=0.5, revive_by_error=by_error, channel_first=False)
        with torch.no_grad():
            vq.codebook.zero_()
            vq.codebook[1:] += 1000.0  # codes 1.. are dead and never the nearest
            vq.embed_avg.copy_(vq.codebook)
            vq.cluster_size.fill_(0.1)
            vq.cluster_size[0] = 1000.0
        if through == "forward":
            vq.train()(x)
        else:
            assert vq.expire_codes_(x) == 5
        revived = vq.codebook[1:]
        from_far = (revived[:, None, :] - far[None]).abs().sum(-1).min(dim=1).values < 1e-4
        if by_error:
            assert bool(from_far.all())
        else:
            assert not bool(from_far.any())
    with pytest.raises(TypeError):
        VectorQuantizer(4, 6, revive_by_errors=True)


def test_straight_through_and_rotation_trick_gradients():
    torch.manual_seed(8)
    x = torch.randn(3, 8, 4, 4, requires_grad=True)
    vq = VectorQuantizer(8, 16, commitment_weight=0.0).train()
    vq(x).quantized.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))
    x.grad = None
    rot = VectorQuantizer(8, 16, commitment_weight=0.0, rotation_trick=True).eval()
    out = rot(x)
    assert torch.equal(out.quantized, rot.decode(out.codes))  # value is exactly the codeword
    out.quantized.sum().backward()
    assert x.grad is not None and not torch.allclose(x.grad, torch.ones_like(x))


def test_learned_codebook_gets_codebook_and_commitment_losses():
    torch.manual_seed(9)
    vq = VectorQuantizer(8, 16, ema_update=False, commitment_weight=0.25).train()
    x = torch.randn(2, 8, 4, 4)
    out = vq(x)
    assert set(out.loss) == {"commitment", "codebook"}
    out.total_loss.backward()
    assert vq.codebook.grad is not None and vq.codebook.grad.abs().sum() > 0


@pytest.mark.parametrize("kwargs", [{}, {"codebook_dim": 4}, {"use_cosine_sim": True}])
def test_bf16_autocast_gives_fp32_codes(kwargs):
    torch.manual_seed(10)
    vq = VectorQuantizer(16, 256, **kwargs).eval()
    x = torch.randn(4, 16, 8, 8)
    reference = vq.encode(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(vq.encode(x), reference)
        out = vq(x)
    assert torch.equal(out.codes, reference)
    assert out.quantized.dtype == torch.float32


def test_config_roundtrip_rebuilds_the_same_module():
    vq = VectorQuantizer(8, 64, codebook_dim=4, use_cosine_sim=True, decay=0.9, channel_first=False)
    cfg = vq.config
    assert isinstance(cfg, VectorQuantizerConfig)
    with pytest.raises(AttributeError):
        cfg.decay = 0.5  # frozen
    rebuilt = VectorQuantizer.from_config(cfg)
    rebuilt.load_state_dict(vq.state_dict())
    x = torch.randn(5, 8)
    assert torch.equal(rebuilt.encode(x), vq.encode(x))
    assert rebuilt.alphabet == (64,)
    assert copy.deepcopy(cfg) == cfg


def test_near_ties_between_distinct_codes_are_reranked_consistently():
    torch.manual_seed(11)
    codebook = torch.randn(128, 16)
    codebook[7] = torch.nn.functional.normalize(codebook[7], dim=0) * 0.1
    codebook[90] = -codebook[7]  # distinct codes, both nearest to the origin, at the same distance
    z = 1e-6 * torch.randn(40, 16)  # gaps far below the matmul tolerance: the exact re-ranking decides
    z[0] = 0.0  # an exact tie: lowest index
    full = nearest_codes(z, codebook)
    assert int(full[0]) == 7
    exact = torch.stack([((row.double() - codebook.double()) ** 2).sum(1).argmin() for row in z])
    assert set(full.tolist()) <= {7, 90}
    assert torch.equal(full[1:], exact[1:])
    singles = torch.cat([nearest_codes(z[i : i + 1], codebook) for i in range(40)])
    assert torch.equal(full, singles)


def test_kmeans_plusplus_seeds_one_centroid_per_separated_cluster_reproducibly():
    g = torch.Generator().manual_seed(3)
    centres = torch.randn(8, 4, generator=g) * 100.0
    samples = (centres[:, None, :] + torch.randn(8, 50, 4, generator=g)).reshape(-1, 4)
    seeds = kmeans_plusplus(samples, 8, torch.Generator().manual_seed(0))
    again = kmeans_plusplus(samples, 8, torch.Generator().manual_seed(0))
    assert torch.equal(seeds, again)
    owner = torch.cdist(seeds, centres).argmin(1)  # which cluster each seed came from
    assert sorted(owner.tolist()) == list(range(8))  # uniform draws would repeat clusters
    centroids, counts = kmeans(samples, 8, 5, torch.Generator().manual_seed(0))
    assert counts.tolist() == [50.0] * 8
    assert float(torch.cdist(centroids, centres).min(1).values.max()) < 1.0


def test_kmeans_plusplus_with_fewer_distinct_samples_than_clusters():
    samples = torch.ones(5, 3)  # every distance is 0 after the first draw: uniform draws
    seeds = kmeans_plusplus(samples, 9, torch.Generator().manual_seed(0))
    assert seeds.shape == (9, 3) and torch.equal(seeds, torch.ones(9, 3))
    centroids, counts = kmeans(samples[:2], 4, 3, torch.Generator().manual_seed(1))
    assert centroids.shape == (4, 3) and float(counts.sum()) == 2.0
