"""Multi-process strategies on CPU (gloo, 2 processes spawned once for the whole module):
DDP equals one process on the same global batch and keeps codebooks identical; logging is reduced over
ranks; manual optimisation stays in sync; FSDP trains and its checkpoint loads on one process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from vqcodec.train import EMA, Trainer, load_checkpoint, seed_everything
from vqcodec.train.launch import spawn

from .helpers import Regression, TinyGAN, loaders, params_of

STEPS = 6
RESUME_FROM, RESUME_TO = 3, 6
GLOBAL_BATCH = 8
WORLD = 2
# ranks forked from one server that imported torch once (launch.spawn's "forkserver"): every
# spawn of this module after the first starts without importing torch again; the plain "spawn"
# start is covered by tests/test_quantize/test_distributed.py (torch's mp.spawn) and torchrun
START = "forkserver"
QUIET = {"enable_progress_bar": False, "logger": False, "enable_checkpointing": False}

pytestmark = pytest.mark.slow  # every test here waits for spawned processes


def _ddp_module() -> Regression:
    seed_everything(0)
    return Regression(quantizer=True, log_rank=True)


def _fsdp_module() -> Regression:
    seed_everything(0)
    return Regression(hidden=32, quantizer=True)


def _worker(out_dir: str) -> None:
    torch.set_num_threads(1)
    out = Path(out_dir)
    results: dict = {}

    module = _ddp_module()
    trainer = Trainer(strategy="ddp", max_steps=STEPS, log_every_n_steps=STEPS, seed=0, **QUIET)
    trainer.fit(module, loaders(batch_size=GLOBAL_BATCH // WORLD)[0])
    results["ddp"] = params_of(module)
    results["ddp_metrics"] = dict(trainer.callback_metrics)
    results["rank"] = trainer.rank

    seed_everything(0)
    module = Regression(optimizer="sgd")
    trainer_acc = Trainer(strategy="ddp", max_steps=4, accumulate_grad_batches=2, **QUIET)
    trainer_acc.fit(module, loaders(batch_size=GLOBAL_BATCH // WORLD // 2, shuffle=False)[0])
    results["ddp_accumulated"] = params_of(module)

    seed_everything(0)
    module = Regression(quantizer="rvq")
    torch.manual_seed(trainer.rank)  # rank-dependent dropout draws unless the quantizer syncs them
    Trainer(strategy="ddp", max_steps=STEPS, **QUIET).fit(
        module, loaders(batch_size=GLOBAL_BATCH // WORLD)[0]
    )
    results["rvq"] = params_of(module)

    seed_everything(0)
    gan = TinyGAN()
    torch.manual_seed(trainer.rank)  # different noise per rank: only gradient averaging keeps them equal
    Trainer(strategy="ddp", max_steps=4, **QUIET).fit(gan, loaders(batch_size=4)[0])
    results["gan"] = params_of(gan)

    module = _fsdp_module()
    trainer = Trainer(
        strategy="fsdp",
        strategy_options={"min_num_params": 0},
        max_steps=4,
        val_check_interval=2,
        gradient_clip_val=1.0,
        callbacks=[EMA(0.5)],
        default_root_dir=out / "fsdp",
        enable_progress_bar=False,
        logger=False,
        seed=0,
    )
    trainer.fit(module, *loaders(batch_size=GLOBAL_BATCH // WORLD))
    results["fsdp_sharded"] = type(module.head).__name__
    results["fsdp_val"] = trainer.callback_metrics["val/mse"]
    full = trainer.full_module()
    if trainer.is_global_zero:
        results["fsdp_full"] = params_of(full)

    # a single-process checkpoint (mid-epoch) resumes under FSDP: weights, Adam state, data position
    module = _fsdp_module()
    ema = EMA(0.5)
    trainer = Trainer(
        strategy="fsdp", strategy_options={"min_num_params": 0}, max_steps=RESUME_TO, callbacks=[ema], **QUIET
    )
    trainer.fit(module, loaders(batch_size=GLOBAL_BATCH // WORLD)[0], ckpt_path=out / "single" / "last.ckpt")
    full = trainer.full_module()
    if trainer.is_global_zero:
        results["fsdp_resumed"] = params_of(full)
    shadows = {n: trainer.strategy.full_tensor(t).detach().cpu() for n, t in zip(ema.names, ema.shadow)}
    results["fsdp_resumed_ema"] = shadows
    torch.save(results, out / f"rank{trainer.rank}.pt")


@pytest.fixture(scope="module")
def distributed_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    module = _fsdp_module()
    trainer = Trainer(max_steps=RESUME_FROM, seed=0, callbacks=[EMA(0.5)], **QUIET)
    trainer.fit(module, loaders(batch_size=GLOBAL_BATCH)[0])
    trainer.save_checkpoint(out / "single" / "last.ckpt")
    spawn(_worker, WORLD, args=(str(out),), timeout_s=180, env={"OMP_NUM_THREADS": "1"}, start_method=START)
    return out, [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def test_ddp_matches_single_process_and_codebooks_agree(distributed_results):
    _, ranks = distributed_results
    module = _ddp_module()
    Trainer(max_steps=STEPS, seed=0, **QUIET).fit(module, loaders(batch_size=GLOBAL_BATCH)[0])
    single = params_of(module)
    r0, r1 = ranks[0]["ddp"], ranks[1]["ddp"]
    for name in single:
        assert torch.equal(r0[name], r1[name]), f"{name} differs between ranks"
        torch.testing.assert_close(r0[name], single[name], rtol=1e-4, atol=1e-5, msg=name)
    assert "quantizer.codebook" in r0
    assert not torch.equal(r0["quantizer.codebook"], _ddp_module().quantizer.codebook)  # it did learn


def test_ddp_keeps_residual_codebooks_identical_through_kmeans_and_revival(distributed_results):
    _, ranks = distributed_results
    r0, r1 = ranks[0]["rvq"], ranks[1]["rvq"]
    codebook_keys = [k for k in r0 if k.startswith("quantizer.")]
    assert any("codebook" in k for k in codebook_keys)
    for name in r0:
        assert torch.equal(r0[name], r1[name]), f"{name} differs between ranks"
    assert any(k.endswith("initted") and bool(r0[k]) for k in codebook_keys)  # k-means init ran


def test_ddp_gradient_accumulation_matches_one_large_batch(distributed_results):
    _, ranks = distributed_results
    seed_everything(0)
    module = Regression(optimizer="sgd")
    Trainer(max_steps=4, **QUIET).fit(module, loaders(batch_size=GLOBAL_BATCH, shuffle=False)[0])
    for name, value in params_of(module).items():
        assert torch.equal(ranks[0]["ddp_accumulated"][name], ranks[1]["ddp_accumulated"][name]), name
        torch.testing.assert_close(ranks[0]["ddp_accumulated"][name], value, rtol=1e-5, atol=1e-6, msg=name)


def test_logged_values_are_reduced_over_ranks(distributed_results):
    _, ranks = distributed_results
    for result in ranks:
        assert result["ddp_metrics"]["rank_mean"] == pytest.approx(0.5)
        assert result["ddp_metrics"]["rank_max"] == 1.0
    assert ranks[0]["ddp_metrics"]["train/mse"] == ranks[1]["ddp_metrics"]["train/mse"]


def test_manual_optimization_under_ddp_stays_in_sync(distributed_results):
    _, ranks = distributed_results
    for name, value in ranks[0]["gan"].items():
        torch.testing.assert_close(ranks[1]["gan"][name], value, rtol=0, atol=1e-6, msg=name)


def test_fsdp_trains_and_its_checkpoint_loads_on_one_process(distributed_results):
    out, ranks = distributed_results
    assert ranks[0]["fsdp_sharded"].startswith("FSDP")
    checkpoint_path = out / "fsdp" / "version_0" / "checkpoints" / "last.ckpt"
    checkpoint = load_checkpoint(checkpoint_path)
    full = ranks[0]["fsdp_full"]
    live = checkpoint["train_state_dict"]  # state_dict holds the EMA weights validation scored
    assert live.keys() == checkpoint["state_dict"].keys() == full.keys()
    for name, value in full.items():
        assert torch.equal(live[name], value), name
        assert not hasattr(value, "device_mesh")
    assert checkpoint["ema_state_dict"].keys() == full.keys()
    assert ranks[0]["fsdp_val"] == ranks[1]["fsdp_val"]  # validated (with EMA weights) and reduced

    # the same training on one process gives (nearly) the same weights
    reference = _fsdp_module()
    Trainer(max_steps=4, gradient_clip_val=1.0, seed=0, **QUIET).fit(
        reference, loaders(batch_size=GLOBAL_BATCH)[0]
    )
    for name, value in params_of(reference).items():
        torch.testing.assert_close(full[name], value, rtol=1e-4, atol=1e-5, msg=name)

    # and one process resumes from the FSDP checkpoint: weights, optimizer state, EMA
    module = _fsdp_module()
    trainer = Trainer(max_steps=6, callbacks=[EMA(0.5)], **QUIET)
    trainer.fit(module, loaders(batch_size=GLOBAL_BATCH)[0], ckpt_path=checkpoint_path)
    assert trainer.global_step == 6
    assert trainer.optimizers[0].state_dict()["state"][0]["step"].item() == 6


def test_single_process_checkpoint_resumes_under_fsdp(distributed_results):
    out, ranks = distributed_results
    module = _fsdp_module()
    ema = EMA(0.5)
    trainer = Trainer(max_steps=RESUME_TO, seed=0, callbacks=[ema], **QUIET)
    trainer.fit(module, loaders(batch_size=GLOBAL_BATCH)[0], ckpt_path=out / "single" / "last.ckpt")
    resumed = ranks[0]["fsdp_resumed"]
    for name, value in params_of(module).items():
        torch.testing.assert_close(resumed[name], value, rtol=1e-4, atol=1e-5, msg=name)
    resumed_ema = ranks[0]["fsdp_resumed_ema"]
    assert resumed_ema.keys() == set(ema.names)
    for name, value in zip(ema.names, ema.shadow):  # the EMA state was re-sharded and carried on
        torch.testing.assert_close(resumed_ema[name], value, rtol=1e-4, atol=1e-5, msg=name)


def _fails_on_rank_one() -> None:
    if int(os.environ["RANK"]) == 1:
        raise RuntimeError("rank 1 failed on purpose")


def _aborts_on_rank_one() -> None:
    if int(os.environ["RANK"]) == 1:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file from the deliberate abort
        os.abort()


def test_spawn_reports_failures_and_excuses_only_teardown_signals(tmp_path):
    import torch.multiprocessing as mp

    from vqcodec.train.launch import died_in_teardown

    with pytest.raises(mp.ProcessRaisedException, match="failed on purpose"):
        spawn(_fails_on_rank_one, WORLD, timeout_s=60, start_method=START)
    # a rank killed by a signal before every rank finished its work is a failure
    with pytest.raises(mp.ProcessExitedException, match="SIGABRT"):
        spawn(_aborts_on_rank_one, WORLD, timeout_s=60, start_method=START)

    class Exited(Exception):
        def __init__(self, signal_name):
            self.signal_name = signal_name

    (tmp_path / "0").touch()
    assert not died_in_teardown(Exited("SIGABRT"), str(tmp_path), 2)  # rank 1 never finished
    (tmp_path / "1").touch()
    assert died_in_teardown(Exited("SIGABRT"), str(tmp_path), 2)
    assert not died_in_teardown(Exited(None), str(tmp_path), 2)  # an exit status, not a signal
    assert not died_in_teardown(RuntimeError("boom"), str(tmp_path), 2)


def test_spawn_refuses_an_unknown_start_method():
    with pytest.raises(ValueError, match="start_method must be one of spawn, forkserver, got 'fork'"):
        spawn(_fails_on_rank_one, WORLD, start_method="fork")
