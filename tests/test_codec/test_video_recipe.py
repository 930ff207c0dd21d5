"""The video training recipe end to end on a synthetic ``video_train`` folder (tiny image model)."""

from __future__ import annotations

import io
from fractions import Fraction

import numpy as np
import pytest
import torch

from tests.test_codec.image_helpers import REPO, TINY_MODEL, picture


@pytest.fixture()
def data_folder(tmp_path, monkeypatch):
    from vqcodec.codec.video_io import AVWriter, VideoInfo

    folder = tmp_path / "data" / "video_train"
    folder.mkdir(parents=True)
    for c in range(3):
        base = picture(80, 140, seed=c)
        writer = AVWriter(str(folder / f"clip{c}.mkv"), VideoInfo(96, 64, Fraction(25)), lossless=True)
        for t in range(6):
            writer.write(np.ascontiguousarray(base[8:72, 2 * t : 2 * t + 96]))
        writer.close()
    monkeypatch.setenv("VQCODEC_DATA", str(tmp_path / "data"))
    return tmp_path


def test_recipe_trains_exports_and_the_bundle_codes_video(data_folder, vqcodec_cli):
    from vqcodec.codec.video import VideoDecoder, VideoEncoder
    from vqcodec.models.zoo import load_model

    out = data_folder / "video.safetensors"
    overrides = {
        "image.bundle": str(TINY_MODEL),
        "data.scale": "1.0",
        "data.cache": str(data_folder / "latents.pt"),
        "data.val_clips": "1",
        "data.batch_size": "2",
        "data.min_residual_ratio": "0.0",
        "trainer.max_steps": "4",
        "trainer.val_check_interval": "2",
        "trainer.default_root_dir": str(data_folder / "run"),
        "model.residual_stages": "3",
        "export.qualities": "[2,4]",
        "export.path": str(out),
    }
    args = ["train", str(REPO / "vqcodec/train/configs/video_rvq8.toml"), "--quiet"]
    for key, value in overrides.items():
        args += ["--set", f"{key}={value}"]
    # in this process (tests/test_train/test_cli.py runs `vqcodec train` as a real command)
    result = vqcodec_cli(*args)
    assert result.returncode == 0, result.stderr[-2000:]
    model = load_model(str(out))
    assert model.media == "video" and model.network.config.residual_stages == 3
    # fitted tables are valid integer rows; the image part is the tiny model's weights
    assert torch.all(model.network.count_freqs.sum(1) == 1 << 16)
    from vqcodec.models.bundle import TRAINING_ONLY_SUFFIXES

    image = load_model(str(TINY_MODEL))
    for name, value in image.network.state_dict().items():
        if value.is_floating_point() and name.rsplit(".", 1)[-1] not in TRAINING_ONLY_SUFFIXES:
            assert torch.equal(model.network.image.state_dict()[name], value), name
    buf = io.BytesIO()
    frames = [np.ascontiguousarray(picture(48, 64, seed=9)[:, :]) for _ in range(3)]
    with VideoEncoder(buf, model, quality=3) as enc:
        for f in frames:
            enc.write(f)
    assert len(list(VideoDecoder(buf.getvalue(), model=model))) == 3


def test_recipe_refuses_evaluation_clips(tmp_path):
    from vqcodec.train.recipes.video import training_clips

    (tmp_path / "video").mkdir()
    with pytest.raises(FileNotFoundError):
        training_clips(tmp_path)  # only video_train is ever read
