"""Image codec network, config, bundle and registry: tiny randomly initialised models, CPU, fast."""

from __future__ import annotations

import dataclasses
import json
import threading

import numpy as np
import pytest
import torch

from vqcodec.errors import FormatError, ModelMismatchError, UnknownModelError
from vqcodec.models import catalog, zoo
from vqcodec.models.bundle import (
    CodecModel,
    file_sha256,
    load_bundle,
    load_codec_model,
    read_metadata,
    save_bundle,
)
from vqcodec.models.config import ImageCodecConfig
from vqcodec.models.image import ImageCodec

TINY = ImageCodecConfig(
    encoder_channels=(8, 12),
    encoder_blocks=(0, 1),
    decoder_channels=(12, 8),
    decoder_blocks=(1, 0),
    latent_dim=6,
    codebook_size=16,
    num_quantizers=4,
    quality_stages=(1, 2, 4),
)


def tiny_model(seed: int = 0) -> ImageCodec:
    torch.manual_seed(seed)
    model = ImageCodec(TINY)
    pixels = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(seed))
    model.initialise_codebooks(model.analyse(pixels), vectors_per_step=32, seed=seed)
    return model.eval()


def test_config_json_round_trip_and_validation():
    assert ImageCodecConfig.from_json(TINY.to_json()) == TINY
    assert TINY.stride == 4 and TINY.quality_levels == 3
    assert [TINY.stages_for_quality(q) for q in (1, 2, 3)] == [1, 2, 4]
    for bad in (0, 4, 1.5, True):
        with pytest.raises(ValueError, match="1..3"):
            TINY.stages_for_quality(bad)
    with pytest.raises(ValueError):
        ImageCodecConfig(quality_stages=(1, 30), num_quantizers=24)
    with pytest.raises(ValueError, match="unknown"):
        ImageCodecConfig.from_dict({**TINY.to_dict(), "bogus": 1})


def test_shapes_and_training_forward():
    model = tiny_model().train()
    pixels = torch.rand(2, 3, 16, 24)
    out = model(pixels)
    assert out.reconstruction.shape == pixels.shape
    assert out.codes.shape == (2, 4, 4, 6)
    assert set(out.loss) >= {"mse", "commitment"}
    out.loss["mse"].backward()
    assert model.analysis.layers[0].weight.grad is not None
    with pytest.raises(ValueError, match="multiples of the stride 4"):
        model(torch.rand(1, 3, 10, 16))


def test_linear_path_starts_as_block_pca():
    config = dataclasses.replace(TINY, linear_path=True)
    assert ImageCodecConfig.from_json(config.to_json()) == config
    assert ImageCodecConfig.from_dict({k: v for k, v in TINY.to_dict().items() if k != "linear_path"}) == TINY
    torch.manual_seed(0)
    model = ImageCodec(config)
    # smooth pixels: most of a block's energy in a few components, as in photos
    pixels = torch.nn.functional.interpolate(torch.rand(16, 3, 4, 4), size=(16, 16), mode="bilinear")
    model.initialise_linear_path(pixels)
    basis = model.analysis.linear.weight[:, :, 0, 0]
    torch.testing.assert_close(basis @ basis.t(), torch.eye(6), atol=1e-5, rtol=0)
    with torch.no_grad():
        latents = model.analyse(pixels)
        reconstruction = model.synthesise(latents)
    # the conv stacks start at zero: the round trip is exactly the rank-6 PCA projection of each block
    blocks = torch.nn.functional.pixel_unshuffle(pixels - 0.5, 4).permute(0, 2, 3, 1).reshape(-1, 48)
    mean = blocks.mean(0)
    projected = (blocks - mean) @ basis.t() @ basis + mean
    expected = torch.nn.functional.pixel_shuffle(projected.reshape(16, 4, 4, 48).permute(0, 3, 1, 2), 4) + 0.5
    torch.testing.assert_close(reconstruction, expected, atol=1e-5, rtol=0)
    residual = (reconstruction - pixels).pow(2).mean() / (pixels - pixels.mean()).pow(2).mean()
    assert residual < 0.2  # keeps most of the signal with 6 of 48 dimensions
    with pytest.raises(ValueError, match="no linear path"):
        ImageCodec(TINY).initialise_linear_path(pixels)


def test_codes_round_trip_per_quality_and_rate_ordering():
    model = tiny_model()
    pixels = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    errors = []
    for quality in (1, 2, 3):
        codes = model.to_codes(pixels, quality)
        assert codes.dtype == torch.int64
        assert codes.shape == (2, TINY.stages_for_quality(quality), 4, 4)
        assert int(codes.min()) >= 0 and int(codes.max()) < TINY.codebook_size
        pixels_out = model.from_codes(codes)
        assert pixels_out.shape == pixels.shape
        assert float(pixels_out.min()) >= 0.0 and float(pixels_out.max()) <= 1.0
        # codes of a lower quality are the leading stages of a higher one
        assert torch.equal(codes, model.to_codes(pixels, 3)[:, : codes.shape[1]])
        latents = model.quantizer.decode(codes.permute(0, 2, 3, 1))
        errors.append(float(((latents - model.analyse(pixels).detach()) ** 2).mean()))
    assert errors[0] >= errors[1] >= errors[2]
    with pytest.raises(ValueError):
        model.to_codes(pixels, 4)
    with pytest.raises(ValueError, match="0..15"):
        model.from_codes(torch.full((1, 1, 2, 2), 16))


