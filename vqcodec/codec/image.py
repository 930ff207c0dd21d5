"""Still images to and from ``.vqc``: ``encode_image`` / ``decode_image``.

An image file is a container (``formats/vqc-v1.md``) with ``media = "image"``, one key
frame whose payload is the model prior's entropy payload of the codes (S, h, w), and,
for pictures with transparency, one critical ``ALPH`` chunk holding the alpha plane
losslessly (section "Image frame payload" of the spec), and, when the source had them, the
ancillary ``iCCP`` (ICC profile) and ``eXIf`` (Exif) chunks (section "Image metadata";
:mod:`vqcodec.codec.metadata`), all before the frame. The header records the model
name and the sha256 of its weights, the quality level, and ``codec_params``: compact JSON
``{"alpha": "ALPH" | null, "codes": [S, h, w], "stride": s, "v": 1}``.

Pipeline: pixels (any size, mode) -> RGB uint8 (media.load_image) -> edge-padded to a
multiple of the stride -> model.to_codes over latent tiles (media.encode_tiled) -> codes
(S, h, w) -> prior.encode -> container. Decoding runs the same steps backwards and crops
the padding off. Decoding is deterministic: integer entropy tables, a tile plan that is a
pure function of the size and the model, fp32 inference. Codes are bit-exact everywhere;
pixels are exact on the same platform and torch build, within 1 grey level elsewhere.

Public API: ``encode_image`` (bytes) / ``encode_image_result`` (EncodedImage: bytes plus the
chosen quality, bpp...), ``decode_image`` (PIL / numpy / torch) / ``decode_image_result``
(DecodedImage: planes, header, codes), ``write_image_file`` (a file from known codes),
``model_for_header``, ``resolve_model``, ``default_quality``.

Thread safety: ``encode_image`` and ``decode_image`` keep no shared mutable state (models
are cached read-only by the zoo), so they may run from several threads at once.
"""

from __future__ import annotations

import io
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zstandard

from vqcodec.codec import limits, media
from vqcodec.codec.header import (
    check_header,
    check_header_quality,
    check_stride,
    make_header,
    model_for_header,
    parse_codec_params,
)
from vqcodec.codec.metadata import EXIF_CHUNK, ICC_CHUNK, ImageMetadata, check_metadata, pil_info
from vqcodec.container import ContainerReader, ContainerWriter, Header
from vqcodec.errors import FormatError, VQCError
from vqcodec.models.bundle import CodecModel
from vqcodec.models.device import on_device, resolve_device
from vqcodec.models.interface import ImageCodecModel
from vqcodec.models.zoo import ModelSpec, load_model

ALPHA_CHUNK = b"ALPH"
METADATA_CHUNKS = (ICC_CHUNK, EXIF_CHUNK)
SIDE_CHUNKS = (ALPHA_CHUNK, *METADATA_CHUNKS)
CODEC_PARAMS_VERSION = 1
# alpha plane filters, first byte of the ALPH chunk data (PNG-style: residual mod 256)
ALPHA_FILTER_NONE, ALPHA_FILTER_SUB, ALPHA_FILTER_UP = 0, 1, 2
ALPHA_ZSTD_LEVEL = 12


@dataclass(frozen=True)
class EncodedImage:
    """What :func:`encode_image_result` returns: the file bytes and what was chosen."""

    data: bytes
    quality: int
    width: int
    height: int
    pixel_format: str
    model_name: str
    seconds: float
    psnr: float | None = None  # only measured when a psnr target was searched
    tried: dict[int, float] = field(default_factory=dict)  # quality -> bpp, for bpp/psnr searches
    metadata: tuple[str, ...] = ()  # what the file carries of ("icc_profile", "exif")

    @property
    def bpp(self) -> float:
        """Bits per pixel of the whole file (container overhead included)."""
        return 8.0 * len(self.data) / (self.width * self.height)


def resolve_model(model: ModelSpec = None) -> CodecModel:
    """A CodecModel from a name, a bundle path, a CodecModel or None (the default image model)."""
    return load_model(model, media="image")


