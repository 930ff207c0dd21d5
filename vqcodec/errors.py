"""Exception classes shared by every layer. Imports nothing heavy: no torch, no numpy.

Every message names the byte offset or the field at fault, so a one-line error
printed by the CLI is enough to locate the problem.
"""

from __future__ import annotations


class VQCError(Exception):
    """Base class of every error vqcodec raises on purpose."""


class FormatError(VQCError, ValueError):
    """The bytes do not follow the .vqc format (bad magic, bad field, bad chunk).

    ``offset`` is the byte offset in the stream where the problem was found and
    ``field`` the name of the field, when known.
    """

    def __init__(self, message: str, *, offset: int | None = None, field: str | None = None):
        self.offset = offset
        self.field = field
        where = []
        if field is not None:
            where.append(f"field {field}")
        if offset is not None:
            where.append(f"offset {offset}")
        super().__init__(f"{message} ({', '.join(where)})" if where else message)


class TruncatedError(FormatError):
    """The stream ended before a complete structure (header, chunk, payload) was read."""


class ChecksumError(FormatError):
    """A CRC did not match: the bytes were damaged after they were written."""


class UnsupportedVersionError(FormatError):
    """The file uses a major format version this reader does not know."""


class ModelMismatchError(VQCError):
    """The file was made by a model that is missing here or differs from the one given."""


class UnknownModelError(VQCError, KeyError):
    """No bundled or user model has this name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class UnknownNameError(VQCError, KeyError, ValueError):
    """A name looked up in a ``vqcodec.registry.Registry`` (strategy, quantizer type, ...) is not there.

    Both a ``KeyError`` (it is a failed lookup) and a ``ValueError`` (it is usually a bad config value).
    """

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class LimitError(VQCError):
    """A declared size (pixels, frames, bytes) is over a configured safety limit."""


__all__ = [
    "VQCError",
    "FormatError",
    "TruncatedError",
    "ChecksumError",
    "UnsupportedVersionError",
    "ModelMismatchError",
    "UnknownModelError",
    "UnknownNameError",
    "LimitError",
]