def test_encode_is_deterministic_and_batch_independent():
    model = tiny_model()
    pixels = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    together = model.to_codes(pixels, 3)
    alone = torch.cat([model.to_codes(pixels[i : i + 1], 3) for i in range(3)])
    assert torch.equal(together, alone)
    assert torch.equal(model.from_codes(together), model.from_codes(together))


class _CountingPrior:
    """Minimal prior (the entropy layer's interface) to test the bundle without fitting."""

    def __init__(self, freqs: np.ndarray):
        self.freqs = freqs

    def state_dict(self):
        return {"freqs": self.freqs}

    def config(self):
        return {"kind": "test"}


def test_bundle_round_trip_fp16_and_sha(tmp_path):
    model = tiny_model()
    path = tmp_path / "tiny.safetensors"
    digest = save_bundle(path, model, None, TINY, "tiny test model", name="tiny")
    assert digest == file_sha256(path) and len(digest) == 32
    network, prior, config, meta = load_bundle(path)
    assert prior is None and config == TINY
    assert meta["name"] == "tiny" and meta["description"] == "tiny test model" and meta["sha256"] == digest
    for key, value in network.state_dict().items():
        original = model.state_dict()[key]
        if value.is_floating_point() and not key.endswith(("embed_avg", "cluster_size")):
            assert torch.equal(value, original.half().float()), key
    # the loaded model gives the same codes as the fp16-rounded original
    rounded = tiny_model()
    rounded.load_state_dict(
        {k: v.half().float() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    )
    pixels = torch.rand(1, 3, 16, 16)
    loaded = load_codec_model(path)
    assert isinstance(loaded, CodecModel) and loaded.stride == 4 and loaded.quality_levels == 3
    assert torch.equal(loaded.to_codes(pixels, 3), rounded.to_codes(pixels, 3))
    assert not any(b.requires_grad for b in loaded.network.parameters() if b.grad is not None)


def test_bundle_with_entropy_prior(tmp_path):
    entropy = pytest.importorskip("vqcodec.entropy")
    model = tiny_model()
    pixels = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    codes = [c.numpy() for c in model.to_codes(pixels, 3)]
    prior = entropy.FactorizedPrior.fit(codes, (16,) * 4)
    path = tmp_path / "tiny.safetensors"
    save_bundle(path, model, prior, TINY, "with prior")
    loaded = load_codec_model(path)
    assert loaded.prior is not None
    payload = loaded.prior.encode(codes[0][:2])
    assert np.array_equal(loaded.prior.decode(payload, shape=(2, 4, 4)), codes[0][:2])


def test_bundle_refuses_bad_files(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a bundle at all")
    with pytest.raises(FormatError):
        load_bundle(bad)
    with pytest.raises(TypeError, match="integer tables"):
        save_bundle(
            tmp_path / "x.safetensors", tiny_model(), _CountingPrior(np.ones(3, np.float32)), TINY, ""
        )
    other = ImageCodecConfig.from_dict({**TINY.to_dict(), "latent_dim": 5})
    path = tmp_path / "mismatch.safetensors"
    save_bundle(path, tiny_model(), None, TINY, "")
    # rewrite the metadata's config so the tensors no longer fit it
    from safetensors.torch import load_file, save_file

    from vqcodec.models.bundle import read_metadata

    metadata = read_metadata(path)
    metadata["config"] = json.dumps(other.to_dict())
    save_file(load_file(str(path)), str(path), metadata=metadata)
    with pytest.raises(FormatError, match="shape"):
        load_bundle(path)


def test_zoo_unknown_names_and_user_paths(tmp_path):
    with pytest.raises(UnknownModelError, match="no-such-model"):
        zoo.load_model("no-such-model")
    path = tmp_path / "user.safetensors"
    save_bundle(path, tiny_model(), None, TINY, "user model", name="user")
    results = []

    def load():
        results.append(zoo.load_model(str(path)))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(m) for m in results}) == 1
    assert results[0].name == "user" and results[0].sha256 == file_sha256(path)
    assert zoo.load_model(results[0]) is results[0]


def test_registry_files_match_their_sha256():
    for info in zoo.list_models():
        if info.weightless:  # no file: the sha256 names the payload definition it implements
            assert bytes(zoo.load_model(info.name, media=info.media).sha256).hex() == info.sha256
            continue
        assert info.path.is_file(), info.file
        assert file_sha256(info.path).hex() == info.sha256, info.name
        # the registry's config is the one the file carries (the file rebuilds the model alone)
        assert json.loads(read_metadata(info.path)["config"]) == info.config, info.name
    names = [m.name for m in zoo.list_models()]
    assert len(names) == len(set(names))
    defaults = [m for m in zoo.list_models() if m.media == "image" and m.default]
    assert len(defaults) <= 1


def test_registered_mismatch_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "reg.safetensors"
    save_bundle(path, tiny_model(), None, TINY, "")
    info = zoo.ModelInfo("reg", str(path), "00" * 32, "", "image")
    monkeypatch.setattr(catalog, "REGISTRY", (info,))
    zoo.clear_cache()
    with pytest.raises(ModelMismatchError, match="reg"):
        zoo.load_model("reg")
