"""Training recipe for the temporal part of the video codec (``vqcodec.models.video.VideoCodec``).

The image codec is frozen: the recipe trains the latent-residual quantizer and fits the
temporal entropy tables, both on ``video_train`` clips only (``<data>/video_train``, DAVIS
MJPEG clips; ``<data>/video`` is evaluation data and is refused).

1. Data (``build``): every clip is decoded, scaled by ``data.scale`` and cropped to a multiple
   of the stride; the frozen image encoder turns each frame into latents once (cached in
   ``data.cache``). A training sample is a pair of consecutive frames' latents.
2. Training (``VideoResidualModule``): the reference latents of the previous frame are
   simulated the way the decoder gets them after a key frame, ``yhat = RVQ_s(y_{t-1})`` with a
   random quality's stage count s; the residual ``r = y_t - yhat`` at the positions worth coding
   (``||r||^2`` above ``data.min_residual_ratio`` times the intra quantization error there)
   trains the residual VQ's codebooks (initialised from the image RVQ's later stages) by the
   codebook loss, with dead-code re-seeding.
3. Export (``export``): the real encoder (``vqcodec.models.video_latent.TemporalCoder``) codes GOPs of
   the cached latents at several quality levels; the stage counts (per context) and the
   residual codes (per stage) it chooses are counted into integer frequency tables (twice: the
   second pass decides with the first pass's tables), and the bundle is written with
   ``save_bundle`` (image weights + residual VQ + tables + the image model's prior).

Config (TOML, see ``vqcodec/train/configs/video_rvq8.toml``): ``[image]`` ``bundle`` (the image
model bundle; or ``checkpoint`` + ``config`` of an image training run), ``[model]`` VideoCodecConfig
fields, ``[data]``, ``[optim]``, ``[trainer]``, ``[export]`` (path, name, description, qualities,
gop, smoothing).
"""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from vqcodec.entropy.cdf import quantize_pmf
from vqcodec.models import zoo
from vqcodec.models.bundle import CodecModel, load_bundle, save_bundle
from vqcodec.models.config import ImageCodecConfig
from vqcodec.models.image import ImageCodec
from vqcodec.models.video import TABLE_PRECISION, VideoCodec, VideoCodecConfig
from vqcodec.models.video_latent import TemporalCoder, key_counts
from vqcodec.quantize.kmeans import greedy_residual_codes
from vqcodec.train.checkpoint import module_state_dict
from vqcodec.train.config import RECIPES, Recipe
from vqcodec.train.data import data_root, read_training_clip, resolve_path
from vqcodec.train.export import image_config_from
from vqcodec.train.module import TrainingModule

VIDEO_SUFFIXES = (".mkv", ".mp4", ".webm", ".y4m", ".avi", ".mov")
FORBIDDEN_FOLDERS = ("video", "kodak")


