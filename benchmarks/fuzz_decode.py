"""Seeded fuzzing campaign over whole ``.vqc`` codec files: the decoder must survive anything.

    python benchmarks/fuzz_decode.py                      # 100,000 cases, 2 workers
    python benchmarks/fuzz_decode.py --cases 5000 --workers 1
    python benchmarks/fuzz_decode.py --replay 12345       # rerun one case here, with its traceback
    python benchmarks/fuzz_decode.py --dump 12345 bad.vqc # write that case's file

Corpus: small valid files made with the installed models (bundled image and video models when
present, else the tiny fixed test model of formats/vectors/models): 32x32 RGB pictures at the
lowest and highest quality, odd-sized gray and RGBA pictures (ALPH chunk), and 4-frame 32x32
clips (key and predicted frames). Each case takes one corpus file and applies one mutation,
chosen and parametrised by a ``random.Random(seed)`` (the case's seed is the campaign seed plus
the case number, so every case is reproducible alone):

- ``flip``: 1..4 random bytes XOR-ed (the chunk CRCs catch most of them);
- ``splice``: a slice of another corpus file written over, or inserted into, the file;
- ``truncate``: the file cut at a random length;
- ``chunk``: one chunk's data mutated (bytes flipped, inserted, deleted, cut, extended,
  replaced by random bytes or by the same kind of chunk from another file), then its length
  field and CRC recomputed: the reader accepts it, so the entropy decoder and the model
  see the garbage;
- ``payload``: like ``chunk`` on a frame payload, aimed at the entropy payload's header fields
  (streams, height, width, body length varints) or at its body;
- ``head``: a HEAD field (media, channels, width, height, fps, frame count, quality, pixel
  format, model name, codec_params JSON values) set to a hostile value, CRC recomputed;
- ``frames``: whole frame chunks dropped, duplicated or swapped (CRCs stay valid);
- ``codes``: an image's codes replaced by arbitrary valid ones (random points, uniform noise,
  all maximal, all zero, stripes) and entropy-coded again with the model's prior: a flawless
  payload, so the model's synthesis sees codes no encoder produced.

Decoding goes through ``decode_image_result`` / ``VideoDecoder`` (dispatched on the media byte,
as the CLI does), from a seekable buffer or a non-seekable pipe, sometimes seeking; one case in
ten goes through the Pillow plugin instead (``Image.open(...).load()``).

Each decoded case runs in a worker subprocess with a per-case time limit (``signal.setitimer``
raising in Python, and a watchdog in this process that kills a worker stuck in native code) and
an address-space limit (``RLIMIT_AS`` = the worker's size after warm-up + ``--memory-mb``).
Outcomes: ``ok`` (decoded, output shape checked against the header), ``expected:<Error>`` for
vqcodec's own error classes, and the problems: ``unexpected:<Exception>``, ``bad-output``,
``hang``, ``memory`` (MemoryError or a failed allocation: a size the limits should have
refused) and ``crash`` (the worker died). Every problem is listed with its seed. Results go to
``benchmarks/results/fuzz_decode.json`` and a table on stdout; the exit status is 1 when there
is any problem.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import pickle
import platform
import random
import select
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
TINY_IMAGE_MODEL = REPO / "formats" / "vectors" / "models" / "tiny-image.safetensors"
MUTATIONS = ("flip", "splice", "truncate", "chunk", "payload", "head", "frames", "codes")
# relative weights: the CRC-recomputing mutations reach the deep layers, so they get most cases
MUTATION_WEIGHTS = (10, 8, 8, 28, 22, 14, 6, 4)
PROBLEMS = ("unexpected", "bad-output", "hang", "memory", "crash")
MAX_MESSAGE = 300


# ---------------------------------------------------------------------------------------------
# corpus


@dataclass
class CorpusFile:
    """One valid file; ``model`` is what the decoder is given (None: the model the file names)."""

    name: str
    media: str
    data: bytes
    model: str | None


def _bundled(media: str) -> list[Any]:
    from vqcodec.models.zoo import list_models

    return [m for m in list_models() if m.media == media]


def _picture(height: int, width: int, channels: int, seed: int) -> Any:
    """(H, W, C) uint8: gradients plus noise, so codes vary across the latent grid."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // max(1, width - 1), y * 255 // max(1, height - 1), (x * 7 + y * 3) % 256], -1)
    base = np.concatenate([base, 255 - base], -1)[..., :channels]
    picture = np.clip(base + rng.integers(-24, 25, size=base.shape), 0, 255).astype(np.uint8)
    return picture[..., 0] if channels == 1 else picture