def default_quality(levels: int) -> int:
    """The quality used when none is given: just above the middle of 1..levels."""
    return min(levels, levels // 2 + 1)


def check_quality(quality: Any, levels: int) -> int:
    if (
        isinstance(quality, bool)
        or not isinstance(quality, (int, np.integer))
        or not 1 <= int(quality) <= levels
    ):
        raise ValueError(f"quality must be an integer in 1..{levels}, got {quality!r}")
    return int(quality)


# ---------------------------------------------------------------------------------------------
# encode


def encode_image(
    image: Any,
    quality: int | None = None,
    *,
    bpp: float | None = None,
    psnr: float | None = None,
    model: Any = None,
    metadata: bool = True,
    device: Any = "cpu",
    effort: int = 0,
) -> bytes:
    """Encode a picture to ``.vqc`` bytes.

    ``image``: PIL image, numpy array (H, W[, C]) uint8/uint16/float, torch tensor (C, H, W)
    uint8 or float in [0, 1], or a path. Give at most one of ``quality`` (1..N, higher is
    better; ValueError outside), ``bpp`` (the best level whose file is at most this many bits
    per pixel, else level 1) or ``psnr`` (the lowest level reaching this PSNR-RGB in dB, else
    level N); none means :func:`default_quality`. ``model``: name, bundle path or CodecModel.
    ``metadata``: keep a PIL input's ICC profile and Exif (``image.info``) in the file (False
    strips them, like ``cwebp -metadata none``). ``device``: "cpu", "cuda", "auto" (CUDA when
    available) or a torch.device, where a ``psnr`` search decodes its trials; the codes, and so
    the bytes, are chosen on the CPU whatever the device (:mod:`vqcodec.models.device`).
    ``effort``: 0 (fast) or 1 (rate-distortion optimised codes: smaller files at the same
    quality, slower encoding; scalar-quantized models only, ValueError otherwise); decoding is
    the same either way (``CodecModel.effort``).
    """
    return encode_image_result(
        image, quality, bpp=bpp, psnr=psnr, model=model, metadata=metadata, device=device, effort=effort
    ).data


def encode_image_result(
    image: Any,
    quality: int | None = None,
    *,
    bpp: float | None = None,
    psnr: float | None = None,
    model: Any = None,
    metadata: bool = True,
    device: Any = "cpu",
    effort: int = 0,
) -> EncodedImage:
    """:func:`encode_image`, returning an :class:`EncodedImage` with the chosen quality and bpp."""
    start = time.perf_counter()
    if sum(x is not None for x in (quality, bpp, psnr)) > 1:
        raise ValueError("give at most one of quality, bpp and psnr")
    target = resolve_device(device)  # DeviceError (e.g. no CUDA) before any work
    codec_model = on_device(resolve_model(model), "cpu")  # codes are chosen on the CPU
    if effort != codec_model.effort:
        codec_model = codec_model.with_effort(effort)  # ValueError naming the model's range
    levels = int(codec_model.quality_levels)
    if quality is not None:
        quality = check_quality(quality, levels)
    for name, value in (("bpp", bpp), ("psnr", psnr)):
        if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} target must be a positive number, got {value!r}")
    source = media.load_image(image)
    padded = media.pad_to_stride(source.rgb, codec_model.stride)
    alpha_data = _encode_alpha(source.alpha) if source.alpha is not None else None
    carried = source.metadata if metadata else ImageMetadata()

    cache: dict[int, bytes] = {}

    def at(level: int) -> bytes:
        if level not in cache:
            cache[level] = _encode_level(codec_model, source, padded, level, alpha_data, carried)
        return cache[level]

    pixels = source.width * source.height
    measured_psnr: float | None = None
    if bpp is not None:
        # bpp grows with the level: binary search for the highest level within the budget
        lo, hi, chosen = 1, levels, 1
        while lo <= hi:
            mid = (lo + hi) // 2
            if 8.0 * len(at(mid)) / pixels <= bpp:
                chosen, lo = mid, mid + 1
            else:
                hi = mid - 1
    elif psnr is not None:
        lo, hi, chosen = 1, levels, levels
        scores: dict[int, float] = {}
        while lo <= hi:
            mid = (lo + hi) // 2
            scores[mid] = media.psnr(_decode_rgb(codec_model, at(mid), target), source.rgb)
            if scores[mid] >= psnr:
                chosen, hi = mid, mid - 1
            else:
                lo = mid + 1
        measured_psnr = scores.get(chosen)
    else:
        chosen = quality if quality is not None else default_quality(levels)
    data = at(chosen)
    return EncodedImage(
        data=data,
        quality=chosen,
        width=source.width,
        height=source.height,
        pixel_format=source.pixel_format,
        model_name=codec_model.name,
        seconds=time.perf_counter() - start,
        psnr=measured_psnr,
        tried={q: 8.0 * len(d) / pixels for q, d in sorted(cache.items())} if len(cache) > 1 else {},
        metadata=carried.names,
    )


