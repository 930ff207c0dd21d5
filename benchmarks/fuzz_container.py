"""Seeded fuzzing campaign against the .vqc container reader (and ``vqcodec info``'s inspection).

    .venv/bin/python benchmarks/fuzz_container.py                    # 100,000 cases, seed 0
    .venv/bin/python benchmarks/fuzz_container.py --cases 5000 --seed 7 --time-cap 1
    .venv/bin/python benchmarks/fuzz_container.py --replay 12345     # rerun one case, show the traceback

Seed files: the valid vectors of formats/vectors/ (every kind: codec files are containers too) plus
a few built here. Each case takes one seed file, applies one mutator (bit flips, byte overwrites,
splices, insertions/deletions, truncation, lying lengths, and mutations with the CRC recomputed so
the checks behind the CRC are reached: chunk data edits, chunk type changes, chunk reordering), then
reads it one of three ways: as a pipe frame by frame, as a seekable file with seeks, or through
``vqcodec info``'s ``inspect``. Outcome: "ok", the library exception's class, "unexpected" (any
other exception: a bug) or "hang" (over the per-case time cap). Case ``i`` of seed ``S`` uses
``random.Random(S * 2**32 + i)``, so ``--replay`` reproduces any case exactly.

Writes benchmarks/results/fuzz_container.json and prints a table of outcomes by mutator.
Expected: zero unexpected, zero hangs.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import io
import json
import platform
import random
import resource
import signal
import struct
import sys
import time
import traceback
import zlib
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vqcodec.cli.info import inspect  # noqa: E402
from vqcodec.container import ContainerReader, ContainerWriter, Header  # noqa: E402
from vqcodec.errors import VQCError  # noqa: E402

VECTORS = REPO / "formats" / "vectors"
RESULTS = REPO / "benchmarks" / "results"
CHUNK_TYPES = [b"HEAD", b"FRAM", b"indx", b"VEND", b"ALPH", b"meta", b"ZZZZ", b"zzzz"]


class Hang(BaseException):
    """Raised by the interval timer when a case runs past the time cap (not an Exception: the
    reader's own handlers must not swallow it)."""


class Pipe(io.RawIOBase):
    """Non-seekable reads of at most ``step`` bytes, like a pipe."""

    def __init__(self, data: bytes, step: int):
        self._data, self._pos, self._step = data, 0, step

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        n = min(len(buffer), self._step, len(self._data) - self._pos)
        buffer[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


# -- seed files --------------------------------------------------------------------------------
def built_seeds() -> dict[str, bytes]:
    """Files with more structure than the small vectors: long GOPs, side and ancillary chunks."""
    out: dict[str, bytes] = {}
    video = Header(media="video", width=64, height=48, fps_num=25, frame_count=0, codec_params=b'{"gop":8}')
    buf = io.BytesIO()
    with ContainerWriter(buf, video) as writer:
        for i in range(30):
            if i % 7 == 3:
                writer.write_chunk(b"meta", bytes([i]) * 9)
            writer.write_frame(hashlib.sha256(bytes([i])).digest() * (1 + i % 3), key=i % 8 == 0)
    out["built:video30"] = buf.getvalue()
    image = Header(media="image", width=640, height=480, channels=4, pixel_format="rgba32", frame_count=1)
    buf = io.BytesIO()
    with ContainerWriter(buf, image) as writer:
        if b"ALPH" in _registered():  # the image codec's alpha side chunk, once registered
            writer.write_chunk(b"ALPH", b"\x01" + bytes(100))
        writer.write_frame(bytes(range(256)) * 2, key=True)
    out["built:image_rgba"] = buf.getvalue()
    return out


def _registered() -> set[bytes]:
    from vqcodec.container import spec

    return set(spec.CHUNK_TYPES)


def seed_files() -> dict[str, bytes]:
    seeds: dict[str, bytes] = {}
    manifest = json.loads((VECTORS / "manifest.json").read_text())
    for entry in sorted(manifest["vectors"], key=lambda e: e["file"]):
        if entry["valid"]:
            seeds[entry["file"]] = (VECTORS / entry["file"]).read_bytes()
    seeds.update(built_seeds())
    return seeds


def chunk_spans(data: bytes) -> list[tuple[int, int, bytes]]:
    """(offset, data length, type) of each chunk of a valid file, from offset 12."""
    spans, pos = [], 12
    while pos + 8 <= len(data):
        length, chunk_type = struct.unpack_from("<I4s", data, pos)
        spans.append((pos, length, chunk_type))
        pos += 12 + length
    return spans


def make_chunk(chunk_type: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(chunk_type + body)
    return struct.pack("<I4s", len(body), chunk_type) + body + struct.pack("<I", crc)


# -- mutators: (data, spans, other seed, rng) -> mutated bytes --------------------------------
def m_bitflip(d: bytes, spans, other: bytes, rng: random.Random) -> bytes:
    out = bytearray(d)
    for _ in range(rng.randrange(1, 9)):
        out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def m_overwrite(d: bytes, spans, other: bytes, rng: random.Random) -> bytes:
    out = bytearray(d)
    at = rng.randrange(len(out))
    out[at : at + rng.randrange(1, 17)] = rng.randbytes(rng.randrange(1, 17))
    return bytes(out)


def m_splice(d: bytes, spans, other: bytes, rng: random.Random) -> bytes:
    source = other if rng.random() < 0.5 else d
    a = rng.randrange(len(source))
    piece = source[a : a + rng.randrange(1, 200)]
    at = rng.randrange(len(d))
    return d[:at] + piece + d[at + len(piece) :]


def m_insert_delete(d: bytes, spans, other: bytes, rng: random.Random) -> bytes:
    at = rng.randrange(len(d))
    n = rng.randrange(1, 64)
    return d[:at] + d[at + n :] if rng.random() < 0.5 else d[:at] + rng.randbytes(n) + d[at:]


def m_truncate(d: bytes, spans, other: bytes, rng: random.Random) -> bytes:
    return d[: rng.randrange(len(d))]


def m_lying_length(d: bytes, spans, other: bytes, rng: random.Random) -> bytes:
    offset, length, _ = rng.choice(spans)
    value = rng.choice([0, 1, 4, 5, 11, 12, length - 1, length + 1, 2**20, 2**28 + 1, 2**31, 2**32 - 1])
    return d[:offset] + struct.pack("<I", max(0, min(value, 2**32 - 1))) + d[offset + 4 :]


def m_crc_fixed_data(d: bytes, spans, other: bytes, rng: random.Random) -> bytes:
    """Edit bytes inside one chunk's data and recompute its CRC: the checks past the CRC see it."""
    offset, length, chunk_type = rng.choice(spans)
    body = bytearray(d[offset + 8 : offset + 8 + length])
    if body:
        for _ in range(rng.randrange(1, 4)):
            at = rng.randrange(len(body))
            body[at] = rng.choice([0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)])
    if rng.random() < 0.3:
        cut = rng.randrange(len(body) + 1)
        body = body[:cut] if rng.random() < 0.5 else body + rng.randbytes(rng.randrange(1, 16))
    return d[:offset] + make_chunk(chunk_type, bytes(body)) + d[offset + 12 + length :]


def m_chunk_type(d: bytes, spans, other: bytes, rng: random.Random) -> bytes:
    offset, length, _ = rng.choice(spans)
    if rng.random() < 0.7:
        new_type = rng.choice(CHUNK_TYPES)
    else:
        new_type = bytes(rng.choice(b"aAzZqQ") for _ in range(4))
    return d[:offset] + make_chunk(new_type, d[offset + 8 : offset + 8 + length]) + d[offset + 12 + length :]


def m_chunk_order(d: bytes, spans, other: bytes, rng: random.Random) -> bytes:
    """Drop, duplicate or swap whole chunks (CRCs stay valid)."""
    chunks = [d[o : o + 12 + n] for o, n, _ in spans]
    op = rng.randrange(3)
    i = rng.randrange(len(chunks))
    if op == 0:
        del chunks[i]
    elif op == 1:
        chunks.insert(rng.randrange(len(chunks) + 1), chunks[i])
    else:
        j = rng.randrange(len(chunks))
        chunks[i], chunks[j] = chunks[j], chunks[i]
    return d[:12] + b"".join(chunks)


def m_header_fields(d: bytes, spans, other: bytes, rng: random.Random) -> bytes:
    """Set one HEAD field to an edge value and recompute the CRC."""
    offset, length, chunk_type = spans[0]
    body = bytearray(d[offset + 8 : offset + 8 + length])
    # (offset, size) of media, channels, width, height, fps_num, fps_den, frame_count, full_range,
    # quality and the pixel_format length
    fields = [(0, 1), (1, 1), (2, 4), (6, 4), (10, 4), (14, 4), (18, 4), (25, 1), (26, 2), (60, 1)]
    at, size = rng.choice(fields)
    edge = [0, 1, 2, 255, 2**16 - 1, 2**24, 2**31, 2**32 - 1, rng.randrange(2**32)]
    value = rng.choice(edge) % (1 << (8 * size))
    body[at : at + size] = value.to_bytes(size, "little")
    return d[:offset] + make_chunk(chunk_type, bytes(body)) + d[offset + 12 + length :]


MUTATORS: dict[str, Callable[..., bytes]] = {
    "bitflip": m_bitflip,
    "overwrite": m_overwrite,
    "splice": m_splice,
    "insert_delete": m_insert_delete,
    "truncate": m_truncate,
    "lying_length": m_lying_length,
    "crc_fixed_data": m_crc_fixed_data,
    "chunk_type": m_chunk_type,
    "chunk_order": m_chunk_order,
    "header_fields": m_header_fields,
}
MODES = ("pipe", "seekable", "info")


# -- one case ----------------------------------------------------------------------------------
def read_case(data: bytes, mode: str, rng: random.Random) -> None:
    if mode == "pipe":
        with ContainerReader(Pipe(data, rng.randrange(1, 4096))) as reader:
            for _ in reader.frames():
                pass
    elif mode == "seekable":
        with ContainerReader(io.BytesIO(data)) as reader:
            count = sum(1 for _ in reader.frames())
            for _ in range(3):
                target = rng.randrange(max(count, 1) + 2)
                try:
                    reader.seek(target)
                except IndexError:
                    continue  # out of range for this (mutated) file: a documented outcome
                for _ in reader.frames():
                    pass
    else:
        _, error = inspect(io.BytesIO(data))
        if error is not None:
            raise error


Seed = tuple[str, bytes, list]


def run_case(case_seed: int, seeds: list[Seed]) -> tuple[str, str, str, bytes, random.Random]:
    """(seed file, mutator, read mode, mutated bytes, rng for the read) of one case."""
    rng = random.Random(case_seed)
    name, data, spans = seeds[rng.randrange(len(seeds))]
    other = seeds[rng.randrange(len(seeds))][1]
    mutator = rng.choice(sorted(MUTATORS))
    mutated = MUTATORS[mutator](data, spans, other, rng)
    mode = rng.choice(MODES)
    return name, mutator, mode, mutated, rng


def _alarm(signum, frame):
    raise Hang()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000, help="number of mutated files (default 100000)")
    parser.add_argument("--seed", type=int, default=0, help="campaign seed (default 0)")
    parser.add_argument("--time-cap", type=float, default=2.0, help="seconds allowed per case (default 2)")
    parser.add_argument("--replay", type=int, help="rerun one case seed and print its traceback")
    parser.add_argument("--out", type=Path, default=RESULTS / "fuzz_container.json", help="JSON summary path")
    args = parser.parse_args(argv)

    seed_map = seed_files()
    seeds = [(name, data, chunk_spans(data)) for name, data in seed_map.items()]
    seeds = [s for s in seeds if s[2]]

    if args.replay is not None:
        name, mutator, mode, mutated, rng = run_case(args.replay, seeds)
        print(f"case {args.replay}: seed file {name}, mutator {mutator}, mode {mode}, {len(mutated)} bytes")
        try:
            read_case(mutated, mode, rng)
            print("outcome: ok")
        except VQCError as exc:
            print(f"outcome: {type(exc).__name__}: {exc}")
        return 0

    signal.signal(signal.SIGALRM, _alarm)
    outcomes: collections.Counter[str] = collections.Counter()
    by_mutator: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    by_mode: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    unexpected: list[dict] = []
    hangs: list[dict] = []
    slowest = (0.0, -1)
    start = time.perf_counter()
    for i in range(args.cases):
        case_seed = args.seed * 2**32 + i
        name, mutator, mode, mutated, rng = run_case(case_seed, seeds)
        t0 = time.perf_counter()
        try:
            signal.setitimer(signal.ITIMER_REAL, args.time_cap)
            try:
                read_case(mutated, mode, rng)
                outcome = "ok"
            except VQCError as exc:
                outcome = type(exc).__name__
            except Exception as exc:  # anything else is a bug in the reader
                outcome = "unexpected"
                unexpected.append(
                    {
                        "case_seed": case_seed,
                        "seed_file": name,
                        "mutator": mutator,
                        "mode": mode,
                        "exception": f"{type(exc).__name__}: {exc}",
                        "where": traceback.format_exc().strip().splitlines()[-3:],
                    }
                )
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except Hang:  # also when the timer fires while it is being stopped: the case took too long
            outcome = "hang"
            hangs.append({"case_seed": case_seed, "seed_file": name, "mutator": mutator, "mode": mode})
        elapsed = time.perf_counter() - t0
        slowest = max(slowest, (elapsed, case_seed))
        outcomes[outcome] += 1
        by_mutator[mutator][outcome] += 1
        by_mode[mode][outcome] += 1
    total = time.perf_counter() - start

    columns = sorted(outcomes, key=lambda o: (o in ("unexpected", "hang"), -outcomes[o]))
    summary = {
        "benchmark": "fuzz_container",
        "cases": args.cases,
        "seed": args.seed,
        "time_cap_s": args.time_cap,
        "seconds": round(total, 2),
        "cases_per_second": round(args.cases / total, 1) if total else None,
        "slowest_case_ms": round(slowest[0] * 1000, 2),
        "slowest_case_seed": slowest[1],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "outcomes": dict(outcomes.most_common()),
        "unexpected_count": len(unexpected),
        "hang_count": len(hangs),
        "by_mutator": {m: dict(c.most_common()) for m, c in sorted(by_mutator.items())},
        "by_mode": {m: dict(c.most_common()) for m, c in sorted(by_mode.items())},
        "unexpected": unexpected[:100],
        "hangs": hangs[:100],
        "seed_files": {name: hashlib.sha256(data).hexdigest()[:16] for name, data, _ in seeds},
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1) + "\n")

    width = max(len(m) for m in [*by_mutator, "mutator", "total"])
    print(f"{'mutator':<{width}} " + " ".join(f"{c:>15}" for c in columns) + f" {'total':>8}")
    for mutator, counts in sorted(by_mutator.items()):
        cells = " ".join(f"{counts.get(c, 0):>15}" for c in columns)
        print(f"{mutator:<{width}} {cells} {sum(counts.values()):>8}")
    print(f"{'total':<{width}} " + " ".join(f"{outcomes[c]:>15}" for c in columns) + f" {args.cases:>8}")
    print(
        f"\n{args.cases} cases in {total:.1f} s ({args.cases / total:.0f}/s), "
        f"slowest {slowest[0] * 1000:.1f} ms, "
        f"peak RSS {summary['peak_rss_mb']} MB; unexpected {len(unexpected)}, hangs {len(hangs)}"
    )
    for item in unexpected[:10]:
        print(f"UNEXPECTED case {item['case_seed']} ({item['mutator']}, {item['mode']}): {item['exception']}")
    print(f"summary: {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}")
    return 1 if unexpected or hangs else 0


if __name__ == "__main__":
    sys.exit(main())
