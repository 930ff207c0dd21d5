"""Hostile files the random fuzzer rarely builds: tiny files that declare huge outputs.

A valid 32x32 file rewritten (CRCs recomputed) to declare a 4096x4096 picture with an empty
entropy body is a legal file of 238 bytes; the limits of ``vqcodec.codec.limits`` decide
whether it may be decoded, before any big allocation. Streamed videos declare no frame
count: ``MAX_FRAMES`` is enforced while decoding.
"""

from __future__ import annotations

import importlib.util
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest

import vqcodec
from vqcodec.codec import limits, video
from vqcodec.entropy.payload import write_varint

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = str(REPO / "formats" / "vectors" / "models" / "tiny-image.safetensors")


@pytest.fixture(scope="module")
def fuzz():
    spec = importlib.util.spec_from_file_location("fuzz_decode", REPO / "benchmarks" / "fuzz_decode.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_decode"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("fuzz_decode", None)


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[i]
        value |= (byte & 0x7F) << shift
        shift, i = shift + 7, i + 1
        if not byte & 0x80:
            return value, i


def inflated(fuzz, width: int, height: int) -> bytes:
    """A valid tiny-model file rewritten to declare width x height with an empty coded body."""
    data = vqcodec.encode_image(np.zeros((32, 32, 3), np.uint8), 1, model=TINY_MODEL)
    head = fuzz.split_chunks(data)[0]
    body = bytearray(fuzz.chunk_body(data, head))
    body[2:6], body[6:10] = width.to_bytes(4, "little"), height.to_bytes(4, "little")
    p = fuzz.HEAD_FIXED_SIZE
    p += 1 + body[p]
    p += 1 + body[p]
    size = int.from_bytes(body[p : p + 4], "little")
    params = json.loads(bytes(body[p + 4 : p + 4 + size]))
    params["codes"] = [params["codes"][0], -(-height // 16), -(-width // 16)]
    text = json.dumps(params, sort_keys=True, separators=(",", ":")).encode()
    data = fuzz.replace_chunk(data, head, bytes(body[:p]) + len(text).to_bytes(4, "little") + text)
    frame = next(c for c in fuzz.split_chunks(data) if c[2] == b"FRAM")
    payload = fuzz.chunk_body(data, frame)
    i = 5 + 3
    streams, i = _varint(payload, i)
    for _ in range(3):  # height, width, body length
        _, i = _varint(payload, i)
    rest = payload[i:]
    header = (
        payload[:8] + write_varint(streams) + write_varint(-(-height // 16)) + write_varint(-(-width // 16))
    )
    return fuzz.replace_chunk(data, frame, header + write_varint(len(rest)) + rest)


def test_a_tiny_file_declaring_a_big_picture_is_bounded_by_the_pixel_limit(fuzz):
    bomb = inflated(fuzz, 4096, 4096)
    assert len(bomb) < 400
    with limits.override(max_image_pixels=4096 * 4096 - 1), pytest.raises(vqcodec.LimitError):
        vqcodec.decode_image(bomb, model=TINY_MODEL)
    with limits.override(max_image_pixels=1000), pytest.raises(vqcodec.LimitError):
        vqcodec.decode_image(inflated(fuzz, 64, 64), model=TINY_MODEL)
    # within the limit it is simply a (flat) picture
    assert vqcodec.decode_image(inflated(fuzz, 64, 48), output="numpy", model=TINY_MODEL).shape == (48, 64, 3)


def test_streamed_video_frames_are_counted_against_the_limit():
    buffer = io.BytesIO()
    with video.VideoEncoder(buffer, TINY_MODEL, fps=25, gop=2) as encoder:  # no frame count in the header
        for t in range(4):
            encoder.write(np.full((32, 32, 3), 30 * t, np.uint8))
    decoded = []
    with limits.override(max_frames=2), pytest.raises(vqcodec.LimitError):
        with video.VideoDecoder(buffer.getvalue(), model=TINY_MODEL) as decoder:
            for frame in decoder:
                decoded.append(frame)
    assert len(decoded) == 2
    assert len(video.decode_video(buffer.getvalue(), model=TINY_MODEL)) == 4