def _encode_level(
    model: ImageCodecModel,
    source: media.SourceImage,
    padded: np.ndarray,
    quality: int,
    alpha_data: bytes | None,
    metadata: ImageMetadata,
) -> bytes:
    codes = media.encode_tiled(model, padded, quality)
    return write_image_file(
        model, source.width, source.height, source.pixel_format, quality, codes, alpha_data, metadata
    )


def write_image_file(
    model: ImageCodecModel,
    width: int,
    height: int,
    pixel_format: str,
    quality: int,
    codes: np.ndarray,
    alpha_data: bytes | None = None,
    metadata: ImageMetadata | None = None,
) -> bytes:
    """The ``.vqc`` bytes of an image whose codes (S, h, w) are already known.

    ``alpha_data`` is the ALPH chunk data (filter byte + zstd frame), required for the
    pixel formats with alpha. ``metadata``: the ICC profile and Exif (TIFF structure) to carry
    in ``iCCP`` / ``eXIf`` chunks, written as given (:func:`vqcodec.codec.metadata.from_pil`
    checks what it reads from a picture). Used by the encoder and by the golden-vector builders.
    """
    if (alpha_data is not None) != (pixel_format in ("rgba32", "graya16")):
        raise ValueError(f"pixel format {pixel_format} {'needs' if alpha_data is None else 'has no'} alpha")
    payload = model.compress(codes, quality)
    params = {
        "alpha": ALPHA_CHUNK.decode() if alpha_data is not None else None,
        "codes": [int(x) for x in codes.shape],
        "stride": int(model.stride),
        "v": CODEC_PARAMS_VERSION,
    }
    header = make_header(
        model,
        media="image",
        width=width,
        height=height,
        channels=media.PIXEL_FORMATS[pixel_format],
        pixel_format=pixel_format,
        quality=quality,
        params=params,
        frame_count=1,
    )
    out = io.BytesIO()
    with ContainerWriter(out, header, side_chunk_types=SIDE_CHUNKS) as writer:
        if metadata is not None:
            for chunk_type, data in ((ICC_CHUNK, metadata.icc_profile), (EXIF_CHUNK, metadata.exif)):
                if data is not None:
                    writer.write_chunk(chunk_type, data)
        if alpha_data is not None:
            writer.write_chunk(ALPHA_CHUNK, alpha_data)
        writer.write_frame(payload, key=True)
    return out.getvalue()


def _encode_alpha(alpha: np.ndarray) -> bytes:
    """(H, W) uint8 -> filter byte + zstd frame of the filtered plane (smallest of none/sub/up)."""
    compressor = zstandard.ZstdCompressor(level=ALPHA_ZSTD_LEVEL, write_content_size=True)
    best: bytes | None = None
    for kind in (ALPHA_FILTER_NONE, ALPHA_FILTER_SUB, ALPHA_FILTER_UP):
        data = bytes([kind]) + compressor.compress(_alpha_filter(alpha, kind).tobytes())
        if best is None or len(data) < len(best):
            best = data
    assert best is not None
    return best


def _alpha_filter(alpha: np.ndarray, kind: int) -> np.ndarray:
    if kind == ALPHA_FILTER_NONE:
        return alpha
    out = alpha.copy()
    if kind == ALPHA_FILTER_SUB:
        out[:, 1:] -= alpha[:, :-1]  # uint8 arithmetic wraps mod 256
    else:
        out[1:, :] -= alpha[:-1, :]
    return out


def _alpha_unfilter(residual: np.ndarray, kind: int) -> np.ndarray:
    if kind == ALPHA_FILTER_NONE:
        return residual
    axis = 1 if kind == ALPHA_FILTER_SUB else 0
    return np.cumsum(residual, axis=axis, dtype=np.uint64).astype(np.uint8)  # sums mod 256


