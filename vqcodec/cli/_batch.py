"""Shared plumbing of ``vqcodec encode`` and ``vqcodec decode``: output naming, batches, reports.

Output naming (``plan_jobs``):
- one input, no output: ``IN`` with the new extension beside it (``-`` stays stdout); for
  decode the extension is appended (``photo.vqc`` -> ``photo.vqc.png``) so that a default
  name can never be the picture the ``.vqc`` was made from;
- ``-o FILE`` with one input: that file; ``-o -``: stdout;
- several inputs, or ``-o DIR/`` (an existing folder or a name ending in ``/``): one output
  per input in that folder (created when missing), named after the input's stem;
  several inputs without ``-o``: each output beside its input (named as for one input).
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
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from vqcodec.cli import CommandError, one_line


class OutputError(CommandError):
    """The output cannot be written (exists, folder missing or read-only): names the output."""


@dataclass
class Job:
    input: str
    output: str
    error: str | None = None  # set when the job is refused before it runs
    error_names_file: bool = False  # the error already names the file at fault (the output)


@dataclass
class Outcome:
    """One file's result; ``info`` holds command-specific fields (width, height, quality, bpp...)."""

    input: str
    output: str
    ok: bool
    error: str | None = None
    error_names_file: bool = False
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
    add_threads_option(p)


# Measured in benchmarks/cli_speed.py: on a busy 2-core machine 2 torch threads ran image
# encode about as fast as 1 and video 4x slower, while on idle cores they help only a little
# (see README "Threads"); extra threads are opt-in.
DEFAULT_THREADS = 1


def add_threads_option(p: argparse.ArgumentParser, per: str = "file") -> None:
    """``--threads N``: torch intra-op threads per ``per`` (a file coded, or a training process)."""
    workers = " With -j WORKERS the default is 1 thread per worker" if per == "file" else ""
    p.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help=f"CPU threads per {per} (default {DEFAULT_THREADS}; 0 = one per core).{workers}",
    )


def add_device_option(p: argparse.ArgumentParser) -> None:
    """``--device cpu|auto|cuda``: where the network runs (the codes never depend on it).

    The default is the CPU, as for the library: decoded pixels are then the same as
    ``decode_image``'s and as on any machine with the same torch build, and no CUDA context is
    made unasked; ``auto`` takes CUDA when there is one.
    """
    p.add_argument(
        "--device",
        default="cpu",
        metavar="DEV",
        help="cpu (default), auto (CUDA when available) or cuda[:N]: where pictures are synthesised; "
        "the codes, and so the file's bytes, are the same on every device (video runs on the CPU)",
    )


def check_device(args: argparse.Namespace) -> None:
    """An unknown device, or cuda on a machine without it: one line, exit 1, before any model loads.

    ``auto`` and ``cpu`` cost no torch import here; ``cuda`` imports torch to ask it.
    """
    from vqcodec.models.device import DeviceError, check_device_name, cuda_problem

    try:
        name = check_device_name(getattr(args, "device", "cpu"))
    except DeviceError as exc:
        raise CommandError(str(exc)) from None
    problem = cuda_problem(name) if name.startswith("cuda") else None
    if problem is not None:
        raise CommandError(problem)
    args.device = name


def check_counts(args: argparse.Namespace) -> None:
    """-j and --threads are checked before any work (and before torch is imported)."""
    if getattr(args, "jobs", 1) < 1:
        raise CommandError(f"-j/--jobs must be >= 1, got {args.jobs}")
    threads = getattr(args, "threads", None)
    if threads is not None and threads < 0:
        raise CommandError(f"--threads must be >= 0 (0 = one per core), got {threads}")


