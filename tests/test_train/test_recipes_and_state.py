"""Recipe resolution (RECIPES registry, one export-hook signature) and checkpoint-state extraction."""

from __future__ import annotations

import pytest
import torch

from vqcodec.errors import UnknownNameError
from vqcodec.train.accelerators import make_accelerator
from vqcodec.train.callbacks import make_callback
from vqcodec.train.checkpoint import module_state_dict
from vqcodec.train.config import RECIPES, resolve_recipe
from vqcodec.train.loggers import make_loggers
from vqcodec.train.recipes import image, image_sq, video
from vqcodec.train.strategies import make_strategy


def test_bundled_recipes_are_registered_with_their_export_hooks():
    assert RECIPES.names() == ["image", "image_sq", "video"]
    for name, module in (("image", image), ("image_sq", image_sq), ("video", video)):
        recipe = resolve_recipe({"recipe": {"name": name}})
        assert recipe.build is module.build and recipe.export is module.export
    assert resolve_recipe({"recipe": {"name": "image", "export": False}}).export is None


def test_recipe_tables_fail_with_the_known_names():
    with pytest.raises(UnknownNameError, match="unknown recipe 'imag'; known: image, image_sq, video"):
        resolve_recipe({"recipe": {"name": "imag"}})
    with pytest.raises(ValueError, match=r"\[recipe\] name"):
        resolve_recipe({"trainer": {}})
    with pytest.raises(ValueError, match="export = false"):
        resolve_recipe({"recipe": {"name": "image", "export": "m:f"}})
    recipe = resolve_recipe({"recipe": {"builder": "test_train.tiny_recipe:build"}})
    assert recipe.export is None  # no hidden default: an out-of-package recipe names its hook


def _state(scale: float) -> dict[str, torch.Tensor]:
    return {
        "model.w": torch.full((2,), scale),
        "model.inner._orig_mod.b": torch.full((1,), scale),
        "step": torch.zeros(()),
    }


def test_module_state_dict_picks_ema_or_live_weights_and_cleans_keys(tmp_path):
    # an EMA run that validated on the averages: state_dict = averages, train_state_dict = live weights
    checkpoint = {"state_dict": _state(2.0), "ema_state_dict": _state(2.0), "train_state_dict": _state(1.0)}
    averaged = module_state_dict(checkpoint, prefix="model.")
    live = module_state_dict(checkpoint, use_ema=False, prefix="model.")
    assert set(averaged) == {"w", "inner.b"}  # no "_orig_mod." (compiled / FSDP runs), prefix stripped
    assert float(averaged["w"][0]) == 2.0 and float(live["w"][0]) == 1.0 and float(live["inner.b"][0]) == 1.0
    # a run without EMA: both read state_dict; a path works like the dict
    path = tmp_path / "plain.ckpt"
    torch.save({"state_dict": _state(3.0)}, path)
    assert float(module_state_dict(path, prefix="model.")["w"][0]) == 3.0
    assert float(module_state_dict(path, use_ema=False, prefix="model.")["w"][0]) == 3.0
    # a bare state-dict file is the state itself
    torch.save(_state(4.0), path)
    assert set(module_state_dict(path)) == {"model.w", "model.inner.b", "step"}
    with pytest.raises(ValueError, match="no 'net.' weights"):
        module_state_dict(path, prefix="net.")


def test_every_train_registry_names_its_known_entries(tmp_path):
    cases = [
        (lambda: make_strategy("dpp"), "unknown strategy 'dpp'; known: ddp, fsdp, single"),
        (lambda: make_accelerator("tpu"), "unknown accelerator 'tpu'; known: cpu, cuda, mps, xla"),
        (
            lambda: make_callback("emma"),
            "unknown callback 'emma'; known: checkpoint, codebook_health, early_stopping, ema,",
        ),
        (
            lambda: make_loggers("comet", tmp_path),
            "unknown logger 'comet'; known: csv, mlflow, tensorboard, wandb",
        ),
    ]
    for call, message in cases:
        with pytest.raises(UnknownNameError) as caught:
            call()
        assert str(caught.value).startswith(message)
    assert [type(lg).__name__ for lg in make_loggers(["csv"], tmp_path)] == ["CSVLogger"]
