"""What image and video share about a file's header: its model, its checks, its ``codec_params``.

Both codecs write a ``container.Header`` whose model fields name the weights (name + sha256),
whose ``quality`` is a level of that model and whose ``codec_params`` is compact JSON with a
version ``"v"`` (formats/vqc-v1.md, "Image frame payload" / "Video frame payload"). Reading one
back runs the same steps for both: check the media, pixel format, channels and size; parse
``codec_params``; find the model (:func:`model_for_header`); check the quality and the stride.
Each step raises FormatError / ModelMismatchError / LimitError naming the field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from vqcodec.codec import limits
from vqcodec.container import Header
from vqcodec.errors import FormatError, ModelMismatchError, UnknownModelError
from vqcodec.models.bundle import CodecModel
from vqcodec.models.interface import ModelIdentity
from vqcodec.models.zoo import ModelSpec, list_models, load_model


def model_for_header(header: Header, model: ModelSpec = None) -> CodecModel:
    """The CodecModel that decodes a file with this header; ModelMismatchError naming both otherwise.

    ``model`` None loads the model the header names (bundled registry or a user bundle path): one
    that is not installed is a ModelMismatchError listing the installed models that could decode
    this media (image models for an image; every model for a video, since a video may be coded
    with an image model alone). A given ``model`` (name, path or CodecModel) must be the same
    weights; a name that is not known raises UnknownModelError as it does everywhere.
    """
    name = header.model_name or ""
    sha = bytes(header.model_sha256 or b"")
    wanted = f"{name!r} (sha256 {sha.hex()[:16]})" if name else "no model"
    if not name or len(sha) != 32 or not any(sha):
        raise ModelMismatchError(f"the file records {wanted}; cannot choose a model to decode it")
    if model is None:
        try:
            codec_model = load_model(name, media=header.media)
        except UnknownModelError:
            usable = [m.name for m in list_models() if m.media in (header.media, "image")]
            raise ModelMismatchError(
                f"the file was encoded with model {wanted}, which is not installed "
                f"(installed: {', '.join(usable) or 'none'}); pass the bundle file with --model"
            ) from None
    else:
        codec_model = load_model(model, media=header.media)
    if bytes(codec_model.sha256) != sha:
        raise ModelMismatchError(
            f"the file was encoded with model {wanted}, but model {codec_model.name!r} "
            f"(sha256 {bytes(codec_model.sha256).hex()[:16]}) is {'installed' if model is None else 'given'}"
        )
    return codec_model


def check_header(header: Header, media: str, pixel_formats: Mapping[str, int]) -> None:
    """Refuse a header of another media, an unknown pixel format, wrong channels or too many pixels.

    ``pixel_formats``: the formats this codec restores -> their channel count.
    """
    if header.media != media:
        other = "video" if media == "image" else "an image"
        raise FormatError(
            f"not {'an image' if media == 'image' else 'a video'} file (media {header.media!r}); "
            f"decode it as {other}",
            field="media",
        )
    if header.pixel_format not in pixel_formats:
        raise FormatError(f"unsupported {media} pixel format {header.pixel_format!r}", field="pixel_format")
    if header.channels != pixel_formats[header.pixel_format]:
        raise FormatError(
            f"channels {header.channels} does not match pixel format {header.pixel_format}", field="channels"
        )
    limits.check_pixels(header.width, header.height, what="image" if media == "image" else "video frame")
    if media == "video" and header.frame_count:
        limits.check_frames(header.frame_count)


def check_header_quality(header: Header, levels: int) -> int:
    """The header's quality level, FormatError when it is outside the model's 1..levels."""
    if not isinstance(header.quality, int) or not 1 <= header.quality <= levels:
        raise FormatError(f"quality {header.quality!r} is outside 1..{levels}", field="quality")
    return header.quality


def check_stride(params: Mapping[str, Any], stride: int) -> None:
    """FormatError when ``codec_params.stride`` is not the model's stride."""
    if params.get("stride") != stride:
        raise FormatError(
            f"stride {params.get('stride')!r} differs from the model's {stride}", field="codec_params.stride"
        )


def parse_codec_params(header: Header, version: int) -> dict[str, Any]:
    """The header's ``codec_params`` as a JSON object of the given version; FormatError otherwise."""
    try:
        params = json.loads(bytes(header.codec_params).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise FormatError("codec_params is not valid JSON", field="codec_params") from None
    if not isinstance(params, dict):
        raise FormatError("codec_params must be a JSON object", field="codec_params")
    if params.get("v") != version:
        raise FormatError(
            f"unsupported {header.media} codec_params version {params.get('v')!r}", field="codec_params.v"
        )
    return params


def encode_codec_params(params: Mapping[str, Any]) -> bytes:
    """Compact, key-sorted JSON: the one spelling of ``codec_params`` every encoder writes."""
    return json.dumps(dict(params), sort_keys=True, separators=(",", ":")).encode()


def make_header(
    model: ModelIdentity,
    *,
    media: str,
    width: int,
    height: int,
    pixel_format: str,
    channels: int,
    quality: int,
    params: Mapping[str, Any],
    **fields: Any,
) -> Header:
    """The Header of a file coded by ``model`` at ``quality``; ``fields``: other Header fields (fps...)."""
    return Header(
        media=media,
        width=width,
        height=height,
        channels=channels,
        pixel_format=pixel_format,
        model_name=model.name,
        model_sha256=bytes(model.sha256),
        quality=quality,
        codec_params=encode_codec_params(params),
        **fields,
    )


__all__ = [
    "check_header",
    "check_header_quality",
    "check_stride",
    "encode_codec_params",
    "make_header",
    "model_for_header",
    "parse_codec_params",
]
