"""The ``vqcodec`` command line: argparse sub-commands, one module each, all thin.

Conventions every sub-command follows:
- ``-o/--output`` names the output, ``-`` means stdin/stdout;
- an existing output is refused unless ``-f/--force``; writing over an input is always refused;
- outputs are written atomically (temporary file, then rename);
- ``-q/--quiet`` silences progress and summaries, ``--json`` prints machine-readable output;
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


class CommandError(Exception):
    """A failure the command already explains in one line (exit status 1)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vqcodec", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"vqcodec.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"vqcodec.cli.{name}":
                continue  # command not built yet in this tree
            raise
        module.register(sub)
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
        return EXIT_ERROR
    except Exception as exc:
        if args.debug:
            raise
        print(f"vqcodec: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR


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
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    p.add_argument("--json", action="store_true", help="print a JSON summary instead of a table")
