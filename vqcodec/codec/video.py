"""Video to and from ``.vqc``: the streaming ``VideoEncoder`` / ``VideoDecoder``.

This layer does the I/O, the container and the GOP logic (key-frame placement, scene cuts, rate
control); a frame's payload belongs to its model, chosen by the file's header:

- **payload version 2** (models ``video-mc2``, the default, with an in-loop deblocking filter, and
  ``video-mc1`` without; formats/vqc-v1.md, "Video payload version 2"): motion-compensated Y'CbCr
  4:2:0 with an exact integer reference, coded and decoded by
  ``vqcodec.models.video_mc.MotionCompensatedCodec`` from a typed ``ReferenceState``. 4:2:0
  planes are coded as they are (``write_planes``); RGB and other sources are converted first
  (``rgb_to_yuv``); the decoder gives the planes (``planes_with_index``) or RGB. The quality level
  maps to a base qp (``MotionCodecModel.qp_for_quality``), or ``kbps=`` sets a target bitrate held
  by a per-frame qp controller (:class:`RateController`).
- **payload version 1** (``video-rvq8`` or an image model; "Video frame payload"): key frames (I)
  are the image model's RVQ codes; predicted frames (P) code the latent residual
  ``r = y_t - yhat_{t-1}`` against the decoder's own previous latents (never the source, so
  nothing drifts): per latent position a mode, either a stage count n in 0..R (0 = copy the
  previous latents) followed by n residual-VQ codes, or intra (R + 1: the position coded afresh
  with the key frames' S image RVQ stages) (``vqcodec.models.video.VideoCodec``). The encoder picks
  each position's mode by rate-distortion (latent squared error + lambda * bits under the integer
  tables, lambda from the slope of the key frame's own RD curve at the chosen quality).

In both, a P frame that would cost more (in D + lambda R) than a key frame is coded as a key frame
instead (scene cuts). A file made with an image model alone (no trained temporal part) is valid
too: its temporal part is derived deterministically from the image weights (``VideoCodec.from_image``).

Streams: the container writer never seeks (pipes, sockets); the reader streams frame by
frame, and ``VideoDecoder.seek(i)`` restarts at the nearest earlier key frame and rebuilds the
references of the frames before ``i`` without converting them to output pixels. Memory holds one
frame's pixels and reference at a time, whatever the clip length.
"""

from __future__ import annotations

import io
import math
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import torch

from vqcodec._io import is_path
from vqcodec.codec import limits, media
from vqcodec.codec.header import (
    check_header,
    check_header_quality,
    check_stride,
    make_header,
    model_for_header,
    parse_codec_params,
)
from vqcodec.codec.image import check_quality, default_quality
from vqcodec.codec.video_io import SUBSAMPLING, default_matrix, rgb_to_yuv, yuv_to_rgb
from vqcodec.container import ContainerReader, ContainerWriter, Header
from vqcodec.container.reader import Frame
from vqcodec.errors import FormatError, UnknownModelError
from vqcodec.models import video_mc
from vqcodec.models.video_latent import FRAME_INTER, FRAME_INTRA, TemporalCoder, key_counts
from vqcodec.models.video_mc import MotionCodecModel, ReferenceState
from vqcodec.models.zoo import load_model

CODEC_PARAMS_VERSION = 1
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
#: the pixel format a payload-2 file records (its planes are always Y'CbCr 4:2:0)
MC_PIXEL_FORMAT = "yuv420p"



# ---------------------------------------------------------------------------------------------
# models


def resolve_video_model(model: Any = None) -> Any:
    """The video model: the given one (a loaded model, a name or a bundle path), or the default
    video model (else the default image model). A CodecModel (payload 1) or a MotionCodecModel
    (payload 2)."""
    if model is not None:
        return load_model(model, media="video")
    try:
        return load_model(None, media="video")
    except UnknownModelError:
        return load_model(None, media="image")


def is_motion_model(model: Any) -> bool:
    """True for a model that codes video payload version 2."""
    return isinstance(model, MotionCodecModel)


def analyse_tiled(coder: TemporalCoder, padded: np.ndarray) -> torch.Tensor:
    """Padded pixels (H, W, 3) uint8 -> latents (1, C, H/stride, W/stride) of ``coder``'s model,
    tiled over the latent grid like the image codec."""
    s = coder.stride
    net = coder.net
    h, w = padded.shape[0] // s, padded.shape[1] // s
    tiles = media.plan_tiles(h, w)
    if len(tiles) == 1:
        return net.image.analyse(media.to_tensor(padded))
    out = torch.empty(1, net.config.latent_dim, h, w)
    for t in tiles:
        r0, r1, c0, c1 = t.outer
        part = net.image.analyse(media.to_tensor(padded[r0 * s : r1 * s, c0 * s : c1 * s]))
        k0, k1, l0, l1 = t.core
        out[:, :, k0:k1, l0:l1] = part[:, :, k0 - r0 : k1 - r0, l0 - c0 : l1 - c0]
    return out


