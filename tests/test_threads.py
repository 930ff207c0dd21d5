"""Decoding (and encoding) from a thread pool gives exactly what one-by-one calls give.

What may be shared between threads (README, "Thread safety"): the functions ``encode_image``,
``decode_image``, ``encode_video``/``decode_video`` and loaded models (``load_model`` returns
one cached, read-only CodecModel per file). ``VideoEncoder``, ``VideoDecoder``,
``ContainerReader``/``ContainerWriter`` and PIL images are used by one thread at a time: each
thread makes its own (they share the model).
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import vqcodec
import vqcodec.pillow
from vqcodec.codec import video
from vqcodec.codec.image import decode_image, encode_image
from vqcodec.models import zoo

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = str(REPO / "formats" / "vectors" / "models" / "tiny-image.safetensors")
WORKERS = 6


def picture(height: int, width: int, channels: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 5 % 256, y * 3 % 256, (x * y) % 256, 200 - x % 100], -1)[..., :channels]
    out = np.clip(base + rng.integers(-30, 31, size=base.shape), 0, 255).astype(np.uint8)
    return out[..., 0] if channels == 1 else out


@pytest.fixture(scope="module")
def files() -> list[bytes]:
    """Different pictures: sizes (one over a tile), modes (RGB, RGBA, gray), quality levels."""
    specs = [((48, 64, 3), 1), ((33, 47, 4), 2), ((40, 40, 1), 3), ((64, 80, 3), 4), ((96, 72, 3), 2)]
    return [encode_image(picture(*shape, seed=i), q, model=TINY_MODEL) for i, (shape, q) in enumerate(specs)]


def run_in_pool(func, items):
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        return list(pool.map(func, items))


def test_decode_same_and_different_files_concurrently(files):
    expected = [decode_image(data, output="numpy", model=TINY_MODEL) for data in files]
    zoo.clear_cache()  # the threads also race to load the model
    order = [i % len(files) for i in range(40)] + [0] * 12  # different files, and one file many times
    results = run_in_pool(lambda i: decode_image(files[i], output="numpy", model=TINY_MODEL), order)
    for i, got in zip(order, results):
        assert got.shape == expected[i].shape
        assert np.array_equal(got, expected[i]), f"file {i} decoded differently in a thread"


def test_decode_from_one_file_object_per_thread(files, tmp_path):
    paths = []
    for i, data in enumerate(files):
        paths.append(tmp_path / f"{i}.vqc")
        paths[-1].write_bytes(data)
    expected = [decode_image(p, output="numpy", model=TINY_MODEL) for p in paths]

    def decode(i: int) -> np.ndarray:
        with open(paths[i], "rb") as f:
            return decode_image(f, output="numpy", model=TINY_MODEL)

    order = list(range(len(files))) * 6
    for i, got in zip(order, run_in_pool(decode, order)):
        assert np.array_equal(got, expected[i])


def test_encode_concurrently_gives_the_same_bytes(files):
    pictures = [picture(48, 64, 3, seed=10 + i) for i in range(4)]
    expected = [encode_image(p, 1 + i % 4, model=TINY_MODEL) for i, p in enumerate(pictures)]
    order = list(range(len(pictures))) * 5
    results = run_in_pool(lambda i: encode_image(pictures[i], 1 + i % 4, model=TINY_MODEL), order)
    for i, got in zip(order, results):
        assert got == expected[i]


def test_pillow_open_in_threads(files, monkeypatch):
    monkeypatch.setattr(vqcodec.pillow, "DECODE_MODEL", TINY_MODEL)
    expected = [decode_image(data, output="numpy", model=TINY_MODEL) for data in files]

    def open_and_load(i: int) -> np.ndarray:
        with Image.open(io.BytesIO(files[i])) as im:
            return np.asarray(im)

    order = list(range(len(files))) * 4
    for i, got in zip(order, run_in_pool(open_and_load, order)):
        assert np.array_equal(got, expected[i])


def test_video_decoders_in_threads():
    frames = [picture(32, 48, 3, seed=20)[:, :]]
    for t in range(1, 5):
        frames.append(np.roll(frames[0], (t, 2 * t), axis=(0, 1)))
    clips = []
    for gop in (2, 5):
        buffer = io.BytesIO()
        with video.VideoEncoder(buffer, model=TINY_MODEL, fps=25, gop=gop, quality=2) as encoder:
            for frame in frames:
                encoder.write(frame)
        clips.append(buffer.getvalue())
    expected = [video.decode_video(clip, model=TINY_MODEL) for clip in clips]
    zoo.clear_cache()

    def decode(job: tuple[int, int]) -> list[np.ndarray]:
        clip, start = job
        with video.VideoDecoder(io.BytesIO(clips[clip]), model=TINY_MODEL) as decoder:
            if start:
                decoder.seek(start)
            return list(decoder)

    jobs = [(c, s) for c in range(len(clips)) for s in (0, 3)] * 3
    for (clip, start), got in zip(jobs, run_in_pool(decode, jobs)):
        want = expected[clip][start:]
        assert len(got) == len(want)
        for a, b in zip(got, want):
            assert np.array_equal(a, b), f"clip {clip} from frame {start} decoded differently in a thread"


def test_public_names_are_the_ones_tested():
    assert vqcodec.decode_image is decode_image
    assert vqcodec.encode_image is encode_image


def test_video_encoders_in_threads():
    clips = [
        [np.roll(picture(32, 32, 3, seed=30 + c), (t, 3 * t), axis=(0, 1)) for t in range(4)]
        for c in range(3)
    ]

    def encode(c: int) -> bytes:
        buffer = io.BytesIO()
        with video.VideoEncoder(buffer, model=TINY_MODEL, fps=25, gop=3, quality=1 + c) as encoder:
            for frame in clips[c]:
                encoder.write(frame)
        return buffer.getvalue()

    expected = [encode(c) for c in range(len(clips))]
    zoo.clear_cache()  # threads race to load the model and build its temporal coder
    order = list(range(len(clips))) * 4
    for c, got in zip(order, run_in_pool(encode, order)):
        assert got == expected[c], f"clip {c} encoded differently in a thread"


def test_cli_batch_with_workers_equals_one_by_one(files, tmp_path):
    from vqcodec.cli import main as cli_main

    inputs = []
    for i, data in enumerate(files):
        inputs.append(tmp_path / f"f{i}.vqc")
        inputs[-1].write_bytes(data)
    names = [str(p) for p in inputs]
    common = ["--model", TINY_MODEL, "--quiet", "--format", "png"]
    assert cli_main(["decode", *names, "-o", f"{tmp_path}/one/", *common]) == 0
    import torch

    threads = torch.get_num_threads()
    try:
        assert cli_main(["decode", *names, "-o", f"{tmp_path}/pool/", "-j", "3", *common]) == 0
    finally:
        torch.set_num_threads(threads)  # -j splits the cores process-wide; later tests get them back
    for path in inputs:
        one = np.asarray(Image.open(tmp_path / "one" / f"{path.stem}.png"))
        pool = np.asarray(Image.open(tmp_path / "pool" / f"{path.stem}.png"))
        assert np.array_equal(one, pool), path.name
