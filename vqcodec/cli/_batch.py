"""Shared plumbing of ``vqcodec encode`` and ``vqcodec decode``: output naming, batches, reports.

Output naming (``plan_jobs``):
- one input, no output: ``IN`` with the new extension beside it (``-`` stays stdout);
- ``-o FILE`` with one input: that file; ``-o -``: stdout;
- several inputs, or ``-o DIR/`` (an existing folder or a name ending in ``/``): one output
  per input in that folder (created when missing), named after the input's stem;
  several inputs without ``-o``: each output beside its input.
Two inputs that would share an output name are refused (the second one fails), and an
input is never an output.

Batches run on a thread pool (``-j``), show a tqdm bar on a terminal (not with --quiet),
keep going past a failed file, print a summary or ``--json``, and exit 1 if any file failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from vqcodec.cli import CommandError, one_line


@dataclass
class Job:
    input: str
    output: str
    error: str | None = None  # set when the job is refused before it runs


@dataclass
class Outcome:
    """One file's result; ``info`` holds command-specific fields (width, height, quality, bpp...)."""

    input: str
    output: str
    ok: bool
    error: str | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    pixels: int = 0
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def bpp(self) -> float | None:
        bits = self.info.get("bits", 8 * self.bytes_out)
        return bits / self.pixels if self.ok and self.pixels else None


def add_batch_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("--json", action="store_true", help="print a JSON report instead of text")
    p.add_argument(
        "-j", "--jobs", type=int, default=1, metavar="WORKERS", help="files coded in parallel (default 1)"
    )


def is_dir_target(output: str | None) -> bool:
    return output is not None and output != "-" and (output.endswith(("/", os.sep)) or os.path.isdir(output))


def split_paths(
    paths: list[str], output: str | None, *, output_is_vqc: bool
) -> tuple[list[str], str | None]:
    """Resolve the positional forms: ``IN OUT`` where OUT is ``-``, a folder, or a file whose
    ``.vqc`` suffix says it is an output (``output_is_vqc``: encode) or not one (decode)."""
    if output is not None or len(paths) < 2:
        return paths, output
    last = paths[-1]
    if is_dir_target(last):
        return paths[:-1], last
    if len(paths) == 2 and (last == "-" or last.lower().endswith(".vqc") == output_is_vqc or paths[0] == "-"):
        return paths[:1], last
    return paths, output


def plan_jobs(inputs: list[str], output: str | None, *, suffix_for: Callable[[str], str]) -> list[Job]:
    """One Job per input with its output path (see the module docstring for the rules)."""
    if not inputs:
        raise CommandError("no input files")
    if inputs.count("-") > 1 or ("-" in inputs and len(inputs) > 1):
        raise CommandError("stdin ('-') can only be the only input")
    batch = len(inputs) > 1 or is_dir_target(output)
    if not batch:
        source = inputs[0]
        if output is None:
            output = "-" if source == "-" else str(Path(source).with_suffix(suffix_for(source)))
        return [Job(source, output)]
    if output == "-":
        raise CommandError("several inputs cannot all go to stdout; give -o DIR/")
    folder = Path(output) if output is not None else None
    if folder is not None and folder.exists() and not folder.is_dir():
        raise CommandError(f"{output} is not a folder (several inputs need -o DIR/)")
    jobs: list[Job] = []
    seen: dict[str, str] = {}
    resolved_inputs = {os.path.abspath(i) for i in inputs}
    for source in inputs:
        name = Path(source).with_suffix(suffix_for(source)).name
        target = (
            str(folder / name) if folder is not None else str(Path(source).with_suffix(suffix_for(source)))
        )
        key = os.path.abspath(target)
        job = Job(source, target)
        if key in seen:
            job.error = f"output {target} would also be written for {seen[key]}"
        elif key in resolved_inputs:
            job.error = f"output {target} is one of the inputs"
        seen.setdefault(key, source)
        jobs.append(job)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    return jobs


def check_output_free(job: Job, force: bool) -> None:
    """Fail early (before any coding work) when the output exists and --force was not given."""
    if job.output != "-" and not force and os.path.exists(job.output):
        raise FileExistsError(f"{job.output} exists (use --force to overwrite)")


def run_jobs(
    jobs: list[Job], work: Callable[[Job], Outcome], *, workers: int, progress: bool, desc: str
) -> list[Outcome]:
    """Run ``work`` on every job (in order of the results list), never stopping at a failure."""
    from tqdm import tqdm

    def guarded(job: Job) -> Outcome:
        if job.error is not None:
            return Outcome(job.input, job.output, ok=False, error=job.error)
        start = time.perf_counter()
        try:
            return work(job)
        except Exception as exc:  # one bad file does not stop the batch
            return Outcome(
                job.input, job.output, ok=False, error=one_line(exc), seconds=time.perf_counter() - start
            )

    bar = tqdm(total=len(jobs), desc=desc, unit="file", disable=not progress, file=sys.stderr, leave=False)
    results: list[Outcome | None] = [None] * len(jobs)
    try:
        if workers <= 1 or len(jobs) == 1:
            for i, job in enumerate(jobs):
                results[i] = guarded(job)
                _note_failure(bar, results[i], progress)
                bar.update(1)
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                futures = {pool.submit(guarded, job): i for i, job in enumerate(jobs)}
                from concurrent.futures import as_completed

                for future in as_completed(futures):
                    i = futures[future]
                    results[i] = future.result()
                    _note_failure(bar, results[i], progress)
                    bar.update(1)
    finally:
        bar.close()
    return [r for r in results if r is not None]


