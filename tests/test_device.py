"""``device=`` / ``--device auto|cpu|cuda``: the choice, the errors, the per-device model copies,
and (where CUDA exists) the same codes and file bytes on CUDA as on the CPU."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from PIL import Image
from test_codec.image_helpers import TINY_MODEL, picture

from vqcodec.cli import main
from vqcodec.codec.image import decode_image_result, encode_image, encode_image_result
from vqcodec.models import device as devices
from vqcodec.models.zoo import list_models, load_model

M = str(TINY_MODEL)
HAS_CUDA = torch.cuda.is_available()


@pytest.fixture
def no_cuda(monkeypatch):
    """Act as a machine without CUDA, whatever this one has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_device_names(no_cuda):
    assert devices.resolve_device("cpu") == torch.device("cpu")
    assert devices.resolve_device("auto") == torch.device("cpu")
    assert devices.resolve_device(None) == torch.device("cpu")
    assert devices.check_device_name("cuda:1") == "cuda:1"
    with pytest.raises(devices.DeviceError, match="unknown device 'tpu': use one of auto, cpu, cuda"):
        devices.resolve_device("tpu")
    with pytest.raises(devices.DeviceError, match="--device cuda: CUDA is not available"):
        devices.resolve_device("cuda")


def test_auto_picks_cuda_when_available(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert devices.resolve_device("auto") == torch.device("cuda")


def test_library_refuses_cuda_before_reading_anything(no_cuda):
    with pytest.raises(devices.DeviceError, match="CUDA is not available"):
        encode_image(picture(16, 16), 1, model=M, device="cuda")
    with pytest.raises(devices.DeviceError, match="CUDA is not available"):
        decode_image_result(b"not even a vqc file", model=M, device="cuda")


@pytest.mark.parametrize("command", ["encode", "decode", "bench"])
def test_cli_cuda_without_cuda_is_one_line_before_any_model_loads(
    command, tmp_path, capsys, monkeypatch, no_cuda
):
    import vqcodec.models.zoo as zoo

    def no_load(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(zoo, "load_model", no_load)
    monkeypatch.setattr("vqcodec.codec.image.load_model", no_load)
    src = tmp_path / "in.png"
    Image.fromarray(picture(16, 16)).save(src)
    args = {
        "encode": ["encode", str(src), str(tmp_path / "out.vqc")],
        "decode": ["decode", str(tmp_path / "x.vqc"), str(tmp_path / "out.png")],
        "bench": ["bench", str(src)],
    }[command]
    assert main([*args, "--model", M, "--device", "cuda"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--device cuda: CUDA is not available" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]
    assert main([*args[:2], "--device", "gpu"]) == 1
    assert "unknown device 'gpu'" in capsys.readouterr().err


def test_cli_device_cpu_and_auto_round_trip(tmp_path, capsys, no_cuda):
    src = tmp_path / "in.png"
    Image.fromarray(picture(24, 40, seed=1)).save(src)
    outputs = []
    for name in ("cpu", "auto"):
        out = tmp_path / f"{name}.vqc"
        assert main(["encode", str(src), str(out), "-q", "2", "--model", M, "--device", name, "--quiet"]) == 0
        assert main(["decode", str(out), str(tmp_path / f"{name}.png"), "--model", M, "--device", name]) == 0
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]


def test_device_copies_leave_the_shared_model_alone():
    """A copy per (model, device), made once under a lock; the zoo's model stays where it is."""
    model = load_model(M)
    assert devices.on_device(model, "cpu") is model
    meta = torch.device("meta")  # any device other than the model's exercises the copy path
    copies: list = []
    barrier = threading.Barrier(4)

    def grab():
        barrier.wait()
        copies.append(devices.on_device(model, meta))

    threads = [threading.Thread(target=grab) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(c) for c in copies}) == 1
    moved = copies[0]
    assert moved is not model and devices.model_device(moved).type == "meta"
    assert devices.model_device(model).type == "cpu"
    assert moved.sha256 == model.sha256 and moved.prior is model.prior and moved.name == model.name
    assert devices.on_device(moved, meta) is moved
    # the shared model still codes on the CPU, and the same as before
    data = encode_image(picture(16, 32, seed=2), 2, model=model)
    assert data == encode_image(picture(16, 32, seed=2), 2, model=load_model(M))


cuda_only = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")


@cuda_only
@pytest.mark.parametrize("name", [M] + [m.name for m in list_models() if m.media == "image"])
def test_cuda_codes_equal_cpu_codes(name, shared_data):
    """Same bytes from a CUDA encode as from a CPU one; the same codes decoded; pixels within 1."""
    kodak = sorted((shared_data / "kodak").glob("*.png"))
    assert kodak, "no Kodak pictures"
    with Image.open(kodak[0]) as image:
        crop = image.convert("RGB").crop((0, 0, 256, 192))
    model = load_model(name)
    levels = sorted({1, (model.quality_levels + 1) // 2, model.quality_levels})
    for level in levels:
        on_cpu = encode_image(crop, level, model=model, device="cpu")
        on_cuda = encode_image(crop, level, model=model, device="cuda")
        assert on_cuda == on_cpu, f"{name} q{level}: CUDA made different bytes"
        a = decode_image_result(on_cpu, model=model, device="cpu")
        b = decode_image_result(on_cpu, model=model, device="cuda")
        assert np.array_equal(a.codes, b.codes)
        assert np.abs(a.rgb.astype(int) - b.rgb.astype(int)).max() <= 1
    # the psnr search decodes its trials on the device and still picks the CPU's level
    target = 30.0
    assert (
        encode_image_result(crop, psnr=target, model=model, device="cuda").data
        == encode_image_result(crop, psnr=target, model=model, device="cpu").data
    )
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32


def test_cli_default_is_the_cpu(tmp_path, capsys, monkeypatch):
    """Without --device nothing asks for CUDA, even where torch says it has it (here it cannot
    deliver on a CPU-only build: a CUDA default would fail)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    src = tmp_path / "in.png"
    Image.fromarray(picture(16, 16, seed=3)).save(src)
    assert main(["encode", str(src), str(tmp_path / "a.vqc"), "--model", M, "--quiet"]) == 0
    assert main(["decode", str(tmp_path / "a.vqc"), str(tmp_path / "a.png"), "--model", M, "--quiet"]) == 0
    assert capsys.readouterr().err == ""
