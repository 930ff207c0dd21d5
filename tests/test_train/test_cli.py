"""Recipe configs and ``vqcodec train``: overrides, callbacks from config, export hook, resume, torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vqcodec.cli import main
from vqcodec.train import load_checkpoint
from vqcodec.train.config import apply_override, load_config, resolve_object

TESTS_DIR = Path(__file__).resolve().parents[1]

CONFIG = """
[recipe]
builder = "test_train.tiny_recipe:build"
export = "test_train.tiny_recipe:export"

[model]
hidden = 16

[data]
batch_size = 8

[trainer]
max_steps = 10
val_check_interval = 5
log_every_n_steps = 5
seed = 0

[callbacks.ema]
decay = 0.5

[callbacks.checkpoint]
monitor = "val/mse"
save_top_k = 1

[export]
path = "PLACEHOLDER"
"""


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(CONFIG.replace("PLACEHOLDER", str(tmp_path / "exported.pt")))
    return path


def test_overrides_parse_toml_values(tmp_path):
    config = load_config(
        write_config(tmp_path),
        [
            "trainer.max_steps=3",
            "trainer.precision=bf16-mixed",
            "model.sizes=[1, 2]",
            "new.table.flag=true",
            'data.name="x y"',
        ],
    )
    assert config["trainer"]["max_steps"] == 3 and config["trainer"]["precision"] == "bf16-mixed"
    assert config["model"]["sizes"] == [1, 2] and config["new"]["table"]["flag"] is True
    assert config["data"]["name"] == "x y"
    with pytest.raises(ValueError, match="key=value"):
        apply_override({}, "nonsense")
    with pytest.raises(ValueError, match="not a table"):
        apply_override({"a": 1}, "a.b=2")
    with pytest.raises(ValueError, match="package.module:function"):
        resolve_object("no_colon")
    json_path = tmp_path / "c.json"
    json_path.write_text(json.dumps({"recipe": {"builder": "m:f"}}))
    assert load_config(json_path)["recipe"]["builder"] == "m:f"


def test_vqcodec_train_end_to_end_with_export_and_resume(tmp_path, capsys):
    config = write_config(tmp_path)
    root = tmp_path / "run"
    args = ["train", str(config), "--set", f"trainer.default_root_dir={root}", "--quiet", "--json"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["global_step"] == 10 and "val/mse" in summary["metrics"]
    exported = torch.load(tmp_path / "exported.pt", weights_only=False)
    assert exported["global_step"] == 10
    last = load_checkpoint(root / "version_0" / "checkpoints" / "last.ckpt")
    # the export hook got the EMA weights
    for name, value in exported["state_dict"].items():
        assert torch.equal(value, last["ema_state_dict"][name]), name
    assert list((root / "version_0" / "checkpoints").glob("best-*.ckpt"))
    assert (root / "version_0" / "metrics.csv").is_file()

    # --resume continues from last.ckpt up to the new max_steps
    assert main(args + ["--resume", "--set", "trainer.max_steps=12", "--no-export"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["global_step"] == 12


def test_vqcodec_train_reports_bad_configs_in_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[trainer]\nmax_steps = 1\n")
    assert main(["train", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "[recipe] name" in err and "builder" in err
    assert main(["train", str(tmp_path / "missing.toml")]) == 1
    capsys.readouterr()
    assert main(["train", str(write_config(tmp_path)), "--set", "trainer.max_step=3"]) == 1
    assert "unknown [trainer] option(s) max_step" in capsys.readouterr().err
    assert main(["train", str(write_config(tmp_path)), "--set", "callbacks.emma.decay=0.9"]) == 1
    assert "unknown callback 'emma'" in capsys.readouterr().err


@pytest.mark.slow
def test_vqcodec_train_under_torchrun(tmp_path):
    config = write_config(tmp_path)
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]),
    )
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--standalone",
        "-m",
        "vqcodec",
        "train",
        str(config),
        "--set",
        f"trainer.default_root_dir={tmp_path / 'run'}",
        "--set",
        "trainer.strategy=ddp",
        "--set",
        "trainer.max_steps=4",
        "--quiet",
        "--json",
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout)  # printed once, by rank 0
    assert summary["global_step"] == 4
    exported = torch.load(tmp_path / "exported.pt", weights_only=False)
    assert exported["rank"] == 0 and exported["global_step"] == 4
