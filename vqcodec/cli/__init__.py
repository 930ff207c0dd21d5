"""The ``vqcodec`` command line: argparse sub-commands, one module each, all thin.

Conventions every sub-command follows:
- ``-o/--output`` names the output, ``-`` means stdin/stdout;
- an existing output is refused unless ``-f/--force``; writing over an input is always refused;
- outputs are written atomically (temporary file, then rename);
- ``-q/--quality`` is a quality level wherever it exists, ``--quiet`` (no short form) silences
  progress and summaries, ``--json`` prints machine-readable output;
- exit status 0 ok, 1 error, 2 usage; errors are one line on stderr, ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# sub-command modules in vqcodec/cli/, each exposing register(subparsers)
COMMANDS = ("info", "encode", "decode", "models", "train", "bench", "demo")

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2

USAGE_TEXT = "vqcodec: a learned image and video codec; pictures and clips to .vqc files and back."
EXAMPLES = """examples:
  vqcodec encode photo.png photo.vqc -q 5     quality level 1..8 (higher is better)
  vqcodec encode photo.png --bpp 0.25         best level within 0.25 bits per pixel
  vqcodec decode photo.vqc                    writes photo.vqc.png (never the original)
  vqcodec decode photo.vqc out.jpg -q 90      output format from the extension
  vqcodec encode *.png -o vqc/ -j 2           a batch, into a folder
  vqcodec encode clip.mp4 clip.vqc            videos go through the same commands
  vqcodec info photo.vqc                      what a file holds (no decoding)
  vqcodec models                              the bundled models

'vqcodec COMMAND --help' shows a command's options. -q is always a quality level; --quiet
silences progress; --threads N sets the CPU threads (default 1); '-' is stdin/stdout."""


class CommandError(Exception):
    """A failure the command already explains in one line (exit status 1)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vqcodec",
        description=USAGE_TEXT,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"vqcodec.cli.{name}").register(sub)
    return parser


def _version() -> str:
    from vqcodec import __version__

    return f"vqcodec {__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or EXIT_OK)
    except KeyboardInterrupt:
        print("vqcodec: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (``vqcodec decode x.vqc - | head -c 10``): exit quietly, as Unix
        # tools do, and keep Python from complaining when it flushes stdout at exit
        _silence_stdout()
        return EXIT_ERROR
    except Exception as exc:
        if args.debug:
            raise
        print(f"vqcodec: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR


def _silence_stdout() -> None:
    import os

    stdout = sys.stdout
    if stdout is not sys.__stdout__:
        return  # a replaced stdout (tests, embedding) is left to its owner
    if stdout is None:
        return  # no stdout at all (pythonw)
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stdout.fileno())
    except (OSError, ValueError):
        pass


def one_line(exc: BaseException) -> str:
    """The exception as one readable line, whatever its type."""
    text = str(exc).strip().replace("\n", " ") or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        name = f": {exc.filename}" if exc.filename else ""
        text = f"{exc.strerror}{name}"
    if not isinstance(exc, (CommandError,)) and type(exc).__module__ != "vqcodec.errors":
        text = f"{type(exc).__name__}: {text}" if not isinstance(exc, (OSError, ValueError)) else text
    return text


def add_output_options(p: argparse.ArgumentParser) -> None:
    """The output conventions shared by commands that write files."""
    p.add_argument("-f", "--force", action="store_true", help="overwrite an existing output")
    # -q is the quality level in every vqcodec command; quiet has no short option
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.add_argument("--json", action="store_true", help="print a JSON summary instead of a table")