def image_corpus(model: Any, model_arg: str | None) -> list[CorpusFile]:
    from vqcodec.codec.image import encode_image

    out = []
    top = int(model.quality_levels)
    for name, (h, w, c), quality in (
        ("rgb32-q1", (32, 32, 3), 1),
        (f"rgb32-q{top}", (32, 32, 3), top),
        ("gray17x33", (17, 33, 1), max(1, top // 2)),
        ("rgba24x40", (24, 40, 4), max(1, top // 2)),
    ):
        data = encode_image(_picture(h, w, c, seed=len(out)), quality, model=model)
        out.append(CorpusFile(f"{model.name}/{name}", "image", data, model_arg))
    return out


def video_corpus(model: Any, model_arg: str | None) -> list[CorpusFile]:
    """4-frame 32x32 clips with a moving pattern, in three GOP / pixel-format variants."""
    import io

    import numpy as np

    from vqcodec.codec.video import VideoEncoder

    frames = []
    base = _picture(48, 48, 3, seed=7)
    for t in range(4):
        frames.append(np.ascontiguousarray(base[t * 3 : t * 3 + 32, t * 2 : t * 2 + 32]))
    out = []
    for gop, pixel_format in ((2, "rgb24"), (4, "yuv420p"), (3, "gray8")):
        buf = io.BytesIO()
        with VideoEncoder(
            buf, model=model, fps=25, size=(32, 32), gop=gop, pixel_format=pixel_format, quality=2
        ) as encoder:
            for frame in frames:
                encoder.write(frame)
        name = f"{model.name}/clip4-gop{gop}-{pixel_format}"
        out.append(CorpusFile(name, "video", buf.getvalue(), model_arg))
    return out


def build_corpus(
    model_paths: list[str] | None = None, *, video: bool = True
) -> tuple[list[CorpusFile], list[str]]:
    """Valid files from the bundled models (or the given bundle paths); notes say what was used."""
    from vqcodec.models.zoo import load_model

    corpus: list[CorpusFile] = []
    notes: list[str] = []
    image_models: list[tuple[Any, str | None]] = []
    video_models: list[tuple[Any, str | None]] = []
    if model_paths:
        for path in model_paths:
            model = load_model(path, media="image")
            target = video_models if getattr(model, "media", "image") == "video" else image_models
            target.append((model, str(Path(path).resolve())))
    else:
        image_models = [(load_model(m.name, media="image"), None) for m in _bundled("image")]
        video_models = [(load_model(m.name, media="video"), None) for m in _bundled("video")]
        if not image_models:
            image_models = [(load_model(str(TINY_IMAGE_MODEL)), str(TINY_IMAGE_MODEL))]
            notes.append("no bundled image model: used the tiny test model formats/vectors/models/tiny-image")
    for model, arg in image_models:
        corpus += image_corpus(model, arg)
        notes.append(f"image model {model.name}: sha256 {bytes(model.sha256).hex()}")
    if video:
        if not _has_video_codec():
            notes.append("no video codec (vqcodec.codec.video) in this tree: image files only")
        else:
            if not video_models:
                # the video codec also runs on an image model (temporal part derived from it)
                video_models = image_models
                notes.append("no bundled video model: clips coded with the image model")
            for model, arg in video_models:
                corpus += video_corpus(model, arg)
                if getattr(model, "media", "image") == "video":
                    notes.append(f"video model {model.name}: sha256 {bytes(model.sha256).hex()}")
    return corpus, notes


@functools.lru_cache(maxsize=1)
def _has_video_codec() -> bool:
    import importlib.util

    return importlib.util.find_spec("vqcodec.codec.video") is not None


# ---------------------------------------------------------------------------------------------
# mutations (pure functions of the corpus and a seed)

PREAMBLE_SIZE = 12
CHUNK_FRAMING = 12
HEAD_FIXED_SIZE = 60
INTERESTING_U32 = (
    0,
    1,
    2,
    3,
    7,
    8,
    15,
    16,
    17,
    255,
    256,
    4095,
    65535,
    65536,
    2**24,
    2**31 - 1,
    2**31,
    2**32 - 1,
)
# (name, offset in HEAD data, struct size) of the fixed HEAD fields; formats/vqc-v1.md "HEAD"
HEAD_FIELDS = (
    ("media", 0, 1),
    ("channels", 1, 1),
    ("width", 2, 4),
    ("height", 6, 4),
    ("fps_num", 10, 4),
    ("fps_den", 14, 4),
    ("frame_count", 18, 4),
    ("primaries", 22, 1),
    ("transfer", 23, 1),
    ("matrix", 24, 1),
    ("full_range", 25, 1),
    ("quality", 26, 2),
    ("model_sha256", 28, 32),
)
HOSTILE_JSON = (
    None,
    True,
    0,
    -1,
    1,
    2,
    3,
    7,
    16,
    2**31,
    2**63,
    1e308,
    -1e308,
    "",
    "x",
    "ALPH",
    [],
    [0],
    [1, 1, 1],
    [1, 0, 0],
    [64, 2, 2],
    [1, 65536, 65536],
    [-1, 2, 2],
    [1.5, 2, 2],
    [True, 2, 2],
    {},
    {"a": [1]},
)


def split_chunks(data: bytes) -> list[tuple[int, int, bytes]] | None:
    """(offset, length, type) of every whole chunk after the preamble; None if the framing is off."""
    chunks = []
    pos = PREAMBLE_SIZE
    while pos + CHUNK_FRAMING <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "little")
        if pos + CHUNK_FRAMING + length > len(data):
            return None
        chunks.append((pos, length, bytes(data[pos + 4 : pos + 8])))
        pos += CHUNK_FRAMING + length
    return chunks if pos == len(data) else None


def make_chunk(chunk_type: bytes, body: bytes) -> bytes:
    import zlib

    crc = zlib.crc32(body, zlib.crc32(chunk_type))
    return len(body).to_bytes(4, "little") + chunk_type + body + crc.to_bytes(4, "little")


def replace_chunk(data: bytes, chunk: tuple[int, int, bytes], body: bytes, *, fix: bool = True) -> bytes:
    """``data`` with ``chunk``'s data replaced (length and CRC recomputed).

    ``fix``: also shift the key-frame offsets of the ``indx`` chunk and the index offset of the
    ``VEND`` chunk by the change in length, so the container stays self-consistent and the
    mutated payload reaches the entropy decoder instead of failing the index check.
    """
    pos, length, chunk_type = chunk
    out = data[:pos] + make_chunk(chunk_type, body) + data[pos + CHUNK_FRAMING + length :]
    delta = len(body) - length
    if not fix or delta == 0 or chunk_type in (b"indx", b"VEND"):
        return out
    for other in split_chunks(out) or []:
        other_body = bytearray(chunk_body(out, other))
        if other[2] == b"indx" and len(other_body) >= 4:
            count = int.from_bytes(other_body[:4], "little")
            for k in range(min(count, (len(other_body) - 4) // 12)):
                at = 4 + 12 * k + 4
                offset = int.from_bytes(other_body[at : at + 8], "little")
                if offset > pos:
                    other_body[at : at + 8] = (offset + delta).to_bytes(8, "little")
        elif other[2] == b"VEND" and len(other_body) == 12:
            offset = int.from_bytes(other_body[4:12], "little")
            if offset > pos:
                other_body[4:12] = (offset + delta).to_bytes(8, "little")
        else:
            continue
        out = (
            out[: other[0]]
            + make_chunk(other[2], bytes(other_body))
            + out[other[0] + CHUNK_FRAMING + other[1] :]
        )
    return out


def chunk_body(data: bytes, chunk: tuple[int, int, bytes]) -> bytes:
    pos, length, _ = chunk
    return data[pos + 8 : pos + 8 + length]


def mutate_bytes(
    rng: random.Random, body: bytes, corpus_bodies: list[bytes], lo: int = 0, hi: int | None = None
) -> bytes:
    """One random edit of ``body``, positions drawn from [lo, hi)."""
    b = bytearray(body)
    hi = len(b) if hi is None else min(hi, len(b))
    lo = min(lo, hi)

    def pos() -> int:
        return rng.randrange(lo, hi) if hi > lo else lo

    kind = rng.choice(("flip", "flip", "set", "insert", "delete", "cut", "extend", "random", "swap", "zero"))
    if kind in ("flip", "set") and b:
        for _ in range(rng.randint(1, 4)):
            p = min(pos(), len(b) - 1)
            b[p] = (b[p] ^ (1 << rng.randrange(8))) if kind == "flip" else rng.randrange(256)
    elif kind == "insert":
        p = pos()
        b[p:p] = bytes(rng.randrange(256) for _ in range(rng.choice((1, 2, 4, 16, 100))))
    elif kind == "delete" and b:
        p = min(pos(), len(b) - 1)
        del b[p : p + rng.choice((1, 2, 4, 16, 100))]
    elif kind == "cut":
        del b[pos() :]
    elif kind == "extend":
        b += bytes(rng.randrange(256) for _ in range(rng.choice((1, 4, 64, 1000))))
    elif kind == "random":
        b = bytearray(rng.randbytes(rng.choice((0, 1, 8, len(b), 2 * len(b) + 1))))
    elif kind == "swap" and corpus_bodies:
        b = bytearray(rng.choice(corpus_bodies))
    elif kind == "zero" and b:
        p = min(pos(), len(b) - 1)
        b[p : p + rng.choice((1, 4, 32))] = bytes(len(b[p : p + 4]))
    return bytes(b)


def _bodies_of_type(corpus: list[CorpusFile], chunk_type: bytes) -> list[bytes]:
    out = []
    for item in corpus:
        for chunk in split_chunks(item.data) or []:
            if chunk[2] == chunk_type:
                out.append(chunk_body(item.data, chunk))
    return out


def mutate_head(rng: random.Random, body: bytes) -> bytes:
    b = bytearray(body)
    if rng.random() < 0.6 and len(b) >= HEAD_FIXED_SIZE:
        name, offset, size = rng.choice(HEAD_FIELDS)
        if size == 32:
            b[offset : offset + 32] = rng.choice((bytes(32), rng.randbytes(32), b"\xff" * 32))
        else:
            value = rng.choice(INTERESTING_U32 + (rng.randrange(1 << (8 * size)),)) % (1 << (8 * size))
            b[offset : offset + size] = value.to_bytes(size, "little")
        return bytes(b)
    # the variable part: pixel format, model name, codec_params (JSON)
    try:
        p = HEAD_FIXED_SIZE
        pf_len = b[p]
        pf = bytes(b[p + 1 : p + 1 + pf_len])
        p += 1 + pf_len
        name_len = b[p]
        name = bytes(b[p + 1 : p + 1 + name_len])
        p += 1 + name_len
        params_len = int.from_bytes(b[p : p + 4], "little")
        params = bytes(b[p + 4 : p + 4 + params_len])
        rest = bytes(b[p + 4 + params_len :])
    except IndexError:
        return bytes(b)
    which = rng.choice(("pf", "name", "params", "params", "params"))
    if which == "pf":
        pf = rng.choice(
            (
                b"",
                b"rgb24",
                b"rgba32",
                b"gray8",
                b"graya16",
                b"yuv420p",
                b"yuv444p",
                b"x" * 32,
                rng.randbytes(5),
            )
        )
    elif which == "name":
        name = rng.choice((b"", b"tiny-image", b"\xff\xfe", b"../../etc/passwd", b"a" * 255, name + b"x"))
    else:
        try:
            obj = json.loads(params)
        except ValueError:
            obj = None
        if isinstance(obj, dict) and obj and rng.random() < 0.8:
            key = rng.choice(sorted(obj) + ["extra"])
            value = rng.choice(HOSTILE_JSON)
            if isinstance(obj.get(key), list) and obj[key] and rng.random() < 0.5:
                value = list(obj[key])
                value[rng.randrange(len(value))] = rng.choice(HOSTILE_JSON)
            if rng.random() < 0.1:
                obj.pop(key, None)
            else:
                obj[key] = value
            params = json.dumps(obj).encode()
        else:
            params = mutate_bytes(rng, params, [])
    return (
        bytes(b[:HEAD_FIXED_SIZE])
        + bytes([len(pf) & 0xFF])
        + pf
        + bytes([len(name) & 0xFF])
        + name
        + len(params).to_bytes(4, "little")
        + params
        + rest
    )


def make_case(corpus: list[CorpusFile], seed: int) -> tuple[int, str, bytes]:
    """(corpus index, mutation name, mutated bytes) of the case ``seed``."""
    rng = random.Random(seed)
    index = rng.randrange(len(corpus))
    data = corpus[index].data
    mutation = rng.choices(MUTATIONS, MUTATION_WEIGHTS)[0]
    chunks = split_chunks(data) or []
    if mutation == "frames" and sum(c[2] == b"FRAM" for c in chunks) < 2:
        mutation = "chunk"
    if mutation == "flip":
        b = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            p = rng.randrange(len(b))
            b[p] ^= rng.randrange(1, 256)
        return index, mutation, bytes(b)
    if mutation == "splice":
        other = corpus[rng.randrange(len(corpus))].data
        a = rng.randrange(len(other))
        piece = other[a : a + rng.randint(1, max(1, len(other) - a))]
        p = rng.randrange(len(data) + 1)
        if rng.random() < 0.5:
            return index, mutation, data[:p] + piece + data[p + len(piece) :]
        return index, mutation, data[:p] + piece + data[p:]
    if mutation == "truncate":
        return index, mutation, data[: rng.randrange(len(data))]
    if mutation == "frames":
        pieces = [data[c[0] : c[0] + CHUNK_FRAMING + c[1]] for c in chunks]
        at = [i for i, c in enumerate(chunks) if c[2] == b"FRAM"]
        op = rng.choice(("drop", "duplicate", "swap", "reverse"))
        i = rng.choice(at)
        if op == "drop":
            del pieces[i]
        elif op == "duplicate":
            pieces.insert(i, pieces[i])
        elif op == "swap":
            j = rng.choice(at)
            pieces[i], pieces[j] = pieces[j], pieces[i]
        else:
            frames = [pieces[k] for k in at][::-1]
            for k, piece in zip(at, frames):
                pieces[k] = piece
        return index, f"frames-{op}", data[:PREAMBLE_SIZE] + b"".join(pieces)
    if not chunks:
        return index, mutation, data
    if mutation == "head":
        head = next((c for c in chunks if c[2] == b"HEAD"), chunks[0])
        new = mutate_head(rng, chunk_body(data, head))
        return index, mutation, replace_chunk(data, head, new, fix=rng.random() < 0.9)
    if mutation == "codes":
        if corpus[index].media == "image":
            return index, mutation, recode(corpus[index], data, chunks, rng)
        mutation = "payload"  # video payloads have their own layout: mutate their bytes instead
    if mutation == "payload":
        frames = [c for c in chunks if c[2] == b"FRAM"] or chunks
        chunk = rng.choice(frames)
        body = chunk_body(data, chunk)
        # frame prefix (flags, index) is 5 bytes; the entropy payload header is the next ~12
        if rng.random() < 0.4:
            new = mutate_bytes(rng, body, [], 5, 17)
        else:
            new = mutate_bytes(rng, body, _bodies_of_type(corpus, b"FRAM"), 17, None)
        return index, mutation, replace_chunk(data, chunk, new, fix=rng.random() < 0.9)
    # "chunk": any chunk, frame payloads most often
    weights = [4 if c[2] == b"FRAM" else 2 if c[2] in (b"HEAD", b"ALPH") else 1 for c in chunks]
    chunk = rng.choices(chunks, weights)[0]
    body = chunk_body(data, chunk)
    new = mutate_bytes(rng, body, _bodies_of_type(corpus, chunk[2]))
    fixed = replace_chunk(data, chunk, new, fix=rng.random() < 0.8)
    return index, f"chunk-{chunk[2].decode('latin-1')}", fixed


def recode(item: CorpusFile, data: bytes, chunks: list[tuple[int, int, bytes]], rng: random.Random) -> bytes:
    """An image file whose codes are replaced by arbitrary valid ones, entropy-coded with the
    model's own prior: a well-formed payload, so the model synthesises codes it never produced."""
    import numpy as np

    from vqcodec.codec.image import decode_image_result, resolve_model

    decoded = decode_image_result(data, model=item.model)
    model = resolve_model(item.model or decoded.header.model_name)
    codes = np.array(decoded.codes, dtype=np.int64)
    # RVQ codes are indices in [0, K); scalar-quantized codes are signed coefficient levels, drawn
    # here from [-M, M] with M large enough to reach the prior's escape coding
    if model.scalar:
        low, high = -4096, 4097
    else:
        low, high = 0, int(model.config.codebook_size)
    kind = rng.choice(("points", "uniform", "max", "zero", "stripes"))
    np_rng = np.random.default_rng(rng.randrange(2**32))
    if kind == "points":
        flat = codes.reshape(-1)
        at = np_rng.integers(0, flat.size, size=max(1, flat.size // 8))
        flat[at] = np_rng.integers(low, high, size=at.size)
    elif kind == "uniform":
        codes = np_rng.integers(low, high, size=codes.shape)
    elif kind == "max":
        codes[...] = high - 1
    elif kind == "zero":
        codes[...] = 0
    else:
        span = high - low
        codes[..., ::2] = (codes[..., ::2] - low + span // 2) % span + low
    frame = next(c for c in chunks if c[2] == b"FRAM")
    prefix = chunk_body(data, frame)[:5]
    payload = model.compress(codes.astype(np.int32), decoded.header.quality)
    return replace_chunk(data, frame, prefix + payload)


# ---------------------------------------------------------------------------------------------
# decoding one case (in a worker)


class CaseTimeout(BaseException):
    """Raised by the per-case timer; a BaseException so library ``except Exception`` cannot eat it."""


class _Pipe:
    """A non-seekable reader over bytes, like stdin or a socket."""

    def __init__(self, data: bytes):
        import io

        self._inner = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self._inner.read(n if n is None or n < 0 else min(n, 4096))

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        raise OSError("not seekable")

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def media_byte(data: bytes) -> str:
    """The media the file claims (what ``vqcodec decode`` dispatches on): HEAD data byte 0."""
    return "video" if len(data) > 20 and data[20] == 2 else "image"


def decode_case(item: CorpusFile, data: bytes, rng: random.Random) -> str | None:
    """Decode ``data`` as the CLI would; returns None, or a description of a bad output."""
    import io

    import numpy as np

    as_pipe = rng.random() < 0.3
    src: Any = _Pipe(data) if as_pipe else io.BytesIO(data)
    if rng.random() < 0.1:
        return _decode_with_pillow(item, data)
    if media_byte(data) == "image" or not _has_video_codec():
        from vqcodec.codec.image import decode_image_result

        decoded = decode_image_result(src, model=item.model)
        header = decoded.header
        rgb = np.asarray(decoded.rgb)
        if rgb.shape != (header.height, header.width, 3) or rgb.dtype != np.uint8:
            return f"image decoded to {rgb.shape} {rgb.dtype}, header says {header.width}x{header.height}"
        if decoded.alpha is not None and decoded.alpha.shape != (header.height, header.width):
            return f"alpha decoded to {decoded.alpha.shape}"
        return None
    from vqcodec.codec.video import VideoDecoder

    kwargs = {"model": item.model} if item.model is not None else {}
    with VideoDecoder(src, **kwargs) as decoder:
        header = decoder.header
        start = 0
        if not as_pipe and rng.random() < 0.3:
            start = rng.randrange(4)
            try:
                decoder.seek(start)
            except IndexError:
                pass  # the documented answer to seeking past the frames the file really has
        count = 0
        for frame in decoder:
            array = np.asarray(getattr(frame, "rgb", frame))
            if array.shape[:2] != (header.height, header.width):
                return f"frame {count} decoded to {array.shape}, header says {header.width}x{header.height}"
            count += 1
            if count > 64:
                return "more than 64 frames from a 4-frame clip"
    return None


def _decode_with_pillow(item: CorpusFile, data: bytes) -> str | None:
    """The same bytes through the Pillow plugin: Image.open, then load() (first frame)."""
    import io

    from PIL import Image

    import vqcodec.pillow

    vqcodec.pillow.DECODE_MODEL = item.model
    with Image.open(io.BytesIO(data), formats=["VQC"]) as im:
        im.load()
        width, height = im.size
        if len(im.tobytes()) != width * height * len(im.getbands()):
            return f"Pillow image {im.size} {im.mode} holds {len(im.tobytes())} bytes"
    return None


# Pillow's own answers to a file it refuses (not ours, or over Image.MAX_IMAGE_PIXELS)
PILLOW_EXPECTED = ("UnidentifiedImageError", "DecompressionBombError")


def classify(exc: BaseException) -> str:
    from vqcodec.errors import VQCError

    if isinstance(exc, CaseTimeout):
        return "hang"
    if isinstance(exc, MemoryError) or (
        isinstance(exc, RuntimeError) and "alloc" in str(exc).lower() and "memory" in str(exc).lower()
    ):
        return "memory"
    if isinstance(exc, VQCError):
        return f"expected:{type(exc).__name__}"
    if type(exc).__name__ in PILLOW_EXPECTED and type(exc).__module__.startswith("PIL"):
        return f"expected:pillow.{type(exc).__name__}"
    return f"unexpected:{type(exc).__name__}"


def run_case(corpus: list[CorpusFile], seed: int, timeout: float) -> dict[str, Any]:
    index, mutation, data = make_case(corpus, seed)
    rng = random.Random(seed ^ 0x5EED)
    start = time.perf_counter()
    message = ""
    if timeout > 0:
        signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        _self_test(seed)
        problem = decode_case(corpus[index], data, rng)
        outcome = "ok" if problem is None else "bad-output"
        message = problem or ""
    except BaseException as exc:  # noqa: BLE001 - every exception is an outcome to count
        outcome = classify(exc)
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        message = f"{type(exc).__name__}: {exc}"
        if outcome.split(":")[0] in PROBLEMS:
            tb = traceback.extract_tb(exc.__traceback__)
            where = tb[-1] if tb else None
            if where is not None:
                message += f" [at {Path(where.filename).name}:{where.lineno} in {where.name}]"
    finally:
        if timeout > 0:
            signal.setitimer(signal.ITIMER_REAL, 0)
    return {
        "seed": seed,
        "file": corpus[index].name,
        "mutation": mutation,
        "outcome": outcome,
        "message": message[:MAX_MESSAGE],
        "seconds": round(time.perf_counter() - start, 5),
    }


def _self_test(seed: int) -> None:
    """Deliberate failures for the harness's own test (env VQCODEC_FUZZ_SELFTEST="seed:kind,...")."""
    spec = os.environ.get("VQCODEC_FUZZ_SELFTEST")
    if not spec:
        return
    for item in spec.split(","):
        s, kind = item.split(":")
        if int(s) != seed:
            continue
        if kind == "crash":
            os.kill(os.getpid(), signal.SIGSEGV)
        if kind == "hang":  # native-code hang: the timer signal is blocked, only the watchdog helps
            signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGALRM])
            time.sleep(3600)
        if kind == "slow":  # Python-level hang: the per-case timer interrupts it
            time.sleep(3600)
        if kind == "alloc":  # more than the address-space limit allows
            bytearray((_MEMORY_MB + 256) << 20)
        if kind == "torch-alloc":  # the same through torch's allocator (a RuntimeError, not MemoryError)
            import torch

            torch.empty((_MEMORY_MB + 256) << 20, dtype=torch.uint8)
        if kind == "raise":
            raise AttributeError("self-test")


_MEMORY_MB = 0


def _raise_timeout(signum: int, frame: Any) -> None:
    raise CaseTimeout("per-case time limit")


def worker_main(corpus_path: str, timeout: float, memory_mb: int) -> int:
    """Read seeds (one per line) on stdin, answer one JSON line per case on the protocol fd."""
    import resource

    protocol = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # stray prints from libraries go to the log, not into the protocol
    sys.stdout = sys.stderr
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    with open(corpus_path, "rb") as f:
        corpus: list[CorpusFile] = pickle.load(f)
    for item in corpus:  # warm up: load the models, and check the corpus decodes cleanly
        problem = decode_case(item, item.data, random.Random(0))
        if problem is not None:
            raise RuntimeError(f"corpus file {item.name} does not decode cleanly: {problem}")
    global _MEMORY_MB
    _MEMORY_MB = memory_mb
    signal.signal(signal.SIGALRM, _raise_timeout)
    if memory_mb > 0:
        limit = _address_space() + memory_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    protocol.write(b'{"ready": true}\n')
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        result = run_case(corpus, int(line), timeout)
        protocol.write(json.dumps(result).encode() + b"\n")
    return 0


def _address_space() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


# ---------------------------------------------------------------------------------------------
# campaign (parent process)


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    log: Any
    buffer: bytes = b""
    seed: int | None = None
    started: float = 0.0
    ready: bool = False


@dataclass
class Campaign:
    cases: int
    seed: int
    workers: int
    timeout: float
    memory_mb: int
    corpus: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    by_mutation: dict[str, Counter[str]] = field(default_factory=dict)
    problems: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    slowest: list[dict[str, Any]] = field(default_factory=list)
    restarts: int = 0
    messages: Counter[str] = field(default_factory=Counter)
    by_seed: dict[int, str] = field(default_factory=dict)  # outcome of every case (not in the JSON)
    # (corpus file name, mutation) of every case, not in the JSON either
    case_of: dict[int, tuple[str, str]] = field(default_factory=dict)

    def add(self, result: dict[str, Any]) -> None:
        outcome = result["outcome"]
        self.outcomes[outcome] += 1
        if result["seed"] is not None:
            self.by_seed[result["seed"]] = outcome
            self.case_of[result["seed"]] = (result["file"], result["mutation"])
        family = result["mutation"].split("-")[0]
        self.by_mutation.setdefault(family, Counter())[outcome.split(":")[0]] += 1
        if outcome.split(":")[0] in PROBLEMS:
            self.problems.append(result)
        elif outcome.startswith("expected:"):
            # digits vary from case to case; the message's shape says which check fired
            shape = "".join("#" if ch.isdigit() else ch for ch in result["message"][:70])
            self.messages[shape] += 1
        self.slowest.append({k: result[k] for k in ("seed", "seconds", "outcome", "mutation")})
        if len(self.slowest) > 50:
            self.slowest = sorted(self.slowest, key=lambda r: -r["seconds"])[:5]

    @property
    def problem_count(self) -> int:
        return len(self.problems)

    def summary(self) -> dict[str, Any]:
        totals = Counter(o.split(":")[0] for o in self.outcomes.elements())
        return {
            "benchmark": "fuzz_decode",
            "cases": self.cases,
            "seed": self.seed,
            "workers": self.workers,
            "case_timeout_s": self.timeout,
            "memory_limit_mb": self.memory_mb,
            "seconds": round(self.seconds, 1),
            "cases_per_second": round(self.cases / self.seconds, 1) if self.seconds else None,
            "corpus": self.corpus,
            "notes": self.notes,
            "totals": {k: totals.get(k, 0) for k in ("ok", "expected", *PROBLEMS)},
            "outcomes": dict(sorted(self.outcomes.items())),
            "by_mutation": {k: dict(sorted(v.items())) for k, v in sorted(self.by_mutation.items())},
            "problems": self.problems,
            "slowest": sorted(self.slowest, key=lambda r: -r["seconds"])[:5],
            "worker_restarts": self.restarts,
            "top_error_messages": dict(self.messages.most_common(25)),
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        }


def _start_worker(corpus_path: str, timeout: float, memory_mb: int, log_dir: str, n: int) -> Worker:
    log = open(os.path.join(log_dir, f"worker{n}.log"), "ab")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0")
    proc = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--worker",
            corpus_path,
            "--timeout",
            str(timeout),
            "--memory-mb",
            str(memory_mb),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
        env=env,
    )
    return Worker(proc, log)


def _log_tail(worker: Worker) -> str:
    try:
        with open(worker.log.name, "rb") as f:
            f.seek(max(0, os.path.getsize(worker.log.name) - 400))
            return f.read().decode("utf-8", "replace").strip().splitlines()[-1][:MAX_MESSAGE]
    except (OSError, IndexError):
        return ""


def run_campaign(
    cases: int = 100_000,
    *,
    seed: int = 0,
    workers: int = 2,
    timeout: float = 5.0,
    memory_mb: int = 1024,
    model_paths: list[str] | None = None,
    video: bool = True,
    progress: bool = False,
    startup_timeout: float = 300.0,
    watchdog: float | None = None,
    max_seconds: float | None = None,
    prebuilt: tuple[list[CorpusFile], list[str]] | None = None,
) -> Campaign:
    """Run ``cases`` cases (seeds ``seed .. seed + cases - 1``) over the corpus on ``workers`` workers.

    ``watchdog``: seconds without an answer after which a worker is killed and its case counted
    as a hang (default ``2 * timeout + 10``: the per-case timer normally fires first).
    ``max_seconds``: stop issuing cases after this long (the summary then counts the cases run).
    ``prebuilt``: the ``(corpus, notes)`` of an earlier :func:`build_corpus` call, used instead of
    building the corpus again (``model_paths`` and ``video`` are then not used).
    """
    corpus, notes = prebuilt if prebuilt is not None else build_corpus(model_paths, video=video)
    notes = list(notes)  # the campaign appends to its notes
    campaign = Campaign(cases, seed, workers, timeout, memory_mb, notes=notes)
    campaign.corpus = [{"name": c.name, "media": c.media, "bytes": len(c.data)} for c in corpus]
    hard_limit = watchdog if watchdog is not None else 2 * timeout + 10.0
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vqc-fuzz-") as tmp:
        corpus_path = os.path.join(tmp, "corpus.pkl")
        with open(corpus_path, "wb") as f:
            pickle.dump(corpus, f)
        pool = [_start_worker(corpus_path, timeout, memory_mb, tmp, n) for n in range(workers)]
        seeds = iter(range(seed, seed + cases))
        exhausted = False
        spawned = workers
        try:
            while not (exhausted and all(w.seed is None for w in pool)):
                now = time.perf_counter()
                if max_seconds is not None and now - start > max_seconds and not exhausted:
                    exhausted = True
                    campaign.notes.append(f"stopped by the time budget of {max_seconds:.0f} s")
                for w in pool:
                    if w.ready and w.seed is None and not exhausted:
                        nxt = next(seeds, None)
                        if nxt is None:
                            exhausted = True
                            continue
                        w.seed, w.started = nxt, now
                        try:
                            assert w.proc.stdin is not None
                            w.proc.stdin.write(f"{nxt}\n".encode())
                            w.proc.stdin.flush()
                        except BrokenPipeError:
                            pass  # the read side below sees the death
                fds = {w.proc.stdout.fileno(): w for w in pool if w.proc.stdout is not None}
                readable, _, _ = select.select(list(fds), [], [], 0.5)
                for fd in readable:
                    w = fds[fd]
                    chunk = os.read(fd, 65536)
                    if not chunk:  # the worker died
                        code = w.proc.wait()
                        if not w.ready:
                            raise RuntimeError(f"fuzz worker failed to start (exit {code}): {_log_tail(w)}")
                        campaign.add(
                            {
                                "seed": w.seed,
                                "file": "?",
                                "mutation": "?",
                                "outcome": "crash",
                                "message": f"worker died with exit status {code}: {_log_tail(w)}",
                                "seconds": round(time.perf_counter() - w.started, 3),
                            }
                        )
                        i = pool.index(w)
                        w.log.close()
                        pool[i] = _start_worker(corpus_path, timeout, memory_mb, tmp, spawned)
                        spawned += 1
                        campaign.restarts += 1
                        continue
                    w.buffer += chunk
                    while b"\n" in w.buffer:
                        line, w.buffer = w.buffer.split(b"\n", 1)
                        message = json.loads(line)
                        if message.get("ready"):
                            w.ready = True
                            w.started = time.perf_counter()
                            continue
                        campaign.add(message)
                        w.seed = None
                        done = sum(campaign.outcomes.values())
                        if progress and done % 1000 == 0:
                            rate = done / (time.perf_counter() - start)
                            print(
                                f"  {done}/{cases} cases, {rate:.0f}/s, problems {campaign.problem_count}",
                                file=sys.stderr,
                                flush=True,
                            )
                now = time.perf_counter()
                for i, w in enumerate(pool):
                    stuck = w.seed is not None and now - w.started > hard_limit
                    if not w.ready and now - w.started > startup_timeout and w.started:
                        raise RuntimeError(f"fuzz worker did not start in {startup_timeout} s")
                    if stuck:
                        w.proc.kill()
                        w.proc.wait()
                        campaign.add(
                            {
                                "seed": w.seed,
                                "file": "?",
                                "mutation": "?",
                                "outcome": "hang",
                                "message": f"no answer in {hard_limit:.0f} s: killed by the watchdog",
                                "seconds": round(now - w.started, 3),
                            }
                        )
                        w.log.close()
                        pool[i] = _start_worker(corpus_path, timeout, memory_mb, tmp, spawned)
                        spawned += 1
                        campaign.restarts += 1
        finally:
            for w in pool:
                if w.proc.poll() is None:
                    w.proc.kill()
                w.proc.wait()
                w.log.close()
    campaign.seconds = time.perf_counter() - start
    campaign.cases = sum(campaign.outcomes.values())
    # the file/mutation of watchdog and crash cases are recomputed here, where nothing can hang
    for problem in campaign.problems:
        if problem["file"] == "?" and problem["seed"] is not None:
            index, mutation, _ = make_case(corpus, problem["seed"])
            problem["file"], problem["mutation"] = corpus[index].name, mutation
            campaign.case_of[problem["seed"]] = (corpus[index].name, mutation)
    return campaign


# ---------------------------------------------------------------------------------------------
# report


def print_table(summary: dict[str, Any]) -> None:
    totals = summary["totals"]
    last = summary["seed"] + summary["cases"] - 1
    print(
        f"fuzz_decode: {summary['cases']} cases (seeds {summary['seed']}..{last}), "
        f"{summary['workers']} workers, {summary['seconds']} s ({summary['cases_per_second']} cases/s), "
        f"limits {summary['case_timeout_s']} s and +{summary['memory_limit_mb']} MB per case"
    )
    print(f"corpus: {len(summary['corpus'])} files: " + ", ".join(c["name"] for c in summary["corpus"]))
    for note in summary["notes"]:
        print(f"note: {note}")
    print()
    print(f"{'outcome':<40} {'cases':>8} {'share':>7}")
    print("-" * 57)
    for name, count in sorted(summary["outcomes"].items(), key=lambda kv: -kv[1]):
        print(f"{name:<40} {count:>8} {100 * count / summary['cases']:>6.2f}%")
    print("-" * 57)
    for name in ("ok", "expected", *PROBLEMS):
        print(f"{'total ' + name:<40} {totals[name]:>8}")
    print()
    columns = ("ok", "expected", *PROBLEMS)
    print(f"{'mutation':<10}" + "".join(f"{c:>12}" for c in columns))
    for name, counts in summary["by_mutation"].items():
        print(f"{name:<10}" + "".join(f"{counts.get(c, 0):>12}" for c in columns))
    if summary["problems"]:
        print()
        print("problems (replay with: python benchmarks/fuzz_decode.py --replay SEED):")
        for p in summary["problems"][:50]:
            print(f"  seed {p['seed']}: {p['outcome']} on {p['file']} ({p['mutation']}): {p['message']}")


def replay(seed: int, model_paths: list[str] | None, video: bool, dump: str | None) -> int:
    corpus, _ = build_corpus(model_paths, video=video)
    index, mutation, data = make_case(corpus, seed)
    if dump:
        Path(dump).write_bytes(data)
        print(f"wrote {dump}: {len(data)} bytes ({mutation} of {corpus[index].name})")
        return 0
    print(f"seed {seed}: {mutation} of {corpus[index].name}, {len(data)} bytes")
    try:
        problem = decode_case(corpus[index], data, random.Random(seed ^ 0x5EED))
    except Exception as exc:
        outcome = classify(exc)
        traceback.print_exc()
        print(f"outcome: {outcome}")
        return 1 if outcome.split(":")[0] in PROBLEMS else 0
    print(f"outcome: {'ok' if problem is None else 'bad-output: ' + problem}")
    return 0 if problem is None else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0, help="seed of the first case")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per case")
    p.add_argument(
        "--memory-mb", type=int, default=1024, help="address space per case beyond the warm worker"
    )
    p.add_argument("--model", action="append", help="bundle path(s) instead of the bundled models")
    p.add_argument("--max-seconds", type=float, help="stop issuing cases after this long (report what ran)")
    p.add_argument("--no-video", action="store_true")
    p.add_argument("--json", default=str(RESULTS / "fuzz_decode.json"), help="where the JSON summary goes")
    p.add_argument("--replay", type=int, metavar="SEED", help="rerun one case here with its traceback")
    p.add_argument("--dump", metavar="OUT", help="with --replay: write the case's file instead")
    p.add_argument("--worker", metavar="CORPUS", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker_main(args.worker, args.timeout, args.memory_mb)
    if args.replay is not None:
        return replay(args.replay, args.model, not args.no_video, args.dump)
    campaign = run_campaign(
        args.cases,
        seed=args.seed,
        workers=args.workers,
        timeout=args.timeout,
        memory_mb=args.memory_mb,
        model_paths=args.model,
        video=not args.no_video,
        progress=True,
        max_seconds=args.max_seconds,
    )
    summary = campaign.summary()
    print_table(summary)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nwrote {out}")
    return 1 if campaign.problem_count else 0


if __name__ == "__main__":
    sys.exit(main())
