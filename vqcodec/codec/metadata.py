"""Picture metadata carried through ``.vqc``: the ICC colour profile and the Exif block.

Like ``cwebp -metadata icc,exif`` and avifenc, the image codec keeps them byte for byte in two
ancillary chunks before the frame (formats/vqc-v1.md, "Image metadata"): ``iCCP`` holds a
complete ICC profile, ``eXIf`` the Exif data as a TIFF structure (``II*\\0`` or ``MM\\0*``
first, the form of PNG's eXIf chunk, without JPEG's ``Exif\\0\\0`` prefix). Ancillary: a
decoder that does not know them still decodes the picture.

- :func:`from_pil` reads them from ``PIL.Image.info`` for the pixel format about to be coded,
  dropping with a :class:`MetadataWarning` what would be wrong or unreadable (a CMYK
  profile once the pixels are converted to RGB, a malformed profile, over-limit sizes);
- :func:`check_icc` / :func:`check_exif` are the decoder's checks of the chunk data;
- :func:`save_options` gives the keyword arguments of ``PIL.Image.save`` that write them in
  an output format (PNG, JPEG, WebP, TIFF, AVIF), and names what that format cannot hold.

No torch, no numpy.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from vqcodec.codec import limits

ICC_CHUNK = b"iCCP"
EXIF_CHUNK = b"eXIf"
ICC_HEADER_SIZE = 128  # ICC.1 profile header; the profile's tags follow it
ICC_SIGNATURE = b"acsp"  # bytes 36..39 of every ICC profile
ICC_SIGNATURE_OFFSET = 36
ICC_COLOUR_SPACE_OFFSET = 16  # bytes 16..19: the data colour space of the pixels it describes
EXIF_TIFF_MAGICS = (b"II*\x00", b"MM\x00*")
EXIF_MIN_SIZE = 8  # TIFF header: byte order, 42, offset of the first IFD
EXIF_APP1_PREFIX = b"Exif\x00\x00"  # how JPEG's APP1 (and PIL's info["exif"]) starts

# what the coded pixels are, by pixel format: the ICC data colour space that describes them
ICC_SPACE_FOR_FORMAT = {"rgb24": b"RGB ", "rgba32": b"RGB ", "gray8": b"GRAY", "graya16": b"GRAY"}

# PIL save keywords each output format honours (TIFF and BMP behave differently: see save_options)
SAVE_KEYWORDS = {
    "PNG": ("icc_profile", "exif"),
    "JPEG": ("icc_profile", "exif"),
    "WEBP": ("icc_profile", "exif"),
    "AVIF": ("icc_profile", "exif"),
    "TIFF": ("icc_profile", "exif"),
}
# formats whose Exif is written with the APP1 prefix (JPEG's own layout; Pillow's AVIF writer
# hands libavif the same form it reads back); the others get the bare TIFF structure
PREFIXED_EXIF_FORMATS = ("JPEG", "AVIF")
JPEG_MAX_EXIF = 65533  # one APP1 marker segment (prefix included): Pillow refuses more


class MetadataWarning(UserWarning):
    """An ICC profile or Exif block was left out (unreadable, wrong for the coded pixels, too big)."""


@dataclass(frozen=True)
class ImageMetadata:
    """ICC profile and Exif (TIFF structure) of a picture, each ``None`` when absent."""

    icc_profile: bytes | None = None
    exif: bytes | None = None

    def __bool__(self) -> bool:
        return self.icc_profile is not None or self.exif is not None

    @property
    def names(self) -> tuple[str, ...]:
        """("icc_profile", "exif"), or the part of it present."""
        return tuple(n for n in ("icc_profile", "exif") if getattr(self, n) is not None)


def icc_problem(data: bytes) -> str | None:
    """Why ``data`` is not an ICC profile (too short for the header, no ``acsp`` signature), or None."""
    if len(data) < ICC_HEADER_SIZE:
        return f"{len(data)} bytes, shorter than the {ICC_HEADER_SIZE}-byte ICC header"
    if data[ICC_SIGNATURE_OFFSET : ICC_SIGNATURE_OFFSET + 4] != ICC_SIGNATURE:
        return "no 'acsp' signature at byte 36"
    return None


def exif_problem(data: bytes) -> str | None:
    """Why ``data`` is not an Exif TIFF structure (see ``EXIF_TIFF_MAGICS``), or None."""
    if len(data) < EXIF_MIN_SIZE:
        return f"{len(data)} bytes, shorter than a TIFF header"
    if data[:4] not in EXIF_TIFF_MAGICS:
        return f"starts with {data[:4].hex()}, not a TIFF header (II*\\0 or MM\\0*)"
    return None


def icc_colour_space(data: bytes) -> bytes:
    """The profile's data colour space signature (b"RGB ", b"GRAY", b"CMYK", ...)."""
    return bytes(data[ICC_COLOUR_SPACE_OFFSET : ICC_COLOUR_SPACE_OFFSET + 4])


