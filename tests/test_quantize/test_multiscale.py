"""MultiScaleVQ options: padding masks / lens, nested dropout, per-level codebook sizes, share_quant_resi."""

from __future__ import annotations

import json

import pytest
import torch

from vqcodec.quantize import MultiScaleVQ, build_quantizer, config_from_dict, config_to_dict

SCALES = (1, 2, 4, 8)


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _smooth(batch: int, *shape: int, seed: int = 0, dim: int = 4) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(batch, dim, *(max(1, s // 2) for s in shape), generator=g)
    mode = ("linear", "bilinear", "trilinear")[len(shape) - 1]
    return torch.nn.functional.interpolate(coarse, size=shape, mode=mode) + 0.1 * torch.randn(
        batch, dim, *shape, generator=g
    )


# ---------------------------------------------------------------- masks


def _stateful_model(**options) -> MultiScaleVQ:
    torch.manual_seed(0)
    return MultiScaleVQ(
        4,
        16,
        SCALES,
        shared_codebook=False,
        kmeans_init=True,
        kmeans_iters=3,
        threshold_ema_dead_code=1.5,
        commitment_weight=1.0,
        **options,
    ).train()


def test_padded_items_leave_every_level_as_the_unpadded_batch():
    padded, plain = _stateful_model(), _stateful_model()
    keep = torch.tensor([True, False, True, False])  # padded items interleaved with real ones
    for step in range(3):
        real = _smooth(2, 8, 8, seed=step)
        batch = torch.full((4, 4, 8, 8), 1e3)  # garbage where padded
        batch[keep] = real
        mask = keep[:, None, None].expand(4, 8, 8)
        out = padded(batch, mask)
        ref = plain(real)
        assert torch.equal(out.loss["commitment"], ref.loss["commitment"])
        assert torch.equal(out.quantized[keep], ref.quantized)
        assert torch.equal(out.quantized[~keep], torch.zeros_like(out.quantized[~keep]))
        assert torch.equal(out.codes[keep], ref.codes) and bool((out.codes[~keep] == -1).all())
        _assert_same_state(_state(padded), _state(plain))
    assert all(bool(padded.level(i).initted) for i in range(4))
    assert int(padded.level(3).num_updates) == 3  # k-means init, then an EMA update every step
    # the same garbage unmasked does change the codebooks (the comparison above can fail)
    unmasked = _stateful_model()
    unmasked(torch.where(keep[:, None, None, None], _smooth(4, 8, 8, seed=0), torch.tensor(1e3)))
    fresh = _stateful_model()
    fresh(_smooth(2, 8, 8, seed=0))
    assert not torch.equal(unmasked.level(0).codebook, fresh.level(0).codebook)


def test_padded_positions_feed_nothing_and_decode_to_zero():
    lens = torch.tensor([16, 9, 4])
    mask = torch.arange(16)[None, :] < lens[:, None]
    x = _smooth(3, 16, seed=1)
    garbage = torch.where(mask[:, None], x, torch.randn(3, 4, 16) * 100)
    runs = []
    for inputs, kwargs in ((x, {"mask": mask}), (garbage, {"mask": mask}), (x, {"lens": lens})):
        torch.manual_seed(0)
        m = MultiScaleVQ(4, 16, (1, 3, 5, 16), spatial_dims=1, shared_codebook=False, kmeans_init=True)
        m.train()
        outs = [m(inputs, **kwargs) for _ in range(2)]
        runs.append((outs, _state(m), m))
    for outs, state, _ in runs[1:]:
        _assert_same_state(state, runs[0][1])
        for a, b in zip(outs, runs[0][0]):
            assert torch.equal(a.quantized, b.quantized) and torch.equal(a.codes, b.codes)
            assert torch.equal(a.total_loss, b.total_loss)
    out = runs[0][0][-1]
    assert torch.equal(out.quantized * ~mask[:, None], torch.zeros_like(out.quantized))
    assert bool((out.quantized[:, :, :4] != 0).all())
    # codes are -1 exactly at the cells that hold no valid position
    weight = [torch.nn.functional.adaptive_avg_pool1d(mask[:, None].float(), s)[:, 0] for s in (1, 3, 5, 16)]
    assert torch.equal(out.codes == -1, torch.cat(weight, 1) == 0)
    # eval: encode takes the mask, decode(encode) equals forward at valid positions; no state changes
    m = runs[0][2].eval()
    before = _state(m)
    codes = m.encode(garbage, mask)
    _assert_same_state(before, _state(m))
    assert torch.equal(codes, m(x, lens=lens).codes) and torch.equal(codes, m.encode(x, lens=lens))
    assert torch.equal(m.decode(codes, (16,)) * mask[:, None], m(x, mask).quantized)
    # an all-valid mask is the unmasked path, bit for bit
    full = torch.ones(3, 16, dtype=torch.bool)
    assert torch.equal(m(x, full).quantized, m(x).quantized) and torch.equal(
        m(x, full).loss["commitment"], m(x).loss["commitment"]
    )
    with pytest.raises(ValueError, match="either"):
        m(x, mask, lens=lens)
    with pytest.raises(TypeError):
        m(x, mask.float())
    with pytest.raises(ValueError, match="shape"):
        m(x, mask[:, :8])
    with pytest.raises(ValueError, match="1-D"):
        MultiScaleVQ(4, 16, SCALES)(_smooth(2, 8, 8), lens=torch.tensor([8, 4]))


def test_masked_codes_are_float32_under_autocast():
    torch.manual_seed(0)
    m = MultiScaleVQ(4, 32, SCALES).eval()
    x = _smooth(2, 8, 8, seed=3)
    mask = torch.ones(2, 8, 8, dtype=torch.bool)
    mask[1, 4:] = False
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(x, mask)
    assert out.quantized.dtype == torch.float32 and torch.equal(out.codes, m(x, mask).codes)


# ---------------------------------------------------------------- nested dropout


def _cutoffs(m: MultiScaleVQ, steps: int) -> list[int]:
    x = _smooth(1, 8, seed=0)
    return [int(m(x, freeze_codebook=True).metrics["nested_cutoff"]) for _ in range(steps)]


def test_nested_dropout_cutoff_bounds_seed_and_eval():
    def make(p: float, seed: int | None = 5, min_levels: int = 2) -> MultiScaleVQ:
        return MultiScaleVQ(
            4,
            8,
            (1, 2, 3, 4, 8),
            spatial_dims=1,
            nested_dropout=p,
            nested_dropout_min_levels=min_levels,
            nested_dropout_seed=seed,
        ).train()

    always = _cutoffs(make(1.0), 100)
    assert set(always) == {1, 2, 3}  # uniform in [min_levels - 1, L - 2]: never the last level
    half = _cutoffs(make(0.5), 200)  # count(4) ~ Binomial(200, 0.5): the bounds are 6 sigma
    assert 58 < half.count(4) < 142 and set(half) == {1, 2, 3, 4}  # 4 = nothing dropped
    assert _cutoffs(make(0.5), 30) == half[:30]  # the same seed gives the same draws
    assert _cutoffs(make(0.5, seed=6), 30) != half[:30]
    torch.manual_seed(3)
    unseeded = _cutoffs(make(0.5, seed=None), 30)
    torch.manual_seed(3)
    assert _cutoffs(make(0.5, seed=None), 30) == unseeded  # torch's global generator without a seed
    assert set(_cutoffs(make(1.0, min_levels=5), 20)) == {4}  # min_levels = L keeps every level
    assert set(_cutoffs(make(1.0).eval(), 20)) == {4}  # off in eval
    assert "nested_cutoff" not in make(0.0)(_smooth(1, 8)).metrics
    for bad in (
        {"nested_dropout": 1.5},
        {"nested_dropout": -0.1},
        {"nested_dropout_min_levels": 0},
        {"nested_dropout_min_levels": 6},
    ):
        with pytest.raises(ValueError, match="nested_dropout"):
            MultiScaleVQ(4, 8, (1, 2, 3, 4, 8), spatial_dims=1, **bad)
    rebuilt = build_quantizer(config_from_dict(json.loads(json.dumps(config_to_dict(make(0.5).config)))))
    assert rebuilt.config == make(0.5).config and _cutoffs(rebuilt.train(), 30) == half[:30]


def test_nested_dropout_output_is_the_first_levels_sum():
    torch.manual_seed(0)
    options = dict(shared_codebook=False, commitment_weight=1.0)
    m = MultiScaleVQ(4, 32, SCALES, nested_dropout=1.0, nested_dropout_seed=0, **options)
    x = _smooth(2, 8, 8, seed=4)
    m.train()(x)  # move the codebooks off their init
    seen = set()
    for _ in range(12):
        out = m.train()(x, freeze_codebook=True)
        cutoff = int(out.metrics["nested_cutoff"])
        seen.add(cutoff)
        kept = cutoff + 1
        prefix = sum(m.tokens_per_level[:kept])
        # reference: eval mode with only the first `kept` levels
        codes = m.eval().encode(x)
        assert torch.equal(out.codes, codes)  # every level is still quantized
        assert torch.equal(out.quantized, m.decode(codes[:, :prefix], (8, 8)))
        short = MultiScaleVQ(4, 32, SCALES[:kept], **options)
        short.load_state_dict({k: v for k, v in m.state_dict().items() if k in short.state_dict()})
        ref = short.eval()(x)
        assert torch.equal(out.quantized, ref.quantized) and torch.equal(out.codes[:, :prefix], ref.codes)
        assert torch.equal(out.loss["commitment"], ref.loss["commitment"])  # mean over the kept levels
    assert seen == {0, 1, 2}
    # the levels after the cutoff still update their codebooks, as upstream
    before = m.level(3).codebook.clone()
    steps = int(m.level(3).num_updates)
    out = m.train()(x)
    assert int(out.metrics["nested_cutoff"]) < 3 and int(m.level(3).num_updates) == steps + 1
    assert not torch.equal(m.level(3).codebook, before)
    # and get no gradient through the output or the loss
    latents = x.clone().requires_grad_(True)
    out = m(latents)
    (out.quantized.sum() + out.total_loss).backward()
    assert latents.grad is not None and bool(latents.grad.abs().sum() > 0)


def test_decode_of_a_level_prefix_and_bad_lengths():
    torch.manual_seed(0)
    m = MultiScaleVQ(4, 16, SCALES).eval()
    codes = m.encode(_smooth(2, 8, 8))
    partial = codes.clone()
    partial[:, 5:] = -1  # -1 tokens still pass through phi, a prefix stops at its last level
    assert m.decode(codes[:, :5]).shape == (2, 4, 8, 8)
    assert not torch.equal(m.decode(codes[:, :5]), m.decode(partial))
    with pytest.raises(ValueError, match="first k levels"):
        m.decode(codes[:, :6])


# ---------------------------------------------------------------- per-level codebook sizes


def test_per_level_codebook_sizes():
    sizes = (4, 8, 16, 32)
    torch.manual_seed(0)
    m = MultiScaleVQ(4, sizes, SCALES, shared_codebook=False, kmeans_init=True, threshold_ema_dead_code=1.0)
    assert [m.level(i).codebook.shape[0] for i in range(4)] == list(sizes)
    assert m.alphabet == (32,) and m.config.codebook_size == 32 and m.config.codebook_sizes == sizes
    x = _smooth(3, 8, 8, seed=2)
    for _ in range(3):
        out = m.train()(x)
    for level, size in zip(m.split_codes(out.codes), sizes):
        assert int(level.min()) >= 0 and int(level.max()) < size
    m.eval()
    codes = m.encode(x)
    assert int(m.split_codes(codes)[1].max()) >= 4  # level 1 uses more than level 0's range
    assert torch.equal(m.decode(codes), m(x).quantized) and torch.equal(codes, m(x).codes)
    bad = codes.clone()
    bad[:, 0] = 4
    with pytest.raises(ValueError, match="range"):
        m.decode(bad)
    rebuilt = build_quantizer(config_from_dict(json.loads(json.dumps(config_to_dict(m.config)))))
    assert rebuilt.config == m.config
    rebuilt.load_state_dict(m.state_dict())
    assert torch.equal(rebuilt.eval().encode(x), codes)
    with pytest.raises(ValueError, match="shared_codebook"):
        MultiScaleVQ(4, sizes, SCALES)
    with pytest.raises(ValueError, match="shared_codebook"):
        MultiScaleVQ(4, (8, 8, 8, 8), SCALES, shared_codebook=True)
    with pytest.raises(ValueError, match="one per level"):
        MultiScaleVQ(4, (8, 16), SCALES, shared_codebook=False)
    # equal per-level sizes are the int path, bit for bit
    outs = []
    for size in (16, (16, 16, 16, 16)):
        torch.manual_seed(0)
        msvq = MultiScaleVQ(4, size, SCALES, shared_codebook=False, kmeans_init=True).train()
        outs.append((msvq(x), _state(msvq)))
    assert torch.equal(outs[0][0].quantized, outs[1][0].quantized)
    _assert_same_state(outs[0][1], outs[1][1])


# ---------------------------------------------------------------- share_quant_resi


def _convs(m: MultiScaleVQ) -> int:
    return sum(isinstance(mod, torch.nn.Conv2d) for mod in m.modules())


def test_share_quant_resi_counts_selection_and_default():
    scales = (1, 2, 3, 4, 8)
    assert _convs(MultiScaleVQ(4, 16, scales)) == 1
    assert _convs(MultiScaleVQ(4, 16, scales, share_quant_resi=3)) == 3
    assert _convs(MultiScaleVQ(4, 16, scales, share_quant_resi=0)) == 5
    assert _convs(MultiScaleVQ(4, 16, scales, share_quant_resi=-1)) == 5
    assert _convs(MultiScaleVQ(4, 16, scales, share_quant_resi=9)) == 5
    assert _convs(MultiScaleVQ(4, 16, scales, quant_resi=0.0, share_quant_resi=3)) == 0
    three = MultiScaleVQ(4, 16, scales, share_quant_resi=3)
    assert three.phi_levels is not None
    assert [list(three.phi_levels).index(three.level_phi(i)) for i in range(5)] == [0, 0, 1, 2, 2]
    # explicit 1 is the default, bit for bit, with the same state-dict keys
    x = _smooth(2, 8, 8, seed=5)
    runs = []
    for options in ({}, {"share_quant_resi": 1}):
        torch.manual_seed(0)
        m = MultiScaleVQ(4, 16, SCALES, kmeans_init=True, **options).train()
        runs.append((m(x), _state(m), m))
    assert "phi.weight" in runs[0][1]
    assert torch.equal(runs[0][0].quantized, runs[1][0].quantized)
    _assert_same_state(runs[0][1], runs[1][1])
    # one phi per level holding the shared weights reproduces the shared model; distinct phis decode exactly
    shared = runs[0][2].eval()
    per_level = MultiScaleVQ(4, 16, SCALES, share_quant_resi=0, kmeans_init=True).eval()
    state = {k: v for k, v in shared.state_dict().items() if not k.startswith("phi.")}
    for i in range(4):
        state.update(
            {f"phi_levels.{i}.{k[4:]}": v for k, v in shared.state_dict().items() if k.startswith("phi.")}
        )
    per_level.load_state_dict(state)
    assert torch.equal(per_level(x).quantized, shared(x).quantized)
    torch.manual_seed(1)
    distinct = MultiScaleVQ(4, 16, SCALES, share_quant_resi=2).eval()
    assert torch.equal(distinct.decode(distinct.encode(x)), distinct(x).quantized)
    assert not torch.equal(distinct(x).quantized, MultiScaleVQ(4, 16, SCALES).eval()(x).quantized)


# ---------------------------------------------------------------- DDP


def _ddp_worker(out_dir: str) -> None:
    """One rank (``vqcodec.train.launch.spawn`` wires it like torchrun and tears the group down)."""
    from pathlib import Path

    from vqcodec.train.launch import distributed_env, init_distributed

    torch.set_num_threads(1)
    init_distributed("gloo", timeout_s=60)
    rank = distributed_env().rank
    torch.manual_seed(0)
    m = MultiScaleVQ(4, 16, SCALES, shared_codebook=False, nested_dropout=0.5).train()
    torch.manual_seed(100 + rank)  # different global generators: only the broadcast keeps ranks in step
    cutoffs = [int(m(_smooth(2, 8, 8, seed=10 * step + rank)).metrics["nested_cutoff"]) for step in range(8)]
    torch.save({"cutoffs": cutoffs, "state": _state(m)}, Path(out_dir) / f"rank{rank}.pt")


@pytest.mark.slow
def test_nested_dropout_cutoff_is_the_same_on_every_rank(tmp_path):
    import torch.distributed as dist

    from vqcodec.train.launch import spawn

    if not dist.is_available():
        pytest.skip("torch.distributed not available")
    spawn(_ddp_worker, 2, args=(str(tmp_path),), timeout_s=120, start_method="forkserver")
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert rank0["cutoffs"] == rank1["cutoffs"] and len(set(rank0["cutoffs"])) > 1
    _assert_same_state(rank0["state"], rank1["state"])
