"""Pixels in and out of the image codec: PIL / numpy / torch conversions, padding, tiling.

Everything the image codec needs between "whatever the user handed us" and
"(1, 3, H, W) float pixels a model eats", and back:

- :func:`load_image` turns a PIL image, a numpy array or a torch tensor (or a path)
  into a :class:`SourceImage`: RGB uint8 pixels (H, W, 3), an optional alpha plane
  (H, W) and the pixel format to restore on decode ("rgb24", "rgba32", "gray8",
  "graya16"). Palette, CMYK, YCbCr, LAB, HSV and 1-bit images are converted to RGB
  (or RGBA when they carry transparency); 16-bit and float inputs are rounded to
  8 bits per channel with a :class:`PrecisionWarning`.
- :func:`pad_to_stride` pads the pixels (edge replication, cheap to code) to a
  multiple of the model stride; the decoder crops back to the header's size.
- :func:`encode_tiled` / :func:`decode_tiled` run the model over the latent grid in
  tiles with an overlapping halo, so memory is bounded by the tile size, not by the
  picture: a 24-megapixel photo fits in well under 4 GB. Each tile is computed with a
  halo of extra latents on every side and only its core is kept. The halo is the
  transform's measured receptive field (:func:`model_halos`, probed once per model),
  so the result equals the untiled one up to float rounding (at most 1 grey level
  after rounding): no seams, and no blending needed. The bitstream does not depend on
  tiling.
- :func:`make_output` builds the decoded picture as PIL, numpy or torch.

Shapes: pixels arrays are (H, W, C) uint8; model tensors (1, 3, H, W) float32 in
[0, 1], channels_last; codes (S, h, w) int32 with h = H / stride, w = W / stride.
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vqcodec.codec import limits
from vqcodec.codec.metadata import ImageMetadata, from_pil
from vqcodec.errors import VQCError

if TYPE_CHECKING:
    import torch

    from vqcodec.models.interface import PixelCodesModel

# Pixel formats written in the container header (field pixel_format) for images.
PIXEL_FORMATS = {"rgb24": 3, "rgba32": 4, "gray8": 1, "graya16": 2}

# Latent-grid tiling: pictures up to SINGLE_PASS_LATENTS latents (1 MP at stride 8)
# go through the model in one pass; larger ones in tiles of TILE_LATENTS x TILE_LATENTS
# latents plus TILE_HALO latents of context per side. Peak memory of one 112x112-latent
# tile pass is about 1 GB with the bundled models.
SINGLE_PASS_LATENTS = 128 * 128
TILE_LATENTS = 96
TILE_HALO = 8  # used when a model's receptive field cannot be probed
MAX_HALO = 20  # probe half-size in latents: receptive fields beyond this are capped here

_halos: dict[tuple[str, bytes], tuple[int, int]] = {}
_halos_lock = threading.Lock()


class PrecisionWarning(UserWarning):
    """An input had more than 8 bits per channel and was rounded to 8 bits."""


@dataclass(frozen=True)
class SourceImage:
    """A picture ready to code: ``rgb`` (H, W, 3) uint8, ``alpha`` (H, W) uint8 or None.

    ``icc_profile`` and ``exif`` (a TIFF structure, no ``Exif\\0\\0`` prefix) come from a PIL
    input's ``info`` (see :mod:`vqcodec.codec.metadata`); arrays and tensors have none.
    """

    rgb: np.ndarray
    alpha: np.ndarray | None
    pixel_format: str
    icc_profile: bytes | None = None
    exif: bytes | None = None

    @property
    def metadata(self) -> ImageMetadata:
        return ImageMetadata(self.icc_profile, self.exif)

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def channels(self) -> int:
        return PIXEL_FORMATS[self.pixel_format]


# ---------------------------------------------------------------------------------------------
# input


class ImageFileError(VQCError, UnidentifiedImageError):
    """An input file that is not a picture Pillow can read (empty, truncated, another format).

    A :class:`~vqcodec.errors.VQCError` and, like Pillow's own error, an ``OSError``
    (``PIL.UnidentifiedImageError``), so callers catching either keep working.
    """


class AnimatedImageError(VQCError, ValueError):
    """An animated GIF / APNG / WebP given as a still picture: coding frame 0 would lose the rest."""


def _source_name(src: Any) -> str:
    if isinstance(src, (str, os.PathLike)):
        return os.fsdecode(src)
    name = getattr(src, "name", None)
    return name if isinstance(name, str) else "input"


def open_image_file(src: Any) -> Image.Image:
    """Open an image file (path or binary file object) with Pillow and load it.

    The declared size is checked against :data:`limits.MAX_IMAGE_PIXELS` before the
    pixels are decoded; 16-bit PNGs (which Pillow reduces to 8 bits per channel for
    RGB) raise a :class:`PrecisionWarning`; EXIF orientation is applied so the
    picture is coded the way viewers show it. A file Pillow cannot identify raises
    :class:`ImageFileError` naming it; an animated picture (more than one frame) raises
    :class:`AnimatedImageError`, since only its first frame would be kept.
    """
    name = _source_name(src)
    try:
        image = Image.open(src)
    except UnidentifiedImageError:
        empty = False
        if isinstance(src, (str, os.PathLike)):
            empty = os.path.getsize(src) == 0
        elif hasattr(src, "seek") and hasattr(src, "tell"):
            try:
                empty = src.seek(0, os.SEEK_END) == 0
            except OSError:
                empty = False
        what = "an empty file" if empty else "not a picture Pillow can read (PNG, JPEG, WebP, TIFF...)"
        raise ImageFileError(f"{name}: {what}") from None
    frames = int(getattr(image, "n_frames", 1) or 1)
    # animation formats only: a multi-page TIFF or a camera's MPO (JPEG + preview) is a picture
    if frames > 1 and getattr(image, "is_animated", False) and image.format in ("GIF", "PNG", "WEBP"):
        raise AnimatedImageError(
            f"{name}: animated {image.format or 'image'} with {frames} frames; only still pictures "
            "are coded as images (convert it to a video first, e.g. ffmpeg -i in.gif clip.y4m, "
            "or extract one frame)"
        )
    limits.check_pixels(image.width, image.height, what="input image")
    # Pillow unpacks 16-bit RGB(A) PNGs to 8 bits silently; the tile's raw mode tells
    rawmodes = [str(t[3]) for t in (getattr(image, "tile", None) or []) if len(t) > 3]
    sixteen = any(";16" in r for r in rawmodes)
    image.load()
    if sixteen and not image.mode.startswith("I"):
        warnings.warn(
            f"16-bit {image.mode} image converted to 8 bits per channel", PrecisionWarning, stacklevel=2
        )
    transposed = ImageOps.exif_transpose(image)
    return transposed if transposed is not None else image


def load_image(image: Any) -> SourceImage:
    """Turn a PIL image, numpy array, torch tensor or path into a :class:`SourceImage`.

    numpy: (H, W) or (H, W, C) with C in 1..4; uint8, uint16 (rounded to 8 bits with a
    warning), bool, or float in [0, 1]. torch: (C, H, W) or (1, C, H, W), uint8 or
    float in [0, 1]. C = 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA. A PIL image's ICC profile and
    Exif are kept when they fit the coded pixels (:func:`vqcodec.codec.metadata.from_pil`).
    """
    if isinstance(image, (str, os.PathLike)):
        image = open_image_file(image)
    if isinstance(image, Image.Image):
        source = _from_pil(image)
        found = from_pil(image, source.pixel_format)
        if found:
            source = dataclasses.replace(source, icc_profile=found.icc_profile, exif=found.exif)
        return source
    if type(image).__module__.split(".")[0] == "torch":
        return _from_numpy(_torch_to_hwc(image), source="tensor")
    if isinstance(image, np.ndarray):
        return _from_numpy(image, source="array")
    raise TypeError(
        f"cannot encode a {type(image).__name__}: expected a PIL image, numpy array or torch tensor"
    )


def _from_pil(image: Image.Image) -> SourceImage:
    limits.check_pixels(image.width, image.height, what="input image")
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        array = np.asarray(image).astype(np.int64)
        warnings.warn(f"16-bit {mode} image converted to 8 bits per channel", PrecisionWarning, stacklevel=3)
        return _assemble(_sixteen_to_eight(np.clip(array, 0, 65535)), None)
    if mode == "F":
        warnings.warn(
            "32-bit float (F) image converted to 8 bits per channel", PrecisionWarning, stacklevel=3
        )
        array = np.asarray(image, dtype=np.float64)
        return _assemble(np.clip(np.rint(array), 0, 255).astype(np.uint8), None)
    if mode in ("1", "L"):
        return _assemble(np.asarray(image.convert("L")), None)
    if mode in ("LA", "La"):
        array = np.asarray(image.convert("LA"))
        return _assemble(array[..., 0], array[..., 1])
    if mode in ("P", "PA"):
        transparent = mode == "PA" or image.has_transparency_data
        image = image.convert("RGBA" if transparent else "RGB")
        mode = image.mode
    elif mode in ("RGBa", "RGBX"):
        image = image.convert("RGBA" if mode == "RGBa" else "RGB")
        mode = image.mode
    if mode == "RGBA":
        array = np.asarray(image)
        return _assemble(array[..., :3], array[..., 3])
    if mode != "RGB":
        # CMYK, YCbCr, LAB, HSV: Pillow's own conversion (no ICC colour management)
        image = image.convert("RGB")
    return _assemble(np.asarray(image), None)


def _torch_to_hwc(tensor: Any) -> np.ndarray:
    t = tensor.detach()
    if t.dim() == 4:
        if t.shape[0] != 1:
            raise ValueError(f"expected one image, got a batch of {t.shape[0]} (shape {tuple(t.shape)})")
        t = t[0]
    if t.dim() == 2:
        t = t[None]
    if t.dim() != 3 or not 1 <= t.shape[0] <= 4:
        raise ValueError(f"expected a (C, H, W) tensor with C in 1..4, got shape {tuple(tensor.shape)}")
    if t.is_floating_point():
        t = t.float()
    return t.cpu().permute(1, 2, 0).contiguous().numpy()


def _from_numpy(array: np.ndarray, *, source: str) -> SourceImage:
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or not 1 <= array.shape[2] <= 4:
        raise ValueError(f"expected an (H, W) or (H, W, C) {source} with C in 1..4, got shape {array.shape}")
    limits.check_pixels(array.shape[1], array.shape[0], what="input image")
    if array.dtype == np.uint8:
        eight = array
    elif array.dtype == np.uint16:
        warnings.warn("16-bit image converted to 8 bits per channel", PrecisionWarning, stacklevel=3)
        eight = _sixteen_to_eight(array)
    elif array.dtype == np.bool_:
        eight = array.astype(np.uint8) * 255
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ValueError(f"the {source} contains NaN or infinite values")
        eight = np.clip(np.rint(array.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    elif np.issubdtype(array.dtype, np.integer):
        if array.size and (array.min() < 0 or array.max() > 255):
            raise ValueError(f"integer {source} of dtype {array.dtype} has values outside 0..255")
        eight = array.astype(np.uint8)
    else:
        raise TypeError(f"unsupported {source} dtype {array.dtype}")
    channels = eight.shape[2]
    if channels == 1:
        return _assemble(eight[..., 0], None)
    if channels == 2:
        return _assemble(eight[..., 0], eight[..., 1])
    if channels == 3:
        return _assemble(eight, None)
    return _assemble(eight[..., :3], eight[..., 3])


def _sixteen_to_eight(array: np.ndarray) -> np.ndarray:
    """0..65535 -> 0..255 with rounding (65535 / 257 = 255 exactly)."""
    return ((array.astype(np.uint32) + 128) // 257).astype(np.uint8)


def _assemble(colour: np.ndarray, alpha: np.ndarray | None) -> SourceImage:
    """``colour`` (H, W) gray or (H, W, 3) RGB uint8, ``alpha`` (H, W) uint8 or None."""
    if colour.ndim == 2:
        rgb = np.repeat(colour[..., None], 3, axis=2)
        fmt = "gray8" if alpha is None else "graya16"
    else:
        rgb = np.ascontiguousarray(colour)
        fmt = "rgb24" if alpha is None else "rgba32"
    a = None if alpha is None else np.ascontiguousarray(alpha, dtype=np.uint8)
    return SourceImage(rgb=rgb, alpha=a, pixel_format=fmt)


# ---------------------------------------------------------------------------------------------
# padding and tensors


def padded_size(width: int, height: int, stride: int) -> tuple[int, int]:
    """(W, H) rounded up to multiples of ``stride``."""
    return math.ceil(width / stride) * stride, math.ceil(height / stride) * stride


def pad_to_stride(rgb: np.ndarray, stride: int) -> np.ndarray:
    """(H, W, 3) -> (H', W', 3) with H', W' multiples of ``stride``, edge pixels replicated."""
    height, width = rgb.shape[:2]
    pw, ph = padded_size(width, height, stride)
    if (pw, ph) == (width, height):
        return rgb
    return np.pad(rgb, ((0, ph - height), (0, pw - width), (0, 0)), mode="edge")


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float32 in [0, 1], in channels_last memory layout.

    The batch axis is added before the permute so the strides are the canonical
    channels_last ones (H*W*3, 1, W*3, 3): a tensor whose size-1 batch axis has an odd
    stride passes ``is_contiguous(channels_last)`` yet sends oneDNN convolutions down a
    path that is tens of times slower.
    """
    import torch

    if not rgb.flags.writeable:
        rgb = np.array(rgb)  # torch wants writable memory (PIL's arrays are read-only)
    height, width = rgb.shape[:2]
    flat = torch.from_numpy(np.ascontiguousarray(rgb)).to(torch.float32).div_(255.0)
    return flat.reshape(1, height, width, 3).permute(0, 3, 1, 2)


