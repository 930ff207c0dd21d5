"""Pillow plugin: ``Image.open("x.vqc")`` decodes and ``im.save("x.vqc", quality=4)`` encodes.

``import vqcodec`` calls :func:`register` (Pillow has no entry-point mechanism for plugins, so
importing the package is the switch, as with ``pillow_heif.register_heif_opener()``)::

    import vqcodec
    from PIL import Image

    with Image.open("photo.vqc") as im:        # reads the header only: size, mode, info
        im.load()                              # decodes (this is where torch is imported)
    im.save("copy.vqc", quality=4)             # or bpp=0.25, psnr=32.0, model="name-or-path"

Opening reads only the container up to the frame (no torch, no model): ``im.size``, ``im.mode``
(RGB, RGBA, L or LA from the header's pixel format), ``im.info["vqc"]`` (model name,
quality, media) and, when the file carries them, ``im.info["icc_profile"]`` / ``im.info["exif"]``
are there at once; the pixels are decoded by ``load()``, i.e. by the first
pixel access. Pillow's own ``Image.MAX_IMAGE_PIXELS`` check applies to the header's size at
open time, and ``vqcodec.codec.limits`` to the decoder.

Video files open too: ``n_frames`` is the clip's frame count, ``seek(i)`` selects frame i
(decoded from the nearest earlier key frame) and every frame is an RGB picture.

Save options (``im.save(..., **options)``): ``quality`` (1..N of the model), ``bpp`` or
``psnr`` targets (at most one of the three), ``model`` (bundled name, bundle path or loaded
CodecModel). ``save_all=True`` writes every frame of an animated image (plus
``append_images``) as a video (options ``quality``, ``model``, ``gop``, ``duration`` in ms).
Saving to a file object never seeks, so a pipe or socket works.

Thread safety: an ``Image`` is not shared between threads (a Pillow rule); separate images
may be opened, decoded and saved from several threads at once.
"""

from __future__ import annotations

import contextlib
import io
from typing import IO, Any

from PIL import Image, ImageFile

from vqcodec.errors import VQCError

FORMAT = "VQC"
EXTENSIONS = (".vqc",)
MIME = "image/x-vqc"
# image pixel formats of the header -> Pillow mode
MODES = {"rgb24": "RGB", "rgba32": "RGBA", "gray8": "L", "graya16": "LA"}
# Model used by Image.open to decode (name, bundle path or CodecModel; it must be the file's
# model). None: the model the file names, from the bundled registry. Pillow's open() takes no
# options, so this is a module setting, like PIL.AvifImagePlugin.DECODE_CODEC_CHOICE.
DECODE_MODEL: Any = None


class VqcDecodeError(VQCError, OSError):
    """A ``.vqc`` whose header opened but whose data cannot be decoded (damaged, truncated, wrong
    model). An ``OSError``, as Pillow callers expect from ``load()`` on a broken file, and a
    ``VQCError``; the original error is its ``__cause__``."""


def _accept(prefix: bytes) -> bool:
    from vqcodec.container.spec import MAGIC

    return prefix[: len(MAGIC)] == MAGIC


class VqcImageFile(ImageFile.ImageFile):
    """A ``.vqc`` file as a Pillow image: the header on open, the pixels on ``load()``."""

    format = FORMAT
    format_description = "vqcodec learned VQ image/video"
    _frame = 0
    _vqc_bytes: bytes | None = None

    def _open(self) -> None:
        from vqcodec.container import ContainerReader
        from vqcodec.errors import VQCError

        assert self.fp is not None
        self._start = self.fp.tell()
        frame_count = 0
        side: tuple[tuple[bytes, bytes], ...] = ()
        try:
            with ContainerReader(self.fp) as reader:
                header = reader.header
                if header.media == "image":
                    # the ICC profile / Exif chunks precede the frame; damage is load()'s to report
                    with contextlib.suppress(VQCError):
                        side = next(reader.frames()).side_chunks
                if header.media != "image" and not header.frame_count and reader.seekable:
                    # a streamed clip's header leaves the count out: the index (or a scan) has it
                    with contextlib.suppress(VQCError):
                        frame_count = reader.key_frames().frame_count
        except VQCError as exc:
            # SyntaxError is how a Pillow plugin says "not a valid file of my format"
            raise SyntaxError(f"not a valid .vqc file: {exc}") from exc
        if header.media == "image":
            mode = MODES.get(header.pixel_format)
            if mode is None:
                raise SyntaxError(f"unsupported .vqc image pixel format {header.pixel_format!r}")
            self.n_frames = 1
        else:
            mode = "RGB"
            self.n_frames = max(1, header.frame_count or frame_count)
            if header.fps_num and header.fps_den:
                self.info["duration"] = 1000.0 * header.fps_den / header.fps_num
        self.is_animated = self.n_frames > 1
        self._header = header
        self._mode = mode
        self._size = (header.width, header.height)
        self.info["vqc"] = {
            "media": header.media,
            "model": header.model_name,
            "quality": header.quality,
            "pixel_format": header.pixel_format,
        }
        self.info.update(_metadata_info(side))
        self._set_tile()

    def _set_tile(self) -> None:
        # a raw tile over a buffer that load() fills with the decoded pixels
        self.tile = [ImageFile._Tile("raw", (0, 0, *self.size), 0, self.mode)]

    def seek(self, frame: int) -> None:
        if not self._seek_check(frame):
            return
        self._frame = frame
        self._set_tile()

    def tell(self) -> int:
        return self._frame

    def load(self) -> Any:
        if self.tile:
            if self._vqc_bytes is None:
                assert self.fp is not None
                self.fp.seek(self._start)
                self._vqc_bytes = self.fp.read()
            pixels = self._decode_pixels(self._vqc_bytes)
            if self.fp is not None and self._exclusive_fp:
                self.fp.close()
            # the raw tile set by _open/seek now reads the decoded pixels
            self.fp = io.BytesIO(pixels)
        return super().load()

    def load_seek(self, pos: int) -> None:
        assert self.fp is not None
        self.fp.seek(pos)

    def _decode_pixels(self, data: bytes) -> bytes:
        try:
            if self._header.media == "image":
                from vqcodec.codec.image import decode_image

                array = decode_image(data, output="numpy", model=DECODE_MODEL)
            else:
                array = _video_frame(io.BytesIO(data), self._frame)
        except VQCError as exc:
            if isinstance(exc, OSError):
                raise
            raise VqcDecodeError(f"cannot decode .vqc data: {exc}") from exc
        return bytes(array.tobytes())