def training_clips(root: Path | None = None) -> list[Path]:
    """Sorted clips of ``<data>/video_train``; refuses evaluation folders."""
    folder = (root or data_root()) / "video_train"
    if folder.name in FORBIDDEN_FOLDERS:
        raise ValueError(f"refusing to train on evaluation data: {folder}")
    clips = sorted(p for p in folder.glob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
    if not clips:
        raise FileNotFoundError(f"no training clips in {folder}")
    return clips


def image_bundle_path(bundle: str) -> Path:
    """``[image] bundle``: a bundled model's name ("image-rvq8") or a ``.safetensors`` path."""
    names = {m.name: m for m in zoo.list_models()}
    return names[bundle].path if bundle in names else resolve_path(bundle)


def bundled_image_reference(bundle: str) -> str | None:
    """The bundled image model's name when ``[image] bundle`` is one (by name or by its file), else None:
    a video bundle then refers to it by name and sha256 instead of storing it a second time."""
    file = image_bundle_path(bundle).name
    return next((m.name for m in zoo.list_models() if m.media == "image" and file == m.file), None)


def load_image_network(image: dict[str, Any]) -> tuple[ImageCodec, Any]:
    """The frozen image codec and its prior, from ``[image] bundle`` or ``checkpoint`` + ``config``."""
    if image.get("bundle") and image_bundle_path(str(image["bundle"])).is_file():
        network, prior, config, _ = load_bundle(image_bundle_path(str(image["bundle"])))
        if not isinstance(config, ImageCodecConfig) or not isinstance(network, ImageCodec):
            raise ValueError(f"{image['bundle']} is not an image model")
        return network, prior
    if not image.get("checkpoint"):
        raise FileNotFoundError(
            f"image bundle {image.get('bundle')!r} not found and no [image] checkpoint given"
        )
    with open(resolve_path(image["config"]), "rb") as f:
        network = ImageCodec(image_config_from(tomllib.load(f)))
    network.load_state_dict(module_state_dict(resolve_path(image["checkpoint"]), prefix="model."))
    for name, buffer in network.named_buffers():
        if name.endswith("initted"):
            buffer.fill_(True)
    return network.eval(), None


@torch.inference_mode()
def clip_latents(network: ImageCodec, path: Path, *, scale: float, max_frames: int) -> torch.Tensor:
    """Latents (T, C, h, w) fp16 of one clip's first ``max_frames`` frames, scaled and stride-cropped."""
    stride = network.stride
    out = []
    for rgb in read_training_clip(path, max_frames):
        if scale != 1.0:
            size = (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale))
            rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS))
        h, w = (rgb.shape[0] // stride) * stride, (rgb.shape[1] // stride) * stride
        # (1, 3, h, w) in [0, 1] in channels_last strides, as the codec feeds the same network
        pixels = torch.from_numpy(np.ascontiguousarray(rgb[:h, :w]))[None].permute(0, 3, 1, 2)
        out.append(network.analyse(pixels.float().div_(255.0)).half())
    return torch.cat(out)


@torch.inference_mode()
def all_stage_codes(quantizer: Any, latents: torch.Tensor, chunk: int = 8) -> torch.Tensor:
    """Image RVQ codes with every stage for latents (T, C, h, w) -> (T, h, w, Q) int16.

    The plain greedy search (``quantize.kmeans.greedy_residual_codes``: ties may resolve differently from
    the quantizer's exact tie-breaking, which only matters for bitstreams, not for training data).
    """
    if any(quantizer.stage(i).project_in is not None for i in range(quantizer.num_quantizers)):
        return quantizer.encode(latents.float()).to(torch.int16)
    tables = [quantizer.stage(i).codebook.float() for i in range(quantizer.num_quantizers)]
    out = []
    for start in range(0, latents.shape[0], chunk):
        y = latents[start : start + chunk].float()
        t, c, h, w = y.shape
        codes, _ = greedy_residual_codes(y.permute(0, 2, 3, 1).reshape(-1, c), tables)
        out.append(codes.reshape(t, h, w, -1).to(torch.int16))
    return torch.cat(out)


def cached_latents(network: ImageCodec, data: dict[str, Any]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Every training clip's (latents (T, C, h, w) fp16, all-stage image codes (T, h, w, Q) int16).

    Computed once and cached in ``data.cache`` (keyed by the clips, settings and weights).
    """
    clips = training_clips()
    scale = float(data.get("scale", 0.5))
    max_frames = int(data.get("max_frames", 48))
    cache = resolve_path(data.get("cache", ".data/video_latents.pt"))
    key = {
        "clips": [p.name for p in clips],
        "scale": scale,
        "max_frames": max_frames,
        "weights": float(sum(p.detach().double().sum() for p in network.parameters())),
        "codebooks": float(
            sum(b.double().sum() for n, b in network.named_buffers() if n.endswith("codebook"))
        ),
    }
    if cache.is_file():
        stored = torch.load(cache, map_location="cpu", weights_only=False)
        if stored.get("key") == key:
            return list(stored["clips"])
    entries = []
    for path in clips:
        latents = clip_latents(network, path, scale=scale, max_frames=max_frames)
        entries.append((latents, all_stage_codes(network.quantizer, latents)))
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"key": key, "clips": entries}, cache)
    return entries


class FramePairs(Dataset):
    """Consecutive frames of the given clips: (latents (2, C, h, w), image codes (2, h, w, Q))."""

    def __init__(self, clips: list[tuple[torch.Tensor, torch.Tensor]]):
        self.clips = clips
        self.pairs = [(c, t) for c, (latents, _) in enumerate(clips) for t in range(1, latents.shape[0])]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        c, t = self.pairs[index]
        latents, codes = self.clips[c]
        return latents[t - 1 : t + 1].float(), codes[t - 1 : t + 1].long()


def _collate_same_size(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    h = min(b[0].shape[-2] for b in batch)
    w = min(b[0].shape[-1] for b in batch)
    return (
        torch.stack([b[0][..., :h, :w] for b in batch]),
        torch.stack([b[1][:, :h, :w] for b in batch]),
    )


class VideoResidualModule(TrainingModule):
    """Trains ``VideoCodec.residual`` on latent residuals; the image codec stays frozen."""

    def __init__(
        self, video: VideoCodec, *, lr: float = 1e-3, min_residual_ratio: float = 0.5, max_vectors: int = 1024
    ):
        super().__init__()
        self.model = video
        self.lr = lr
        self.min_residual_ratio = min_residual_ratio
        self.max_vectors = max_vectors
        for p in self.model.image.parameters():
            p.requires_grad_(False)
        self.stage_choices = tuple(video.config.image.quality_stages)

    def forward(self, residual: torch.Tensor):  # the strategy wraps forward
        return self.model.residual(residual)

    def _residuals(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Pairs of latents (B, 2, C, h, w) and image codes (B, 2, h, w, Q) -> residual vectors worth
        coding (1, C, N, 1) and all residuals (B, C, h, w)."""
        latents, codes = batch
        current = latents[:, 1].float()
        quantizer = self.model.image.quantizer
        with torch.no_grad():
            stages = self.stage_choices[int(torch.randint(len(self.stage_choices), ()).item())]
            reference = quantizer.decode(codes[:, 0, ..., :stages])
            intra = quantizer.decode(codes[:, 1, ..., :stages])
            residual = current - reference
            worth = (residual**2).sum(1) > self.min_residual_ratio * ((current - intra) ** 2).sum(1)
            vectors = residual.permute(0, 2, 3, 1)[worth]  # (N, C)
            if vectors.shape[0] > self.max_vectors:  # a random subset keeps steps cheap
                vectors = vectors[torch.randperm(vectors.shape[0])[: self.max_vectors]]
        return vectors.T[None, :, :, None], residual

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        vectors, _ = self._residuals(batch)
        if vectors.shape[2] < 8:
            return None
        out = self(vectors)
        loss = sum((v.float() for v in out.loss.values()), torch.zeros(()))
        self.log("train/loss", loss.detach())
        self.log("train/vectors", float(vectors.shape[2]))
        for name in ("usage", "perplexity", "dead_codes"):
            if name in out.metrics:
                self.log(f"codebook/{name}", out.metrics[name].detach().float())
        return loss

    @torch.no_grad()
    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        vectors, residual = self._residuals(batch)
        if vectors.shape[2] == 0:
            return
        total = float((vectors**2).sum())
        codes = self.model.residual.encode(vectors)
        for k in (1, 2, 4, self.model.config.residual_stages):
            k = min(k, codes.shape[-1])
            approx = self.model.residual.decode(codes[..., :k])
            self.log(
                f"val/residual_gain_db_{k}",
                10 * math.log10(total / max(float(((vectors - approx) ** 2).sum()), 1e-9)),
            )
        self.log("val/coded_fraction", float(vectors.shape[2]) / residual[:, 0].numel())

    def configure_optimizers(self) -> Any:
        params = [p for p in self.model.residual.parameters() if p.requires_grad]
        return torch.optim.Adam(params, lr=self.lr)


def video_config_from(config: dict[str, Any], image_config: ImageCodecConfig) -> VideoCodecConfig:
    options = dict(config.get("model", {}))
    options.setdefault("residual_codebook_size", image_config.codebook_size)
    return VideoCodecConfig(image=image_config, **options)


def build(config: dict[str, Any]) -> tuple[VideoResidualModule, tuple[DataLoader, DataLoader]]:
    """Recipe builder: (module, (train_loader, val_loader))."""
    image_network, _ = load_image_network(dict(config.get("image", {})))
    video_config = video_config_from(config, image_network.config)
    video = VideoCodec(video_config)
    video.image.load_state_dict(image_network.state_dict())
    video.init_residual_from_image()
    data: dict[str, Any] = dict(config.get("data", {}))
    clips = cached_latents(video.image, data)
    val_clips = int(data.get("val_clips", 2))
    train_set, val_set = FramePairs(clips[val_clips:]), FramePairs(clips[:val_clips])
    optim: dict[str, Any] = dict(config.get("optim", {}))
    module = VideoResidualModule(
        video,
        lr=float(optim.get("lr", 1e-3)),
        min_residual_ratio=float(data.get("min_residual_ratio", 0.5)),
        max_vectors=int(data.get("max_vectors", 1024)),
    )
    batch_size = int(data.get("batch_size", 8))
    train = DataLoader(
        train_set, batch_size=batch_size, shuffle=True, drop_last=True, collate_fn=_collate_same_size
    )
    val = DataLoader(val_set, batch_size=batch_size, shuffle=False, collate_fn=_collate_same_size)
    return module, (train, val)


def _rows(counts: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(quantize_pmf(counts, TABLE_PRECISION).astype(np.int32))


@torch.inference_mode()
def fit_tables(
    video: VideoCodec, prior: Any, clips: list[tuple[torch.Tensor, torch.Tensor]], export: dict[str, Any]
) -> dict[str, Any]:
    """Set the integer tables: intra-code marginals from every frame's image codes, then the mode
    and residual-code tables from the encoder's own choices on GOPs of the training latents."""
    cfg = video.config
    qualities = [int(q) for q in export.get("qualities", range(1, cfg.quality_levels + 1))]
    gop = int(export.get("gop", 12))
    smoothing = float(export.get("smoothing", 0.5))
    fit_clips = int(export.get("fit_clips", len(clips)))
    big_r, k = cfg.residual_stages, cfg.codebook_size
    intra_hist = np.full((cfg.num_quantizers, k), smoothing)
    for _, codes in clips:
        flat = codes.reshape(-1, codes.shape[-1]).long().numpy()
        for stage in range(cfg.num_quantizers):
            intra_hist[stage] += np.bincount(flat[:, stage], minlength=k)
    video.intra_freqs.copy_(_rows(intra_hist))
    summary: dict[str, Any] = {}
    for round_index in range(int(export.get("rounds", 2))):
        model = CodecModel(video, name="fit", sha256=bytes(32), config=cfg, prior=prior, media="video")
        coder = TemporalCoder(model)
        collected: list[Any] = []
        bits = 0
        frames = 0
        for latents, _ in clips[:fit_clips]:
            for quality in qualities:
                stages = cfg.stages_for_quality(quality)
                for start in range(0, latents.shape[0] - 1, gop):
                    y = latents[start : start + 1].float()
                    _, previous, _, lam = coder.encode_intra(y, quality)
                    counts = key_counts(y.shape[2], y.shape[3], coder.stages)
                    for t in range(start + 1, min(start + gop, latents.shape[0])):
                        payload, previous, counts, _ = coder.encode_inter(
                            latents[t : t + 1].float(), previous, counts, lam, stages, collect=collected
                        )
                        bits += 8 * len(payload)
                        frames += 1
        count_hist = np.full((cfg.num_count_contexts, big_r + 2), smoothing)
        code_hist = np.full((big_r, cfg.residual_codebook_size), smoothing)
        modes = np.zeros(big_r + 2)
        for contexts, counts_flat, codes, _ in collected:
            np.add.at(count_hist, (contexts, counts_flat), 1.0)
            modes += np.bincount(counts_flat, minlength=big_r + 2)
            for j in range(big_r):
                used = (counts_flat > j) & (counts_flat <= big_r)
                code_hist[j] += np.bincount(codes[used, j], minlength=cfg.residual_codebook_size)
        video.count_freqs.copy_(_rows(count_hist))
        video.residual_freqs.copy_(_rows(code_hist))
        summary[f"round{round_index}_p_frame_bytes"] = bits / 8 / max(1, frames)
        summary[f"round{round_index}_modes"] = (modes / max(1.0, modes.sum())).round(4).tolist()
    return summary


def export(module: VideoResidualModule, config: dict[str, Any], trainer: Any) -> Path:
    """Export hook: fit the temporal tables, write the video bundle named in ``[export]``."""
    video = module.model.eval()
    image = dict(config.get("image", {}))
    _, prior = load_image_network(image)
    if prior is None:
        raise ValueError("exporting a video bundle needs the image model's bundle (for its entropy prior)")
    settings = dict(config.get("export", {}))
    clips = cached_latents(video.image, dict(config.get("data", {})))
    summary = fit_tables(video, prior, clips, settings)
    path = resolve_path(settings.get("path", "runs/video-model.safetensors"))
    reference = bundled_image_reference(str(image["bundle"])) if image.get("bundle") else None
    save_bundle(
        path,
        video,
        prior,
        video.config,
        str(settings.get("description", "video codec: image model + latent-residual P frames")),
        name=str(settings.get("name", path.stem)),
        media="video",
        extra={
            "tables": summary,
            "image_bundle": image_bundle_path(str(image["bundle"])).name if image.get("bundle") else None,
            "data": "video_train",
        },
        reference=reference,
    )
    print(json.dumps({"exported": str(path), **summary}))
    return path


RECIPES.register("video", Recipe(build, export))

__all__ = ["FramePairs", "VideoResidualModule", "build", "export", "fit_tables", "training_clips"]
