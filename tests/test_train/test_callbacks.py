"""Every callback does what it says; loggers and progress output."""

from __future__ import annotations

import io

import pytest
import torch

from vqcodec.train import (
    EMA,
    CodebookHealth,
    EarlyStopping,
    LearningRateMonitor,
    ModelCheckpoint,
    Trainer,
    load_checkpoint,
    seed_everything,
)
from vqcodec.train.loggers import CSVLogger, ProgressReporter, read_csv_metrics

from .helpers import Regression, loaders, params_of


class ScriptedValidation(Regression):
    """Logs a scripted ``val/score`` sequence, one value per validation."""

    def __init__(self, scores):
        super().__init__()
        self.scores = list(scores)
        self.calls = 0

    def validation_step(self, batch, batch_idx):
        self.log("val/score", self.scores[self.calls])

    def on_validation_epoch_end(self):
        self.calls += 1


def test_model_checkpoint_keeps_last_and_best_k(tmp_path):
    scores = [5.0, 3.0, 4.0, 1.0, 2.0, 6.0]
    callback = ModelCheckpoint(monitor="val/score", mode="min", save_top_k=2)
    trainer = Trainer(
        max_steps=12,
        val_check_interval=2,
        callbacks=[callback],
        default_root_dir=tmp_path,
        enable_progress_bar=False,
        logger=False,
    )
    trainer.fit(ScriptedValidation(scores), *loaders())
    files = sorted(p.name for p in (tmp_path / "version_0" / "checkpoints").iterdir())
    best = sorted(p for p in files if p.startswith("best"))
    assert best == ["best-step=10-val_score=2.ckpt", "best-step=8-val_score=1.ckpt"]
    assert "last.ckpt" in files and len(files) == 3  # no temporary files left behind
    assert callback.best_model_score == 1.0 and callback.best_model_path.endswith(
        "best-step=8-val_score=1.ckpt"
    )
    assert load_checkpoint(callback.best_model_path)["loop"]["global_step"] == 8
    last = load_checkpoint(tmp_path / "version_0" / "checkpoints" / "last.ckpt")
    assert last["loop"]["global_step"] == 12
    assert set(last["callbacks"]["ModelCheckpoint[val/score]"]["best_k"].values()) == {1.0, 2.0}

    # mode="max" and every_n_train_steps
    callback = ModelCheckpoint(
        tmp_path / "max", monitor="val/score", mode="max", save_top_k=1, every_n_train_steps=3
    )
    trainer = Trainer(
        max_steps=12, val_check_interval=4, callbacks=[callback], enable_progress_bar=False, logger=False
    )
    trainer.fit(ScriptedValidation(scores), *loaders())
    # validations at steps 4, 8, 12 see 5, 3, 4
    assert [p.name for p in (tmp_path / "max").glob("best*")] == ["best-step=4-val_score=5.ckpt"]
    assert load_checkpoint(tmp_path / "max" / "last.ckpt")["loop"]["global_step"] == 12


def test_early_stopping_stops_after_patience():
    callback = EarlyStopping("val/score", mode="min", patience=2, min_delta=0.5)
    trainer = Trainer(
        max_steps=100,
        val_check_interval=2,
        callbacks=[callback],
        enable_progress_bar=False,
        logger=False,
        enable_checkpointing=False,
    )
    # improves, improves, too little (< min_delta), worse -> stop at the 4th validation (step 8)
    trainer.fit(ScriptedValidation([5.0, 3.0, 2.8, 4.0, 1.0, 1.0]), *loaders())
    assert trainer.global_step == 8 and trainer.should_stop
    assert callback.best == 3.0 and callback.wait == 2

    callback = EarlyStopping("val/score", patience=5)
    trainer = Trainer(
        max_steps=100,
        val_check_interval=2,
        callbacks=[callback],
        enable_progress_bar=False,
        logger=False,
        enable_checkpointing=False,
    )
    trainer.fit(ScriptedValidation([1.0, float("nan")] + [0.0] * 50), *loaders())
    assert trainer.global_step == 4  # a non-finite value stops at once