def synthesise_tiled(coder: TemporalCoder, latents: torch.Tensor) -> np.ndarray:
    """Latents (1, C, h, w) -> pixels (h * stride, w * stride, 3) uint8, tiled."""
    s = coder.stride
    net = coder.net
    _, _, h, w = latents.shape
    tiles = media.plan_tiles(h, w)
    if len(tiles) == 1:
        return media.from_tensor(net.image.synthesise(latents))
    out = np.empty((h * s, w * s, 3), dtype=np.uint8)
    for t in tiles:
        r0, r1, c0, c1 = t.outer
        pixels = net.image.synthesise(latents[:, :, r0:r1, c0:c1])
        k0, k1, l0, l1 = t.core
        core = pixels[:, :, (k0 - r0) * s : (k1 - r0) * s, (l0 - c0) * s : (l1 - c0) * s]
        out[k0 * s : k1 * s, l0 * s : l1 * s] = media.from_tensor(core)
    return out


# ---------------------------------------------------------------------------------------------
# typed state, rate control


@dataclass
class LatentState:
    """What a payload-1 coder keeps between frames: the decoded latents (1, C, h, w) and the mode
    map (1, h, w) of the last frame; the encoder also keeps its key frame's RD slope ``lam`` and size."""

    latents: torch.Tensor
    counts: torch.Tensor
    lam: float = 0.0
    key_bytes: int = 0


@dataclass
class VideoStats:
    """Running totals of an encoder or decoder."""

    frames: int = 0
    key_frames: int = 0
    payload_bytes: int = 0
    seconds: float = 0.0


class RateController:
    """Per-frame qp for a target bitrate (payload version 2): ``next_qp(key)`` before a frame,
    ``update(key, qp, bits)`` after it, with ``bits`` what the frame added to the file.

    Rate model per frame type: bits = c * 2 ** (-qp / s), s = ``SLOPE`` (key frames' rate falls more
    slowly with qp than predicted frames'), c learnt from every coded frame (a moving average of
    log2 c). Budget: the bits the target leaves for the next second (``fps`` frames, the stream's
    surplus or deficit so far included), shared among those frames in proportion to their modelled
    sizes (a key frame counts as ``ratio`` predicted frames, key frames falling at the GOP
    boundaries); the frame's qp is the one whose modelled size meets its share, predicted frames
    moving at most ``MAX_STEP`` from the previous one.
    """

    SLOPE = {True: 7.0, False: 5.0}
    MAX_STEP = 4

    def __init__(self, kbps: float, fps: Fraction, gop: int, pixels: int, header_bits: int = 0):
        if (
            isinstance(kbps, bool)
            or not isinstance(kbps, (int, float))
            or not (math.isfinite(kbps) and kbps > 0)
        ):
            raise ValueError(f"kbps must be a positive number, got {kbps!r}")
        self.kbps = float(kbps)
        self.target = 1000.0 * self.kbps / float(fps)  # bits per frame
        self.window = max(2, round(float(fps)))
        self.gop = gop
        # a start for typical content (CIF foreman..mobile): P frames 0.25 bit/pixel at qp 30,
        # key frames five times that; the first frames correct it
        self.log_c = {
            False: math.log2(0.25 * pixels) + 30 / self.SLOPE[False],
            True: math.log2(1.25 * pixels) + 30 / self.SLOPE[True],
        }
        self._seen = {False: False, True: False}
        self.frames = 0
        self.bits = float(header_bits)
        self.since_key = 0
        self.last_qp: int | None = None

    def _bits(self, key: bool, qp: float) -> float:
        return float(2.0 ** (self.log_c[key] - qp / self.SLOPE[key]))

    def next_qp(self, key: bool) -> int:
        reference = float(self.last_qp if self.last_qp is not None else video_mc.DEFAULT_QP)
        ratio = self._bits(True, reference) / self._bits(False, reference)
        horizon = self.window
        available = max((self.frames + horizon) * self.target - self.bits, 0.1 * horizon * self.target)
        # key frames among the next `horizon` frames (at positions since the last key frame
        # p .. p + horizon - 1, p = 0 for this one when it is a key frame): one per multiple of gop
        position = 0 if key else self.since_key
        keys = (position + horizon - 1) // self.gop - (position - 1) // self.gop
        keys = min(max(keys, int(key)), horizon)
        share = available / (horizon - keys + keys * ratio)
        budget = share * (ratio if key else 1.0)
        qp = self.SLOPE[key] * (self.log_c[key] - math.log2(max(budget, 1.0)))
        if self.last_qp is not None:
            step = self.MAX_STEP if not key else 2 * self.MAX_STEP
            qp = min(max(qp, self.last_qp - step), self.last_qp + step)
        return int(min(max(round(qp), video_mc.QP_MIN), video_mc.QP_MAX))

    def update(self, key: bool, qp: int, bits: float) -> None:
        observed = math.log2(max(bits, 8.0)) + qp / self.SLOPE[key]
        if not self._seen[key]:
            self.log_c[key] = observed
            self._seen[key] = True
            if key and not self._seen[False]:  # predicted frames: about a fifth of a key frame
                self.log_c[False] = math.log2(max(bits, 8.0) / 5.0) + qp / self.SLOPE[False]
        else:
            self.log_c[key] += 0.5 * (observed - self.log_c[key])
        self.frames += 1
        self.bits += bits
        self.since_key = 1 if key else self.since_key + 1
        if not key or self.last_qp is None:
            self.last_qp = qp


