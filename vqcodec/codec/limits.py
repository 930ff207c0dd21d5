"""Safety limits on what a decoder may allocate, checked before the allocation.

In the manner of Pillow's ``Image.MAX_IMAGE_PIXELS``: the limits are module-level
values that a program may raise, lower, or switch off (``None``)::

    import vqcodec.codec.limits as limits
    limits.MAX_IMAGE_PIXELS = 400_000_000      # allow bigger images
    with limits.override(max_frames=10):      # temporarily, e.g. in a test
        ...

- ``MAX_IMAGE_PIXELS``: width * height of one decoded picture (image or video frame).
  The default (2**27, about 134 megapixels, 400 MB as RGB) is well above a 24-MP photo.
- ``MAX_FRAMES``: frames of one video stream (declared count, or counted while decoding).
- ``MAX_BYTES``: bytes of one decoded payload buffer (e.g. an inflated alpha plane,
  a whole decoded clip held in memory); 2**31 by default.

The environment variables ``VQCODEC_MAX_IMAGE_PIXELS``, ``VQCODEC_MAX_FRAMES`` and
``VQCODEC_MAX_BYTES`` set the initial values (``0`` or ``none`` switches one off).
The container layer has its own limits on declared header fields and chunk lengths
(``vqcodec.container.spec``); these here are the codec layer's, applied to what the
codec is about to build. Every check raises :class:`vqcodec.errors.LimitError`
naming the value, the limit and the variable that sets it. No torch here.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

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


MAX_IMAGE_PIXELS: int | None = _from_env("VQCODEC_MAX_IMAGE_PIXELS", 2**27)
MAX_FRAMES: int | None = _from_env("VQCODEC_MAX_FRAMES", 10_000_000)
MAX_BYTES: int | None = _from_env("VQCODEC_MAX_BYTES", 2**31)

# override() swaps module globals; a lock keeps two overrides from interleaving their restores
_override_lock = threading.RLock()


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


@contextlib.contextmanager
def override(
    *,
    max_image_pixels: int | None | bool = False,
    max_frames: int | None | bool = False,
    max_bytes: int | None | bool = False,
) -> Iterator[None]:
    """Set some limits for the duration of a ``with`` block (``None`` = unlimited; omitted = unchanged).

    The limits are process-wide, so other threads see the change too.
    """
    global MAX_IMAGE_PIXELS, MAX_FRAMES, MAX_BYTES
    with _override_lock:
        saved = (MAX_IMAGE_PIXELS, MAX_FRAMES, MAX_BYTES)
        if max_image_pixels is not False:
            MAX_IMAGE_PIXELS = max_image_pixels  # type: ignore[assignment]
        if max_frames is not False:
            MAX_FRAMES = max_frames  # type: ignore[assignment]
        if max_bytes is not False:
            MAX_BYTES = max_bytes  # type: ignore[assignment]
        try:
            yield
        finally:
            MAX_IMAGE_PIXELS, MAX_FRAMES, MAX_BYTES = saved


__all__ = [
    "MAX_IMAGE_PIXELS",
    "MAX_FRAMES",
    "MAX_BYTES",
    "check_pixels",
    "check_frames",
    "check_bytes",
    "override",
]