def _decode_alpha(data: bytes, width: int, height: int) -> np.ndarray:
    if len(data) < 2 or data[0] not in (ALPHA_FILTER_NONE, ALPHA_FILTER_SUB, ALPHA_FILTER_UP):
        raise FormatError(f"bad alpha filter byte {data[:1].hex() or 'missing'}", field="ALPH.filter")
    size = width * height
    limits.check_bytes(size, what="alpha plane")
    try:
        plane = zstandard.ZstdDecompressor().decompress(data[1:], max_output_size=size + 1)
    except zstandard.ZstdError as exc:
        raise FormatError(f"corrupt alpha plane: {exc}", field="ALPH.data") from None
    if len(plane) != size:
        raise FormatError(f"alpha plane has {len(plane)} bytes, expected {size}", field="ALPH.data")
    residual = np.frombuffer(plane, dtype=np.uint8).reshape(height, width)
    return _alpha_unfilter(residual, data[0])


def _decode_rgb(model: ImageCodecModel, data: bytes, device: Any) -> np.ndarray:
    """Decode our own just-encoded bytes to cropped RGB (for the psnr search)."""
    return _decode(io.BytesIO(data), model, device).rgb


# ---------------------------------------------------------------------------------------------
# decode


@dataclass(frozen=True)
class DecodedImage:
    """Decoded pixels before conversion to the caller's type: ``rgb`` (H, W, 3), ``alpha`` (H, W).

    ``icc_profile`` / ``exif`` (TIFF structure, no ``Exif\\0\\0`` prefix): the file's metadata
    chunks, None when it has none.
    """

    rgb: np.ndarray
    alpha: np.ndarray | None
    pixel_format: str
    header: Header
    codes: np.ndarray  # (S, h, w) int32, as entropy-decoded
    icc_profile: bytes | None = None
    exif: bytes | None = None

    @property
    def metadata(self) -> ImageMetadata:
        return ImageMetadata(self.icc_profile, self.exif)


def decode_image(src: Any, *, output: str = "pil", model: Any = None, device: Any = "cpu") -> Any:
    """Decode a ``.vqc`` image from bytes, a path or a binary file object.

    ``output``: "pil" (PIL.Image in the original mode: RGB, RGBA, L or LA), "numpy" (uint8,
    shaped like ``np.asarray`` of that image) or "torch" (float32 (C, H, W) in [0, 1]).
    ``model``: None uses the model the file names; a name, path or CodecModel must be the
    same weights. Raises ModelMismatchError when the file's model is missing or differs,
    FormatError / TruncatedError / ChecksumError for damaged files, LimitError past
    :mod:`vqcodec.codec.limits`. A PIL image gets the file's ICC profile and Exif in ``.info``
    (``"icc_profile"``, ``"exif"``), as Pillow's own readers give them. ``device``: where the
    synthesis runs ("cpu", "cuda", "auto" or a torch.device); the entropy decoding, and so the
    codes, are the same everywhere, the pixels within 1 per 8-bit value of the CPU's.
    """
    if output not in ("pil", "numpy", "torch"):
        raise ValueError(f"output must be 'pil', 'numpy' or 'torch', got {output!r}")
    if isinstance(src, (bytes, bytearray, memoryview)):
        src = io.BytesIO(bytes(src))
    decoded = _decode(src, model, device)
    picture = media.make_output(decoded.rgb, decoded.alpha, decoded.pixel_format, output)
    if output == "pil":
        picture.info.update(pil_info(decoded.metadata))
    return picture


def decode_image_result(src: Any, *, model: Any = None, device: Any = "cpu") -> DecodedImage:
    """Like :func:`decode_image` but returns the raw planes and the container header."""
    if isinstance(src, (bytes, bytearray, memoryview)):
        src = io.BytesIO(bytes(src))
    return _decode(src, model, device)


