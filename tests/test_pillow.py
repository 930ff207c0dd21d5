"""The Pillow plugin (vqcodec/pillow.py) through real Pillow calls: open, load, save, seek."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, UnidentifiedImageError

import vqcodec
import vqcodec.pillow
from vqcodec.codec.image import decode_image, encode_image

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = str(REPO / "formats" / "vectors" / "models" / "tiny-image.safetensors")


@pytest.fixture(autouse=True)
def tiny_decoder(monkeypatch):
    monkeypatch.setattr(vqcodec.pillow, "DECODE_MODEL", TINY_MODEL)


def picture(height: int, width: int, channels: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 4 % 256, y * 3 % 256, (x + y) % 256, 255 - x % 256], -1)[..., :channels]
    out = np.clip(base + rng.integers(-10, 11, size=base.shape), 0, 255).astype(np.uint8)
    return out[..., 0] if channels == 1 else out


@pytest.mark.parametrize(("mode", "channels"), [("RGB", 3), ("RGBA", 4), ("L", 1), ("LA", 2)])
def test_save_then_open_equals_the_library(tmp_path, mode, channels):
    image = Image.fromarray(picture(40, 56, channels), mode)
    path = tmp_path / "x.vqc"
    image.save(path, quality=2, model=TINY_MODEL)  # format from the .vqc extension
    data = path.read_bytes()
    assert data == encode_image(image, 2, model=TINY_MODEL)  # same bytes as the API
    with Image.open(path) as opened:
        assert opened.format == "VQC"
        assert opened.size == (56, 40)
        assert opened.mode == mode
        assert opened.info["vqc"]["quality"] == 2
        assert opened.info["vqc"]["model"] == "tiny-image"
        pixels = np.asarray(opened)
    expected = decode_image(data, output="numpy", model=TINY_MODEL)
    assert pixels.shape == expected.shape
    assert np.array_equal(pixels, expected)


def test_open_reads_only_the_header_until_pixels_are_needed(tmp_path):
    """Image.open must not import torch; load() does. Checked in a fresh interpreter where importing
    torch fails (which costs no torch import there); the load itself is checked in this process."""
    path = tmp_path / "x.vqc"
    Image.fromarray(picture(32, 32, 3)).save(path, quality=1, model=TINY_MODEL)
    code = f"""
import sys


class NoTorch:
    attempts = []

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch":
            NoTorch.attempts.append(name)
            raise ImportError("torch is blocked in this test")
        return None


sys.meta_path.insert(0, NoTorch())
import vqcodec, vqcodec.pillow
from PIL import Image
assert not NoTorch.attempts, "import vqcodec imported torch"
im = Image.open({str(path)!r})
assert (im.format, im.size, im.mode) == ("VQC", (32, 32), "RGB")
assert not NoTorch.attempts, "Image.open imported torch"
vqcodec.pillow.DECODE_MODEL = {TINY_MODEL!r}
try:
    im.load()
except ImportError:
    pass
assert NoTorch.attempts, "load() decoded without torch"
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
    with Image.open(path) as im:
        im.load()
        assert np.array_equal(np.asarray(im), decode_image(path, output="numpy", model=TINY_MODEL))


def test_file_objects_and_explicit_format():
    buffer = io.BytesIO()
    Image.fromarray(picture(20, 30, 3)).save(buffer, format="VQC", quality=3, model=TINY_MODEL)
    buffer.seek(0)
    with Image.open(buffer, formats=["VQC"]) as opened:
        opened.load()
        assert opened.size == (30, 20)
        copy = opened.copy()
    assert copy.mode == "RGB"
    assert Image.registered_extensions()[".vqc"] == "VQC"
    assert Image.MIME["VQC"] == vqcodec.pillow.MIME


def test_pillow_operations_work_on_a_decoded_image(tmp_path):
    path = tmp_path / "x.vqc"
    Image.fromarray(picture(48, 64, 3)).save(path, quality=2, model=TINY_MODEL)
    with Image.open(path) as opened:
        thumb = opened.copy()
        thumb.thumbnail((16, 16))
        converted = opened.convert("L")
        opened.save(tmp_path / "x.png")
    assert thumb.size == (16, 12)
    assert converted.size == (64, 48)
    with Image.open(tmp_path / "x.png") as png:
        assert np.array_equal(np.asarray(png), decode_image(path, output="numpy", model=TINY_MODEL))