def configure_threads(threads: int | None, workers: int = 1) -> int:
    """Set torch's intra-op threads for this process; return the count set.

    ``threads`` None is :data:`DEFAULT_THREADS`; 0 means one per core, shared between the
    ``workers`` files coded in parallel.
    """
    import torch

    if threads is None:
        threads = DEFAULT_THREADS
    if threads == 0:
        threads = max(1, (os.cpu_count() or 1) // max(1, workers))
    torch.set_num_threads(threads)
    return threads


def is_dir_target(output: str | None) -> bool:
    return output is not None and output != "-" and (output.endswith(("/", os.sep)) or os.path.isdir(output))


def split_paths(paths: list[str], output: str | None, *, output_is_vqc: bool) -> tuple[list[str], str | None]:
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


def plan_jobs(
    inputs: list[str], output: str | None, *, suffix_for: Callable[[str], str], append_suffix: bool = False
) -> list[Job]:
    """One Job per input with its output path (see the module docstring for the rules).

    ``append_suffix``: outputs beside their input are named ``IN + suffix`` (decode), not
    ``IN`` with its suffix replaced (encode).
    """

    def beside(source: str) -> str:
        suffix = suffix_for(source)
        return source + suffix if append_suffix else str(Path(source).with_suffix(suffix))

    if not inputs:
        raise CommandError("no input files")
    if inputs.count("-") > 1 or ("-" in inputs and len(inputs) > 1):
        raise CommandError("stdin ('-') can only be the only input")
    batch = len(inputs) > 1 or is_dir_target(output)
    if not batch:
        source = inputs[0]
        if output is None:
            output = "-" if source == "-" else beside(source)
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
        target = str(folder / name) if folder is not None else beside(source)
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


def check_input(job: Job) -> None:
    """A missing, unreadable, empty or folder input is refused before torch is imported."""
    if job.input == "-" or job.error is not None:
        return
    path = job.input
    if not os.path.exists(path):
        job.error = "no such file"
    elif os.path.isdir(path):
        job.error = "is a folder, not a file"
    elif not os.access(path, os.R_OK):
        job.error = "permission denied"
    elif os.path.isfile(path) and os.path.getsize(path) == 0:
        job.error = "empty file"


def check_output(job: Job, force: bool) -> None:
    """Check (and prepare) the destination before any coding work; errors name the output.

    An existing output needs ``force``; a folder in the way is refused; missing parent folders
    are created (as for a batch's ``-o DIR/``); the folder must be writable.
    """
    if job.output == "-":
        if stdout_is_terminal():
            raise OutputError(
                "refusing to write binary data to a terminal: redirect stdout or give an output file"
            )
        return
    path = job.output
    if os.path.isdir(path):
        raise OutputError(f"output {path} is a folder")
    if os.path.lexists(path) and not force:
        raise OutputError(f"output {path} exists (use --force to overwrite)")
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the folder of output {path}: {exc.strerror or exc}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write output {path}: folder {folder} is not writable")


def stdout_is_terminal() -> bool:
    isatty = getattr(sys.stdout, "isatty", None)
    return bool(isatty is not None and isatty())


@contextlib.contextmanager
def output_file(job: Job, force: bool) -> Iterator[Any]:
    """``atomic_output`` for ``job.output``, whose OS errors name the output, not a temp file."""
    from vqcodec._io import atomic_output

    try:
        with atomic_output(job.output, force=force, inputs=(job.input,)) as f:
            yield f
    except BrokenPipeError:
        raise
    except OSError as exc:
        if job.output == "-" or isinstance(exc, FileExistsError) and "input" in str(exc):
            raise
        raise OutputError(f"cannot write output {job.output}: {exc.strerror or exc}") from None


def preflight(jobs: list[Job], force: bool) -> None:
    """Input and output checks of every job before any work: a single job fails at once."""
    for job in jobs:
        check_input(job)
        if job.error is None:
            try:
                check_output(job, force)
            except OutputError as exc:
                job.error, job.error_names_file = str(exc), True
    if len(jobs) == 1 and jobs[0].error is not None:
        job = jobs[0]
        named = job.error_names_file
        refused = Outcome(job.input, job.output, ok=False, error=job.error, error_names_file=named)
        raise CommandError(error_text(refused, single=True))


def quick_levels(model: str | None, media: str = "image") -> int | None:
    """The quality levels of ``model`` read from the registry or a bundle's JSON header, without
    torch; None when they cannot be told this way (the codec then checks the level itself)."""
    from vqcodec.models import zoo

    try:
        if model is None:
            model = zoo.DEFAULT_IMAGE_MODEL if media == "image" else zoo.DEFAULT_VIDEO_MODEL
        if any(m.name == model for m in zoo.REGISTRY):
            config = zoo.model_info(model).config
        elif os.path.isfile(model):
            config = json.loads(_safetensors_metadata(model).get("config", "{}"))
        else:
            return None
        config = config.get("image", config) if media == "image" else config
        # RVQ stages, qps or scalar step sizes per level
        stages = config.get("quality_stages", config.get("quality_qp", config.get("steps")))
        return len(stages) if isinstance(stages, list) and stages else None
    except (OSError, ValueError, KeyError, AttributeError):
        return None


def check_model_name(model: str | None) -> None:
    """A --model that is neither a bundled name nor a file: UnknownModelError, without torch."""
    from vqcodec.models import zoo

    if model is not None and not os.path.isfile(model):
        zoo.model_info(model)


class LazyModel:
    """The image model, loaded (with torch, threads set) by the first job that needs it, once
    per process; parallel jobs share it (the zoo's load is thread-safe and cached)."""

    def __init__(self, name: str | None, *, threads: int | None, workers: int) -> None:
        self.name, self.threads, self.workers = name, threads, workers
        self._lock = threading.Lock()
        self._model: Any = None
        self._configured = False

    def configure(self) -> None:
        with self._lock:
            if not self._configured:
                configure_threads(self.threads, self.workers)
                self._configured = True

    def get(self) -> Any:
        self.configure()
        with self._lock:
            if self._model is None:
                from vqcodec.codec.image import resolve_model

                self._model = resolve_model(self.name)
            return self._model


def _safetensors_metadata(path: str) -> dict[str, str]:
    # a safetensors file starts with an 8-byte little-endian length and that many bytes of JSON
    with open(path, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        if not 0 < size < 1 << 24:
            return {}
        header = json.loads(f.read(size))
    metadata = header.get("__metadata__", {}) if isinstance(header, dict) else {}
    return metadata if isinstance(metadata, dict) else {}


def is_vqc_file(path: str) -> bool:
    """The file starts with the .vqc magic (read without torch)."""
    from vqcodec.container.spec import MAGIC

    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


class Ticker:
    """An elapsed-time status line on a terminal for one long job (``encoding photo.png  3.4 s``).

    Shown on stderr only when it is a terminal and ``enabled``, and only once the job has run
    for ``delay`` seconds, so quick jobs and logs stay clean; the line is erased at the end.
    The codec gives no finer progress for one picture, so this says "still working", with time.
    """

    def __init__(self, desc: str, *, enabled: bool, delay: float = 2.0, period: float = 0.5) -> None:
        self.desc, self.delay, self.period = desc, delay, period
        self.enabled = enabled and bool(getattr(sys.stderr, "isatty", lambda: False)())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.shown = False

    def __enter__(self) -> Ticker:
        if self.enabled:
            self._start = time.perf_counter()
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        if self._stop.wait(self.delay):
            return
        while not self._stop.is_set():
            sys.stderr.write(f"\r{self.desc}  {time.perf_counter() - self._start:.1f} s ")
            sys.stderr.flush()
            self.shown = True
            self._stop.wait(self.period)

    def __exit__(self, *exc: Any) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            if self.shown:
                sys.stderr.write("\r\x1b[K")
                sys.stderr.flush()


_current = threading.local()  # the file a worker thread is coding, for warnings


def run_jobs(
    jobs: list[Job], work: Callable[[Job], Outcome], *, workers: int, progress: bool, desc: str
) -> list[Outcome]:
    """Run ``work`` on every job (in order of the results list), never stopping at a failure."""
    from tqdm import tqdm

    def guarded(job: Job) -> Outcome:
        if job.error is not None:
            return Outcome(
                job.input, job.output, ok=False, error=job.error, error_names_file=job.error_names_file
            )
        start = time.perf_counter()
        _current.name = job.input
        try:
            return work(job)
        except BrokenPipeError:
            raise  # the reader went away: the dispatcher exits quietly
        except Exception as exc:  # one bad file does not stop the batch
            return Outcome(
                job.input,
                job.output,
                ok=False,
                error=one_line(exc),
                error_names_file=isinstance(exc, OutputError),
                seconds=time.perf_counter() - start,
            )
        finally:
            _current.name = None

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
        bar.write(f"vqcodec: error: {error_text(outcome)}", file=sys.stderr)


def error_text(o: Outcome, *, single: bool = False) -> str:
    """The failure as one line naming the file at fault (and, in a batch, always the input)."""
    if (o.error_names_file and single) or o.input == "-" or str(o.error).startswith(f"{o.input}: "):
        return str(o.error)
    return f"{o.input}: {o.error}"


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
    # bits over pixels of the whole batch: a per-file mean lets a 1x1 file dominate
    rated = [o for o in ok if o.bpp is not None]
    total_pixels = sum(o.pixels for o in rated)
    total_bits = sum(o.info.get("bits", 8 * o.bytes_out) for o in rated)
    summary = {
        "files": len(outcomes),
        "ok": len(ok),
        "failed": len(failed),
        "bytes_in": sum(o.bytes_in for o in ok),
        "bytes_out": sum(o.bytes_out for o in ok),
        "mean_bpp": total_bits / total_pixels if total_pixels else None,
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
                raise CommandError(error_text(o, single=True))
            print(f"vqcodec: error: {error_text(o)}", file=sys.stderr)
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
    """Show library warnings (e.g. 16-bit input rounded to 8 bits) as one line each on stderr,
    naming the file being coded."""
    from vqcodec.codec.media import PrecisionWarning
    from vqcodec.codec.metadata import MetadataWarning

    def show(
        message: Any, category: Any, filename: Any, lineno: Any, file: Any = None, line: Any = None
    ) -> None:
        name = getattr(_current, "name", None)
        prefix = f"{name}: " if name and name != "-" and not str(message).startswith(name) else ""
        print(f"vqcodec: warning: {prefix}{message}", file=sys.stderr)

    with warnings.catch_warnings():  # restores the filters and showwarning on exit
        if quiet:
            warnings.simplefilter("ignore")
        else:
            warnings.filterwarnings("always", category=PrecisionWarning)
            warnings.filterwarnings("always", category=MetadataWarning)
            warnings.filterwarnings("always", category=CLIWarning)
            warnings.showwarning = show
        yield


class CLIWarning(UserWarning):
    """A notice from the command line itself (a conversion, a missed target): always shown."""


def warn(message: str) -> None:
    warnings.warn(message, CLIWarning, stacklevel=2)


def video_module() -> Any:
    """The video CLI module (vqcodec/cli/_video.py), imported when a video job needs it."""
    import importlib

    return importlib.import_module("vqcodec.cli._video")


def is_video_path(path: str) -> bool:
    return bool(video_module().is_video_path(path))


def video_args(args: argparse.Namespace, job: Job) -> argparse.Namespace:
    """A copy of ``args`` for one video file: ``input``/``output`` (and ``inputs``) name that file."""
    ns = argparse.Namespace(**vars(args))
    ns.input, ns.output, ns.inputs = job.input, job.output, [job.input]
    return ns


def run_video(kind: str, args: argparse.Namespace, job: Job) -> Outcome:
    module = video_module()
    start = time.perf_counter()
    if str(getattr(args, "device", "cpu")).startswith("cuda"):
        warn(f"--device {args.device}: videos are coded on the CPU (the device applies to pictures)")
    if getattr(args, "effort", 0):
        warn(f"--effort {args.effort}: applies to pictures; videos are coded at their own speed")
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