def _decode(src: Any, model: Any, device: Any = "cpu") -> DecodedImage:
    target = resolve_device(device)  # DeviceError before the file is read
    with ContainerReader(src, side_chunk_types=SIDE_CHUNKS) as reader:
        header = reader.header
        check_header(header, "image", media.PIXEL_FORMATS)
        params = parse_codec_params(header, CODEC_PARAMS_VERSION)
        codec_model = model_for_header(header, model)
        s, h, w = _check_codes_shape(params, header, codec_model)
        payload: bytes | None = None
        side: dict[bytes, bytes] = {}
        # read to the end chunk: a file cut after its frame is truncated, not silently accepted
        for frame in reader.frames():
            payload = frame.payload
            for chunk_type, data in frame.side_chunks:
                if chunk_type in SIDE_CHUNKS:
                    name = chunk_type.decode()
                    if chunk_type in side:
                        raise FormatError(f"more than one {name} chunk", field=name)
                    side[chunk_type] = data
        if reader.trailing_chunks:
            kinds = ", ".join(t.decode("ascii", "replace") for t, _ in reader.trailing_chunks)
            raise FormatError(f"side chunks after the image frame: {kinds}", field="chunk type")
    if payload is None:
        raise FormatError("image file has no frame", field="frame")
    alpha_data = side.get(ALPHA_CHUNK)
    found = {t: check_metadata(t, side[t]) for t in METADATA_CHUNKS if t in side}
    wants_alpha = header.pixel_format in ("rgba32", "graya16")
    if wants_alpha != (params.get("alpha") is not None) or wants_alpha != (alpha_data is not None):
        raise FormatError(
            f"pixel format {header.pixel_format} and the ALPH chunk do not agree", field="codec_params.alpha"
        )
    try:
        codes = codec_model.decompress(payload, (s, h, w), header.quality)
    except VQCError:
        raise
    except (ValueError, OverflowError) as exc:
        # a value derived from hostile bytes that numpy refuses; anything else is a bug and surfaces
        raise FormatError(f"corrupt image payload: {exc}", field="frame payload") from None
    codes = np.asarray(codes)
    if codes.shape != (s, h, w):
        raise FormatError(
            f"payload decoded to codes {codes.shape}, expected {(s, h, w)}", field="frame payload"
        )
    alphabet = getattr(codec_model, "alphabet", None)
    if alphabet and codes.size and (int(codes.min()) < 0 or int(codes.max()) >= int(min(alphabet[:s]))):
        raise FormatError("payload decoded to codes outside the model's codebook", field="frame payload")
    synthesis = on_device(codec_model, target).at_quality(header.quality)
    rgb = media.decode_tiled(synthesis, codes)[: header.height, : header.width]
    alpha = _decode_alpha(alpha_data, header.width, header.height) if alpha_data is not None else None
    return DecodedImage(
        rgb=np.ascontiguousarray(rgb),
        alpha=alpha,
        pixel_format=header.pixel_format,
        header=header,
        codes=codes,
        icc_profile=found.get(ICC_CHUNK),
        exif=found.get(EXIF_CHUNK),
    )


def _check_codes_shape(
    params: dict[str, Any], header: Header, model: ImageCodecModel
) -> tuple[int, int, int]:
    shape = params.get("codes")
    stride = int(model.stride)
    if (
        not isinstance(shape, list)
        or len(shape) != 3
        or not all(isinstance(x, int) and not isinstance(x, bool) for x in shape)
    ):
        raise FormatError(f"codes shape {shape!r} is not [S, h, w]", field="codec_params.codes")
    s, h, w = shape
    check_stride(params, stride)
    if (h, w) != (math.ceil(header.height / stride), math.ceil(header.width / stride)):
        raise FormatError(
            f"codes grid {h}x{w} does not cover {header.width}x{header.height} at stride {stride}",
            field="codec_params.codes",
        )
    quality = check_header_quality(header, model.quality_levels)
    expected = model.stages_for_quality(quality)
    if s != expected or s < 1:
        raise FormatError(
            f"{s} code streams, quality {header.quality} uses {expected}", field="codec_params.codes"
        )
    limits.check_bytes(4 * s * h * w, what="codes")
    return s, h, w


__all__ = [
    "ALPHA_CHUNK",
    "METADATA_CHUNKS",
    "EncodedImage",
    "DecodedImage",
    "encode_image",
    "encode_image_result",
    "decode_image",
    "decode_image_result",
    "model_for_header",
    "write_image_file",
    "resolve_model",
    "default_quality",
    "check_quality",
]
