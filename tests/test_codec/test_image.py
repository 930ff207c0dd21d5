"""encode_image / decode_image with the tiny fixed model: modes, sizes, inputs, rates, errors."""

from __future__ import annotations

import io
import json
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image

from test_codec.image_helpers import REPO, TINY_MODEL, picture, png16
from vqcodec.codec import limits, media
from vqcodec.codec.image import (
    ALPHA_CHUNK,
    decode_image,
    decode_image_result,
    encode_image,
    encode_image_result,
)
from vqcodec.container import ContainerReader, ContainerWriter
from vqcodec.errors import FormatError, LimitError, ModelMismatchError, VQCError
from vqcodec.models.zoo import load_model

M = str(TINY_MODEL)


@pytest.fixture(scope="module")
def model():
    return load_model(M)


def roundtrip(image, quality=2, **kw):
    data = encode_image(image, quality, model=M)
    return data, decode_image(data, model=M, **kw)


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "LA"])
def test_modes_round_trip_to_the_same_mode_and_size(mode):
    channels = {"RGB": 3, "L": 1, "RGBA": 4, "LA": 2}[mode]
    array = picture(37, 53, channels)
    image = Image.fromarray(array[..., 0] if channels == 1 else array)
    assert image.mode == mode
    data, out = roundtrip(image)
    assert out.mode == mode and out.size == (53, 37)
    if mode in ("RGBA", "LA"):  # alpha is lossless
        assert np.array_equal(np.asarray(out)[..., -1], array[..., -1])
    header = ContainerReader(io.BytesIO(data)).header
    assert header.media == "image" and (header.width, header.height) == (53, 37)
    assert header.channels == channels
    assert header.pixel_format == {"RGB": "rgb24", "L": "gray8", "RGBA": "rgba32", "LA": "graya16"}[mode]


