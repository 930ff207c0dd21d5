"""Safety limits on what a decoder may allocate, checked before the allocation.

In the manner of Pillow's ``Image.MAX_IMAGE_PIXELS``: the limits are module-level
values that a program may raise, lower, or switch off (``None``)::

    import vqcodec.codec.limits as limits
    limits.MAX_IMAGE_PIXELS = 400_000_000      # allow bigger images
    with limits.override(max_frames=10):      # temporarily, e.g. in a test
        ...

- ``MAX_IMAGE_PIXELS``: width * height of one decoded picture (image or video frame).
  The default (2**27, about 134 megapixels, 400 MB as RGB) is well above a 24-MP photo.
  It is the container's ``spec.MAX_PIXELS``, the default a reader checks a header against.
- ``MAX_FRAMES``: frames of one video stream (declared count, or counted while decoding);
  2**24 by default, the container's ``spec.MAX_FRAME_COUNT``.
- ``MAX_BYTES``: bytes of one decoded payload buffer (e.g. an inflated alpha plane,
  a whole decoded clip held in memory); 2**31 by default.
- ``MAX_METADATA_BYTES``: bytes of one metadata block of a picture (the ICC profile, the
  Exif data); 16 MiB by default, far above real profiles (a few KB to a few hundred KB) and
  JPEG's 64 KB Exif. The encoder leaves out a bigger block (with a warning), so what a
  default writer writes a default reader reads.

The environment variables ``VQCODEC_MAX_IMAGE_PIXELS``, ``VQCODEC_MAX_FRAMES``,
``VQCODEC_MAX_BYTES`` and ``VQCODEC_MAX_METADATA_BYTES`` set the initial values (``0`` or
``none`` switches one off).
The container layer has its own limits on declared header fields and chunk lengths
(``vqcodec.container.spec``); these here are the codec layer's, applied to what the
codec is about to build. Every check raises :class:`vqcodec.errors.LimitError`
naming the value, the limit and the variable that sets it. No torch here.
"""

from __future__ import annotations

import contextlib
import enum
import os
import threading
from collections.abc import Iterator

from vqcodec.container import spec
from vqcodec.errors import LimitError


def _from_env(name: str, default: int) -> int | None:
    text = os.environ.get(name)
    if text is None or not text.strip():
        return default
    text = text.strip().lower()
    if text in ("0", "none", "off", "unlimited"):
        return None
    try:
        value = int(float(text))
    except ValueError:
        return default
    return value if value > 0 else None


# one truth with the container's reader limits: the same defaults (formats/vqc-v1.md, "Limits")
MAX_IMAGE_PIXELS: int | None = _from_env("VQCODEC_MAX_IMAGE_PIXELS", spec.MAX_PIXELS)
MAX_FRAMES: int | None = _from_env("VQCODEC_MAX_FRAMES", spec.MAX_FRAME_COUNT)
MAX_BYTES: int | None = _from_env("VQCODEC_MAX_BYTES", 2**31)
MAX_METADATA_BYTES: int | None = _from_env("VQCODEC_MAX_METADATA_BYTES", 2**24)

# override() swaps module globals; a lock keeps two overrides from interleaving their restores
_override_lock = threading.RLock()


class _Keep(enum.Enum):
    """override()'s default for a limit it leaves as it is (``None`` already means unlimited)."""

    KEEP = enum.auto()


def check_pixels(width: int, height: int, *, what: str = "image") -> None:
    """Refuse a picture of ``width`` x ``height`` pixels over ``MAX_IMAGE_PIXELS`` (or non-positive)."""
    if width <= 0 or height <= 0:
        raise LimitError(f"{what} size {width}x{height} is empty or negative")
    limit = MAX_IMAGE_PIXELS
    if limit is not None and width * height > limit:
        raise LimitError(
            f"{what} of {width}x{height} = {width * height} pixels exceeds the limit of {limit} "
            "(vqcodec.codec.limits.MAX_IMAGE_PIXELS or env VQCODEC_MAX_IMAGE_PIXELS)"
        )


def check_frames(count: int, *, what: str = "video") -> None:
    """Refuse a stream of more than ``MAX_FRAMES`` frames."""
    if count < 0:
        raise LimitError(f"{what} frame count {count} is negative")
    limit = MAX_FRAMES
    if limit is not None and count > limit:
        raise LimitError(
            f"{what} has {count} frames, over the limit of {limit} "
            "(vqcodec.codec.limits.MAX_FRAMES or env VQCODEC_MAX_FRAMES)"
        )


def check_bytes(count: int, *, what: str = "buffer") -> None:
    """Refuse to allocate a buffer of more than ``MAX_BYTES`` bytes."""
    if count < 0:
        raise LimitError(f"{what} size {count} is negative")
    limit = MAX_BYTES
    if limit is not None and count > limit:
        raise LimitError(
            f"{what} of {count} bytes exceeds the limit of {limit} "
            "(vqcodec.codec.limits.MAX_BYTES or env VQCODEC_MAX_BYTES)"
        )


def check_metadata(count: int, *, what: str = "metadata") -> None:
    """Refuse a metadata block (ICC profile, Exif) of more than ``MAX_METADATA_BYTES`` bytes."""
    limit = MAX_METADATA_BYTES
    if limit is not None and count > limit:
        raise LimitError(
            f"{what} of {count} bytes exceeds the limit of {limit} "
            "(vqcodec.codec.limits.MAX_METADATA_BYTES or env VQCODEC_MAX_METADATA_BYTES)"
        )


@contextlib.contextmanager
def override(
    *,
    max_image_pixels: int | None | _Keep = _Keep.KEEP,
    max_frames: int | None | _Keep = _Keep.KEEP,
    max_bytes: int | None | _Keep = _Keep.KEEP,
    max_metadata_bytes: int | None | _Keep = _Keep.KEEP,
) -> Iterator[None]:
    """Set some limits for the duration of a ``with`` block (``None`` = unlimited; omitted = unchanged).

    The limits are process-wide, so other threads see the change too.
    """
    global MAX_IMAGE_PIXELS, MAX_FRAMES, MAX_BYTES, MAX_METADATA_BYTES
    with _override_lock:
        saved = (MAX_IMAGE_PIXELS, MAX_FRAMES, MAX_BYTES, MAX_METADATA_BYTES)
        if not isinstance(max_image_pixels, _Keep):
            MAX_IMAGE_PIXELS = max_image_pixels
        if not isinstance(max_frames, _Keep):
            MAX_FRAMES = max_frames
        if not isinstance(max_bytes, _Keep):
            MAX_BYTES = max_bytes
        if not isinstance(max_metadata_bytes, _Keep):
            MAX_METADATA_BYTES = max_metadata_bytes
        try:
            yield
        finally:
            MAX_IMAGE_PIXELS, MAX_FRAMES, MAX_BYTES, MAX_METADATA_BYTES = saved


__all__ = [
    "MAX_IMAGE_PIXELS",
    "MAX_FRAMES",
    "MAX_BYTES",
    "MAX_METADATA_BYTES",
    "check_pixels",
    "check_frames",
    "check_bytes",
    "check_metadata",
    "override",
]
