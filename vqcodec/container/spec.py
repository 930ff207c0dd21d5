"""Constants of the .vqc container, named as in formats/vqc-v1.md, and the reader limits.

Everything here is pure data: no I/O, no torch, no numpy. Other modules build the byte layouts
from these names, so a change of the format starts in formats/vqc-v1.md and then here.

Limits: the module-level ``MAX_*`` constants are the documented defaults; ``limits`` is the
process-wide, mutable ``Limits`` object that readers use when not given their own values
(``vqcodec.container.limits.max_pixels = 10**9`` raises the pixel limit for the whole process, the
way ``PIL.Image.MAX_IMAGE_PIXELS`` does).
"""

from __future__ import annotations

import dataclasses
import struct
from typing import Final

# -- preamble -----------------------------------------------------------------------------------
MAGIC: Final = b"\x89VQC\r\n\x1a\n"
VERSION_MAJOR: Final = 1
VERSION_MINOR: Final = 0
PREAMBLE: Final = struct.Struct("<8sHH")  # magic, major, minor
PREAMBLE_SIZE: Final = 12

# -- chunks -------------------------------------------------------------------------------------
CHUNK_HEAD: Final = struct.Struct("<I4s")  # length, type
CHUNK_CRC: Final = struct.Struct("<I")
CHUNK_FRAMING: Final = 12  # length + type + crc
ANCILLARY_BIT: Final = 0x20  # in the first type byte: lower case letter = ancillary

TYPE_HEAD: Final = b"HEAD"
TYPE_FRAM: Final = b"FRAM"
TYPE_INDX: Final = b"indx"
TYPE_VEND: Final = b"VEND"
CORE_CHUNK_TYPES: Final = frozenset({TYPE_HEAD, TYPE_FRAM, TYPE_INDX, TYPE_VEND})

# Registered chunk types -> one-line description. Layers above register their side chunks here
# (and in the table of formats/vqc-v1.md); readers hand registered non-core chunks to the caller.
CHUNK_TYPES: dict[bytes, str] = {
    TYPE_HEAD: "header",
    TYPE_FRAM: "frame",
    TYPE_INDX: "key-frame index",
    TYPE_VEND: "end of container",
    b"ALPH": "alpha plane of an image (formats/vqc-v1.md, Image frame payload)",
    b"iCCP": "ICC colour profile of an image (formats/vqc-v1.md, Image metadata)",
    b"eXIf": "Exif data of an image (formats/vqc-v1.md, Image metadata)",
}

# -- HEAD ---------------------------------------------------------------------------------------
MEDIA_IMAGE: Final = 1
MEDIA_VIDEO: Final = 2
MEDIA_NAMES: Final = {MEDIA_IMAGE: "image", MEDIA_VIDEO: "video"}
MEDIA_CODES: Final = {name: code for code, name in MEDIA_NAMES.items()}
MAX_CHANNELS: Final = 16
MAX_PIXEL_FORMAT_LENGTH: Final = 32
MAX_MODEL_NAME_LENGTH: Final = 255
MODEL_SHA256_SIZE: Final = 32
# media, channels, width, height, fps_num, fps_den, frame_count, primaries, transfer, matrix,
# full_range, quality, model_sha256
HEAD_FIXED: Final = struct.Struct("<BBIIIIIBBBBH32s")
HEAD_FIXED_SIZE: Final = 60
HEAD_MIN_SIZE: Final = 67  # fixed part + 1-letter pixel format + empty name + empty codec_params
U8: Final = struct.Struct("<B")
U32: Final = struct.Struct("<I")
U64: Final = struct.Struct("<Q")

# -- FRAM ---------------------------------------------------------------------------------------
FRAME_PREFIX: Final = struct.Struct("<BI")  # flags, frame_index
FRAME_PREFIX_SIZE: Final = 5
FRAME_FLAG_KEY: Final = 0x01
FRAME_FLAGS_KNOWN: Final = FRAME_FLAG_KEY

# -- indx ---------------------------------------------------------------------------------------
INDEX_COUNT: Final = U32
INDEX_ENTRY: Final = struct.Struct("<IQ")  # frame_index, offset
INDEX_ENTRY_SIZE: Final = 12

# -- VEND ---------------------------------------------------------------------------------------
VEND_DATA: Final = struct.Struct("<IQ")  # frame_count, index_offset
VEND_DATA_SIZE: Final = 12
TRAILER_SIZE: Final = 24  # the whole VEND chunk

# -- field ranges -------------------------------------------------------------------------------
U16_MAX: Final = 0xFFFF
U32_MAX: Final = 0xFFFFFFFF

# -- reading ------------------------------------------------------------------------------------
READ_BLOCK: Final = 1 << 20

# -- limits (defaults) --------------------------------------------------------------------------
MAX_HEADER_LENGTH: Final = 1 << 20
MAX_CHUNK_LENGTH: Final = 1 << 28
MAX_PIXELS: Final = 1 << 27  # about 134 megapixels: 400 MB as RGB, far above a 24-MP photo
MAX_FRAME_COUNT: Final = 1 << 24

# every struct above must have the size the spec states
assert PREAMBLE.size == PREAMBLE_SIZE and len(MAGIC) == 8
assert CHUNK_HEAD.size + CHUNK_CRC.size == CHUNK_FRAMING
assert HEAD_FIXED.size == HEAD_FIXED_SIZE and HEAD_MIN_SIZE == HEAD_FIXED_SIZE + 1 + 1 + 1 + 4
assert FRAME_PREFIX.size == FRAME_PREFIX_SIZE
assert INDEX_ENTRY.size == INDEX_ENTRY_SIZE
assert VEND_DATA.size == VEND_DATA_SIZE and TRAILER_SIZE == CHUNK_FRAMING + VEND_DATA_SIZE


@dataclasses.dataclass
class Limits:
    """Sizes a declared field may not exceed; checked before anything is allocated for it.

    Mutable on purpose: ``limits`` below is the process-wide default; readers also take their own.
    """

    max_pixels: int = MAX_PIXELS
    max_chunk_length: int = MAX_CHUNK_LENGTH
    max_frame_count: int = MAX_FRAME_COUNT
    max_header_length: int = MAX_HEADER_LENGTH

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"limit {field.name} must be a positive int, got {value!r}")

    def replace(self, **changes: int | None) -> Limits:
        """A copy with the given limits changed; ``None`` values keep the current one."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


limits = Limits()


def is_ancillary(chunk_type: bytes) -> bool:
    return bool(chunk_type[0] & ANCILLARY_BIT)


def is_valid_chunk_type(chunk_type: bytes) -> bool:
    return len(chunk_type) == 4 and all(65 <= b <= 90 or 97 <= b <= 122 for b in chunk_type)


def chunk_type_name(chunk_type: bytes) -> str:
    """Printable form of a chunk type, even a malformed one."""
    return chunk_type.decode("ascii") if is_valid_chunk_type(chunk_type) else chunk_type.hex()