def _note_failure(bar: Any, outcome: Outcome | None, progress: bool) -> None:
    if outcome is not None and not outcome.ok and progress:
        bar.write(f"vqcodec: error: {outcome.input}: {outcome.error}", file=sys.stderr)


def configure_threads(workers: int) -> None:
    """Split the cores between parallel files: each torch call gets cores // workers threads."""
    if workers > 1:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def report(
    command: str,
    outcomes: list[Outcome],
    *,
    seconds: float,
    as_json: bool,
    quiet: bool,
    stream: TextIO,
    line: Callable[[Outcome], str],
) -> int:
    """Print the per-file lines (or JSON) and the summary; return the exit status."""
    failed = [o for o in outcomes if not o.ok]
    ok = [o for o in outcomes if o.ok]
    bpps = [o.bpp for o in ok if o.bpp is not None]
    summary = {
        "files": len(outcomes),
        "ok": len(ok),
        "failed": len(failed),
        "bytes_in": sum(o.bytes_in for o in ok),
        "bytes_out": sum(o.bytes_out for o in ok),
        "mean_bpp": sum(bpps) / len(bpps) if bpps else None,
        "seconds": round(seconds, 4),
    }
    if as_json:
        files = []
        for o in outcomes:
            entry = asdict(o)
            entry.update(entry.pop("info"))
            entry.pop("bits", None)
            entry["bpp"] = o.bpp
            entry["seconds"] = round(o.seconds, 4)
            files.append(entry)
        print(json.dumps({"command": command, "files": files, "summary": summary}, indent=2), file=stream)
        stream.flush()
        return 1 if failed else 0
    single = len(outcomes) == 1
    for o in outcomes:
        if not o.ok:
            # a single failure goes through the dispatcher's one-line error; batches print each
            if single:
                raise CommandError(f"{o.input}: {o.error}" if o.input != "-" else str(o.error))
            print(f"vqcodec: error: {o.input}: {o.error}", file=sys.stderr)
        elif not quiet and (single or len(outcomes) <= 20):
            text = line(o)
            if text:  # video outcomes are reported by the video module itself
                print(text, file=stream)
    if not quiet and not single:
        mean = f", mean {summary['mean_bpp']:.4f} bpp" if summary["mean_bpp"] is not None else ""
        print(
            f"{command}: {len(ok)}/{len(outcomes)} files ok ({len(failed)} failed), "
            f"{summary['bytes_in']} bytes in, {summary['bytes_out']} bytes out{mean}, {seconds:.2f} s",
            file=stream,
        )
    stream.flush()
    return 1 if failed else 0


def message_stream(jobs: list[Job]) -> TextIO:
    """Human and JSON reports go to stderr when stdout carries data."""
    return sys.stderr if any(j.output == "-" for j in jobs) else sys.stdout


@contextlib.contextmanager
def cli_warnings(quiet: bool) -> Iterator[None]:
    """Show library warnings (e.g. 16-bit input rounded to 8 bits) as one line each on stderr."""
    from vqcodec.codec.media import PrecisionWarning

    def show(
        message: Any, category: Any, filename: Any, lineno: Any, file: Any = None, line: Any = None
    ) -> None:
        print(f"vqcodec: warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():  # restores the filters and showwarning on exit
        if quiet:
            warnings.simplefilter("ignore")
        else:
            warnings.filterwarnings("always", category=PrecisionWarning)
            warnings.showwarning = show
        yield


def video_module() -> Any:
    """The video CLI module (vqcodec/cli/_video.py), or None when this build has no video support."""
    import importlib

    try:
        return importlib.import_module("vqcodec.cli._video")
    except ModuleNotFoundError as exc:
        if exc.name == "vqcodec.cli._video":
            return None
        raise


VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".h264", ".264", ".y4m")


def is_video_path(path: str) -> bool:
    module = video_module()
    if module is not None:
        return bool(module.is_video_path(path))
    return path.lower().endswith(VIDEO_EXTENSIONS)


def video_args(args: argparse.Namespace, job: Job) -> argparse.Namespace:
    """A copy of ``args`` for one video file: ``input``/``output`` (and ``inputs``) name that file."""
    ns = argparse.Namespace(**vars(args))
    ns.input, ns.output, ns.inputs = job.input, job.output, [job.input]
    return ns


def run_video(kind: str, args: argparse.Namespace, job: Job) -> Outcome:
    module = video_module()
    if module is None:
        raise CommandError(f"{job.input}: video support is not available in this build")
    start = time.perf_counter()
    func = module.encode_video if kind == "encode" else module.decode_video
    status = int(func(video_args(args, job)) or 0)
    outcome = Outcome(job.input, job.output, ok=status == 0, seconds=time.perf_counter() - start)
    if status != 0:
        outcome.error = f"video {kind} failed (exit status {status})"
    for name, path in (("bytes_in", job.input), ("bytes_out", job.output)):
        if path != "-" and os.path.isfile(path):
            setattr(outcome, name, os.path.getsize(path))
    outcome.info["media"] = "video"
    return outcome