# ---------------------------------------------------------------------------------------------
# encoders of one payload version (frames -> payloads; VideoEncoder does the file and the GOP)


class _LatentEncoder:
    """Payload version 1 (latent residual): RGB frames through a CodecModel's TemporalCoder."""

    version = 1

    def __init__(self, model: Any, quality: int | None, lambda_scale: float, scene_cut: bool):
        self.coder = TemporalCoder.for_model(model)
        levels = int(model.quality_levels)
        self.quality = default_quality(levels) if quality is None else check_quality(quality, levels)
        self.lambda_scale = lambda_scale
        self.scene_cut = scene_cut
        self.stages = self.coder.net.config.stages_for_quality(self.quality)
        self.state: LatentState | None = None

    @property
    def default_gop(self) -> int:
        return int(getattr(self.coder.net.config, "gop", DEFAULT_GOP))

    @property
    def header_quality(self) -> int:
        return self.quality

    def params(self, width: int, height: int, gop: int) -> dict[str, Any]:
        stride = self.coder.stride
        cfg = self.coder.net.config
        return {
            "codes": [
                cfg.stages_for_quality(self.quality),
                math.ceil(height / stride),
                math.ceil(width / stride),
            ],
            "gop": gop,
            "residual": [cfg.residual_stages, cfg.residual_codebook_size],
            "stride": stride,
            "temporal": TEMPORAL_MODE,
            "v": CODEC_PARAMS_VERSION,
        }

    def encode(self, rgb: np.ndarray, key: bool) -> tuple[bytes, bool]:
        """One RGB frame -> (payload, coded as a key frame)."""
        coder = self.coder
        padded = media.pad_to_stride(rgb, coder.stride)
        state = self.state
        key = key or state is None
        with torch.inference_mode():
            y = analyse_tiled(coder, padded)
            h, w = int(y.shape[2]), int(y.shape[3])
            if not key:
                assert state is not None
                lam = state.lam * self.lambda_scale
                payload, latents, counts, cost = coder.encode_inter(
                    y, state.latents, state.counts, lam, self.stages
                )
                self.state = LatentState(latents, counts, state.lam, state.key_bytes)
                # a P frame costing less than half the last key frame is never worse as a key
                # frame in practice: only larger ones pay for the intra trial encode
                if self.scene_cut and len(payload) > SCENE_CUT_TRIAL_RATIO * state.key_bytes:
                    intra_payload, intra_latents, distortion, intra_lam = coder.encode_intra(y, self.quality)
                    if distortion + lam * 8.0 * len(intra_payload) < SCENE_CUT_MARGIN * cost:
                        key, payload = True, intra_payload
                        counts = key_counts(h, w, coder.stages)
                        self.state = LatentState(intra_latents, counts, intra_lam, len(payload))
            else:
                payload, latents, _, intra_lam = coder.encode_intra(y, self.quality)
                self.state = LatentState(latents, key_counts(h, w, coder.stages), intra_lam, len(payload))
        return payload, key

    def update(self, key: bool, file_bytes: int) -> None:
        """Nothing to learn: payload 1 has no rate control."""