def from_tensor(pixels: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) float -> (H, W, 3) uint8, clamped to [0, 1] and rounded half to even."""
    out = pixels[0].clamp(0.0, 1.0).mul(255.0).round_().to(dtype=_uint8())
    return out.permute(1, 2, 0).contiguous().cpu().numpy()


def _uint8() -> Any:
    import torch

    return torch.uint8


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between two uint8 arrays of the same shape (inf when equal)."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


# ---------------------------------------------------------------------------------------------
# tiling over the latent grid


@dataclass(frozen=True)
class Tile:
    """One tile of an (h, w) latent grid: ``core`` is what it owns, ``outer`` adds the halo.

    Both are (row0, row1, col0, col1) in latents, half-open, clipped to the grid.
    """

    core: tuple[int, int, int, int]
    outer: tuple[int, int, int, int]


def plan_tiles(
    h: int, w: int, *, tile: int | None = None, halo: int | None = None, single_pass: int | None = None
) -> list[Tile]:
    """Split an (h, w) latent grid into near-equal tiles of at most ``tile`` latents a side.

    A grid of at most ``single_pass`` latents is one tile without halo. The plan is a
    pure function of its arguments, so a file always decodes through the same tiles.
    """
    tile = TILE_LATENTS if tile is None else tile
    halo = TILE_HALO if halo is None else halo
    single_pass = SINGLE_PASS_LATENTS if single_pass is None else single_pass
    if tile < 1 or halo < 0:
        raise ValueError(f"bad tiling: tile={tile}, halo={halo}")
    if h * w <= single_pass:
        return [Tile((0, h, 0, w), (0, h, 0, w))]
    rows = _split(h, math.ceil(h / tile))
    cols = _split(w, math.ceil(w / tile))
    tiles = []
    for r0, r1 in rows:
        for c0, c1 in cols:
            outer = (max(0, r0 - halo), min(h, r1 + halo), max(0, c0 - halo), min(w, c1 + halo))
            tiles.append(Tile((r0, r1, c0, c1), outer))
    return tiles


def _split(n: int, parts: int) -> list[tuple[int, int]]:
    edges = [round(i * n / parts) for i in range(parts + 1)]
    return [(edges[i], edges[i + 1]) for i in range(parts)]


def model_device(model: PixelCodesModel) -> Any:
    """Where the model's weights live (CPU unless moved, see :func:`vqcodec.models.device.on_device`)."""
    from vqcodec.models import device

    return device.model_device(model)