def test_lr_monitor_logs_scheduled_rates(tmp_path):
    module = Regression(scheduler=True, lr=0.08)  # StepLR: halves every 3 steps
    trainer = Trainer(
        max_steps=9,
        log_every_n_steps=3,
        callbacks=[LearningRateMonitor()],
        default_root_dir=tmp_path,
        enable_progress_bar=False,
        enable_checkpointing=False,
    )
    trainer.fit(module, loaders()[0])
    logged = read_csv_metrics(tmp_path / "version_0" / "metrics.csv")["lr/opt0"]
    assert logged == [(3, 0.04), (6, 0.02), (9, 0.01)]


def test_ema_tracks_the_average_and_validates_with_it():
    seed_everything(0)
    module = Regression(optimizer="sgd")
    history = [params_of(module)]

    class Record(ModelCheckpoint):  # runs after EMA each batch (checkpoint callbacks go last)
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            history.append(params_of(module))

    ema = EMA(0.75)
    seen_during_validation = {}

    trainer = Trainer(
        max_steps=5, callbacks=[ema, Record(save_last=False)], enable_progress_bar=False, logger=False
    )

    original_validation = module.validation_step

    def validation_step(batch, batch_idx):
        seen_during_validation["head.weight"] = module.head.weight.detach().clone()
        return original_validation(batch, batch_idx)

    module.validation_step = validation_step  # type: ignore[method-assign]
    trainer.val_check_interval = 5
    trainer.fit(module, *loaders())
    expected = {k: v.clone() for k, v in history[0].items()}
    for state in history[1:]:
        for k in expected:
            expected[k] = 0.75 * expected[k] + 0.25 * state[k]
    for name, shadow in zip(ema.names, ema.shadow):
        torch.testing.assert_close(shadow, expected[name], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(seen_during_validation["head.weight"], expected["head.weight"])
    assert torch.equal(module.head.weight.detach(), history[-1]["head.weight"])  # live weights restored


def test_codebook_health_logs_quantizer_metrics(tmp_path, capsys):
    seed_everything(0)
    health = CodebookHealth(warn_usage_below=1.01)
    trainer = Trainer(
        max_steps=4,
        log_every_n_steps=2,
        callbacks=[health],
        default_root_dir=tmp_path,
        enable_checkpointing=False,
        enable_progress_bar=False,
    )
    trainer.fit(Regression(quantizer=True), loaders()[0])
    metrics = read_csv_metrics(tmp_path / "version_0" / "metrics.csv")
    for name in ("usage", "perplexity", "dead_codes"):
        assert [s for s, _ in metrics[f"codebook/quantizer/{name}"]] == [2, 4]
    usage = metrics["codebook/quantizer/usage"][-1][1]
    assert 0.0 < usage <= 1.0
    assert 1.0 <= metrics["codebook/quantizer/perplexity"][-1][1] <= 16.0
    assert health.logged["codebook/quantizer/usage"] == usage
    err = capsys.readouterr().err.splitlines()
    warnings = [line for line in err if "codebook usage of quantizer" in line]
    assert len(warnings) == 2  # usage < 1.01 at both logging steps


def test_csv_logger_and_plain_progress_lines(tmp_path):
    logger = CSVLogger(tmp_path)
    logger.log_metrics({"a": 1.5, "b": 2}, step=3)
    logger.log_metrics({"a": 0.5}, step=4)
    logger.finalize()
    assert read_csv_metrics(tmp_path / "metrics.csv") == {"a": [(3, 1.5), (4, 0.5)], "b": [(3, 2.0)]}

    stream = io.StringIO()  # not a terminal: plain lines, one per logging step
    reporter = ProgressReporter(enabled=True, stream=stream)
    trainer = Trainer(max_steps=6, log_every_n_steps=2, logger=False, enable_checkpointing=False)
    trainer._reporter = reporter
    original = trainer._make_loggers

    def keep_reporter():
        original()
        trainer._reporter = reporter

    trainer._make_loggers = keep_reporter  # type: ignore[method-assign]
    trainer.fit(Regression(), loaders()[0])
    lines = stream.getvalue().strip().splitlines()
    assert [line.split()[1] for line in lines] == ["2/6", "4/6", "6/6"]
    assert all("steps/s" in line and "loss=" in line for line in lines)


@pytest.mark.parametrize("bad", [dict(mode="up"), dict(decay=1.5)])
def test_callbacks_reject_bad_settings(bad):
    with pytest.raises(ValueError):
        if "decay" in bad:
            EMA(**bad)
        else:
            ModelCheckpoint(monitor="x", **bad)