class _MotionEncoder:
    """Payload version 2 (motion-compensated 4:2:0): planes through MotionCompensatedCodec."""

    version = 2

    def __init__(
        self,
        model: MotionCodecModel,
        quality: int | None,
        qp: int | None,
        kbps: float | None,
        lambda_scale: float,
        scene_cut: bool,
    ):
        given = [name for name, v in (("quality", quality), ("qp", qp), ("kbps", kbps)) if v is not None]
        if len(given) > 1:
            raise ValueError(f"give one of quality, qp and kbps, not {' and '.join(given)}")
        self.model = model
        self.codec = model.codec(video_mc.EncoderSettings(lambda_scale=lambda_scale))
        self.lambda_scale = lambda_scale
        self.scene_cut = scene_cut
        if kbps is not None and (
            isinstance(kbps, bool)
            or not isinstance(kbps, (int, float))
            or not (math.isfinite(kbps) and kbps > 0)
        ):
            raise ValueError(f"kbps must be a positive number, got {kbps!r}")
        self.kbps = kbps
        self.quality: int | None = None
        if qp is not None:
            video_mc.qscale(qp)  # ValueError naming qp outside 0..51
            self.qp = int(qp)
        elif kbps is None:
            levels = model.quality_levels
            self.quality = default_quality(levels) if quality is None else check_quality(quality, levels)
            self.qp = model.qp_for_quality(self.quality)
        else:
            self.qp = video_mc.DEFAULT_QP
        self.rate: RateController | None = None
        self.state: ReferenceState | None = None
        self.key_bytes = 0
        self._frame_qp: int | None = None

    @property
    def default_gop(self) -> int:
        return int(self.model.gop)

    @property
    def header_quality(self) -> int:
        """The base qp (the first frame's under rate control)."""
        return self._qp_for(True)

    def start_rate_control(self, fps: Fraction, gop: int, width: int, height: int, header_bits: int) -> None:
        if self.kbps is not None:
            self.rate = RateController(self.kbps, fps, gop, width * height, header_bits)

    def params(self, width: int, height: int, gop: int) -> dict[str, Any]:
        return {"gop": gop, "temporal": video_mc.MC_TEMPORAL_MODE, "v": video_mc.MC_CODEC_PARAMS_VERSION}

    def _qp_for(self, key: bool) -> int:
        if self.rate is None:
            return self.qp
        if self._frame_qp is None:
            self._frame_qp = self.rate.next_qp(key)
        return self._frame_qp

    def encode(self, planes: list[np.ndarray], key: bool) -> tuple[bytes, bool]:
        """One frame's planes Y, Cb, Cr (4:2:0) -> (payload, coded as a key frame)."""
        height, width = planes[0].shape
        key = key or self.state is None
        qp = self._qp_for(key)  # frame 0: the qp the header recorded
        payload, state = self.codec.compress(planes, width, height, self.state, qp, key=key)
        if not key and self.scene_cut and len(payload) > SCENE_CUT_TRIAL_RATIO * self.key_bytes:
            # the same frame as a key frame, kept when it costs less in D + lambda R
            key_qp = self.rate.next_qp(True) if self.rate is not None else qp
            key_payload, key_state = self.codec.compress(planes, width, height, None, key_qp, key=True)
            lam = video_mc.rd_lambda(qp, self.lambda_scale)
            cost = _squared_error(planes, state) + lam * 8.0 * len(payload)
            key_cost = _squared_error(planes, key_state) + lam * 8.0 * len(key_payload)
            if key_cost < SCENE_CUT_MARGIN * cost:
                key, payload, state, qp = True, key_payload, key_state, key_qp
        if key:
            self.key_bytes = len(payload)
        self.state = state
        self._frame_qp = qp
        return payload, key

    def update(self, key: bool, file_bytes: int) -> None:
        """The frame just written took ``file_bytes`` in the file: feed the rate controller."""
        if self.rate is not None and self._frame_qp is not None:
            self.rate.update(key, self._frame_qp, 8.0 * file_bytes)
        self._frame_qp = None


def _squared_error(planes: list[np.ndarray], state: ReferenceState) -> float:
    """Sum of squared sample errors of the reconstruction in ``state`` against the source planes."""
    total = 0.0
    for source, coded in zip(planes, state.planes):
        h, w = source.shape
        d = source.astype(np.int32) - coded[:h, :w].astype(np.int32)
        total += float(np.einsum("ij,ij->", d, d, dtype=np.int64))
    return total


# ---------------------------------------------------------------------------------------------
# encoder


