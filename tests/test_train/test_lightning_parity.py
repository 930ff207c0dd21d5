"""Behaviours a Lightning user relies on (issue 14): exact resume whatever the global RNG, manual
optimisation, fractional limits, EMA best-k checkpoints, versioned run folders, torch.compile."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from vqcodec.train import (
    EMA,
    Callback,
    ModelCheckpoint,
    Trainer,
    TrainingModule,
    load_checkpoint,
    seed_everything,
)

from .helpers import Regression, loaders, params_of, regression_data

QUIET = {"enable_progress_bar": False, "logger": False, "enable_checkpointing": False}


# ---------------------------------------------------------------------------------------------- 1
def _shuffled(steps, root, ckpt=None, reseed=0):
    seed_everything(reseed)
    module = Regression(noise=0.1)
    loader = DataLoader(regression_data(96), batch_size=8, shuffle=True)  # 12 batches per epoch
    trainer = Trainer(max_steps=steps, default_root_dir=root, enable_progress_bar=False, logger=False)
    trainer.fit(module, loader, ckpt_path=ckpt)
    return module, trainer


def test_resume_keeps_the_data_order_whatever_the_global_rng(tmp_path):
    straight, _ = _shuffled(20, tmp_path / "a")
    _, first = _shuffled(9, tmp_path / "b")  # mid-epoch
    checkpoint = first.checkpoint_callback.last_model_path
    assert load_checkpoint(checkpoint)["loop"]["data_seed"] == 0
    # another global seed (and $VQCODEC_SEED) and a fresh module at resume time
    resumed, _ = _shuffled(20, tmp_path / "c", ckpt=checkpoint, reseed=123)
    for name, value in params_of(straight).items():
        assert torch.equal(params_of(resumed)[name], value), name


# ---------------------------------------------------------------------------------------------- 2
class ManualScheduled(TrainingModule):
    """Lightning-style manual optimisation: the module steps its own StepLR."""

    automatic_optimization = False

    def __init__(self):
        super().__init__()
        self.net = nn.Linear(8, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        opt = self.optimizers()
        opt.zero_grad()
        self.manual_backward(torch.mean((self.net(x) - y) ** 2))
        opt.step()
        self.lr_schedulers().step()

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=1.0)
        return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5)}


def test_manual_optimisation_leaves_schedulers_to_the_module_and_refuses_automatic_options():
    trainer = Trainer(max_steps=3, **QUIET)
    trainer.fit(ManualScheduled(), loaders()[0])
    assert trainer.optimizers[0].param_groups[0]["lr"] == 0.125  # 3 decays, not 6
    assert trainer.global_step == 3
    with pytest.raises(ValueError, match="gradient_clip_val is not supported with automatic_optimization"):
        Trainer(max_steps=1, gradient_clip_val=1.0, **QUIET).fit(ManualScheduled(), loaders()[0])
    with pytest.raises(ValueError, match="accumulate_grad_batches is not supported"):
        Trainer(max_steps=1, accumulate_grad_batches=2, **QUIET).fit(ManualScheduled(), loaders()[0])


# ---------------------------------------------------------------------------------------------- 3
class CountBatches(Callback):
    def __init__(self):
        self.per_epoch: dict[int, int] = {}
        self.validations: list[int] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.per_epoch[trainer.current_epoch] = self.per_epoch.get(trainer.current_epoch, 0) + 1

    def on_validation_end(self, trainer, module):
        self.validations.append(trainer.progress.total_batches)


def test_float_limits_and_overfit_are_fractions_and_int_val_interval_counts_batches():
    counter = CountBatches()  # 64 samples / 4 = 16 batches per epoch
    Trainer(max_epochs=2, limit_train_batches=0.25, callbacks=[counter], **QUIET).fit(
        Regression(), loaders(batch_size=4)[0]
    )
    assert counter.per_epoch == {0: 4, 1: 4}

    seen: list[torch.Tensor] = []

    class Batches(Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            seen.append(batch[0])

    Trainer(max_epochs=2, overfit_batches=0.125, callbacks=[Batches()], **QUIET).fit(
        Regression(), loaders(batch_size=4)[0]
    )
    assert len(seen) == 4 and torch.equal(seen[0], seen[2]) and torch.equal(seen[1], seen[3])
    x = regression_data(64).tensors[0]
    assert torch.equal(torch.cat(seen[:2]), x[:8])  # the first batches, unshuffled

    train, val = loaders(batch_size=4)
    metrics = Trainer(limit_val_batches=0.5, **QUIET).validate(Regression(), val)  # 2 of 4 val batches
    assert "val/mse" in metrics

    # an int val_check_interval counts batches, not optimizer steps (accumulation 2: 6 batches = 3 steps)
    counter = CountBatches()
    trainer = Trainer(
        max_steps=6, val_check_interval=3, accumulate_grad_batches=2, callbacks=[counter], **QUIET
    )
    trainer.fit(Regression(), train, val)
    assert counter.validations == [3, 6, 9, 12]
    with pytest.raises(ValueError, match="limit_train_batches"):
        Trainer(limit_train_batches=1.5)
    with pytest.raises(ValueError, match="less than one batch"):
        Trainer(max_steps=1, limit_train_batches=0.01, **QUIET).fit(Regression(), train)


# ---------------------------------------------------------------------------------------------- 4
def test_ema_best_checkpoint_holds_the_weights_that_were_scored(tmp_path):
    seed_everything(0)
    train, val = loaders()
    best = ModelCheckpoint(monitor="val/mse", save_top_k=1)
    trainer = Trainer(
        max_steps=12,
        val_check_interval=4,
        callbacks=[EMA(0.8), best],
        default_root_dir=tmp_path,
        enable_progress_bar=False,
        logger=False,
    )
    trainer.fit(Regression(lr=0.1), train, val)
    checkpoint = load_checkpoint(best.best_model_path)
    scored = float(re.search(r"val_mse=([0-9.e+-]+)\.ckpt$", best.best_model_path).group(1))
    module = Regression()
    module.load_state_dict(checkpoint["state_dict"])
    value = Trainer(**QUIET).validate(module, val)["val/mse"]
    assert value == pytest.approx(scored, rel=1e-5)
    assert checkpoint["state_dict"].keys() == checkpoint["train_state_dict"].keys()
    assert not torch.equal(
        checkpoint["state_dict"]["head.weight"], checkpoint["train_state_dict"]["head.weight"]
    )


def test_ema_buffers_are_copied_or_averaged():
    seed_everything(0)
    copied, averaged = EMA(0.9), EMA(0.9, average_buffers=True)
    module = Regression(quantizer=True)
    Trainer(max_steps=6, callbacks=[copied, averaged], **QUIET).fit(module, loaders()[0])
    buffers = {n for n, b in module.named_buffers() if torch.is_floating_point(b)}
    assert buffers and not buffers & set(copied.names)
    assert buffers <= set(averaged.names)
    codebook = next(n for n in buffers if "embed" in n or "codebook" in n)
    shadow = averaged.shadow[averaged.names.index(codebook)]
    assert not torch.equal(shadow, dict(module.named_buffers())[codebook])  # an average, not the live one


# ---------------------------------------------------------------------------------------------- 5
def test_runs_are_versioned_and_ckpt_path_last_resumes_the_newest(tmp_path):
    def run(steps, ckpt=None):
        seed_everything(0)
        trainer = Trainer(max_steps=steps, default_root_dir=tmp_path, enable_progress_bar=False, logger="csv")
        trainer.fit(Regression(), loaders()[0], ckpt_path=ckpt)
        return trainer

    assert run(3).log_dir == tmp_path / "version_0"
    assert run(4).log_dir == tmp_path / "version_1"  # a rerun does not append to version_0
    assert (tmp_path / "version_0" / "metrics.csv").is_file()
    assert load_checkpoint(tmp_path / "version_0" / "checkpoints" / "last.ckpt")["loop"]["global_step"] == 3
    resumed = run(6, ckpt="last")  # newest: version_1 at step 4, continued in its own folder
    assert resumed.log_dir == tmp_path / "version_1" and resumed.global_step == 6
    assert load_checkpoint(tmp_path / "version_1" / "checkpoints" / "last.ckpt")["loop"]["global_step"] == 6
    assert not (tmp_path / "version_2").exists()
    fresh = Trainer(max_steps=1, default_root_dir=tmp_path / "new", **QUIET)
    fresh.fit(Regression(), loaders()[0], ckpt_path="last")  # nothing to resume: starts from scratch
    assert fresh.global_step == 1
    pinned = Trainer(max_steps=1, default_root_dir=tmp_path, version="baseline", **QUIET)
    assert pinned.log_dir == tmp_path / "baseline"
    assert Trainer(default_root_dir=tmp_path, version=False).log_dir == tmp_path


# ---------------------------------------------------------------------------------------------- 6
class CompiledInside(Regression):
    def __init__(self):
        super().__init__()
        self.encoder = torch.compile(self.encoder, backend="eager")


def test_torch_compile_module_and_submodules_keep_clean_keys(tmp_path):
    seed_everything(0)
    plain_keys = set(Regression().state_dict())
    module = Regression()
    trainer = Trainer(max_steps=3, default_root_dir=tmp_path, enable_progress_bar=False, logger=False)
    trainer.fit(torch.compile(module, backend="eager"), loaders()[0])
    assert trainer.global_step == 3 and trainer.module is module
    inner = CompiledInside()
    assert set(inner.state_dict()) == plain_keys
    root = tmp_path / "inner"
    Trainer(max_steps=3, default_root_dir=root, enable_progress_bar=False, logger=False).fit(
        inner, loaders()[0]
    )
    checkpoint = load_checkpoint(root / "version_0" / "checkpoints" / "last.ckpt")
    assert set(checkpoint["state_dict"]) == plain_keys
    assert set(checkpoint["optimizers"][0]["state"]) == {n for n, _ in Regression().named_parameters()}
    plain = Regression()
    plain.load_state_dict(checkpoint["state_dict"])  # a plain module loads a compiled run's checkpoint
    again = CompiledInside()
    again.load_state_dict(plain.state_dict())  # and back
    assert torch.equal(again.encoder._orig_mod[0].weight, plain.encoder[0].weight)
    trainer = Trainer(max_steps=5, default_root_dir=root, enable_progress_bar=False, logger=False)
    trainer.fit(CompiledInside(), loaders()[0], ckpt_path="last")
    assert trainer.global_step == 5


# ---------------------------------------------------------------------------------------------- features
class PerLoader(Regression):
    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        x, y = batch
        self.log("val/mse", torch.mean((self(x)[0] - y) ** 2))

    def test_step(self, batch, batch_idx, dataloader_idx=0):
        x, y = batch
        self.log("test/mean_y", y.mean())


def test_several_validation_loaders_report_per_loader():
    seed_everything(0)
    module = PerLoader()
    easy = DataLoader(regression_data(16, seed=1), batch_size=8)
    hard = DataLoader(
        torch.utils.data.TensorDataset(torch.randn(8, 8), torch.full((8, 1), 10.0)), batch_size=8
    )
    trainer = Trainer(max_steps=4, val_check_interval=4, **QUIET)
    trainer.fit(module, loaders()[0], {"easy": easy, "hard": hard})
    assert {"val/mse/easy", "val/mse/hard"} <= set(trainer.callback_metrics)
    assert trainer.callback_metrics["val/mse/hard"] > 10 * trainer.callback_metrics["val/mse/easy"]
    metrics = Trainer(**QUIET).test(module, [easy, hard])
    assert metrics["test/mean_y/dataloader_idx_1"] == pytest.approx(10.0)
    single = Trainer(**QUIET).validate(module, easy)
    assert single["val/mse"] == pytest.approx(trainer.callback_metrics["val/mse/easy"], rel=1e-6)
    with pytest.raises(TypeError, match="dataloader_idx"):
        Trainer(**QUIET).validate(Regression(), [easy, hard])


def test_max_time_stops_and_sigterm_checkpoints_then_resumes(tmp_path):
    from vqcodec.train.trainer import TrainingInterrupted, parse_max_time

    assert parse_max_time("00:01:00:30") == 3630 and parse_max_time({"minutes": 2}) == 120
    with pytest.raises(ValueError, match="DD:HH:MM:SS"):
        Trainer(max_time="1h")
    trainer = Trainer(max_steps=50, max_time=0, **QUIET)
    trainer.fit(Regression(), loaders()[0])
    assert trainer.global_step == 1  # stopped at the first batch end

    import os
    import signal

    class Kill(Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if trainer.global_step == 3:
                os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.getsignal(signal.SIGTERM)
    options = {"default_root_dir": tmp_path, "enable_progress_bar": False, "logger": False}
    with pytest.raises(TrainingInterrupted, match="SIGTERM at step 3"):
        Trainer(max_steps=10, callbacks=[Kill()], **options).fit(Regression(), loaders()[0])
    assert signal.getsignal(signal.SIGTERM) is previous  # handler restored
    last = tmp_path / "version_0" / "checkpoints" / "last.ckpt"
    assert load_checkpoint(last)["loop"]["global_step"] == 3
    resumed = Trainer(max_steps=10, **options)
    resumed.fit(Regression(), loaders()[0], ckpt_path="last")
    assert resumed.global_step == 10 and resumed.log_dir == tmp_path / "version_0"


class EpochLogged(Regression):
    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        self.log("both", float(batch_idx), on_step=True, on_epoch=True)
        self.log("per_epoch", float(batch_idx), on_step=False, on_epoch=True, reduce_fx=torch.max)
        self.log("mine", float(batch_idx), sync_dist=False)
        return loss


def test_log_on_step_on_epoch_names_and_reductions(tmp_path):
    from vqcodec.train.loggers import read_csv_metrics

    trainer = Trainer(
        max_epochs=2, log_every_n_steps=4, default_root_dir=tmp_path, enable_progress_bar=False, logger="csv"
    )
    trainer.fit(EpochLogged(), loaders()[0])  # 8 batches per epoch
    metrics = read_csv_metrics(tmp_path / "version_0" / "metrics.csv")
    assert metrics["per_epoch"] == [(8, 7.0), (16, 7.0)]  # once per epoch, max over it
    assert metrics["both_epoch"] == [(8, 3.5), (16, 3.5)]  # the epoch mean
    assert [s for s, _ in metrics["both_step"]] == [4, 8, 12, 16]
    assert metrics["both_step"][0][1] == 1.5  # the window mean of batches 0-3
    assert "both" not in metrics and metrics["mine"][1] == (8, 5.5)
    with pytest.raises(ValueError, match="on_step=True"):

        class StepInVal(Regression):
            def validation_step(self, batch, batch_idx):
                self.log("v", 1.0, on_step=True)

        Trainer(**QUIET).validate(StepInVal(), loaders()[1])


class Remembered(Regression):
    def __init__(self, hidden: int = 16, lr: float = 0.05, note: str = "x"):
        super().__init__(hidden, lr=lr)
        self.save_hyperparameters(ignore=["note"])

    def predict_step(self, batch, batch_idx, dataloader_idx=0):
        return self(batch[0])[0]


def test_predict_save_hyperparameters_and_load_from_checkpoint(tmp_path):
    seed_everything(0)
    module = Remembered(hidden=12, lr=0.02)
    assert module.hparams == {"hidden": 12, "lr": 0.02}
    trainer = Trainer(max_steps=3, default_root_dir=tmp_path, enable_progress_bar=False, logger=False)
    trainer.fit(module, loaders()[0])
    loaded = Remembered.load_from_checkpoint(trainer.checkpoint_callback.last_model_path)
    assert loaded.encoder[0].out_features == 12 and not loaded.training
    val = loaders()[1]
    predictions = Trainer(**QUIET).predict(loaded, val)
    x = torch.cat([batch[0] for batch in val])
    with torch.no_grad():
        expected = module(x)[0]
    assert len(predictions) == 2 and torch.allclose(torch.cat(predictions), expected)
    two = Trainer(**QUIET).predict(loaded, [val, val])
    assert len(two) == 2 and torch.equal(torch.cat(two[1]), torch.cat(predictions))
    with pytest.raises(TypeError, match="save_hyperparameters"):

        class Needs(Regression):
            def __init__(self, width):
                super().__init__(width)

        Needs.load_from_checkpoint(trainer.checkpoint_callback.last_model_path)


class TinyAutoencoder(TrainingModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        return torch.sigmoid(self.net(x))

    def training_step(self, batch, batch_idx):
        return torch.mean((self(batch) - batch) ** 2)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_image_logger_writes_originals_over_reconstructions_as_png(tmp_path):
    from PIL import Image

    from vqcodec.train.callbacks import ImageLogger

    seed_everything(0)
    crops = torch.rand(8, 3, 8, 8)
    images = ImageLogger(crops[:3], every_n_steps=2)
    trainer = Trainer(
        max_steps=5, callbacks=[images], default_root_dir=tmp_path, enable_progress_bar=False, logger="csv"
    )
    trainer.fit(TinyAutoencoder(), DataLoader(crops, batch_size=2))
    assert images.logged_steps == [2, 4, 5]  # the interval, then the end of training
    folder = tmp_path / "version_0" / "images" / "images" / "reconstruction"
    assert sorted(p.name for p in folder.iterdir()) == ["step=2.png", "step=4.png", "step=5.png"]
    png = torch.from_numpy(np.array(Image.open(folder / "step=5.png"))).float()
    assert png.shape == (18, 28, 3)  # 2 rows of 8 + a gap; 3 columns of 8 + 2 gaps
    png = png.permute(2, 0, 1) / 255
    assert torch.allclose(png[:, :8, :8], crops[0], atol=1 / 255)
    with torch.no_grad():
        expected = trainer.module(crops[:1])[0]
    assert torch.allclose(png[:, 10:, :8], expected, atol=1 / 255)
    with pytest.raises(ValueError, match="images must be"):
        ImageLogger(torch.rand(3, 8, 8))


def test_epoch_and_time_based_checkpoints(tmp_path):
    saved: list[tuple[int, int]] = []

    class Watch(ModelCheckpoint):
        def save_last_checkpoint(self, trainer):
            before = self._last_saved_step
            super().save_last_checkpoint(trainer)
            if self._last_saved_step != before:
                saved.append((trainer.progress.epoch, trainer.global_step))

    every_epoch = Watch(every_n_epochs=2, save_on_train_end=False)
    Trainer(
        max_epochs=5,
        callbacks=[every_epoch],
        default_root_dir=tmp_path,
        enable_progress_bar=False,
        logger=False,
    ).fit(Regression(), loaders()[0])  # 8 batches per epoch
    assert saved == [(2, 16), (4, 32)]
    checkpoint = load_checkpoint(every_epoch.last_model_path)
    assert checkpoint["loop"]["epoch"] == 4 and checkpoint["loop"]["batch_in_epoch"] == 0

    saved.clear()
    timed = Watch(train_time_interval=1e-9, save_on_train_end=False)
    Trainer(
        max_steps=3, callbacks=[timed], default_root_dir=tmp_path, enable_progress_bar=False, logger=False
    ).fit(Regression(), loaders()[0])
    assert [step for _, step in saved] == [1, 2, 3]
    with pytest.raises(ValueError, match="train_time_interval"):
        ModelCheckpoint(train_time_interval=0)


def test_a_failing_run_writes_on_exception_checkpoint_and_keeps_last(tmp_path):
    class Fails(Regression):
        def training_step(self, batch, batch_idx):
            if self.global_step == 3:
                raise FloatingPointError("loss went NaN")
            return super().training_step(batch, batch_idx)

    callback = ModelCheckpoint(every_n_train_steps=2)
    trainer = Trainer(
        max_steps=10, callbacks=[callback], default_root_dir=tmp_path, enable_progress_bar=False, logger=False
    )
    with pytest.raises(FloatingPointError, match="NaN"):
        trainer.fit(Fails(), loaders()[0])
    folder = tmp_path / "version_0" / "checkpoints"
    assert load_checkpoint(folder / "on_exception.ckpt")["loop"]["global_step"] == 3
    assert load_checkpoint(folder / "last.ckpt")["loop"]["global_step"] == 2  # the clean boundary
    assert callback.exception_model_path == str(folder / "on_exception.ckpt")


def test_progress_counts_optimizer_steps_and_interval_crossings():
    from vqcodec.train import Progress

    progress = Progress(global_step=3, step_at_batch_start=1)  # a manual batch that stepped twice
    assert progress.stepped_this_batch and progress.crossed(2) and progress.crossed(3)
    assert not progress.crossed(4) and not progress.crossed(None)

    seen: list[tuple[int, int]] = []

    class Watch(Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            seen.append((trainer.progress.global_step, trainer.progress.total_batches))

    Trainer(max_steps=3, accumulate_grad_batches=2, callbacks=[Watch()], **QUIET).fit(
        Regression(), loaders()[0]
    )
    assert seen == [(0, 1), (1, 2), (1, 3), (2, 4), (2, 5), (3, 6)]


def test_callbacks_ported_from_lightning_reach_the_module_as_trainer_lightning_module():
    seen: list[bool] = []

    class Ported(Callback):  # Lightning callbacks reach the module through trainer.lightning_module
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            seen.append(trainer.lightning_module is module)

    module = Regression()
    trainer = Trainer(max_steps=2, callbacks=[Ported()], **QUIET)
    assert trainer.lightning_module is None  # nothing attached before fit
    trainer.fit(module, loaders()[0])
    assert seen == [True, True] and trainer.lightning_module is module
