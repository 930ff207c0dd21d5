"""DDP correctness: 2 CPU processes on gloo hold identical quantizer state after every step, equal (within
float tolerance) to one process fed the concatenated batch."""

from __future__ import annotations

import datetime
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from vqcodec.quantize import LFQ, GroupedResidualVQ, ResidualVQ, VectorQuantizer
from vqcodec.train.launch import exit_now, shutdown_distributed

STEPS = 6
BATCH_PER_RANK = (3, 2)  # unequal on purpose: gathers must handle different sizes
LFQ_OPTIONS = {"inv_temperature": 1.0, "commitment_loss_weight": 0.0, "entropy_loss_weight": 1.0}


def _build() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {
        "rvq": ResidualVQ(
            8,
            3,
            32,
            kmeans_init=True,
            kmeans_iters=4,
            kmeans_init_vectors=200,
            threshold_ema_dead_code=2.0,
            revive_by_error=True,  # error-weighted draws over the gathered batch, same on every rank
            quantize_dropout=True,
        ),
        "vq": VectorQuantizer(
            8, 48, codebook_dim=4, use_cosine_sim=True, kmeans_init=True, dead_code_after_steps=2, decay=0.9
        ),
        # fed a padding mask (see _run): masked statistics, affine batch statistics, multi-head codebooks
        "masked": VectorQuantizer(
            8,
            16,
            codebook_dim=4,
            heads=2,
            separate_codebook_per_head=True,
            affine_param=True,
            kmeans_init=True,
            threshold_ema_dead_code=1.0,
        ),
        "grouped": GroupedResidualVQ(8, 2, 16, groups=2, kmeans_init=True, dead_code_after_steps=2),
    }


def _batches() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(123)
    return [torch.randn(sum(BATCH_PER_RANK), 8, 6, 6, generator=generator) * 2 for _ in range(STEPS)]


def _run(models: dict[str, torch.nn.Module], rank: int | None) -> dict[str, dict[str, torch.Tensor]]:
    torch.manual_seed(1)  # same global RNG stream on rank 0 and in the single process (dropout draws)
    for model in models.values():
        model.train()
    entropy_terms = []
    for batch in _batches():
        if rank is not None:
            start = sum(BATCH_PER_RANK[:rank])
            batch = batch[start : start + BATCH_PER_RANK[rank]]
        for name, model in models.items():
            if name == "masked":
                model(batch, mask=batch[:, 0] > -0.5)  # a data-dependent mask: ranks mask different counts
            else:
                model(batch)
        # LFQ's codebook-entropy term is over the whole (all-rank) batch: recover it as the difference
        # of two penalties, with and without it
        with_codebook_term = LFQ(dim=6, codebook_size=8, num_codebooks=2, **LFQ_OPTIONS)
        without = LFQ(dim=6, codebook_size=8, num_codebooks=2, diversity_gamma=0.0, **LFQ_OPTIONS)
        signs = batch[:, :6]
        codebook_term = without(signs).loss["entropy"] - with_codebook_term(signs).loss["entropy"]
        entropy_terms.append(codebook_term.detach())
    states = {name: {k: v.detach().clone() for k, v in m.state_dict().items()} for name, m in models.items()}
    states["lfq"] = {"codebook_entropy": torch.stack(entropy_terms)}
    return states


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    # a rank stuck in a mismatched collective fails after the timeout instead of hanging the suite
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        states = _run(_build(), rank)
        torch.save(states, Path(out_dir) / f"rank{rank}.pt")
    except BaseException:
        dist.destroy_process_group()
        raise
    # barrier + destroy, then leave without interpreter finalisation (gloo can abort a finished process
    # while it is being finalised)
    shutdown_distributed()
    exit_now(0)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_gloo_ranks_match_each_other_and_a_single_process(tmp_path):
    if not dist.is_available():
        pytest.skip("torch.distributed not available")
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    rank0 = torch.load(tmp_path / "rank0.pt")
    rank1 = torch.load(tmp_path / "rank1.pt")
    single = _run(_build(), None)
    for name in single:
        assert rank0[name].keys() == rank1[name].keys() == single[name].keys()
        for key in single[name]:
            assert torch.equal(rank0[name][key], rank1[name][key]), f"{name}.{key} differs between ranks"
            a, b = rank0[name][key], single[name][key]
            if a.dtype.is_floating_point:
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=f"{name}.{key} vs single process")
            else:
                assert torch.equal(a, b), f"{name}.{key} vs single process"
    # the run exercised what it claims to: k-means ran, and revival happened in the cosine VQ
    assert bool(single["vq"]["initted"]) and int(single["vq"]["num_updates"]) == STEPS