def _metadata_info(side: tuple[tuple[bytes, bytes], ...]) -> dict[str, bytes]:
    """``info["icc_profile"]`` / ``info["exif"]`` from an image's iCCP / eXIf chunks (as Pillow's
    JPEG and PNG readers give them), so ``Image.open("x.vqc").save("x.png")`` keeps the profile."""
    from vqcodec.codec.metadata import EXIF_CHUNK, ICC_CHUNK, ImageMetadata, check_metadata, pil_info
    from vqcodec.errors import VQCError

    found: dict[bytes, bytes | None] = {}
    for chunk_type, data in side:
        if chunk_type in (ICC_CHUNK, EXIF_CHUNK) and chunk_type not in found:
            with contextlib.suppress(VQCError):  # over the limit: decoding the file reports it
                found[chunk_type] = check_metadata(chunk_type, data)
    return pil_info(ImageMetadata(found.get(ICC_CHUNK), found.get(EXIF_CHUNK)))


def _video_frame(source: IO[bytes], index: int) -> Any:
    """Frame ``index`` of a video ``.vqc`` as (H, W, 3) uint8."""
    from vqcodec.codec.video import VideoDecoder
    from vqcodec.errors import FormatError

    with VideoDecoder(source, model=DECODE_MODEL) as decoder:
        decoder.seek(index)
        for frame in decoder:
            return _as_rgb_array(frame)
    raise FormatError(f"video has no frame {index}", field="frame_index")


def _as_rgb_array(frame: Any) -> Any:
    import numpy as np

    if isinstance(frame, Image.Image):
        return np.asarray(frame.convert("RGB"))
    array = np.asarray(getattr(frame, "rgb", frame), dtype=np.uint8)
    if array.ndim == 2:  # gray8 videos decode to (H, W); video frames are RGB images here
        array = np.repeat(array[..., None], 3, axis=-1)
    return np.ascontiguousarray(array)


def _save(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    from vqcodec.codec.image import encode_image

    options = im.encoderinfo
    data = encode_image(
        im,
        options.get("quality"),
        bpp=options.get("bpp"),
        psnr=options.get("psnr"),
        model=options.get("model"),
    )
    fp.write(data)


def _save_all(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    """``im.save("clip.vqc", save_all=True)``: every frame (and ``append_images``) as a video.

    Options: ``quality``, ``model``, ``gop`` and ``duration`` (ms per frame, default the
    image's ``info["duration"]``, else 40 ms = 25 fps). Frames are coded as RGB.
    """
    from fractions import Fraction

    from PIL import ImageSequence

    from vqcodec.codec.video import VideoEncoder

    options = im.encoderinfo
    sequence = [im, *options.get("append_images", [])]
    duration = options.get("duration", im.info.get("duration")) or 40
    if isinstance(duration, (list, tuple)):  # one value per frame: the codec has one frame rate
        duration = duration[0] if duration else 40
    if not isinstance(duration, (int, float)) or not 0 < duration < 1e7:
        raise ValueError(f"duration must be a positive number of milliseconds, got {duration!r}")
    fps = Fraction(1000) / Fraction(duration).limit_denominator(1000)
    current = im.tell()
    try:
        with VideoEncoder(
            fp, options.get("model"), fps=fps, quality=options.get("quality"), gop=options.get("gop")
        ) as encoder:
            for image in sequence:
                for frame in ImageSequence.Iterator(image):
                    encoder.write(frame.convert("RGB"))
    finally:
        im.seek(current)


_registered = False


def register() -> None:
    """Make Pillow open and save ``.vqc`` files (idempotent; ``import vqcodec`` calls it)."""
    global _registered
    if _registered:
        return
    Image.register_open(FORMAT, VqcImageFile, _accept)
    Image.register_save(FORMAT, _save)
    Image.register_save_all(FORMAT, _save_all)
    Image.register_extensions(FORMAT, list(EXTENSIONS))
    Image.register_mime(FORMAT, MIME)
    _registered = True


__all__ = ["FORMAT", "MIME", "VqcDecodeError", "VqcImageFile", "register"]
