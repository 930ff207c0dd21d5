"""Video to and from ``.vqc``: the streaming ``VideoEncoder`` / ``VideoDecoder``.

Coding (formats/vqc-v1.md, "Video frame payload"):

- key frames (I) are coded like images: the image model's RVQ codes (S, h, w) for the
  quality level, entropy-coded with the model's prior. Their latents ``yhat`` are the RVQ
  reconstruction the decoder also computes.
- predicted frames (P) code the latent residual ``r = y_t - yhat_{t-1}`` against the
  decoder's own previous latents (never the source, so nothing drifts): per latent position
  a mode, either a stage count n in 0..R (0 = copy the previous latents) followed by n
  residual-VQ codes, or intra (R + 1: the position coded afresh with the key frames' S image
  RVQ stages, for content that moved or appeared) (``vqcodec.models.video.VideoCodec``). The
  encoder picks each position's mode by rate-distortion (minimum of latent squared error +
  lambda * bits under the integer tables), with lambda taken from the slope of the key frame's
  own RD curve at the chosen quality, so P frames match the key frames' quality. A P frame that
  would cost more (in D + lambda R) than a key frame is coded as a key frame instead (scene cuts).

Streams: the container writer never seeks (pipes, sockets); the reader streams frame by
frame, and ``VideoDecoder.seek(i)`` restarts at the nearest earlier key frame and rebuilds the
latents of the frames before ``i`` without synthesising their pixels. Memory holds one frame's
pixels and latents at a time, whatever the clip length.

A file made with an image model alone (no trained temporal part) is valid too: its temporal
part is derived deterministically from the image weights (``VideoCodec.from_image``).
"""

from __future__ import annotations

import io
import math
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import torch

from vqcodec.codec import limits, media
from vqcodec.codec.header import (
    check_header,
    check_header_quality,
    check_stride,
    make_header,
    model_for_header,
    parse_codec_params,
)
from vqcodec.errors import FormatError, ModelMismatchError, UnknownModelError, VQCError
from vqcodec.quantize.kmeans import greedy_residual_codes

CODEC_PARAMS_VERSION = 1
#: first byte of every video frame payload
FRAME_INTRA, FRAME_INTER = 0, 1
DEFAULT_GOP = 32
#: P frames larger than this fraction of the last key frame are also tried as key frames
SCENE_CUT_TRIAL_RATIO = 0.5
#: a P frame becomes a key frame only when the key frame costs (D + lambda R) under this share
#: of the P frame's cost. Measured on DAVIS training clips (benchmarks/scene_cut.py): the greedy
#: 1.0 turned 2.3 frames per 16-frame continuous shot into key frames that break even (BD-rate
#: -0.7 % against no detection), 0.95 makes none and still finds every real cut, 0.9 misses some
SCENE_CUT_MARGIN = 0.95
TEMPORAL_MODE = "latent-residual"
VIDEO_PIXEL_FORMATS = {"rgb24": 3, "yuv420p": 3, "yuv422p": 3, "yuv444p": 3, "gray8": 1}


# ---------------------------------------------------------------------------------------------
# models


def resolve_video_model(model: Any = None) -> Any:
    """A CodecModel: the given one, a name/path, or the default video model (else the default image model)."""
    from vqcodec.models.zoo import load_model

    if model is not None:
        return load_model(model, media="video")
    try:
        return load_model(None, media="video")
    except UnknownModelError:
        return load_model(None, media="image")


