"""W&B and MLflow loggers (issue 14): a clear error without the package; with it, a short fit whose
metrics, image and hyperparameters are read back from the local store (offline, no network)."""

from __future__ import annotations

import sys

import pytest
import torch

from vqcodec.train import Trainer
from vqcodec.train.loggers import LOGGERS, MLflowLogger, WandbLogger, _flatten, make_loggers

from .helpers import Regression, loaders

QUIET = {"enable_progress_bar": False, "enable_checkpointing": False, "log_every_n_steps": 1}


class Imaging(Regression):
    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        if batch_idx == 0:
            for logger in self.trainer.loggers:
                logger.log_image("sample", torch.rand(3, 8, 8), self.trainer.global_step)
        return loss


@pytest.mark.parametrize("name, module", [("wandb", "wandb"), ("mlflow", "mlflow.tracking")])
def test_a_named_logger_without_its_package_is_one_clear_error(tmp_path, monkeypatch, name, module):
    monkeypatch.setitem(sys.modules, module, None)  # importing it now raises ImportError
    with pytest.raises(RuntimeError, match=rf"logger '{name}' needs the \w+ package: pip install"):
        make_loggers(name, tmp_path)
    assert name in LOGGERS


def test_flatten_nests_with_slashes():
    assert _flatten({"a": {"b": 1, "c": {"d": "x"}}, "e": [1]}) == {"a/b": 1, "a/c/d": "x", "e": [1]}


def test_mlflow_logger_records_a_fit(tmp_path):
    pytest.importorskip("mlflow")
    logger = MLflowLogger(tmp_path / "run", experiment="tests", run_name="fit")
    Trainer(max_steps=3, logger=[logger], default_root_dir=tmp_path, **QUIET).fit(Imaging(), loaders()[0])
    client, run_id = logger.client, logger.run_id
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    losses = client.get_metric_history(run_id, "train/mse")
    assert [m.step for m in losses] == [1, 2, 3] and all(m.value > 0 for m in losses)
    assert any(key.startswith("trainer/") for key in run.data.params)
    assert "images/sample/step=0.png" in [a.path for a in client.list_artifacts(run_id, "images/sample")]


def test_wandb_logger_records_a_fit_offline(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    logger = WandbLogger(tmp_path / "run", project="tests", name="fit", mode="offline")
    Trainer(max_steps=3, logger=[logger], default_root_dir=tmp_path, **QUIET).fit(Imaging(), loaders()[0])
    run_dir = tmp_path / "run" / "wandb"
    assert any(p.suffix == ".wandb" for p in run_dir.rglob("*.wandb"))  # the offline run file
    assert logger.run.config["trainer"]["max_steps"] == 3