def model_halos(model: PixelCodesModel) -> tuple[int, int]:
    """(encoder halo, decoder halo) in latents: the transforms' receptive-field radius + 1.

    Measured once per model with autograd on ``model.network.analyse`` / ``synthesise``:
    the inputs with a non-zero gradient for the output at the centre of a
    (2 MAX_HALO + 1)^2-latent probe are exactly its receptive field, whatever the
    weights' magnitudes. A model without those methods gets ``TILE_HALO``.
    """
    key = (str(getattr(model, "name", "")), bytes(getattr(model, "sha256", b"")) or str(id(model)).encode())
    with _halos_lock:
        if key not in _halos:
            _halos[key] = (_probe_halo(model, "analyse"), _probe_halo(model, "synthesise"))
        return _halos[key]


def _probe_halo(model: PixelCodesModel, method: str) -> int:
    import torch

    transform = getattr(getattr(model, "network", None), method, None)
    if transform is None:
        return TILE_HALO
    n, stride = 2 * MAX_HALO + 1, int(model.stride)
    device = model_device(model)
    # random (seeded) inputs: a constant one could saturate every unit of some activation
    generator = torch.Generator().manual_seed(0)
    try:
        with torch.inference_mode(False), torch.enable_grad():
            if method == "analyse":  # pixels -> latents: which pixels reach the centre latent
                probe = (
                    torch.rand((1, 3, n * stride, n * stride), generator=generator)
                    .to(device)
                    .requires_grad_()
                )
                out = transform(probe)
                target, unit = out[:, :, MAX_HALO, MAX_HALO].sum(), stride
            else:  # latents -> pixels: which latents reach the centre pixel
                channels = int(model.config.latent_dim)
                probe = torch.randn((1, channels, n, n), generator=generator).to(device).requires_grad_()
                out = transform(probe)
                centre = MAX_HALO * stride + stride // 2
                target, unit = out[:, :, centre, centre].sum(), 1
            (grad,) = torch.autograd.grad(target, probe)
    except (RuntimeError, ValueError, TypeError, AttributeError):
        return TILE_HALO
    support = grad.abs().amax(dim=(0, 1)).cpu().numpy() > 0
    middle = (MAX_HALO * stride + stride // 2) if method == "analyse" else MAX_HALO
    radius = 0
    for axis in (0, 1):
        hits = np.flatnonzero(support.any(axis=axis))
        if hits.size:
            radius = max(radius, math.ceil(max(middle - hits.min(), hits.max() - middle) / unit))
    return min(MAX_HALO, radius + 1)


def encode_tiled(model: PixelCodesModel, rgb: np.ndarray, quality: int, **tiling: int) -> np.ndarray:
    """Padded pixels (H, W, 3) uint8, H and W multiples of ``model.stride`` -> codes (S, h, w) int32."""
    import torch

    stride = int(model.stride)
    device = model_device(model)
    h, w = rgb.shape[0] // stride, rgb.shape[1] // stride
    codes: np.ndarray | None = None
    if "halo" not in tiling and len(plan_tiles(h, w, **tiling)) > 1:
        tiling = {**tiling, "halo": model_halos(model)[0]}
    with torch.inference_mode():
        for t in plan_tiles(h, w, **tiling):
            r0, r1, c0, c1 = t.outer
            pixels = to_tensor(rgb[r0 * stride : r1 * stride, c0 * stride : c1 * stride]).to(device)
            tile_codes = model.to_codes(pixels, quality).cpu()
            if (
                tile_codes.dim() != 4
                or tile_codes.shape[0] != 1
                or tuple(tile_codes.shape[2:]) != (r1 - r0, c1 - c0)
            ):
                raise RuntimeError(
                    f"model {model.name!r} returned codes of shape {tuple(tile_codes.shape)} "
                    f"for pixels {tuple(pixels.shape)} (stride {stride})"
                )
            if codes is None:
                codes = np.empty((tile_codes.shape[1], h, w), dtype=np.int32)
            k0, k1, l0, l1 = t.core
            codes[:, k0:k1, l0:l1] = tile_codes[0, :, k0 - r0 : k1 - r0, l0 - c0 : l1 - c0].numpy()
    assert codes is not None
    return codes


def decode_tiled(model: PixelCodesModel, codes: np.ndarray, **tiling: int) -> np.ndarray:
    """Codes (S, h, w) -> pixels (h * stride, w * stride, 3) uint8, tile by tile."""
    import torch

    stride = int(model.stride)
    device = model_device(model)
    s, h, w = codes.shape
    limits.check_pixels(w * stride, h * stride, what="decoded (padded) image")
    out = np.empty((h * stride, w * stride, 3), dtype=np.uint8)
    if "halo" not in tiling and len(plan_tiles(h, w, **tiling)) > 1:
        tiling = {**tiling, "halo": model_halos(model)[1]}
    with torch.inference_mode():
        for t in plan_tiles(h, w, **tiling):
            r0, r1, c0, c1 = t.outer
            tile_codes = (
                torch.from_numpy(np.ascontiguousarray(codes[:, r0:r1, c0:c1])).long()[None].to(device)
            )
            pixels = model.from_codes(tile_codes)
            if tuple(pixels.shape) != (1, 3, (r1 - r0) * stride, (c1 - c0) * stride):
                raise RuntimeError(
                    f"model {model.name!r} returned pixels of shape {tuple(pixels.shape)} "
                    f"for codes {tuple(tile_codes.shape)} (stride {stride})"
                )
            k0, k1, l0, l1 = t.core
            core = pixels[
                :, :, (k0 - r0) * stride : (k1 - r0) * stride, (l0 - c0) * stride : (l1 - c0) * stride
            ]
            out[k0 * stride : k1 * stride, l0 * stride : l1 * stride] = from_tensor(core)
    return out


# ---------------------------------------------------------------------------------------------
# output


def make_output(rgb: np.ndarray, alpha: np.ndarray | None, pixel_format: str, output: str = "pil") -> Any:
    """Decoded (H, W, 3) uint8 RGB (+ alpha) -> the picture in its original pixel format.

    ``output``: "pil" -> PIL.Image in mode RGB / RGBA / L / LA; "numpy" -> uint8 array
    shaped like ``np.asarray`` of that PIL image ((H, W) for gray, (H, W, C) otherwise);
    "torch" -> float32 tensor (C, H, W) in [0, 1].
    """
    if output not in ("pil", "numpy", "torch"):
        raise ValueError(f"output must be 'pil', 'numpy' or 'torch', got {output!r}")
    if pixel_format not in PIXEL_FORMATS:
        raise ValueError(f"unknown pixel format {pixel_format!r}")
    if pixel_format in ("gray8", "graya16"):
        colour = rgb_to_gray(rgb)[..., None]
    else:
        colour = rgb
    if pixel_format in ("rgba32", "graya16"):
        if alpha is None:
            raise ValueError(f"pixel format {pixel_format} needs an alpha plane")
        array = np.concatenate([colour, alpha[..., None]], axis=2)
    else:
        array = colour
    if output == "torch":
        import torch

        return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).float().div_(255.0).contiguous()
    if array.shape[2] == 1:
        array = array[..., 0]
    array = np.ascontiguousarray(array)
    if output == "numpy":
        return array
    return Image.fromarray(array)  # (H, W) -> L, (H, W, 2) -> LA, 3 -> RGB, 4 -> RGBA


def rgb_to_gray(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W) uint8 luma, ITU-R 601 weights in integer arithmetic as Pillow's "L"."""
    r, g, b = (rgb[..., i].astype(np.uint32) for i in range(3))
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)


__all__ = [
    "PIXEL_FORMATS",
    "PrecisionWarning",
    "SourceImage",
    "open_image_file",
    "load_image",
    "padded_size",
    "pad_to_stride",
    "to_tensor",
    "from_tensor",
    "psnr",
    "Tile",
    "plan_tiles",
    "model_halos",
    "encode_tiled",
    "decode_tiled",
    "make_output",
    "rgb_to_gray",
]
