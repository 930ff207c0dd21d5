"""Single-process Trainer behaviour: training, precision, resume, optimizers, loop options."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from vqcodec.train import EMA, Callback, Trainer, TrainingModule, load_checkpoint, seed_everything
from vqcodec.train.loggers import read_csv_metrics

from .helpers import Regression, TinyGAN, TwoPart, loaders, params_of, regression_data

QUIET = {"enable_progress_bar": False, "logger": False, "enable_checkpointing": False}


def test_tiny_model_loss_falls(tmp_path):
    seed_everything(0)
    module = Regression()
    train, val = loaders()
    trainer = Trainer(
        max_steps=40,
        val_check_interval=40,
        log_every_n_steps=5,
        default_root_dir=tmp_path,
        enable_progress_bar=False,
    )
    trainer.fit(module, train, val)
    history = read_csv_metrics(tmp_path / "version_0" / "metrics.csv")["train/mse"]
    assert trainer.global_step == 40
    assert history[-1][1] < 0.2 * history[0][1], history
    assert trainer.callback_metrics["val/mse"] < 0.6  # the targets have variance ~3.4
    assert (tmp_path / "version_0" / "checkpoints" / "last.ckpt").is_file()


def test_bf16_mixed_on_cpu_trains_with_fp32_weights():
    seed_everything(0)
    module = Regression(quantizer=True)

    class Probe(Callback):
        dtypes: set = set()

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            handle = module.head.register_forward_hook(lambda m, i, o: self.dtypes.add(o.dtype))
            self.handle = handle

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            self.handle.remove()

    probe = Probe()
    train, val = loaders()
    before = Trainer(**QUIET).validate(module, val)["val/mse"]
    trainer = Trainer(max_steps=30, precision="bf16-mixed", callbacks=[probe], val_check_interval=30, **QUIET)
    trainer.fit(module, train, val)
    assert probe.dtypes == {torch.bfloat16}  # the network ran under autocast
    assert all(p.dtype == torch.float32 for p in module.parameters())
    assert module.quantizer.codebook.dtype == torch.float32
    assert trainer.callback_metrics["val/mse"] < 0.7 * before
    assert all(torch.isfinite(p).all() for p in module.parameters())


def _run(steps, root, ckpt=None, *, accumulate=1, ema=False, batch_size=8, max_epochs=None, precision="32"):
    seed_everything(0)
    module = Regression(dropout=0.2, noise=0.1, quantizer=True, scheduler=True)
    train, val = loaders(batch_size=batch_size, n=44)  # 6 batches per epoch, the last one short
    callbacks = [EMA(0.9)] if ema else []
    trainer = Trainer(
        max_steps=steps,
        max_epochs=max_epochs,
        val_check_interval=4,
        log_every_n_steps=3,
        accumulate_grad_batches=accumulate,
        precision=precision,
        default_root_dir=root,
        callbacks=callbacks,
        enable_progress_bar=False,
        seed=0,
    )
    trainer.fit(module, train, val, ckpt_path=ckpt)
    return module, trainer


@pytest.mark.parametrize(
    "k, accumulate, precision",
    [(7, 1, "32"), (6, 1, "32"), (4, 2, "32"), (5, 1, "16-mixed")],
    ids=["mid-epoch", "epoch-boundary", "accumulation-mid-epoch", "fp16-grad-scaler"],
)
def test_exact_resume_is_bit_identical(tmp_path, k, accumulate, precision):
    n = 14 if accumulate == 1 else 8
    options = {"accumulate": accumulate, "ema": True, "precision": precision}
    straight, straight_trainer = _run(n, tmp_path / "a", **options)
    _run(k, tmp_path / "b", **options)
    checkpoint = tmp_path / "b" / "version_0" / "checkpoints" / "last.ckpt"
    assert load_checkpoint(checkpoint)["loop"]["global_step"] == k
    resumed, resumed_trainer = _run(n, tmp_path / "c", ckpt=checkpoint, **options)
    a, b = params_of(straight), params_of(resumed)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    ema_a = next(c for c in straight_trainer.callbacks if isinstance(c, EMA)).shadow
    ema_b = next(c for c in resumed_trainer.callbacks if isinstance(c, EMA)).shadow
    assert all(torch.equal(x, y) for x, y in zip(ema_a, ema_b))
    assert (
        straight_trainer.optimizers[0].param_groups[0]["lr"]
        == resumed_trainer.optimizers[0].param_groups[0]["lr"]
    )
    assert straight_trainer.current_epoch == resumed_trainer.current_epoch
    if precision == "16-mixed":
        scaler_a = straight_trainer.precision_plugin.scaler.state_dict()
        assert scaler_a == resumed_trainer.precision_plugin.scaler.state_dict()
        assert load_checkpoint(checkpoint)["precision"]["scaler"]["scale"] > 0


def test_16_mixed_grad_scaler_skips_overflowing_steps():
    seed_everything(0)
    module = Regression()
    before = params_of(module)
    trainer = Trainer(max_steps=1, precision="16-mixed", **QUIET)
    trainer._setup_environment()
    trainer.precision_plugin.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**40)  # overflows fp16 grads
    trainer._setup_environment = lambda: None  # keep the scaler above
    trainer.fit(module, loaders()[0])
    assert trainer.precision_plugin.scaler.get_scale() == 2.0**39  # backed off once
    for name, value in params_of(module).items():
        assert torch.equal(value, before[name]), name  # the inf step was skipped


def test_checkpoint_contents(tmp_path):
    _, trainer = _run(5, tmp_path, ema=True)
    checkpoint = load_checkpoint(tmp_path / "version_0" / "checkpoints" / "last.ckpt")
    assert checkpoint["loop"]["global_step"] == 5
    assert checkpoint["loop"]["batch_in_epoch"] == 5
    assert set(checkpoint["optimizers"][0]["state"]) == {n for n, _ in trainer.module.named_parameters()}
    assert checkpoint["schedulers"][0]["last_epoch"] == 5
    assert (
        "ema_state_dict" in checkpoint
        and checkpoint["ema_state_dict"].keys() == checkpoint["state_dict"].keys()
    )
    assert {"python", "numpy", "torch"} <= set(checkpoint["rng"][0])
    assert not list(tmp_path.glob("version_0/checkpoints/.*tmp"))


def test_gradient_accumulation_matches_a_large_batch():
    seed_everything(0)
    big = Regression(optimizer="sgd")
    small = Regression(optimizer="sgd")
    small.load_state_dict(big.state_dict())
    Trainer(max_steps=5, **QUIET).fit(big, loaders(batch_size=8, shuffle=False)[0])
    Trainer(max_steps=5, accumulate_grad_batches=2, **QUIET).fit(
        small, loaders(batch_size=4, shuffle=False)[0]
    )
    for name, value in params_of(big).items():
        torch.testing.assert_close(params_of(small)[name], value, rtol=1e-5, atol=1e-6)


def test_per_optimizer_clipping_and_schedulers():
    seen: dict[int, list[torch.Tensor]] = {0: [], 1: []}

    class Grads(Callback):
        def on_before_optimizer_step(self, trainer, module, optimizer_index):
            params = [p for g in trainer.optimizers[optimizer_index].param_groups for p in g["params"]]
            seen[optimizer_index].append(torch.cat([p.grad.flatten() for p in params]).clone())

    seed_everything(0)
    module = TwoPart(clip_a=0.5, clip_b=0.01, algo_b="value")
    trainer = Trainer(max_steps=4, callbacks=[Grads()], **QUIET)
    trainer.fit(module, loaders()[0])
    assert len(seen[0]) == len(seen[1]) == 4
    assert all(g.norm() <= 0.5 + 1e-5 for g in seen[0])
    assert all(g.abs().max() <= 0.01 + 1e-7 for g in seen[1])
    assert any(g.abs().max() > 0.02 for g in seen[0])  # A is clipped by norm, not by B's value
    assert trainer.optimizers[1].param_groups[0]["lr"] == pytest.approx(0.01 * 0.1**2)  # stepped 4 times
    assert trainer.optimizers[0].param_groups[0]["lr"] == 0.01

    # the trainer's setting applies to an optimizer without its own
    seen[0].clear()
    seen[1].clear()
    module = TwoPart(clip_a=None, clip_b=0.01)
    Trainer(max_steps=2, gradient_clip_val=0.25, callbacks=[Grads()], **QUIET).fit(module, loaders()[0])
    assert all(g.norm() <= 0.25 + 1e-5 for g in seen[0])


def test_manual_optimization_gan():
    seed_everything(0)
    module = TinyGAN()
    before = params_of(module)
    trainer = Trainer(max_steps=30, **QUIET)
    trainer.fit(module, loaders(batch_size=16)[0])
    after = params_of(module)
    # as in Lightning, every opt.step() is a global step: 2 per batch here
    assert trainer.global_step == 30 and module.g_steps == 15 and module.d_steps == 15
    assert all(not torch.equal(before[k], after[k]) for k in before)
    assert all(p.requires_grad for p in module.parameters())  # untoggled
    assert module.d_saw_generator_grads is False  # toggling froze the generator during the D step
    assert {"d_loss", "g_loss"} <= set(trainer.callback_metrics)


def test_fast_dev_run_overfit_and_epochs(tmp_path):
    seed_everything(0)
    trainer = Trainer(fast_dev_run=2, default_root_dir=tmp_path, enable_progress_bar=False)
    train, val = loaders()
    trainer.fit(Regression(), train, val)
    assert trainer.global_step == 2 and "val/mse" in trainer.callback_metrics
    assert not list(tmp_path.rglob("*.ckpt")) and not list(tmp_path.rglob("metrics.csv"))

    trainer = Trainer(max_epochs=3, **QUIET)
    trainer.fit(Regression(), loaders(batch_size=8, n=40)[0])
    assert trainer.global_step == 15 and trainer.current_epoch == 3

    # overfit_batches: the same 2 batches every epoch, loss goes near zero on them
    seen: list[torch.Tensor] = []

    class Batches(Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            seen.append(batch[0])

    trainer = Trainer(max_epochs=30, overfit_batches=2, callbacks=[Batches()], **QUIET)
    trainer.fit(Regression(hidden=32), loaders(batch_size=4)[0])
    assert trainer.global_step == 60
    assert torch.equal(seen[0], seen[2]) and torch.equal(seen[1], seen[-1])
    assert trainer.callback_metrics["train/mse"] < 0.05


def test_validate_and_test_return_reduced_metrics():
    seed_everything(0)
    module = Regression()
    train, val = loaders()
    trainer = Trainer(max_steps=20, **QUIET)
    trainer.fit(module, train, val)
    metrics = trainer.validate(module, val)
    x, y = regression_data(16, seed=1).tensors
    with torch.no_grad():
        expected = torch.mean((module(x)[0] - y) ** 2)  # batch-size weighted mean = the full-set mean
    assert metrics["val/mse"] == pytest.approx(float(expected), rel=1e-5)
    assert "test/mae" in trainer.test(module, val)


def test_deterministic_data_order_and_restarted_epochs():
    class Batches(Callback):
        def __init__(self):
            self.seen = []

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            self.seen.append(batch[0][:, 0].clone())

    orders = []
    for _ in range(2):
        batches = Batches()

        seed_everything(123)  # the global RNG must not matter: the order comes from the trainer's seed
        Trainer(max_epochs=2, seed=5, callbacks=[batches], **QUIET).fit(Regression(), loaders(n=24)[0])
        orders.append(torch.cat(batches.seen))
    assert torch.equal(orders[0], orders[1])
    first, second = orders[0].chunk(2)
    assert not torch.equal(first, second)  # reshuffled per epoch
    assert torch.equal(first.sort().values, second.sort().values)


def test_bad_configurations_fail_clearly():
    with pytest.raises(ValueError, match="precision"):
        Trainer(precision="8")
    with pytest.raises(ValueError, match="unknown strategy"):
        Trainer(strategy="dp")

    class NoLoss(TrainingModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def training_step(self, batch, batch_idx):
            return {"value": self.w.sum()}

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    with pytest.raises(KeyError, match="loss"):
        Trainer(max_steps=1, **QUIET).fit(NoLoss(), DataLoader(regression_data(8), batch_size=4))


def test_datamodule_supplies_the_loaders():
    from vqcodec.train import DataModule

    class Data(DataModule):
        def __init__(self):
            self.stages = []

        def setup(self, stage):
            self.stages.append(stage)

        def train_dataloader(self):
            return loaders()[0]

        def val_dataloader(self):
            return loaders()[1]

        def test_dataloader(self):
            return loaders()[1]

    data = Data()
    seed_everything(0)
    module = Regression()
    trainer = Trainer(max_steps=4, val_check_interval=4, **QUIET)
    trainer.fit(module, datamodule=data)
    assert "val/mse" in trainer.callback_metrics
    assert "test/mae" in trainer.test(module, datamodule=data)
    Trainer(max_steps=2, **QUIET).fit(Regression(), data)  # a DataModule in the loader position works too
    assert data.stages == ["fit", "test", "fit"]


@pytest.mark.parametrize("native_bf16", [True, False])
def test_bf16_on_a_cpu_without_native_bf16_warns(monkeypatch, native_bf16, recwarn):
    import vqcodec.train.precision as precision

    monkeypatch.setattr(precision, "cpu_bf16_is_fast", lambda: native_bf16)
    plugin = precision.make_precision("bf16-mixed", torch.device("cpu"))
    assert plugin.name == "bf16-mixed"
    slow = [w for w in recwarn.list if "without native bf16" in str(w.message)]
    assert len(slow) == (0 if native_bf16 else 1)
    precision.make_precision("32", torch.device("cpu"))
    assert len([w for w in recwarn.list if "without native bf16" in str(w.message)]) == len(slow)