class VideoEncoder:
    """Encode frames one at a time into a ``.vqc`` video; see the module docstring.

    ``dst``: path, ``"-"`` or a writable binary file object (pipes and sockets work: nothing
    seeks). ``model``: name, bundle path or loaded model (default: the bundled video model,
    ``video-mc2``, or ``video-mc1``: payload version 2; ``video-rvq8`` or an image model code payload
    version 1). ``fps``: number or
    Fraction. ``size``: (width, height), or None to take it from the first frame.
    ``quality``: 1..N (higher is better; default just above the middle); payload 2 also takes
    ``qp`` (0..51, the base qp: each frame's is that moved by the encoder's qp cascade,
    ``EncoderSettings.frame_qp``) or ``kbps`` (a target bitrate over the whole stream, held by
    a per-frame qp controller) instead. ``gop``: key-frame interval (1 = intra only; default the
    model's). ``key_frames``: frame indices that must be key frames (``write(frame, key=True)``
    forces one too). ``pixel_format``: the source's pixel format: payload 1 restores it on decoding
    ("rgb24", "yuv420p", "yuv422p", "yuv444p", "gray8"); payload 2 always records yuv420p, and
    ``write_planes`` takes planes in this format. ``matrix`` / ``full_range``: how the source's
    Y'CbCr relates to RGB (payload 2 converts RGB frames with them; matrix 0 = BT.601 up to 576
    lines, BT.709 above). ``frame_count``: written into the header when known (0 = unknown; the end
    chunk always records the count). ``scene_cut``: code a P frame as a key frame when that is
    cheaper. ``lambda_scale`` scales the P-frame rate-distortion trade-off (< 1: better P frames,
    more bits).

    Frames (``write``): numpy (H, W, 3) / (H, W) uint8 (or float in [0, 1]), PIL images, torch
    (3, H, W); ``write_planes``: the source's planes (Y, Cb, Cr), exactly as a Y4M file holds them.
    """

    def __init__(
        self,
        dst: Any,
        model: Any = None,
        *,
        fps: float | Fraction | str = 25,
        size: tuple[int, int] | None = None,
        quality: int | None = None,
        qp: int | None = None,
        kbps: float | None = None,
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
        self.model = resolve_video_model(model)
        if not (isinstance(lambda_scale, (int, float)) and lambda_scale > 0 and math.isfinite(lambda_scale)):
            raise ValueError(f"lambda_scale must be a positive number, got {lambda_scale!r}")
        self.lambda_scale = float(lambda_scale)
        self.scene_cut = bool(scene_cut)
        self._backend: _LatentEncoder | _MotionEncoder
        if is_motion_model(self.model):
            self._backend = _MotionEncoder(self.model, quality, qp, kbps, self.lambda_scale, self.scene_cut)
        else:
            if qp is not None or kbps is not None:
                raise ValueError(
                    "qp and kbps need a motion-compensated model (video-mc2, video-mc1); "
                    f"{self.model.name!r} codes quality levels only"
                )
            self._backend = _LatentEncoder(self.model, quality, self.lambda_scale, self.scene_cut)
        self.quality = self._backend.quality
        if gop is None:
            gop = self._backend.default_gop
        if isinstance(gop, bool) or not isinstance(gop, int) or gop < 1:
            raise ValueError(f"gop must be an integer >= 1, got {gop!r}")
        self.gop = gop
        self.fps = _as_fraction(fps)
        if pixel_format not in VIDEO_PIXEL_FORMATS:
            raise ValueError(
                f"pixel_format must be one of {sorted(VIDEO_PIXEL_FORMATS)}, got {pixel_format!r}"
            )
        self.source_format = pixel_format
        #: what the header records (payload 2: always yuv420p)
        self.pixel_format = MC_PIXEL_FORMAT if self._backend.version == 2 else pixel_format
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
        self.full_range, self.matrix = bool(full_range), int(matrix)
        self.stats = VideoStats()
        self._dst, self._force = dst, force
        self._writer: Any = None
        self._closed = False
        self._since_key = 0

    # -- public -----------------------------------------------------------------------------
    @property
    def payload_version(self) -> int:
        """1 (latent residual) or 2 (motion-compensated 4:2:0)."""
        return self._backend.version

    @property
    def qp(self) -> int | None:
        """Payload 2: the qp of the last frame (before one: the base qp); None for payload 1."""
        if isinstance(self._backend, _MotionEncoder):
            return self._backend.qp if self._backend.rate is None else self._backend.rate.last_qp
        return None

    @property
    def frames_written(self) -> int:
        return self.stats.frames

    @property
    def latents(self) -> torch.Tensor | None:
        """Payload 1: latents (1, C, h, w) of the last frame as the decoder reconstructs them
        (None before one, and for payload 2)."""
        state = self._backend.state
        return state.latents if isinstance(state, LatentState) else None

    @property
    def reference(self) -> ReferenceState | None:
        """Payload 2: the decoder's state after the last frame (None before one, and for payload 1)."""
        state = self._backend.state
        return state if isinstance(state, ReferenceState) else None

    @property
    def bytes_written(self) -> int:
        return int(self._writer.bytes_written) if self._writer is not None else 0

    def write(self, frame: Any, *, key: bool = False) -> int:
        """Code one picture (RGB or gray; a key frame when ``key`` or the GOP/key_frames say so);
        returns its index."""
        self._check_open()
        start = time.perf_counter()
        rgb = self._frame_rgb(frame)
        if isinstance(self._backend, _MotionEncoder):
            data: Any = rgb_to_yuv(
                rgb, MC_PIXEL_FORMAT, matrix=self._matrix(rgb.shape[0]), full_range=self.full_range
            )
        else:
            data = rgb
        return self._code(data, rgb.shape[1], rgb.shape[0], key, start)

    def write_planes(self, planes: Iterable[np.ndarray], *, key: bool = False) -> int:
        """Code one frame given as the planes of ``pixel_format`` (Y (H, W), then Cb, Cr at its
        subsampling; one (H, W) plane for gray8, one (H, W, 3) for rgb24), e.g. from
        ``Y4MReader.planes()``. Payload 2 codes yuv420p planes as they are."""
        self._check_open()
        start = time.perf_counter()
        planes = [np.asarray(p) for p in planes]
        fmt = self.source_format
        if fmt == "rgb24":
            if len(planes) != 1 or planes[0].ndim != 3 or planes[0].shape[2] != 3:
                raise ValueError(
                    f"frame {self.stats.frames}: planes {[p.shape for p in planes]} are not one (H, W, 3) "
                    "rgb24 plane (give the encoder the source's pixel_format)"
                )
            return self.write(planes[0], key=key)
        height, width = planes[0].shape[:2]
        expected = _plane_shapes(fmt, width, height)
        if [p.shape for p in planes] != expected or any(p.dtype != np.uint8 for p in planes):
            raise ValueError(
                f"frame {self.stats.frames}: planes {[p.shape for p in planes]} are not {fmt} uint8 "
                f"planes {expected}"
            )
        self._check_size(width, height)
        if isinstance(self._backend, _MotionEncoder):
            if fmt == MC_PIXEL_FORMAT:
                data: Any = planes
            else:
                rgb = yuv_to_rgb(planes, fmt, matrix=self._matrix(height), full_range=self.full_range)
                data = rgb_to_yuv(
                    rgb, MC_PIXEL_FORMAT, matrix=self._matrix(height), full_range=self.full_range
                )
        else:
            data = yuv_to_rgb(planes, fmt, matrix=self._matrix(height), full_range=self.full_range)
        return self._code(data, width, height, key, start)

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
        self._backend.state = None

    def abandon(self) -> None:
        """Stop without finishing the file (a path is not created)."""
        self._closed = True
        if self._writer is not None:
            self._writer.abandon()
        self._backend.state = None

    def __enter__(self) -> VideoEncoder:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abandon()

    # -- internals --------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("write() on a closed VideoEncoder")

    def _code(self, data: Any, width: int, height: int, key: bool, start: float) -> int:
        if self._writer is None:
            self._open(width, height)
        index = self.stats.frames
        if self.frame_count and index >= self.frame_count:
            raise ValueError(f"more frames than the frame_count={self.frame_count} given to the encoder")
        limits.check_frames(index + 1)
        want_key = key or index in self.key_frames or index == 0 or self._since_key >= self.gop
        payload, coded_key = self._backend.encode(data, want_key)
        before = self.bytes_written
        self._writer.write_frame(payload, key=coded_key)
        self._backend.update(coded_key, self.bytes_written - before)
        self._since_key = 1 if coded_key else self._since_key + 1
        self.stats.frames += 1
        self.stats.key_frames += int(coded_key)
        self.stats.payload_bytes += len(payload)
        self.stats.seconds += time.perf_counter() - start
        return index

    def _matrix(self, height: int) -> int:
        return self.matrix or default_matrix(height)

    def _check_size(self, width: int, height: int) -> None:
        if self.size is not None and (width, height) != self.size:
            raise ValueError(
                f"frame {self.stats.frames} is {width}x{height}, the video is {self.size[0]}x{self.size[1]}"
            )

    def _frame_rgb(self, frame: Any) -> np.ndarray:
        rgb = media.load_image(frame).rgb
        self._check_size(rgb.shape[1], rgb.shape[0])
        return rgb

    def _open(self, width: int, height: int) -> None:
        limits.check_pixels(width, height, what="video frame")
        self.size = (width, height)
        backend = self._backend
        version2 = isinstance(backend, _MotionEncoder)
        matrix = self._matrix(height) if version2 else self.matrix
        if isinstance(backend, _MotionEncoder):
            # the controller starts before the header: the header records the first frame's qp
            backend.start_rate_control(self.fps, self.gop, width, height, 0)
        header = make_header(
            self.model,
            media="video",
            width=width,
            height=height,
            channels=VIDEO_PIXEL_FORMATS[self.pixel_format],
            pixel_format=self.pixel_format,
            quality=backend.header_quality,
            params=backend.params(width, height, self.gop),
            fps_num=self.fps.numerator,
            fps_den=self.fps.denominator,
            frame_count=self.frame_count,
            matrix=matrix,
            full_range=self.full_range,
        )
        if is_path(self._dst) and self._dst != "-":
            self._writer = ContainerWriter(self._dst, header, force=self._force)
        else:
            stream = sys.stdout.buffer if self._dst == "-" else self._dst
            self._writer = ContainerWriter(_FrameBuffered(stream), header, force=self._force)  # type: ignore[arg-type]
        if isinstance(backend, _MotionEncoder) and backend.rate is not None:
            backend.rate.bits += 8.0 * self.bytes_written  # the header counts against the target


def _plane_shapes(pixel_format: str, width: int, height: int) -> list[tuple[int, ...]]:
    if pixel_format == "gray8":
        return [(height, width)]
    sx, sy = SUBSAMPLING[pixel_format]
    chroma = (-(-height // sy), -(-width // sx))
    return [(height, width), chroma, chroma]


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


class _LatentDecoder:
    """Payload version 1: frames -> RGB through the model's TemporalCoder."""

    version = 1

    def __init__(self, model: Any, header: Header):
        self.coder = TemporalCoder.for_model(model)
        self.header = header
        self.shape = self._check_params()
        self.state: LatentState | None = None

    def decode(self, frame: Frame, show: bool) -> np.ndarray | None:
        """One frame -> its RGB pixels (H, W, 3) when ``show``, else None (the state advances)."""
        coder = self.coder
        s, h, w = self.shape
        payload = frame.payload
        kind = payload[0]
        with torch.inference_mode():
            if kind == FRAME_INTRA:
                if not frame.key:
                    raise FormatError(
                        f"frame {frame.index}: intra payload in a non-key frame", field="frame type"
                    )
                latents = coder.decode_intra(payload[1:], (s, h, w))
                self.state = LatentState(latents, key_counts(h, w, coder.stages))
            elif kind == FRAME_INTER:
                if frame.key:
                    raise FormatError(
                        f"frame {frame.index}: predicted payload in a key frame", field="frame type"
                    )
                if self.state is None:
                    raise FormatError(
                        f"frame {frame.index} predicts from a frame that was not decoded", field="frame type"
                    )
                latents, counts = coder.decode_inter(payload[1:], self.state.latents, self.state.counts, s)
                self.state = LatentState(latents, counts)
            else:
                raise FormatError(f"frame {frame.index}: unknown frame type {kind}", field="frame type")
            if not show:
                return None
            return synthesise_tiled(coder, latents)[: self.header.height, : self.header.width]

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


class _MotionDecoder:
    """Payload version 2: frames -> Y'CbCr 4:2:0 planes through MotionCompensatedCodec."""

    version = 2

    def __init__(self, model: MotionCodecModel, header: Header):
        self.codec = model.codec()
        self.header = header
        params = parse_codec_params(header, video_mc.MC_CODEC_PARAMS_VERSION)
        if params.get("temporal") != video_mc.MC_TEMPORAL_MODE:
            raise FormatError(
                f"unknown temporal mode {params.get('temporal')!r}", field="codec_params.temporal"
            )
        if header.pixel_format != MC_PIXEL_FORMAT:
            raise FormatError(
                f"payload version 2 codes {MC_PIXEL_FORMAT}, the header says {header.pixel_format!r}",
                field="pixel_format",
            )
        w16, h16 = video_mc.padded_size(header.width, header.height)
        pad = 2 * (video_mc.LUMA_PAD + 3)
        # the reference: 4 int32 luma phases and 2 int32 chroma planes, padded, plus the planes
        limits.check_bytes(4 * 5 * (h16 + pad) * (w16 + pad), what="reference frame")
        self.state: ReferenceState | None = None

    def decode(self, frame: Frame, show: bool) -> list[np.ndarray] | None:
        """One frame -> its planes Y, Cb, Cr (cropped) when ``show``, else None (the state advances)."""
        if frame.payload[0] == video_mc.FRAME_PREDICTED and self.state is None:
            raise FormatError(
                f"frame {frame.index} predicts from a frame that was not decoded", field="frame type"
            )
        planes, self.state = self.codec.decompress(
            frame.payload, self.header.width, self.header.height, self.state, key=frame.key
        )
        return planes if show else None


# ---------------------------------------------------------------------------------------------
# decoder


class VideoDecoder:
    """Decode a ``.vqc`` video frame by frame; see the module docstring.

    ``src``: bytes, path, ``"-"`` or a readable binary file object. ``output``: "numpy"
    ((H, W, 3) uint8 RGB; (H, W) for gray8 videos), "pil" or "torch" ((C, H, W) float in
    [0, 1]). Iterating yields frames in order from the start or from the last ``seek()``;
    ``frames_with_index()`` yields (index, frame), ``planes_with_index()`` (index, planes of the
    header's pixel format: a payload-2 file's decoded Y'CbCr 4:2:0 planes exactly). A stream cut
    mid-frame yields every complete frame and then raises TruncatedError. ``model``: None uses the
    model the file names; a given one must be the same model (ModelMismatchError).
    """

    def __init__(self, src: Any, *, model: Any = None, output: str = "numpy"):
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
            self._backend: _LatentDecoder | _MotionDecoder
            if isinstance(self.model, MotionCodecModel):
                self._backend = _MotionDecoder(self.model, self.header)
            else:
                self._backend = _LatentDecoder(self.model, self.header)
        except BaseException:
            self._reader.close()
            raise
        self.stats = VideoStats()
        self._show_from = 0

    # -- properties -------------------------------------------------------------------------
    @property
    def payload_version(self) -> int:
        """1 (latent residual) or 2 (motion-compensated 4:2:0)."""
        return self._backend.version

    @property
    def coder(self) -> TemporalCoder | None:
        """Payload 1: the model's TemporalCoder (None for payload 2)."""
        return self._backend.coder if isinstance(self._backend, _LatentDecoder) else None

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
        """The header's quality: a level of the model (payload 1) or the base qp (payload 2)."""
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
        """Payload 1: latents (1, C, h, w) of the last decoded frame (None before one, and for payload 2)."""
        state = self._backend.state
        return state.latents if isinstance(state, LatentState) else None

    @property
    def reference(self) -> ReferenceState | None:
        """Payload 2: the reference state after the last decoded frame (None before one, and for
        payload 1)."""
        state = self._backend.state
        return state if isinstance(state, ReferenceState) else None

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
        self._backend.state = None
        self._show_from = int(frame_index)
        return int(frame_index)

    def skip_to(self, frame_index: int) -> None:
        """Yield nothing before ``frame_index`` (those frames only update the reference).

        Works on any source, pipes included; on a seekable one ``seek()`` is faster.
        """
        self._show_from = max(self._show_from, int(frame_index))

    def __iter__(self) -> Iterator[Any]:
        for _, frame in self.frames_with_index():
            yield frame

    def frames_with_index(self) -> Iterator[tuple[int, Any]]:
        fmt = "gray8" if self.pixel_format == "gray8" else "rgb24"
        for index, picture in self._decode():
            if isinstance(self._backend, _MotionDecoder):
                rgb = yuv_to_rgb(
                    picture,
                    MC_PIXEL_FORMAT,
                    matrix=int(self.header.matrix) or default_matrix(self.height),
                    full_range=bool(self.header.full_range),
                )
            else:
                rgb = picture
            yield index, media.make_output(rgb, None, fmt, self.output)

    def planes_with_index(self) -> Iterator[tuple[int, list[np.ndarray]]]:
        """(index, planes) of the header's pixel format: payload 2 yields its decoded planes
        exactly; payload 1 converts its RGB output (rgb24: one (H, W, 3) plane)."""
        fmt = self.pixel_format
        matrix = int(self.header.matrix) or default_matrix(self.height)
        for index, picture in self._decode():
            if isinstance(self._backend, _MotionDecoder):
                yield index, picture
            elif fmt == "rgb24":
                yield index, [picture]
            else:
                yield index, rgb_to_yuv(picture, fmt, matrix=matrix, full_range=bool(self.header.full_range))

    def read(self) -> Any:
        """The next frame, or None at the end."""
        return next(iter(self), None)

    def close(self) -> None:
        self._backend.state = None
        self._reader.close()

    def __enter__(self) -> VideoDecoder:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------------
    def _decode(self) -> Iterator[tuple[int, Any]]:
        backend = self._backend
        for frame in self._reader.frames():
            limits.check_frames(frame.index + 1)  # a streamed header declares no count: count here
            start = time.perf_counter()
            if not frame.payload:
                raise FormatError(f"frame {frame.index} has an empty payload", field="frame payload")
            # a corrupt payload raises FormatError / TruncatedError (entropy layer and the models'
            # checks): anything else is a bug and surfaces as it is
            picture = backend.decode(frame, frame.index >= self._show_from)
            self.stats.frames += 1
            self.stats.key_frames += int(frame.key)
            self.stats.payload_bytes += len(frame.payload)
            self.stats.seconds += time.perf_counter() - start
            if picture is not None:
                if isinstance(picture, np.ndarray):
                    picture = np.ascontiguousarray(picture)
                yield frame.index, picture


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
    "LatentState",
    "RateController",
    "VideoDecoder",
    "VideoEncoder",
    "VideoStats",
    "decode_video",
    "encode_video",
    "is_motion_model",
    "resolve_video_model",
]