@pytest.mark.parametrize("size", [(1, 1), (16, 16), (17, 33), (48, 15)])
def test_sizes_that_are_not_multiples_of_the_stride(size, model):
    height, width = size
    data = encode_image(picture(height, width), 1, model=M)
    params = json.loads(ContainerReader(io.BytesIO(data)).header.codec_params)
    assert params["codes"] == [1, -(-height // 16), -(-width // 16)] and params["stride"] == model.stride
    assert decode_image(data, model=M, output="numpy").shape == (height, width, 3)


def test_header_records_model_quality_and_params(model):
    data = encode_image(picture(20, 20), 3, model=M)
    header = ContainerReader(io.BytesIO(data)).header
    assert header.model_name == "tiny-image" and header.model_sha256 == model.sha256
    assert header.quality == 3 and header.frame_count == 1
    params = json.loads(header.codec_params)
    assert params == {"alpha": None, "codes": [model.stages_for_quality(3), 2, 2], "stride": 16, "v": 1}


def test_numpy_and_torch_inputs_match_pil():
    array = picture(24, 40)
    reference = encode_image(Image.fromarray(array), 2, model=M)
    assert encode_image(array, 2, model=M) == reference
    assert encode_image(torch.from_numpy(array).permute(2, 0, 1), 2, model=M) == reference
    as_float = torch.from_numpy(array).permute(2, 0, 1).float() / 255
    assert encode_image(as_float, 2, model=M) == reference
    assert encode_image(as_float[None], 2, model=M) == reference
    assert encode_image(array.astype(np.float64) / 255, 2, model=M) == reference


def test_outputs_numpy_and_torch_agree_with_pil():
    data = encode_image(picture(24, 40, 4), 2, model=M)
    pil = np.asarray(decode_image(data, model=M))
    assert np.array_equal(decode_image(data, model=M, output="numpy"), pil)
    tensor = decode_image(data, model=M, output="torch")
    assert tensor.shape == (4, 24, 40) and tensor.dtype == torch.float32
    assert np.array_equal(np.rint(tensor.permute(1, 2, 0).numpy() * 255).astype(np.uint8), pil)
    gray = decode_image(encode_image(picture(24, 40, 1)[..., 0], 2, model=M), model=M, output="numpy")
    assert gray.shape == (24, 40) and gray.dtype == np.uint8
    with pytest.raises(ValueError, match="output"):
        decode_image(data, model=M, output="jpeg")


def test_sixteen_bit_inputs_are_rounded_with_a_warning(tmp_path):
    array16 = picture(20, 30).astype(np.uint16) * 257
    path = tmp_path / "deep.png"
    path.write_bytes(png16(array16))
    with pytest.warns(media.PrecisionWarning, match="16-bit"):
        image = media.open_image_file(path)
    assert image.mode == "RGB"
    with pytest.warns(media.PrecisionWarning):
        from_numpy = media.load_image(array16)
    assert np.array_equal(from_numpy.rgb, picture(20, 30))
    gray_path = tmp_path / "gray16.png"
    gray_path.write_bytes(png16(array16[..., 0]))
    with pytest.warns(media.PrecisionWarning):
        source = media.load_image(media.open_image_file(gray_path))
    assert source.pixel_format == "gray8" and np.array_equal(source.rgb[..., 0], picture(20, 30)[..., 0])


def test_palette_cmyk_and_bilevel_inputs_are_converted():
    rgb = Image.fromarray(picture(20, 30))
    palette = rgb.convert("P")
    assert media.load_image(palette).pixel_format == "rgb24"
    transparent = palette.copy()
    transparent.info["transparency"] = 0
    assert media.load_image(transparent).pixel_format == "rgba32"
    assert media.load_image(rgb.convert("CMYK")).pixel_format == "rgb24"
    assert media.load_image(rgb.convert("1")).pixel_format == "gray8"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        decode_image(encode_image(rgb.convert("CMYK"), 1, model=M), model=M)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(TypeError, match="PIL image, numpy array or torch tensor"):
        encode_image(b"not a picture", 1, model=M)
    with pytest.raises(ValueError, match="C in 1..4"):
        encode_image(np.zeros((4, 4, 5), np.uint8), 1, model=M)
    with pytest.raises(ValueError, match="outside 0..255"):
        encode_image(np.full((4, 4, 3), 300, np.int32), 1, model=M)
    with pytest.raises(ValueError, match="NaN"):
        encode_image(np.full((4, 4, 3), np.nan), 1, model=M)


def test_quality_range_is_validated(model):
    levels = model.quality_levels
    for bad in (0, levels + 1, True, 2.5, "3"):
        with pytest.raises(ValueError, match=f"1..{levels}"):
            encode_image(picture(8, 8), bad, model=M)
    with pytest.raises(ValueError, match="at most one"):
        encode_image(picture(8, 8), 2, bpp=0.5, model=M)
    with pytest.raises(ValueError, match="positive"):
        encode_image(picture(8, 8), bpp=-1, model=M)


def test_bpp_grows_with_quality_and_bpp_search_fits_the_budget(model):
    image = picture(64, 96)
    sizes = [len(encode_image(image, q, model=M)) for q in range(1, model.quality_levels + 1)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    bpps = [8 * s / (64 * 96) for s in sizes]
    for target_level in range(1, model.quality_levels + 1):
        target = bpps[target_level - 1] + 1e-9
        result = encode_image_result(image, bpp=target, model=M)
        assert result.quality == target_level and result.bpp <= target
    assert encode_image_result(image, bpp=bpps[0] / 2, model=M).quality == 1  # nothing fits: lowest
    assert encode_image_result(image, bpp=100.0, model=M).quality == model.quality_levels


def test_psnr_search_returns_the_lowest_level_that_reaches_the_target(model):
    image = picture(32, 32)
    psnrs = [
        media.psnr(np.asarray(decode_image(encode_image(image, q, model=M), model=M)), image)
        for q in range(1, model.quality_levels + 1)
    ]
    result = encode_image_result(image, psnr=min(psnrs) - 1, model=M)
    assert result.quality == 1 and result.psnr == pytest.approx(psnrs[0])
    unreachable = encode_image_result(image, psnr=max(psnrs) + 10, model=M)
    assert unreachable.quality == model.quality_levels


def test_decoding_is_deterministic_across_threads():
    """(Across processes: tests/test_pipes.py compares what a ``vqcodec decode`` process writes
    with this process's decode, pixel for pixel, for an image and for a clip.)"""
    datas = [encode_image(picture(40 + 8 * i, 56, seed=i), 1 + i % 4, model=M) for i in range(4)]
    serial = [decode_image(d, model=M, output="numpy") for d in datas]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(lambda d: decode_image(d, model=M, output="numpy"), datas * 3))
    for i, out in enumerate(parallel):
        assert np.array_equal(out, serial[i % 4])


def test_decode_accepts_bytes_paths_and_file_objects(tmp_path):
    data = encode_image(picture(20, 20), 2, model=M)
    path = tmp_path / "x.vqc"
    path.write_bytes(data)
    expected = decode_image(data, model=M, output="numpy")
    assert np.array_equal(decode_image(str(path), model=M, output="numpy"), expected)
    assert np.array_equal(decode_image(path, model=M, output="numpy"), expected)
    with open(path, "rb") as f:
        assert np.array_equal(decode_image(f, model=M, output="numpy"), expected)
    assert np.array_equal(decode_image(memoryview(data), model=M, output="numpy"), expected)


def _other_model(tmp_path):
    """Same architecture, different weights and name."""
    from vqcodec.models.bundle import load_bundle, save_bundle

    network, prior, config, _ = load_bundle(TINY_MODEL)
    with torch.no_grad():
        next(network.parameters()).add_(0.01)
    path = tmp_path / "other-tiny.safetensors"
    save_bundle(path, network, prior, config, "perturbed", name="other-tiny")
    return str(path)


def test_model_mismatch_names_both_models(tmp_path):
    data = encode_image(picture(20, 20), 2, model=M)
    other = _other_model(tmp_path)
    with pytest.raises(ModelMismatchError, match="tiny-image.*other-tiny"):
        decode_image(data, model=other)
    with pytest.raises(ModelMismatchError, match="'tiny-image'.*not installed"):
        decode_image(data)  # the tiny model is not in the bundled registry


def _rewrite(data, *, header_changes=None, alpha=None, payload=None, extra_side=()):
    """Re-container ``data`` with changed header fields / chunks (CRCs valid: the codec must catch it)."""
    import dataclasses

    with ContainerReader(io.BytesIO(data)) as reader:
        header = reader.header
        frame = next(reader.frames())
    header = dataclasses.replace(header, **(header_changes or {}))
    out = io.BytesIO()
    with ContainerWriter(out, header) as writer:
        for kind, side in frame.side_chunks:
            writer.write_chunk(kind, alpha if (alpha is not None and kind == ALPHA_CHUNK) else side)
        for kind, side in extra_side:
            writer.write_chunk(kind, side)
        writer.write_frame(frame.payload if payload is None else payload, key=True)
    return out.getvalue()


def test_inconsistent_files_raise_format_errors_naming_the_field():
    data = encode_image(picture(20, 36, 4), 2, model=M)
    params = json.loads(ContainerReader(io.BytesIO(data)).header.codec_params)
    cases = {
        "codec_params": {"codec_params": b"{not json"},
        "codec_params.v": {"codec_params": json.dumps({**params, "v": 2}).encode()},
        "codec_params.codes": {"codec_params": json.dumps({**params, "codes": [2, 9, 9]}).encode()},
        "codec_params.stride": {"codec_params": json.dumps({**params, "stride": 8}).encode()},
        "quality": {"quality": 99},
        "pixel_format": {"pixel_format": "yuv420p"},
        "channels": {"channels": 3},
        "media": {"media": "video", "fps_num": 25},
    }
    for field, changes in cases.items():
        with pytest.raises(FormatError) as info:
            decode_image(_rewrite(data, header_changes=changes), model=M)
        assert info.value.field == field, (field, str(info.value))
    with pytest.raises(FormatError, match="alpha filter"):
        decode_image(_rewrite(data, alpha=b"\x07" + b"x" * 10), model=M)
    with pytest.raises(FormatError, match="alpha plane"):
        decode_image(_rewrite(data, alpha=b"\x00" + b"garbage"), model=M)
    with pytest.raises(FormatError, match="more than one ALPH"):
        decode_image(_rewrite(data, extra_side=[(ALPHA_CHUNK, b"\x00")]), model=M)
    with pytest.raises(FormatError):
        decode_image(_rewrite(data, payload=b"\x00" * 5), model=M)


def test_every_truncation_and_many_corruptions_raise_library_errors_only():
    data = encode_image(picture(20, 36, 4), 2, model=M)
    for end in range(len(data)):
        with pytest.raises(VQCError):
            decode_image(data[:end], model=M)
    rng = np.random.default_rng(5)
    outcomes = {"ok": 0, "error": 0}
    for _ in range(300):
        mutated = bytearray(data)
        for _ in range(int(rng.integers(1, 4))):
            mutated[int(rng.integers(len(mutated)))] ^= 1 << int(rng.integers(8))
        try:
            decode_image(bytes(mutated), model=M)
            outcomes["ok"] += 1
        except VQCError:
            outcomes["error"] += 1
    assert outcomes["error"] > 250  # CRCs catch nearly every flip


def test_payload_garbage_behind_valid_crcs_raises_library_errors_only():
    data = encode_image(picture(40, 40), 4, model=M)
    payload = next(ContainerReader(io.BytesIO(data)).frames()).payload
    rng = np.random.default_rng(9)
    for i in range(200):
        garbage = bytearray(payload)
        if i % 2:
            garbage[int(rng.integers(len(garbage)))] ^= 0xFF
        else:
            garbage = garbage[: int(rng.integers(len(garbage)))]
        try:
            out = decode_image(_rewrite(data, payload=bytes(garbage)), model=M, output="numpy")
            assert out.shape == (40, 40, 3)
        except VQCError:
            pass


def test_limits_refuse_before_allocating():
    data = encode_image(picture(40, 40), 1, model=M)
    with limits.override(max_image_pixels=1000):
        with pytest.raises(LimitError, match="MAX_IMAGE_PIXELS"):
            decode_image(data, model=M)
        with pytest.raises(LimitError):
            encode_image(picture(40, 40), 1, model=M)
    with limits.override(max_bytes=100):
        with pytest.raises(LimitError, match="alpha plane"):
            decode_image(encode_image(picture(40, 40, 4), 1, model=M), model=M)
    assert limits.MAX_IMAGE_PIXELS is not None and limits.MAX_IMAGE_PIXELS >= 24_000_000
    with pytest.raises(LimitError, match="frames"):
        with limits.override(max_frames=10):
            limits.check_frames(11)
    limits.check_frames(11)


def test_hostile_header_dimensions_are_refused_without_allocation():
    data = encode_image(picture(16, 16), 1, model=M)
    params = json.loads(ContainerReader(io.BytesIO(data)).header.codec_params)
    huge = {
        "width": 60000,
        "height": 60000,
        "codec_params": json.dumps({**params, "codes": [1, 3750, 3750]}).encode(),
    }
    with limits.override(max_image_pixels=2**27):
        with pytest.raises(LimitError):
            decode_image(_rewrite(data, header_changes=huge), model=M)


def test_tile_plan_covers_the_grid_exactly_once():
    for h, w, tile, halo in [(1, 1, 4, 2), (10, 7, 3, 1), (33, 65, 16, 8), (5, 40, 7, 0)]:
        cover = np.zeros((h, w), int)
        for t in media.plan_tiles(h, w, tile=tile, halo=halo, single_pass=0):
            r0, r1, c0, c1 = t.core
            o0, o1, p0, p1 = t.outer
            assert r1 - r0 <= tile and c1 - c0 <= tile
            assert o0 == max(0, r0 - halo) and o1 == min(h, r1 + halo) and p0 == max(0, c0 - halo)
            cover[r0:r1, c0:c1] += 1
        assert (cover == 1).all()
    assert len(media.plan_tiles(100, 100)) == 1  # small pictures go in one pass


def test_tiled_coding_matches_untiled_coding(model):
    """A picture coded in 9 tiles gives the same codes and (within 1) the same pixels: no seams."""
    image = media.pad_to_stride(picture(150, 170), model.stride)
    small = {"tile": 4, "single_pass": 0}  # the halo is the model's probed receptive field
    encoder_halo, decoder_halo = media.model_halos(model)
    assert 2 <= encoder_halo <= media.MAX_HALO and 2 <= decoder_halo <= media.MAX_HALO
    for quality in (1, model.quality_levels):
        whole = media.encode_tiled(model, image, quality, single_pass=10**9)
        tiled = media.encode_tiled(model, image, quality, **small)
        assert np.array_equal(whole, tiled)
        pixels_whole = media.decode_tiled(model, whole, single_pass=10**9)
        pixels_tiled = media.decode_tiled(model, whole, **small)
        assert np.abs(pixels_whole.astype(int) - pixels_tiled).max() <= 1
        assert (pixels_whole != pixels_tiled).mean() < 1e-3


def test_no_halo_would_show_seams(model):
    """The seam test above can fail: without a halo the tile borders differ."""
    image = media.pad_to_stride(picture(150, 170), model.stride)
    codes = media.encode_tiled(model, image, 4, single_pass=10**9)
    whole = media.decode_tiled(model, codes, single_pass=10**9)
    seamy = media.decode_tiled(model, codes, tile=4, halo=0, single_pass=0)
    assert np.abs(whole.astype(int) - seamy).max() > 1


def test_alpha_filters_round_trip():
    from vqcodec.codec import image as image_module

    rng = np.random.default_rng(1)
    planes = [
        np.full((9, 13), 255, np.uint8),
        rng.integers(0, 256, (9, 13), dtype=np.uint8),
        np.tile(np.arange(13, dtype=np.uint8) * 19, (9, 1)),
    ]
    for plane in planes:
        for kind in (0, 1, 2):
            residual = image_module._alpha_filter(plane, kind)
            assert np.array_equal(image_module._alpha_unfilter(residual, kind), plane)
        coded = image_module._encode_alpha(plane)
        assert np.array_equal(image_module._decode_alpha(coded, 13, 9), plane)


def test_sample_images_round_trip_through_files(tmp_path):
    for name in ("scene.png", "scene_gray.png", "scene_rgba.png"):
        source = Image.open(REPO / "samples" / name)
        path = tmp_path / (name + ".vqc")
        path.write_bytes(encode_image(source, 2, model=M))
        decoded = decode_image_result(path, model=M)
        assert decoded.rgb.shape == (source.height, source.width, 3)
        assert decode_image(path, model=M).mode == source.mode


def test_rate_weight_changes_only_the_encoders_choice(model, monkeypatch):
    import torch

    from vqcodec.models.bundle import DEFAULT_RATE_WEIGHT

    assert model.rate_weight == DEFAULT_RATE_WEIGHT > 0
    assert len(model.code_bits()) == model.config.num_quantizers
    # the tiny model's tables are near uniform; make code 5 of every stage cheap to see the choice move
    k = model.config.codebook_size
    bits = [torch.full((k,), 8.0) for _ in range(model.config.num_quantizers)]
    for b in bits:
        b[5] = 0.1
    monkeypatch.setattr(model, "code_bits", lambda: bits)
    image = picture(64, 96)
    pixels = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    nearest_model = model.with_rate_weight(0.0)
    nearest = nearest_model.to_codes(pixels, model.quality_levels)
    nearest_file = encode_image(image, model.quality_levels, model=nearest_model)
    cheap_model = model.with_rate_weight(1e4)  # far past any useful setting: every code becomes the cheap one
    assert bool((cheap_model.to_codes(pixels, model.quality_levels) == 5).all())
    cheap_file = encode_image(image, model.quality_levels, model=cheap_model)
    assert not bool((nearest == 5).all())
    # the shared, cached model is untouched: views are separate objects over the same network
    assert model.rate_weight == DEFAULT_RATE_WEIGHT and cheap_model.network is model.network
    with pytest.raises(AttributeError):
        model.rate_weight = 0.0  # type: ignore[misc]
    # both are ordinary files: the decoder reads codes, whatever chose them
    assert cheap_file != nearest_file
    for data in (cheap_file, nearest_file):
        assert np.asarray(decode_image(data, model=M)).shape == image.shape
