"""CLI speed as users measure it: wall time of one cold ``vqcodec`` process per command.

Every row is a fresh ``python -m vqcodec ...`` process (torch import and model load included),
timed from start to exit, next to the same work through Pillow's WebP (libwebp, the
``cwebp``/``dwebp`` equivalent) in cold processes too, all in the same run on the same machine:

  reject    ``encode photo.png -q 99`` and ``encode missing.png`` (must fail before torch)
  image     encode / decode of a ~1-megapixel photo from ../shared/data/train (downscaled into a
            temporary folder), at the default quality, ``--threads 1`` and ``--threads 2``
  video     encode / decode of the first ``--frames`` frames of a CIF clip from ../shared/data/video
  webp      Pillow WebP encode (quality 80, method 4) / decode of the same photo

``--before DIR`` also times a second copy of the package (e.g. ``git archive REV vqcodec | tar -x
-C DIR``) with PYTHONPATH=DIR, for before/after tables. The load of the machine is recorded
(os.getloadavg) because cold-process times on a shared machine move with it.

Usage: python benchmarks/cli_speed.py [--frames 8] [--repeat 1] [--before DIR] [--out PATH]
Writes benchmarks/results/cli_speed.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = REPO.parent / "shared" / "data"
TARGET_PIXELS = 1_000_000


def prepare_photo(folder: Path) -> Path:
    """The first training photo of at least 1 MP (sorted by path), downscaled (Lanczos) to about
    1 MP, saved as PNG in ``folder``; smaller photos are not upscaled, so they are skipped."""
    from PIL import Image

    candidates = sorted(p for p in (DATA / "train").rglob("*") if p.suffix.lower() in (".jpg", ".png"))
    big = []
    for path in candidates:
        with Image.open(path) as probe:
            if probe.width * probe.height >= TARGET_PIXELS:
                big.append(path)
                break
    if not big:
        raise SystemExit(f"no photo of at least {TARGET_PIXELS} pixels under {DATA / 'train'}")
    with Image.open(big[0]) as image:
        image = image.convert("RGB")
        scale = (TARGET_PIXELS / (image.width * image.height)) ** 0.5
        if scale < 1:
            image = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
        out = folder / "photo.png"
        image.save(out)
    return out


def pick_clip() -> Path:
    clips = sorted((DATA / "video").glob("*_cif_*.y4m"))
    if not clips:
        raise SystemExit(f"no CIF clip in {DATA / 'video'}")
    return clips[0]


def timed(argv: list[str], *, cwd: Path, env: dict[str, str], repeat: int, expect: int = 0) -> dict[str, Any]:
    """Best wall time of ``repeat`` cold runs of ``argv``; the exit status must be ``expect``."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if result.returncode != expect:
            raise SystemExit(f"{' '.join(argv)} exited {result.returncode}: {result.stderr.strip()[-500:]}")
        best = min(best, seconds)
    return {"seconds": round(best, 3), "load": round(os.getloadavg()[0], 2)}


def run_cli_rows(
    label: str, pythonpath: str | None, photo: Path, clip: Path, frames: int, repeat: int, folder: Path
) -> list[dict[str, Any]]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    vq = [sys.executable, "-m", "vqcodec"]
    old = pythonpath is not None  # the old CLI has no --threads and says -q for quiet in decode
    rows: list[dict[str, Any]] = []

    def row(name: str, argv: list[str], expect: int = 0, **extra: Any) -> None:
        result = timed(argv, cwd=folder, env=env, repeat=repeat, expect=expect)
        rows.append({"version": label, "command": name, **extra, **result})
        print(f"  {label:6s} {name:28s} {result['seconds']:8.2f} s  (load {result['load']})", flush=True)

    row("reject -q 99", [*vq, "encode", str(photo), "x.vqc", "-q", "99"], expect=1)
    row("reject missing file", [*vq, "encode", "missing.png", "x.vqc"], expect=1)
    for threads in (1,) if old else (1, 2):
        opt = [] if old else ["--threads", str(threads)]
        vqc, png = f"photo_{label}_{threads}.vqc", f"photo_{label}_{threads}.png"
        row(f"image encode ({threads} thr)", [*vq, "encode", str(photo), vqc, "-f", "--quiet", *opt])
        row(f"image decode ({threads} thr)", [*vq, "decode", vqc, png, "-f", "--quiet", *opt])
        cvqc, y4m = f"clip_{label}_{threads}.vqc", f"clip_{label}_{threads}.y4m"
        span = ["--frames", f"0:{frames}"]
        row(f"video encode ({threads} thr)", [*vq, "encode", str(clip), cvqc, "-f", "--quiet", *span, *opt])
        row(f"video decode ({threads} thr)", [*vq, "decode", cvqc, y4m, "-f", "--quiet", *opt])
    return rows


def run_webp_rows(photo: Path, repeat: int, folder: Path) -> list[dict[str, Any]]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    encode = f"from PIL import Image; Image.open({str(photo)!r}).save('photo.webp', quality=80, method=4)"
    decode = "from PIL import Image; Image.open('photo.webp').load()"
    rows = []
    for name, code in (("webp encode (Pillow)", encode), ("webp decode (Pillow)", decode)):
        result = timed([sys.executable, "-c", code], cwd=folder, env=env, repeat=repeat)
        rows.append({"version": "pillow", "command": name, **result})
        print(f"  pillow {name:28s} {result['seconds']:8.2f} s  (load {result['load']})", flush=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import PIL.Image"], env=env, check=True)
    rows.append(
        {
            "version": "pillow",
            "command": "python + PIL import only",
            "seconds": round(time.perf_counter() - start, 3),
        }
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=8, help="frames of the CIF clip (default 8)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per command, best kept (default 1)")
    parser.add_argument("--before", metavar="DIR", help="a second package copy to time (PYTHONPATH=DIR)")
    parser.add_argument("--out", default=str(HERE / "results" / "cli_speed.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cli_speed_") as tmp:
        folder = Path(tmp)
        photo = prepare_photo(folder)
        clip = pick_clip()
        from PIL import Image

        with Image.open(photo) as image:
            size = image.size
        print(
            f"photo {size[0]}x{size[1]} ({size[0] * size[1] / 1e6:.2f} MP), clip {clip.name}[:{args.frames}]"
        )
        rows = run_cli_rows("after", None, photo, clip, args.frames, args.repeat, folder)
        if args.before:
            rows += run_cli_rows(
                "before", str(Path(args.before).resolve()), photo, clip, args.frames, args.repeat, folder
            )
        rows += run_webp_rows(photo, args.repeat, folder)
        photo_bytes = {p.name: p.stat().st_size for p in folder.iterdir() if p.suffix in (".vqc", ".webp")}
    print()
    print(f"{'version':8s} {'command':30s} {'wall s':>8s}")
    for r in rows:
        print(f"{r['version']:8s} {r['command']:30s} {r['seconds']:8.2f}")
    report = {
        "photo_size": list(size),
        "clip": clip.name,
        "frames": args.frames,
        "repeat": args.repeat,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "file_bytes": photo_bytes,
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
