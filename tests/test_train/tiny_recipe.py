"""A recipe for the CLI tests: the Regression module on synthetic data, exported as a state-dict file."""

from __future__ import annotations

from pathlib import Path

import torch

from .helpers import Regression, loaders


def build(config):
    model = dict(config.get("model", {}))
    data = dict(config.get("data", {}))
    module = Regression(hidden=int(model.get("hidden", 16)), quantizer=bool(model.get("quantizer", False)))
    return module, loaders(batch_size=int(data.get("batch_size", 8)))


def export(module, config, trainer):
    path = Path(config["export"]["path"])
    torch.save(
        {"state_dict": module.state_dict(), "global_step": trainer.global_step, "rank": trainer.rank}, path
    )
    return path
