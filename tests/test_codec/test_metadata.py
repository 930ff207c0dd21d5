"""ICC profiles and Exif through .vqc (iCCP / eXIf chunks), and the still-picture input checks of
issue 13 item 6: animated GIF / APNG / WebP refused, metadata dropped only with a warning."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from PIL import Image, ImageCms

from test_codec.image_helpers import TINY_MODEL, picture
from vqcodec.codec import limits, media, metadata
from vqcodec.codec.image import (
    decode_image,
    decode_image_result,
    encode_image,
    encode_image_result,
    write_image_file,
)
from vqcodec.container import ContainerReader
from vqcodec.errors import FormatError, LimitError
from vqcodec.models.zoo import load_model

M = str(TINY_MODEL)
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _exif(**tags: int | str) -> Image.Exif:
    exif = Image.Exif()
    names = {"Orientation": 0x0112, "Software": 0x0131, "Artist": 0x013B}
    for name, value in tags.items():
        exif[names[name]] = value
    return exif


def _jpeg(array: np.ndarray, **save: object) -> Image.Image:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=95, **save)
    buffer.seek(0)
    return Image.open(buffer)


def _chunk_types(data: bytes) -> list[str]:
    with ContainerReader(io.BytesIO(data)) as reader:
        return [c.type for c in reader.chunks()]


def _with_profile(space: bytes) -> bytes:
    """The sRGB profile with its data colour space field (bytes 16..19) replaced."""
    return SRGB[:16] + space + SRGB[20:]


def test_icc_and_exif_round_trip_byte_for_byte():
    exif_bytes = _exif(Software="vqcodec test", Artist="someone").tobytes()
    image = _jpeg(picture(24, 40, seed=1), icc_profile=SRGB, exif=exif_bytes)
    assert image.info["icc_profile"] == SRGB
    data = encode_image(image, 2, model=M)
    # ancillary chunks written before the frame, ICC first
    assert _chunk_types(data) == ["HEAD", "iCCP", "eXIf", "FRAM", "indx", "VEND"]
    decoded = decode_image_result(data, model=M)
    assert decoded.icc_profile == SRGB
    assert decoded.exif == metadata.bare_exif(exif_bytes) and decoded.exif[:4] in (b"II*\x00", b"MM\x00*")
    pil = decode_image(data, model=M)
    assert pil.info["icc_profile"] == SRGB and pil.info["exif"] == exif_bytes
    assert pil.getexif()[0x0131] == "vqcodec test"
    # stripped on request, and the picture itself does not change
    bare = encode_image(image, 2, model=M, metadata=False)
    assert _chunk_types(bare) == ["HEAD", "FRAM", "indx", "VEND"]
    assert decode_image_result(bare, model=M).icc_profile is None
    pixels = decode_image(data, model=M, output="numpy")
    assert np.array_equal(decode_image(bare, model=M, output="numpy"), pixels)
    assert encode_image_result(image, 2, model=M).metadata == ("icc_profile", "exif")


def test_old_files_without_metadata_decode_unchanged():
    array = picture(16, 24, seed=2)
    data = encode_image(array, 1, model=M)  # numpy input: no metadata to carry
    assert _chunk_types(data) == ["HEAD", "FRAM", "indx", "VEND"]
    decoded = decode_image_result(data, model=M)
    assert decoded.icc_profile is None and decoded.exif is None
    assert "icc_profile" not in decode_image(data, model=M).info


def test_exif_orientation_is_applied_once():
    """open_image_file turns the pixels upright, so the Exif kept must not rotate them again."""
    array = picture(16, 32, seed=3)  # 32 wide, 16 high as stored
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", exif=_exif(Orientation=6, Software="cam").tobytes())
    buffer.seek(0)
    upright = media.open_image_file(buffer)
    assert upright.size == (16, 32)
    decoded = decode_image_result(encode_image(upright, 2, model=M), model=M)
    assert decoded.rgb.shape[:2] == (32, 16)
    kept = Image.Exif()
    kept.load(decoded.exif)
    assert 0x0112 not in kept and kept[0x0131] == "cam"


def test_cmyk_profile_is_dropped_with_a_warning_and_gray_keeps_gray():
    cmyk = Image.fromarray(picture(16, 16, 4, seed=4), mode="CMYK")
    cmyk.info["icc_profile"] = _with_profile(b"CMYK")
    with pytest.warns(metadata.MetadataWarning, match="describes CMYK data"):
        data = encode_image(cmyk, 1, model=M)
    assert decode_image_result(data, model=M).icc_profile is None
    gray = Image.fromarray(picture(16, 16, 1, seed=5)[..., 0], mode="L")
    gray.info["icc_profile"] = _with_profile(b"GRAY")
    with warnings.catch_warnings():
        warnings.simplefilter("error", metadata.MetadataWarning)
        kept = decode_image_result(encode_image(gray, 1, model=M), model=M)
    assert kept.pixel_format == "gray8" and kept.icc_profile == _with_profile(b"GRAY")
    gray.info["icc_profile"] = SRGB  # an RGB profile does not describe gray pixels
    with pytest.warns(metadata.MetadataWarning, match="coded as GRAY"):
        assert encode_image_result(gray, 1, model=M).metadata == ()


def test_malformed_or_oversized_metadata_is_left_out_on_encode():
    image = Image.fromarray(picture(16, 16, seed=6))
    image.info["icc_profile"] = b"not a profile" * 20
    image.info["exif"] = b"Exif\x00\x00garbage!"
    with pytest.warns(metadata.MetadataWarning) as record:
        result = encode_image_result(image, 1, model=M)
    messages = " | ".join(str(w.message) for w in record)
    assert "no 'acsp' signature" in messages and "not a TIFF header" in messages
    assert result.metadata == ()
    image.info = {"icc_profile": SRGB}
    with limits.override(max_metadata_bytes=100):
        with pytest.warns(metadata.MetadataWarning, match="over the limit of 100"):
            assert encode_image_result(image, 1, model=M).metadata == ()


def _file_with(icc: bytes | None = None, exif: bytes | None = None, extra: list[tuple[bytes, bytes]] = ()):
    """A valid image file with the given metadata chunk data written as is (plus extra side chunks)."""
    model = load_model(M)
    codes = np.zeros((1, 1, 1), dtype=np.int32)  # 16x16 at the tiny model's stride 16
    data = write_image_file(model, 16, 16, "rgb24", 1, codes, None, metadata.ImageMetadata(icc, exif))
    if not extra:
        return data
    # splice extra chunks in right before the FRAM chunk
    from vqcodec.container import spec
    from vqcodec.container.chunks import chunk_crc

    at = data.index(spec.TYPE_FRAM) - 4
    blob = b"".join(
        spec.CHUNK_HEAD.pack(len(d), t) + d + spec.CHUNK_CRC.pack(chunk_crc(t, d)) for t, d in extra
    )
    return data[:at] + blob + data[at:]


def test_decoder_checks_the_chunks():
    exif = _exif(Software="x").tobytes()[6:]
    with pytest.raises(FormatError, match="more than one iCCP") as error:
        decode_image_result(_file_with(SRGB, extra=[(b"iCCP", SRGB)]), model=M)
    assert error.value.field == "iCCP"
    with pytest.raises(FormatError, match="more than one eXIf"):
        decode_image_result(_file_with(exif=exif, extra=[(b"eXIf", exif)]), model=M)
    with limits.override(max_metadata_bytes=len(SRGB) - 1):
        with pytest.raises(LimitError, match="MAX_METADATA_BYTES"):
            decode_image_result(_file_with(SRGB), model=M)
    # malformed content of an ancillary chunk: the picture decodes, the chunk is ignored with a warning
    with pytest.warns(metadata.MetadataWarning, match="iCCP chunk ignored"):
        decoded = decode_image_result(_file_with(b"\x00" * 200, exif), model=M)
    assert decoded.icc_profile is None and decoded.exif == exif
    with pytest.warns(metadata.MetadataWarning, match="eXIf chunk ignored"):
        assert decode_image_result(_file_with(SRGB, b"JUNKJUNKJUNK"), model=M).exif is None


def test_metadata_after_the_frame_is_refused():
    from vqcodec.container import ContainerWriter

    with ContainerReader(io.BytesIO(_file_with())) as reader:
        header = reader.header
        frame = next(reader.frames())
    out = io.BytesIO()
    with ContainerWriter(out, header, index=False) as writer:
        writer.write_frame(frame.payload, key=True)
        writer.write_chunk(b"iCCP", SRGB)
    with pytest.raises(FormatError, match="side chunks after the image frame: iCCP"):
        decode_image_result(out.getvalue(), model=M)


def test_save_options_follow_each_format():
    carried = metadata.ImageMetadata(SRGB, b"II*\x00\x08\x00\x00\x00\x00\x00")
    options, lost = metadata.save_options("JPEG", carried)
    assert options == {"icc_profile": SRGB, "exif": b"Exif\x00\x00" + carried.exif} and lost == ()
    options, lost = metadata.save_options("PNG", carried)
    assert options["exif"] == carried.exif and lost == ()
    options, lost = metadata.save_options("BMP", carried)
    assert options == {} and lost == ("icc_profile", "exif")
    big = metadata.ImageMetadata(None, b"II*\x00" + bytes(70_000))
    assert metadata.save_options("JPEG", big) == ({}, ("exif",))
    assert metadata.save_options("PNG", metadata.ImageMetadata()) == ({}, ())


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP"])
def test_animated_pictures_are_refused_with_their_frame_count(fmt):
    frames = [Image.fromarray(picture(16, 16, seed=10 + i)) for i in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format=fmt, save_all=True, append_images=frames[1:], duration=40, loop=0)
    buffer.seek(0)
    with pytest.raises(media.AnimatedImageError, match=f"animated {fmt} with 3 frames"):
        media.open_image_file(buffer)
    # one frame of the same format is a still picture
    still = io.BytesIO()
    frames[0].save(still, format=fmt)
    still.seek(0)
    assert media.open_image_file(still).size == (16, 16)


def test_spec_constants_match_the_code():
    """Every constant of the spec's "Image metadata" table has that value in vqcodec.codec.metadata."""
    import ast
    import re

    from test_codec.image_helpers import REPO

    text = (REPO / "formats" / "vqc-v1.md").read_text()
    section = text.split("## Image metadata", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([A-Z0-9_]+)` \| `([^`]+)` \|", section, flags=re.M)
    assert len(rows) == 9
    for name, value in rows:
        assert getattr(metadata, name) == ast.literal_eval(value), name
    assert set(metadata.ICC_SPACE_FOR_FORMAT) == set(media.PIXEL_FORMATS)


def test_pillow_plugin_opens_with_the_metadata():
    import vqcodec  # noqa: F401  (registers the plugin)

    exif = _exif(Software="plugin").tobytes()
    image = _jpeg(picture(16, 32, seed=9), icc_profile=SRGB, exif=exif)
    with Image.open(io.BytesIO(encode_image(image, 1, model=M))) as opened:
        assert opened.info["icc_profile"] == SRGB and opened.info["exif"] == exif
        assert opened.getexif()[0x0131] == "plugin"
    with Image.open(io.BytesIO(encode_image(image, 1, model=M, metadata=False))) as opened:
        assert "icc_profile" not in opened.info and "exif" not in opened.info
