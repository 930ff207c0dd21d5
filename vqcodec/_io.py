"""Paths and file-like objects behind one interface, and atomic output files.

No torch here: the container layer uses it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from typing import IO, Any, BinaryIO

# read once at import (os.umask can only be read by setting it, which is not thread-safe later)
_UMASK = os.umask(0o022)
os.umask(_UMASK)

PathOrFile = str | os.PathLike[str] | BinaryIO | IO[bytes]


def is_path(obj: Any) -> bool:
    return isinstance(obj, (str, os.PathLike))


@contextlib.contextmanager
def open_input(src: PathOrFile) -> Iterator[BinaryIO]:
    """Yield a readable binary stream; ``"-"`` is stdin. Only streams we opened are closed."""
    if isinstance(src, str) and src == "-":
        yield sys.stdin.buffer
    elif is_path(src):
        with open(os.fspath(src), "rb") as f:  # type: ignore[arg-type]
            yield f  # type: ignore[misc]
    else:
        yield src  # type: ignore[misc]


@contextlib.contextmanager
def atomic_output(dst: PathOrFile, *, force: bool = True, inputs: tuple[Any, ...] = ()) -> Iterator[BinaryIO]:
    """Yield a writable binary stream whose content appears at ``dst`` only on success.

    For a path, bytes go to a temporary file in the same folder that is renamed over
    ``dst`` when the block ends without an exception, and removed otherwise, so a
    failure (a full disk included) never leaves a partial file. ``"-"`` is stdout.
    ``inputs`` are paths the caller reads: writing over one of them is refused.
    """
    if isinstance(dst, str) and dst == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    if not is_path(dst):
        yield dst  # type: ignore[misc]
        return
    path = os.path.abspath(os.fspath(dst))  # type: ignore[arg-type]
    for src in inputs:
        if is_path(src) and src != "-" and os.path.exists(os.fspath(src)):
            if os.path.exists(path) and os.path.samefile(os.fspath(src), path):
                raise FileExistsError(f"refusing to write over the input file {os.fspath(src)}")
    if os.path.exists(path) and not force:
        raise FileExistsError(f"{os.fspath(dst)} exists (use --force to overwrite)")  # type: ignore[arg-type]
    folder = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".vqc-", suffix=".part", dir=folder)
    # mkstemp makes the file 0600: give it the mode a plain open() would (or the replaced file's)
    os.fchmod(fd, os.stat(path).st_mode & 0o7777 if os.path.exists(path) else 0o666 & ~_UMASK)
    f: IO[bytes] = os.fdopen(fd, "wb")
    try:
        yield f  # type: ignore[misc]
        f.flush()
        os.fsync(f.fileno())
        f.close()
        os.replace(tmp, path)
    except BaseException:
        # close() flushes again and fails again on a full disk: that must not skip the unlink
        with contextlib.suppress(OSError):
            f.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