def test_save_options_are_checked():
    image = Image.fromarray(picture(16, 16, 3))
    with pytest.raises(ValueError, match="quality"):
        image.save(io.BytesIO(), format="VQC", quality=99, model=TINY_MODEL)
    with pytest.raises(ValueError, match="at most one"):
        image.save(io.BytesIO(), format="VQC", quality=2, bpp=0.5, model=TINY_MODEL)
    small = io.BytesIO()
    image.save(small, format="VQC", bpp=0.01, model=TINY_MODEL)
    assert len(small.getvalue()) > 0


def test_damaged_and_foreign_files(tmp_path):
    good = encode_image(picture(32, 32, 3), 2, model=TINY_MODEL)
    # not a .vqc at all: Pillow's usual error
    with pytest.raises(UnidentifiedImageError):
        Image.open(io.BytesIO(b"\x89VQC\r\n\x1a\n" + b"\0" * 4))
    # a damaged payload: opening works (header is fine), decoding raises an OSError (what Pillow
    # callers catch) that is also vqcodec's error, with the format error as its cause
    broken = bytearray(good)
    broken[-40] ^= 0xFF
    with Image.open(io.BytesIO(bytes(broken))) as opened, pytest.raises(OSError) as info:
        opened.load()
    assert isinstance(info.value, vqcodec.pillow.VqcDecodeError) and isinstance(info.value, vqcodec.VQCError)
    assert isinstance(info.value.__cause__, vqcodec.errors.FormatError)
    assert str(info.value.__cause__) in str(info.value)


def test_decompression_bomb_check_uses_the_header(monkeypatch):
    data = encode_image(picture(64, 64, 3), 1, model=TINY_MODEL)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64*64 > 2 * 1000: Pillow refuses
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(data))


@pytest.mark.parametrize("pixel_format", ["rgb24", "gray8"])
def test_video_opens_as_a_multi_frame_image(pixel_format):
    video = pytest.importorskip("vqcodec.codec.video")
    y, x = np.mgrid[0:32, 0:48]
    frames = [
        np.stack([(x + 5 * t) % 256, (y * 3) % 256, (x + y + t) % 256], -1).astype(np.uint8) for t in range(5)
    ]
    buffer = io.BytesIO()
    with video.VideoEncoder(
        buffer, model=TINY_MODEL, fps=25, gop=2, quality=2, pixel_format=pixel_format
    ) as encoder:
        for frame in frames:
            encoder.write(frame)
    expected = video.decode_video(buffer.getvalue(), model=TINY_MODEL)
    if pixel_format == "gray8":  # (H, W) frames; Pillow shows every video frame as RGB
        expected = [np.repeat(frame[..., None], 3, axis=-1) for frame in expected]
    with Image.open(io.BytesIO(buffer.getvalue())) as im:
        assert (im.format, im.size, im.mode, im.n_frames, im.is_animated) == ("VQC", (48, 32), "RGB", 5, True)
        assert im.info["duration"] == pytest.approx(40.0)
        for index in (3, 0, 4):
            im.seek(index)
            assert im.tell() == index
            assert np.array_equal(np.asarray(im), expected[index]), f"frame {index}"
        with pytest.raises(EOFError):
            im.seek(5)


def test_save_all_writes_a_video(tmp_path):
    video = pytest.importorskip("vqcodec.codec.video")
    y, x = np.mgrid[0:32, 0:32]
    frames = [
        Image.fromarray(((x * 7 + y * 3 + 20 * t) % 256).astype(np.uint8)).convert("RGB") for t in range(4)
    ]
    path = tmp_path / "anim.vqc"
    frames[0].save(
        path, save_all=True, append_images=frames[1:], duration=50, quality=2, gop=2, model=TINY_MODEL
    )
    with video.VideoDecoder(path, model=TINY_MODEL) as decoder:
        assert decoder.fps == 20
        assert decoder.key_frames() == [0, 2]
        assert len(list(decoder)) == 4
    with Image.open(path) as im:
        assert im.n_frames == 4
        im.seek(3)
        assert im.size == (32, 32)