def bare_exif(data: bytes) -> bytes:
    """Exif without JPEG's ``Exif\\0\\0`` prefix (the form the eXIf chunk holds)."""
    return data[len(EXIF_APP1_PREFIX) :] if data.startswith(EXIF_APP1_PREFIX) else data


def _warn(message: str) -> None:
    warnings.warn(message, MetadataWarning, stacklevel=4)


def from_pil(image: Any, pixel_format: str, *, original_mode: str | None = None) -> ImageMetadata:
    """The ICC profile and Exif of a PIL image (``image.info``), as they will be coded.

    ``pixel_format`` is what the codec stores (rgb24, gray8...): a profile whose data colour
    space does not describe those pixels (a CMYK profile after the conversion to RGB, say) is
    dropped with a :class:`MetadataWarning`, as are malformed blocks and blocks over
    :data:`limits.MAX_METADATA_BYTES`. ``original_mode`` names the mode before a conversion,
    for the warning.
    """
    info = getattr(image, "info", None) or {}
    icc = info.get("icc_profile")
    exif = info.get("exif")
    icc_out: bytes | None = None
    exif_out: bytes | None = None
    if isinstance(icc, (bytes, bytearray)) and icc:
        icc = bytes(icc)
        problem = icc_problem(icc)
        space = icc_colour_space(icc)
        wanted = ICC_SPACE_FOR_FORMAT.get(pixel_format)
        if problem is not None:
            _warn(f"ICC profile dropped: {problem}")
        elif wanted is not None and space != wanted:
            mode = original_mode or getattr(image, "mode", "?")
            _warn(
                f"ICC profile dropped: it describes {space.decode('latin-1').strip()} data and the "
                f"{mode} picture is coded as {wanted.decode().strip()}"
            )
        elif not _within_limit(len(icc), "ICC profile"):
            pass
        else:
            icc_out = icc
    if isinstance(exif, (bytes, bytearray)) and exif:
        exif = bare_exif(bytes(exif))
        problem = exif_problem(exif)
        if problem is not None:
            _warn(f"Exif dropped: {problem}")
        elif _within_limit(len(exif), "Exif"):
            exif_out = exif
    return ImageMetadata(icc_out, exif_out)


def _within_limit(size: int, what: str) -> bool:
    limit = limits.MAX_METADATA_BYTES
    if limit is not None and size > limit:
        _warn(
            f"{what} dropped: {size} bytes, over the limit of {limit} "
            "(vqcodec.codec.limits.MAX_METADATA_BYTES or env VQCODEC_MAX_METADATA_BYTES)"
        )
        return False
    return True


def check_metadata(chunk_type: bytes, data: bytes) -> bytes | None:
    """The decoder's check of an ``iCCP`` / ``eXIf`` chunk: its data, or None when malformed.

    Over :data:`limits.MAX_METADATA_BYTES` raises LimitError; malformed content is ignored with a
    :class:`MetadataWarning` (the chunk is ancillary: the picture decodes without it).
    """
    what = "ICC profile" if chunk_type == ICC_CHUNK else "Exif"
    limits.check_metadata(len(data), what=f"{chunk_type.decode()} chunk ({what})")
    problem = icc_problem(data) if chunk_type == ICC_CHUNK else exif_problem(data)
    if problem is not None:
        warnings.warn(f"{chunk_type.decode()} chunk ignored: {problem}", MetadataWarning, stacklevel=3)
        return None
    return data


def save_options(fmt: str, metadata: ImageMetadata) -> tuple[dict[str, Any], tuple[str, ...]]:
    """(keyword arguments for ``PIL.Image.save`` in format ``fmt``, names it cannot hold).

    Exif goes in the form each format stores: JPEG (and AVIF) with the APP1 prefix, the others
    as the bare TIFF structure.
    """
    supported = SAVE_KEYWORDS.get(fmt, ())
    options: dict[str, Any] = {}
    lost: list[str] = []
    for name in metadata.names:
        if name not in supported:
            lost.append(name)
            continue
        value = getattr(metadata, name)
        if name == "exif" and fmt in PREFIXED_EXIF_FORMATS:
            value = EXIF_APP1_PREFIX + value
            if fmt == "JPEG" and len(value) > JPEG_MAX_EXIF:
                lost.append(name)  # JPEG keeps Exif in one marker segment of at most 64 KiB
                continue
        options[name] = value
    return options, tuple(lost)


def pil_info(metadata: ImageMetadata) -> dict[str, bytes]:
    """What a decoded PIL image gets in ``.info``, in Pillow's own reading conventions
    (``info["exif"]`` starts with ``Exif\\0\\0``, as after opening a JPEG or PNG)."""
    info: dict[str, bytes] = {}
    if metadata.icc_profile is not None:
        info["icc_profile"] = metadata.icc_profile
    if metadata.exif is not None:
        info["exif"] = EXIF_APP1_PREFIX + metadata.exif
    return info


__all__ = [
    "EXIF_CHUNK",
    "ICC_CHUNK",
    "ImageMetadata",
    "MetadataWarning",
    "check_metadata",
    "from_pil",
    "pil_info",
    "save_options",
]