class TemporalCoder:
    """Everything one model needs to code frames: networks, integer tables, bit costs.

    Built once per CodecModel and cached on it (read-only afterwards, so several encoders
    and decoders may share it).
    """

    def __init__(self, codec_model: Any):
        from vqcodec.entropy.coder import CodingTables
        from vqcodec.models.image import ImageCodec
        from vqcodec.models.video import TABLE_PRECISION, VideoCodec

        network = codec_model.network
        if isinstance(network, VideoCodec):
            self.net = network.eval()
        elif isinstance(network, ImageCodec):
            self.net = VideoCodec.from_image(network)
        else:
            raise TypeError(f"model {codec_model.name!r} is neither an image nor a video codec")
        if codec_model.prior is None:
            raise ModelMismatchError(f"model {codec_model.name!r} has no entropy prior")
        self.model = codec_model
        self.prior = codec_model.prior
        cfg = self.net.config
        self.stages = cfg.residual_stages
        self.stride = int(cfg.stride)
        count_freqs = self.net.count_freqs.to(torch.int64).numpy()
        residual_freqs = self.net.residual_freqs.to(torch.int64).numpy()
        intra_freqs = self.net.intra_freqs.to(torch.int64).numpy()
        self.num_contexts = count_freqs.shape[0]
        # one table set: mode rows, then residual-stage rows, then intra image-stage rows
        self.intra_offset = self.num_contexts + self.stages
        parts = (count_freqs, residual_freqs, intra_freqs)
        freqs = np.zeros((sum(f.shape[0] for f in parts), max(f.shape[1] for f in parts)), dtype=np.int64)
        row = 0
        for f in parts:
            freqs[row : row + f.shape[0], : f.shape[1]] = f
            row += f.shape[0]
        self.tables = CodingTables(freqs)
        self._residual_tables = [
            self.net.residual.stage(j).codebook.detach().float() for j in range(self.stages)
        ]
        self._residual_norms = [(t * t).sum(1) for t in self._residual_tables]
        quantizer = self.net.image.quantizer
        self._image_tables = [
            quantizer.stage(i).codebook.detach().float() for i in range(quantizer.num_quantizers)
        ]
        self._image_norms = [(t * t).sum(1) for t in self._image_tables]
        self._plain_search = all(
            quantizer.stage(i).project_in is None for i in range(quantizer.num_quantizers)
        ) and all(self.net.residual.stage(j).project_in is None for j in range(self.stages))
        scale = float(1 << TABLE_PRECISION)
        with np.errstate(divide="ignore"):
            self.count_bits = torch.from_numpy(-np.log2(count_freqs / scale)).float()
            self.residual_bits = torch.from_numpy(-np.log2(residual_freqs / scale)).float()
            self.intra_bits = torch.from_numpy(-np.log2(intra_freqs / scale)).float()

    @staticmethod
    def for_model(codec_model: Any) -> TemporalCoder:
        coder = getattr(codec_model, "_temporal_coder", None)
        if coder is None:
            coder = TemporalCoder(codec_model)
            codec_model._temporal_coder = coder
        return coder

    # -- transforms (tiled over the latent grid like the image codec) ----------------------
    def analyse(self, padded: np.ndarray) -> torch.Tensor:
        """Padded pixels (H, W, 3) uint8 -> latents (1, C, H/stride, W/stride)."""
        s = self.stride
        h, w = padded.shape[0] // s, padded.shape[1] // s
        tiles = media.plan_tiles(h, w)
        if len(tiles) == 1:
            return self.net.image.analyse(media.to_tensor(padded))
        out = torch.empty(1, self.net.config.latent_dim, h, w)
        for t in tiles:
            r0, r1, c0, c1 = t.outer
            part = self.net.image.analyse(media.to_tensor(padded[r0 * s : r1 * s, c0 * s : c1 * s]))
            k0, k1, l0, l1 = t.core
            out[:, :, k0:k1, l0:l1] = part[:, :, k0 - r0 : k1 - r0, l0 - c0 : l1 - c0]
        return out

    def synthesise(self, latents: torch.Tensor) -> np.ndarray:
        """Latents (1, C, h, w) -> pixels (h * stride, w * stride, 3) uint8."""
        s = self.stride
        _, _, h, w = latents.shape
        tiles = media.plan_tiles(h, w)
        if len(tiles) == 1:
            return media.from_tensor(self.net.image.synthesise(latents))
        out = np.empty((h * s, w * s, 3), dtype=np.uint8)
        for t in tiles:
            r0, r1, c0, c1 = t.outer
            pixels = self.net.image.synthesise(latents[:, :, r0:r1, c0:c1])
            k0, k1, l0, l1 = t.core
            core = pixels[:, :, (k0 - r0) * s : (k1 - r0) * s, (l0 - c0) * s : (l1 - c0) * s]
            out[k0 * s : k1 * s, l0 * s : l1 * s] = media.from_tensor(core)
        return out

    # -- intra ------------------------------------------------------------------------------
    def intra_latents(self, codes: torch.Tensor) -> torch.Tensor:
        """Image codes (1, h, w, S) -> latents (1, C, h, w): what the decoder reconstructs."""
        return self.net.image.quantizer.decode(codes)

    def encode_intra(self, y: torch.Tensor, quality: int) -> tuple[bytes, torch.Tensor, float, float]:
        """Latents -> (payload, yhat, distortion, lambda) for a key frame at ``quality``.

        lambda = -dD/dR of the image RVQ around this quality's stage count, measured on this
        frame: it prices P-frame bits at the key frame's own RD slope.
        """
        cfg = self.net.config
        levels = cfg.quality_levels
        stages = cfg.stages_for_quality(quality)
        lo = cfg.stages_for_quality(quality - 1) if quality > 1 else 0
        hi = cfg.stages_for_quality(quality + 1) if quality < levels else stages
        quantizer = self.net.image.quantizer
        all_codes = quantizer.encode(y, hi)  # (1, h, w, hi)
        codes = all_codes[..., :stages]
        yhat = self.intra_latents(codes)
        body = self.prior.encode(codes[0].permute(2, 0, 1).numpy().astype(np.int32))
        payload = bytes([FRAME_INTRA]) + body
        distortion = float(((y - yhat) ** 2).sum())
        # cumulative distortion at lo and hi stages, from the per-stage vectors
        flat_codes = all_codes.reshape(-1, hi)
        target = y.permute(0, 2, 3, 1).reshape(-1, y.shape[1])
        recon = torch.zeros_like(target)
        d = {0: float((target**2).sum())}
        for i in range(hi):
            recon = recon + quantizer.stage(i).vectors_from_codes(flat_codes[:, i])
            d[i + 1] = float(((target - recon) ** 2).sum())
        bits_per_code = 8.0 * len(body) / max(1, codes.numel())
        if hi > lo:
            lam = (d[lo] - d[hi]) / ((hi - lo) * flat_codes.shape[0] * bits_per_code)
        else:
            lam = d[stages] / max(1.0, stages * flat_codes.shape[0] * bits_per_code)
        return payload, yhat, distortion, max(lam, 1e-12)

    def decode_intra(self, body: bytes, shape: tuple[int, int, int]) -> torch.Tensor:
        codes = self.prior.decode(body, shape=shape)
        codes = np.asarray(codes)
        if codes.shape != shape:
            raise FormatError(
                f"key frame decoded to codes {codes.shape}, expected {shape}", field="frame payload"
            )
        if codes.size and (int(codes.min()) < 0 or int(codes.max()) >= self.net.config.codebook_size):
            raise FormatError("key frame codes outside the codebook", field="frame payload")
        tensor = torch.from_numpy(codes.astype(np.int64)).permute(1, 2, 0)[None]
        return self.intra_latents(tensor)

    # -- inter ------------------------------------------------------------------------------
    def encode_inter(
        self,
        y: torch.Tensor,
        previous: torch.Tensor,
        previous_counts: torch.Tensor,
        lam: float,
        intra_stages: int,
        collect: list[Any] | None = None,
    ) -> tuple[bytes, torch.Tensor, torch.Tensor, float]:
        """Latents, previous decoded latents and modes -> (payload, yhat, modes, D + lam * bits).

        Per position the mode is the residual stage count 0..R or R + 1 (intra with the image
        RVQ's first ``intra_stages`` stages), whichever minimises squared latent error + lam * bits.
        ``collect``: when a list, (contexts (h*w,), modes (h*w,), residual codes (h*w, R), intra
        codes (h*w, S)) of the frame is appended to it (the training recipe fits tables on these).
        """
        from vqcodec.entropy.coder import encode_batches
        from vqcodec.models.video import count_contexts

        big_r = self.stages
        residual = y - previous
        # the searches also return what is left after each stage: the candidates' errors
        codes, residual_left = self.residual_codes(residual)  # (1, h, w, R), R x (1, h, w)
        intra_codes, intra_left = self.image_codes(y, intra_stages)
        errors = [(residual**2).sum(dim=1), *residual_left, intra_left[-1]]
        error = torch.stack(errors)  # (R + 2, 1, h, w)
        contexts = count_contexts(previous_counts, big_r)  # (1, h, w)
        count_bits = self.count_bits[contexts].permute(3, 0, 1, 2)  # (R + 2, 1, h, w)
        code_bits = torch.stack([self.residual_bits[j][codes[..., j]] for j in range(big_r)])
        intra_bits = sum(self.intra_bits[s][intra_codes[..., s]] for s in range(intra_stages))
        bits = count_bits + torch.cat(
            [torch.zeros_like(code_bits[:1]), code_bits.cumsum(0), torch.as_tensor(intra_bits)[None]]
        )
        cost = error + lam * bits
        counts = cost.argmin(dim=0)  # (1, h, w)
        yhat = self.net.apply_residual(previous, codes, counts, intra_codes)
        flat_counts = counts.reshape(-1)
        flat_codes = codes.reshape(-1, big_r)
        flat_intra = intra_codes.reshape(-1, intra_stages)
        symbols, tables = self._symbols(flat_counts, flat_codes, flat_intra)
        context_rows = contexts.reshape(-1).numpy()
        body = encode_batches([(flat_counts.numpy(), context_rows), (symbols, tables)], self.tables)
        payload = bytes([FRAME_INTER]) + body
        if collect is not None:
            collect.append((context_rows, flat_counts.numpy(), flat_codes.numpy(), flat_intra.numpy()))
        distortion = float(error.gather(0, counts[None]).sum())
        return payload, yhat, counts, distortion + lam * 8.0 * len(payload)

    def _symbols(
        self, counts: torch.Tensor, codes: torch.Tensor, intra: torch.Tensor
    ) -> tuple[np.ndarray, np.ndarray]:
        """The second batch of a P frame: residual codes stage by stage, then intra codes."""
        big_r = self.stages
        symbols, tables = [], []
        for j in range(big_r):
            used = (counts > j) & (counts <= big_r)
            symbols.append(codes[used, j].numpy())
            tables.append(np.full(int(used.sum()), self.num_contexts + j, dtype=np.int64))
        fresh = counts == big_r + 1
        for s in range(intra.shape[1]):
            symbols.append(intra[fresh, s].numpy())
            tables.append(np.full(int(fresh.sum()), self.intra_offset + s, dtype=np.int64))
        return np.concatenate(symbols).astype(np.int64), np.concatenate(tables)

    def image_codes(self, y: torch.Tensor, stages: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Image RVQ codes (1, h, w, stages) of latents (1, C, h, w) by plain argmin (encoder only),
        and the squared error (1, h, w) left after each stage."""
        if not self._plain_search:
            return self._checked(self.net.image.quantizer, y, stages)
        return self._greedy(y, self._image_tables[:stages], self._image_norms[:stages])

    def residual_codes(self, residual: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Greedy residual-VQ codes (1, h, w, R) of residual latents (1, C, h, w), and the squared
        error (1, h, w) left after each stage.

        A plain matmul/argmin search: only the encoder runs it and the decoder follows whatever
        codes it picks, so the quantizer's exact tie-breaking (kept for bit-identical image codes
        across machines) is not needed here and its cost is saved.
        """
        if not self._plain_search:
            return self._checked(self.net.residual, residual, self.stages)
        return self._greedy(residual, self._residual_tables, self._residual_norms)

    @staticmethod
    def _checked(
        quantizer: Any, latents: torch.Tensor, stages: int
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        codes = quantizer.encode(latents, stages)
        left = [
            ((latents - quantizer.decode(codes[..., : k + 1])) ** 2).sum(dim=1)
            for k in range(codes.shape[-1])
        ]
        return codes, left

    @staticmethod
    def _greedy(
        latents: torch.Tensor, tables: list[torch.Tensor], norms: list[torch.Tensor]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        _, c, h, w = latents.shape
        codes, left = greedy_residual_codes(latents.permute(0, 2, 3, 1).reshape(-1, c), tables, norms)
        return codes.reshape(1, h, w, len(tables)), [e.reshape(1, h, w) for e in left.unbind(1)]

    def decode_inter(
        self, body: bytes, previous: torch.Tensor, previous_counts: torch.Tensor, intra_stages: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """P-frame body + previous latents/modes -> (latents, modes)."""
        from vqcodec.entropy.coder import SymbolDecoder
        from vqcodec.models.video import count_contexts

        big_r = self.stages
        _, _, h, w = previous.shape
        contexts = count_contexts(previous_counts, big_r).reshape(-1).numpy()
        decoder = SymbolDecoder(body, self.tables)
        flat_counts = decoder.decode(contexts).astype(np.int64)
        if flat_counts.size and int(flat_counts.max()) > big_r + 1:
            raise FormatError("position mode above R + 1", field="frame payload")
        predicted = flat_counts <= big_r
        fresh = ~predicted
        per_stage = [int(((flat_counts > j) & predicted).sum()) for j in range(big_r)]
        num_fresh = int(fresh.sum())
        tables = np.concatenate(
            [np.full(n, self.num_contexts + j, dtype=np.int64) for j, n in enumerate(per_stage)]
            + [np.full(num_fresh, self.intra_offset + s, dtype=np.int64) for s in range(intra_stages)]
        )
        symbols = decoder.decode(tables).astype(np.int64)
        decoder.finish()
        flat_codes = np.zeros((h * w, big_r), dtype=np.int64)
        start = 0
        for j, n in enumerate(per_stage):
            flat_codes[(flat_counts > j) & predicted, j] = symbols[start : start + n]
            start += n
        intra_codes = None
        if num_fresh:
            flat_intra = np.zeros((h * w, intra_stages), dtype=np.int64)
            for s in range(intra_stages):
                flat_intra[fresh, s] = symbols[start : start + num_fresh]
                start += num_fresh
            intra_codes = torch.from_numpy(flat_intra.reshape(1, h, w, intra_stages))
        counts = torch.from_numpy(flat_counts.reshape(1, h, w))
        codes = torch.from_numpy(flat_codes.reshape(1, h, w, big_r))
        return self.net.apply_residual(previous, codes, counts, intra_codes), counts


def key_counts(height: int, width: int, stages: int) -> torch.Tensor:
    """The count map that follows a key frame: R + 1 everywhere (its own context)."""
    return torch.full((1, height, width), stages + 1, dtype=torch.int64)


# ---------------------------------------------------------------------------------------------
# encoder


@dataclass
class VideoStats:
    """Running totals of an encoder or decoder."""

    frames: int = 0
    key_frames: int = 0
    payload_bytes: int = 0
    seconds: float = 0.0


class VideoEncoder:
    """Encode frames one at a time into a ``.vqc`` video; see the module docstring.

    ``dst``: path, ``"-"`` or a writable binary file object (pipes and sockets work: nothing
    seeks). ``model``: name, bundle path or CodecModel (default: the bundled video model, else
    the default image model). ``fps``: number or Fraction. ``size``: (width, height), or None to
    take it from the first frame. ``quality``: 1..N (default: just above the middle).
    ``gop``: key-frame interval (1 = intra only; default the model's). ``key_frames``: frame
    indices that must be key frames (``write(frame, key=True)`` forces one too).
    ``pixel_format``: what the decoder should restore ("rgb24", "yuv420p", "yuv422p", "yuv444p",
    "gray8"; the frames you write are RGB or gray either way). ``frame_count``: written into the
    header when known (0 = unknown; the end chunk always records the count). ``scene_cut``:
    code a P frame as a key frame when that is cheaper. ``lambda_scale`` scales the P-frame
    rate-distortion trade-off (< 1: better P frames, more bits).

    Frames: numpy (H, W, 3) / (H, W) uint8 (or float in [0, 1]), PIL images, torch (3, H, W).
    """

    def __init__(
        self,
        dst: Any,
        model: Any = None,
        *,
        fps: float | Fraction | str = 25,
        size: tuple[int, int] | None = None,
        quality: int | None = None,
        gop: int | None = None,
        key_frames: Iterable[int] = (),
        pixel_format: str = "rgb24",
        frame_count: int = 0,
        full_range: bool = True,
        matrix: int = 0,
        scene_cut: bool = True,
        lambda_scale: float = 1.0,
        force: bool = True,
    ):
        from vqcodec.codec.image import check_quality, default_quality

        self.model = resolve_video_model(model)
        self.coder = TemporalCoder.for_model(self.model)
        levels = int(self.model.quality_levels)
        self.quality = default_quality(levels) if quality is None else check_quality(quality, levels)
        if gop is None:
            gop = int(getattr(self.coder.net.config, "gop", DEFAULT_GOP))
        if isinstance(gop, bool) or not isinstance(gop, int) or gop < 1:
            raise ValueError(f"gop must be an integer >= 1, got {gop!r}")
        self.gop = gop
        self.fps = _as_fraction(fps)
        if pixel_format not in VIDEO_PIXEL_FORMATS:
            raise ValueError(
                f"pixel_format must be one of {sorted(VIDEO_PIXEL_FORMATS)}, got {pixel_format!r}"
            )
        self.pixel_format = pixel_format
        if size is not None:
            width, height = (int(v) for v in size)
            limits.check_pixels(width, height, what="video frame")
            self.size: tuple[int, int] | None = (width, height)
        else:
            self.size = None
        if not isinstance(frame_count, int) or frame_count < 0:
            raise ValueError(f"frame_count must be an integer >= 0, got {frame_count!r}")
        limits.check_frames(frame_count)
        self.frame_count = frame_count
        self.key_frames = frozenset(int(k) for k in key_frames)
        self.scene_cut = bool(scene_cut)
        if not (isinstance(lambda_scale, (int, float)) and lambda_scale > 0 and math.isfinite(lambda_scale)):
            raise ValueError(f"lambda_scale must be a positive number, got {lambda_scale!r}")
        self.lambda_scale = float(lambda_scale)
        self.full_range, self.matrix = bool(full_range), int(matrix)
        self.stats = VideoStats()
        self._dst, self._force = dst, force
        self._writer: Any = None
        self._closed = False
        self._latents: torch.Tensor | None = None
        self._counts: torch.Tensor | None = None
        self._lambda = 0.0
        self._stages = self.coder.net.config.stages_for_quality(self.quality)
        self._key_bytes = 0
        self._since_key = 0

    # -- public -----------------------------------------------------------------------------
    @property
    def frames_written(self) -> int:
        return self.stats.frames

    @property
    def latents(self) -> torch.Tensor | None:
        """Latents (1, C, h, w) of the last frame as the decoder reconstructs them (None before one)."""
        return self._latents

    @property
    def bytes_written(self) -> int:
        return int(self._writer.bytes_written) if self._writer is not None else 0

    def write(self, frame: Any, *, key: bool = False) -> int:
        """Code one frame (a key frame when ``key`` or the GOP/key_frames say so); returns its index."""
        import time

        if self._closed:
            raise ValueError("write() on a closed VideoEncoder")
        start = time.perf_counter()
        rgb = self._frame_rgb(frame)
        if self._writer is None:
            self._open(rgb.shape[1], rgb.shape[0])
        index = self.stats.frames
        if self.frame_count and index >= self.frame_count:
            raise ValueError(f"more frames than the frame_count={self.frame_count} given to the encoder")
        limits.check_frames(index + 1)
        coder = self.coder
        padded = media.pad_to_stride(rgb, coder.stride)
        want_key = key or index in self.key_frames or self._latents is None or self._since_key >= self.gop
        with torch.inference_mode():
            y = coder.analyse(padded)
            if not want_key:
                assert self._latents is not None and self._counts is not None
                payload, latents, counts, cost = coder.encode_inter(
                    y, self._latents, self._counts, self._lambda * self.lambda_scale, self._stages
                )
                # a P frame costing less than half the last key frame is never worse as a key
                # frame in practice: only larger ones pay for the intra trial encode
                if self.scene_cut and len(payload) > SCENE_CUT_TRIAL_RATIO * self._key_bytes:
                    intra_payload, intra_latents, distortion, lam = coder.encode_intra(y, self.quality)
                    intra_cost = distortion + self._lambda * self.lambda_scale * 8.0 * len(intra_payload)
                    if intra_cost < SCENE_CUT_MARGIN * cost:
                        want_key = True
                        payload, latents, self._lambda = intra_payload, intra_latents, lam
                        counts = key_counts(*y.shape[2:], coder.stages)
            else:
                payload, latents, _, self._lambda = coder.encode_intra(y, self.quality)
                counts = key_counts(*y.shape[2:], coder.stages)
            if want_key:
                self._key_bytes = len(payload)
        self._writer.write_frame(payload, key=want_key)
        self._latents, self._counts = latents, counts
        self._since_key = 1 if want_key else self._since_key + 1
        self.stats.frames += 1
        self.stats.key_frames += int(want_key)
        self.stats.payload_bytes += len(payload)
        self.stats.seconds += time.perf_counter() - start
        return index

    def close(self) -> None:
        """Write the index and end chunk; a stream with no frame is refused (ValueError)."""
        if self._closed:
            return
        self._closed = True
        if self._writer is None:
            raise ValueError("no frame was written: a video needs at least one frame")
        if self.frame_count and self.stats.frames != self.frame_count:
            self._writer.abandon()
            raise ValueError(
                f"{self.stats.frames} frames written, frame_count={self.frame_count} was promised"
            )
        self._writer.close()
        self._latents = self._counts = None

    def abandon(self) -> None:
        """Stop without finishing the file (a path is not created)."""
        self._closed = True
        if self._writer is not None:
            self._writer.abandon()
        self._latents = self._counts = None

    def __enter__(self) -> VideoEncoder:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abandon()

    # -- internals --------------------------------------------------------------------------
    def _frame_rgb(self, frame: Any) -> np.ndarray:
        source = media.load_image(frame)
        rgb = source.rgb
        if self.size is not None and (rgb.shape[1], rgb.shape[0]) != self.size:
            raise ValueError(
                f"frame {self.stats.frames} is {rgb.shape[1]}x{rgb.shape[0]}, the video is "
                f"{self.size[0]}x{self.size[1]}"
            )
        return rgb

    def _open(self, width: int, height: int) -> None:
        from vqcodec.container import ContainerWriter

        limits.check_pixels(width, height, what="video frame")
        self.size = (width, height)
        stride = self.coder.stride
        cfg = self.coder.net.config
        params = {
            "codes": [
                cfg.stages_for_quality(self.quality),
                math.ceil(height / stride),
                math.ceil(width / stride),
            ],
            "gop": self.gop,
            "residual": [cfg.residual_stages, cfg.residual_codebook_size],
            "stride": stride,
            "temporal": TEMPORAL_MODE,
            "v": CODEC_PARAMS_VERSION,
        }
        header = make_header(
            self.model,
            media="video",
            width=width,
            height=height,
            channels=VIDEO_PIXEL_FORMATS[self.pixel_format],
            pixel_format=self.pixel_format,
            quality=self.quality,
            params=params,
            fps_num=self.fps.numerator,
            fps_den=self.fps.denominator,
            frame_count=self.frame_count,
            matrix=self.matrix,
            full_range=self.full_range,
        )
        from vqcodec._io import is_path

        if is_path(self._dst) and self._dst != "-":
            self._writer = ContainerWriter(self._dst, header, force=self._force)
        else:
            stream = sys.stdout.buffer if self._dst == "-" else self._dst
            self._writer = ContainerWriter(_FrameBuffered(stream), header, force=self._force)


class _FrameBuffered:
    """Collects the container writer's small writes and passes them on at each ``flush()``.

    The writer flushes after the header and after every frame, so each frame reaches a pipe or
    socket in one ``write`` call: a reader peeking at the stream sees whole chunks, and an
    unbuffered destination does not get one system call per field.
    """

    def __init__(self, stream: Any):
        self._stream = stream
        self._pending = bytearray()

    def write(self, data: Any) -> int:
        self._pending += data
        return len(data)

    def flush(self) -> None:
        if self._pending:
            view = memoryview(bytes(self._pending))
            self._pending.clear()
            while view:
                written = self._stream.write(view)
                if written is None:  # a non-blocking raw stream that took nothing
                    continue
                view = view[written:]
        flush = getattr(self._stream, "flush", None)
        if flush is not None:
            flush()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False


def _as_fraction(fps: Any) -> Fraction:
    try:
        value = Fraction(str(fps)) if isinstance(fps, str) else Fraction(fps).limit_denominator(1 << 20)
    except (ValueError, ZeroDivisionError, TypeError):
        raise ValueError(f"fps must be a positive number, got {fps!r}") from None
    if value <= 0 or value.numerator >= 1 << 32 or value.denominator >= 1 << 32:
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    return value


# ---------------------------------------------------------------------------------------------
# decoder


class VideoDecoder:
    """Decode a ``.vqc`` video frame by frame; see the module docstring.

    ``src``: bytes, path, ``"-"`` or a readable binary file object. ``output``: "numpy"
    ((H, W, 3) uint8 RGB; (H, W) for gray8 videos), "pil" or "torch" ((C, H, W) float in
    [0, 1]). Iterating yields frames in order from the start or from the last ``seek()``;
    ``frames_with_index()`` yields (index, frame). A stream cut mid-frame yields every complete
    frame and then raises TruncatedError. ``model``: None uses the model the file names; a
    given one must be the same weights (ModelMismatchError).
    """

    def __init__(self, src: Any, *, model: Any = None, output: str = "numpy"):
        from vqcodec.container import ContainerReader

        if output not in ("numpy", "pil", "torch"):
            raise ValueError(f"output must be 'numpy', 'pil' or 'torch', got {output!r}")
        self.output = output
        if isinstance(src, (bytes, bytearray, memoryview)):
            src = io.BytesIO(bytes(src))
        self._reader = ContainerReader(src)
        try:
            self.header = self._reader.header
            check_header(self.header, "video", VIDEO_PIXEL_FORMATS)
            self.model = model_for_header(self.header, model)
            self.coder = TemporalCoder.for_model(self.model)
            self._shape = self._check_params()
        except BaseException:
            self._reader.close()
            raise
        self.stats = VideoStats()
        self._latents: torch.Tensor | None = None
        self._counts: torch.Tensor | None = None
        self._show_from = 0

    # -- properties -------------------------------------------------------------------------
    @property
    def width(self) -> int:
        return int(self.header.width)

    @property
    def height(self) -> int:
        return int(self.header.height)

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    @property
    def fps(self) -> Fraction:
        return Fraction(self.header.fps_num, self.header.fps_den)

    @property
    def pixel_format(self) -> str:
        return str(self.header.pixel_format)

    @property
    def quality(self) -> int:
        return int(self.header.quality)

    @property
    def frame_count(self) -> int | None:
        """From the header, or (seekable files) the index/end chunk; None while unknown."""
        count = self._reader.frame_count
        if count is None and self._reader.seekable:
            count = self._reader.key_frames().frame_count
        return count

    @property
    def latents(self) -> torch.Tensor | None:
        """Latents (1, C, h, w) of the last decoded frame (None before one)."""
        return self._latents

    @property
    def seekable(self) -> bool:
        return bool(self._reader.seekable)

    def key_frames(self) -> list[int]:
        """Indices of the key frames (seekable sources)."""
        return [k.frame_index for k in self._reader.key_frames().keys]

    # -- decoding ---------------------------------------------------------------------------
    def seek(self, frame_index: int) -> int:
        """Make the next frames start at ``frame_index`` (decoding from the key frame before it)."""
        if isinstance(frame_index, bool) or not isinstance(frame_index, (int, np.integer)):
            raise TypeError(f"frame index must be an int, got {frame_index!r}")
        self._reader.seek(int(frame_index))
        self._latents = self._counts = None
        self._show_from = int(frame_index)
        return int(frame_index)

    def skip_to(self, frame_index: int) -> None:
        """Yield nothing before ``frame_index`` (those frames are decoded to latents only).

        Works on any source, pipes included; on a seekable one ``seek()`` is faster.
        """
        self._show_from = max(self._show_from, int(frame_index))

    def __iter__(self) -> Iterator[Any]:
        for _, frame in self.frames_with_index():
            yield frame

    def frames_with_index(self) -> Iterator[tuple[int, Any]]:
        for index, rgb in self._decode():
            yield index, self._convert(rgb)

    def read(self) -> Any:
        """The next frame, or None at the end."""
        return next(iter(self), None)

    def close(self) -> None:
        self._latents = self._counts = None
        self._reader.close()

    def __enter__(self) -> VideoDecoder:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------------
    def _decode(self) -> Iterator[tuple[int, np.ndarray]]:
        import time

        coder = self.coder
        s, h, w = self._shape
        for frame in self._reader.frames():
            limits.check_frames(frame.index + 1)  # a streamed header declares no count: count here
            start = time.perf_counter()
            payload = frame.payload
            if not payload:
                raise FormatError(f"frame {frame.index} has an empty payload", field="frame payload")
            kind = payload[0]
            try:
                with torch.inference_mode():
                    if kind == FRAME_INTRA:
                        if not frame.key:
                            raise FormatError(
                                f"frame {frame.index}: intra payload in a non-key frame", field="frame type"
                            )
                        self._latents = coder.decode_intra(payload[1:], (s, h, w))
                        self._counts = key_counts(h, w, coder.stages)
                    elif kind == FRAME_INTER:
                        if frame.key:
                            raise FormatError(
                                f"frame {frame.index}: predicted payload in a key frame", field="frame type"
                            )
                        if self._latents is None or self._counts is None:
                            raise FormatError(
                                f"frame {frame.index} predicts from a frame that was not decoded",
                                field="frame type",
                            )
                        self._latents, self._counts = coder.decode_inter(
                            payload[1:], self._latents, self._counts, s
                        )
                    else:
                        raise FormatError(
                            f"frame {frame.index}: unknown frame type {kind}", field="frame type"
                        )
                    show = frame.index >= self._show_from
                    rgb = coder.synthesise(self._latents)[: self.height, : self.width] if show else None
            except VQCError:
                raise
            except (ValueError, IndexError, OverflowError, RuntimeError, TypeError) as exc:
                raise FormatError(
                    f"corrupt payload in frame {frame.index}: {exc}", field="frame payload"
                ) from None
            self.stats.frames += 1
            self.stats.key_frames += int(frame.key)
            self.stats.payload_bytes += len(payload)
            self.stats.seconds += time.perf_counter() - start
            if rgb is not None:
                yield frame.index, np.ascontiguousarray(rgb)

    def _convert(self, rgb: np.ndarray) -> Any:
        fmt = "gray8" if self.pixel_format == "gray8" else "rgb24"
        return media.make_output(rgb, None, fmt, self.output)

    def _check_params(self) -> tuple[int, int, int]:
        header = self.header
        params = parse_codec_params(header, CODEC_PARAMS_VERSION)
        if params.get("temporal") != TEMPORAL_MODE:
            raise FormatError(
                f"unknown temporal mode {params.get('temporal')!r}", field="codec_params.temporal"
            )
        cfg = self.coder.net.config
        check_stride(params, self.coder.stride)
        if params.get("residual") != [cfg.residual_stages, cfg.residual_codebook_size]:
            raise FormatError(
                f"residual shape {params.get('residual')!r} differs from the model's",
                field="codec_params.residual",
            )
        check_header_quality(header, cfg.quality_levels)
        shape = params.get("codes")
        stride = self.coder.stride
        expected = [
            cfg.stages_for_quality(header.quality),
            math.ceil(header.height / stride),
            math.ceil(header.width / stride),
        ]
        if shape != expected:
            raise FormatError(f"codes shape {shape!r}, expected {expected}", field="codec_params.codes")
        limits.check_bytes(4 * cfg.latent_dim * expected[1] * expected[2], what="latents")
        return expected[0], expected[1], expected[2]


def encode_video(
    frames: Iterable[Any], dst: Any = None, *, model: Any = None, fps: float | Fraction = 25, **options: Any
) -> bytes | None:
    """Encode an iterable of frames; returns the bytes when ``dst`` is None, else writes ``dst``."""
    out = io.BytesIO() if dst is None else dst
    with VideoEncoder(out, model, fps=fps, **options) as encoder:
        for frame in frames:
            encoder.write(frame)
    return out.getvalue() if dst is None else None


def decode_video(src: Any, *, model: Any = None, output: str = "numpy") -> list[Any]:
    """Every frame of a video as a list (small clips; use VideoDecoder to stream)."""
    with VideoDecoder(src, model=model, output=output) as decoder:
        return list(decoder)


__all__ = [
    "FRAME_INTER",
    "FRAME_INTRA",
    "TemporalCoder",
    "VideoDecoder",
    "VideoEncoder",
    "VideoStats",
    "decode_video",
    "encode_video",
    "resolve_video_model",
]
