"""The scalar-quantized image codec: config, transform, quantizer, bundle and codec round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import vqcodec
from vqcodec.entropy.coefficients import CoefficientContextPrior
from vqcodec.models.bundle import load_bundle, save_bundle
from vqcodec.models.image_sq import ScalarImageCodec, ScalarImageCodecConfig, group_for_quality
from vqcodec.train.recipes.image_sq import training_codes

SAMPLES = Path(vqcodec.__file__).resolve().parent / "samples"
CONFIG = ScalarImageCodecConfig(steps=(0.8, 0.2, 0.01), decoder_channels=(8, 8, 4), decoder_blocks=(0, 0, 0))


def _pixels(seed=0, size=32):
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    smooth = torch.stack([x, y, x + y]).float() / (2 * size)
    return (smooth + 0.05 * torch.rand(3, size, size, generator=g)).clamp(0, 1)[None]


@pytest.fixture(scope="module")
def network():
    net = ScalarImageCodec(CONFIG).eval()
    with pytest.raises(ValueError, match="at least 192 blocks"):
        net.initialise_transform(_pixels(0))
    net.initialise_transform(torch.cat([_pixels(s, 64) for s in range(8)]))
    return net


def test_config_validates_and_round_trips_through_json():
    assert ScalarImageCodecConfig.from_dict(CONFIG.to_dict()) == CONFIG
    with pytest.raises(ValueError, match="decreasing"):
        ScalarImageCodecConfig(steps=(0.1, 0.2))
    with pytest.raises(ValueError, match="rounding"):
        ScalarImageCodecConfig(rounding=0.7)
    with pytest.raises(ValueError, match="unknown"):
        ScalarImageCodecConfig.from_dict({"steps": [1.0], "bogus": 1})
    assert CONFIG.stages_for_quality(2) == 192 and CONFIG.quality_levels == 3
    with pytest.raises(ValueError, match="quality"):
        CONFIG.step_for_quality(4)


def test_transform_is_orthonormal_and_a_fine_step_is_nearly_lossless(network):
    basis = network.basis.double()
    assert torch.allclose(basis @ basis.T, torch.eye(192, dtype=torch.float64), atol=1e-5)
    pixels = _pixels(3)
    codes = network.to_codes(pixels, 3)
    assert codes.shape == (1, 192, 4, 4) and codes.dtype == torch.int64
    out = network.from_codes(codes, 3)
    assert torch.mean((out - pixels) ** 2) < 1e-4  # step 0.01: far above 40 dB
    coarse = network.from_codes(network.to_codes(pixels, 1), 1)
    assert torch.mean((coarse - pixels) ** 2) > torch.mean((out - pixels) ** 2)


def test_dead_zone_rounding_rounds_towards_zero(network):
    c = torch.tensor([0.6, -0.6, 0.66, 1.64, -1.66]).reshape(1, 5, 1, 1)
    assert network.quantize(c, 1.0, rounding=0.35).flatten().tolist() == [0, 0, 1, 1, -2]
    assert network.quantize(c, 1.0, rounding=0.5).flatten().tolist() == [1, -1, 1, 2, -2]


def test_groups_split_the_levels_evenly():
    assert [group_for_quality(q, 20, 4) for q in range(1, 21)] == [g for g in range(4) for _ in range(5)]


def test_bundle_and_codec_round_trip(network, tmp_path):
    crops = (torch.cat([_pixels(s) for s in range(6)]) * 255).to(torch.uint8)
    prior = CoefficientContextPrior.fit(training_codes(network, crops))  # one table group per level
    path = tmp_path / "tiny-sq.safetensors"
    save_bundle(path, network, prior, CONFIG, "tiny scalar codec", name="tiny-sq")
    loaded, loaded_prior, config, _ = load_bundle(path)
    assert config == CONFIG and loaded_prior.num_groups == 3
    image = (_pixels(11, 40)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)[:37, :29]
    previous = None
    for quality in (1, 2, 3):
        data = vqcodec.encode_image(image, quality=quality, model=str(path))
        decoded = vqcodec.decode_image(data, output="numpy", model=str(path))
        assert decoded.shape == image.shape
        error = float(np.mean((decoded.astype(float) - image) ** 2))
        assert previous is None or error < previous
        previous = error
    assert previous < 2.0
    result = vqcodec.codec.image.decode_image_result(data, model=str(path))
    assert result.codes.shape == (192, 5, 4)
    with pytest.raises(vqcodec.VQCError):
        vqcodec.decode_image(data[:-30], model=str(path))


def test_export_writes_finer_levels_and_the_prior_options_it_is_given(network, tmp_path):
    from vqcodec.train.recipes.image_sq import ScalarImageCodecModule, export

    module = ScalarImageCodecModule(CONFIG)
    module.model.load_state_dict(network.state_dict())
    crops = (torch.cat([_pixels(s, 48) for s in range(8)]) * 255).to(torch.uint8)
    packed = tmp_path / "crops.pt"
    torch.save({"train": crops}, packed)
    config = {
        "data": {"packed": str(packed)},
        "export": {
            "path": str(tmp_path / "fine.safetensors"),
            "name": "fine",
            "steps": [0.8, 0.4, 0.2, 0.05, 0.01],
            "fit_crops": 8,
            "prior_groups": 2,
            "prior_layout": 3,
            "prior_sign_context": True,
            "prior_predict": True,
        },
    }
    path = export(module, config, None)
    network_again, prior, model_config, _ = load_bundle(path)
    assert model_config.steps == (0.8, 0.4, 0.2, 0.05, 0.01) and model_config.decoder_channels == (8, 8, 4)
    assert prior.num_groups == 2 and prior.layout == 3 and prior.sign_context
    assert torch.equal(
        network_again.refine.layers[0].weight.float(), network.refine.layers[0].weight.half().float()
    )
    image = (_pixels(12, 40)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    errors = []
    for quality in range(1, 6):
        decoded = vqcodec.decode_image(
            vqcodec.encode_image(image, quality=quality, model=str(path)), model=str(path), output="numpy"
        )
        errors.append(float(np.mean((decoded.astype(float) - image) ** 2)))
    assert errors == sorted(errors, reverse=True)
    for key, bad in (("steps", 0.5), ("prior_sign_context", "yes"), ("prior_predict", 1)):
        with pytest.raises(ValueError, match=key):
            export(module, {**config, "export": {**config["export"], key: bad}}, None)


def test_effort_one_chooses_rd_codes_that_decode_and_save_bits():
    from PIL import Image

    from vqcodec.models.zoo import load_model

    scene = np.asarray(Image.open(SAMPLES / "scene.png").convert("RGB"))
    model = load_model("image-sq20")
    assert model.effort == 0 and model.max_effort == 1
    fast = vqcodec.codec.image.encode_image_result(scene, 10, model=model)
    slow = vqcodec.codec.image.encode_image_result(scene, 10, model=model, effort=1)
    assert model.effort == 0  # the cached model is never changed, a view is
    assert len(slow.data) < 0.97 * len(fast.data)
    decoded = vqcodec.decode_image(slow.data, output="numpy")
    assert decoded.shape == scene.shape
    error = float(np.mean((decoded.astype(float) - scene) ** 2))
    assert 10 * np.log10(255**2 / error) > 26.0
    with pytest.raises(ValueError, match=r"effort must be an integer in 0\.\.1"):
        model.with_effort(2)
    with pytest.raises(ValueError, match=r"in 0\.\.0 for model 'image-rvq8'"):
        vqcodec.encode_image(scene, 3, model="image-rvq8", effort=1)


@pytest.mark.parametrize("native_bf16", [True, False])
def test_refinement_runs_in_bf16_only_on_a_cpu_with_native_bf16(network, monkeypatch, native_bf16):
    import copy

    import vqcodec.models.image_sq as image_sq

    # forced either way: emulated bf16 is slow but correct, so both branches run on any CPU
    monkeypatch.setattr(image_sq, "cpu_bf16_is_fast", lambda: native_bf16)
    network = copy.deepcopy(network)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a refinement that does something (the last layer starts at zero)
        for parameter in network.refine.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=g) * 0.05)
    codes = network.to_codes(_pixels(3, 64), 2)
    out = network.from_codes(codes, 2)
    dequantized = codes.float() * CONFIG.steps[1]
    with torch.no_grad():
        reference = network.synthesise(dequantized, CONFIG.steps[1]).clamp(0, 1)
    assert out.dtype == torch.float32
    difference = (out - reference).abs()
    assert float(reference.std()) > 0.05
    if native_bf16:
        assert 0 < float(difference.max()) < 0.02
    else:
        assert torch.equal(out, reference)
