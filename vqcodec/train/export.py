"""Export a trained image codec: the safetensors bundle the codecs load, and standalone halves.

``export_image_bundle(network, config)`` encodes training crops with every RVQ stage, fits the
entropy prior on those codes (``vqcodec.entropy``; integer tables), and writes the bundle
(``vqcodec.models.bundle.save_bundle``). It is what the image recipe's export hook calls
after training; ``python -m vqcodec.train.export CONFIG --checkpoint CKPT`` does the same
for any checkpoint (an interrupted run included).

``export_halves`` writes the encoder half (pixels -> codes) and the decoder half (codes ->
pixels) as TorchScript programs that run without vqcodec. ONNX would be the first choice,
but ``onnx``/``onnxscript`` are not dependencies of this project (the exporter needs them),
so TorchScript is used; both halves are plain tensor programs (convolutions, one flat
codebook lookup, argmin) that an ONNX exporter could take as they are.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from vqcodec.entropy import fit_prior as entropy_fit_prior
from vqcodec.models.bundle import save_bundle
from vqcodec.models.config import ImageCodecConfig
from vqcodec.models.image import ImageCodec
from vqcodec.quantize.kmeans import greedy_residual_codes
from vqcodec.train.checkpoint import module_state_dict
from vqcodec.train.data import load_packed, resolve_path

DEFAULT_PRIOR = "auto"


def image_config_from(config: dict[str, Any]) -> ImageCodecConfig:
    """The ImageCodecConfig of a recipe config's ``[model]`` table."""
    return ImageCodecConfig.from_dict(dict(config.get("model", {})))


@torch.inference_mode()
def training_codes(network: ImageCodec, crops: torch.Tensor, *, batch_size: int = 32) -> list[np.ndarray]:
    """Codes with every RVQ stage for uint8 crops (N, 3, C, C) -> list of N int arrays (Q, C/s, C/s)."""
    network.eval()
    s = network.stride
    c = (min(crops.shape[2:]) // s) * s
    codes: list[np.ndarray] = []
    for start in range(0, crops.shape[0], batch_size):
        pixels = crops[start : start + batch_size, :, :c, :c].float().div_(255.0)
        batch = network.encode(pixels, network.config.num_quantizers)
        codes.extend(batch.to(torch.int32).numpy())
    return codes


def fit_prior(codes: list[np.ndarray], alphabet: tuple[int, ...], kind: str = DEFAULT_PRIOR, **options: Any):
    """Fit a ``vqcodec.entropy`` prior on per-image codes (S, h, w).

    ``kind`` is a ``vqcodec.entropy.fit_prior`` kind ("auto" picks the prior with the fewest
    held-out bits, "factorized", "spatial_context").
    """
    return entropy_fit_prior(codes, alphabet, kind, **options)


def export_image_bundle(
    network: ImageCodec, config: dict[str, Any], *, extra: dict[str, Any] | None = None
) -> Path:
    """Fit the prior on training codes and write the bundle described by ``config["export"]``.

    ``[export]`` keys: ``path`` (bundle file, relative to the repo), ``name``, ``description``,
    ``prior`` (a vqcodec.entropy.fit_prior kind), ``prior_options`` (table), ``fit_crops`` (how
    many packed training crops to encode for fitting).
    """
    options = dict(config.get("export", {}))
    name = options.get("name", "image-model")
    path = resolve_path(options.get("path", f"runs/{name}.safetensors"))
    data = dict(config.get("data", {}))
    packed = load_packed(resolve_path(data.get("packed", ".data/image_crops_144.pt")))
    crops = packed["train"][: int(options.get("fit_crops", 2000))]
    started = time.perf_counter()
    codes = training_codes(network, crops)
    alphabet = (network.config.codebook_size,) * network.config.num_quantizers
    prior = fit_prior(
        codes, alphabet, options.get("prior", DEFAULT_PRIOR), **dict(options.get("prior_options", {}))
    )
    summary = {"prior_fit_crops": len(codes), "prior_fit_seconds": round(time.perf_counter() - started, 1)}
    summary.update(extra or {})
    save_bundle(
        path,
        network,
        prior,
        network.config,
        options.get("description", ""),
        name=name,
        media="image",
        extra=summary,
    )
    return path


def network_from_checkpoint(
    checkpoint_path: str | Path, config: dict[str, Any], *, use_ema: bool = True
) -> ImageCodec:
    """Rebuild the recipe's ImageCodec and load a trainer checkpoint's weights (EMA weights when present;
    ``use_ema=False``: the live weights)."""
    network = ImageCodec(image_config_from(config))
    network.load_state_dict(
        module_state_dict(resolve_path(checkpoint_path), use_ema=use_ema, prefix="model.")
    )
    return network.eval()


def checkpoint_summary(checkpoint_path: str | Path) -> dict[str, Any]:
    """Provenance kept in the bundle: training step and the last validation metrics of a checkpoint."""
    checkpoint = torch.load(resolve_path(checkpoint_path), map_location="cpu", weights_only=False)
    summary: dict[str, Any] = {"checkpoint": Path(checkpoint_path).name}
    loop = checkpoint.get("loop", {})
    if isinstance(loop, dict) and "global_step" in loop:
        summary["global_step"] = int(loop["global_step"])
    metrics = checkpoint.get("callback_metrics", {})
    if isinstance(metrics, dict):
        summary["val"] = {k: round(float(v), 3) for k, v in metrics.items() if str(k).startswith("val/")}
    return summary


# ---------------------------------------------------------------------------------------------
# standalone encoder / decoder halves


class DecoderHalf(nn.Module):
    """Codes (B, S, h, w) int64, 1 <= S <= Q -> pixels (B, 3, h*stride, w*stride) in [0, 1].

    The residual VQ decode is a sum of per-stage codebook vectors, done here as one lookup in
    a flat (Q*K, D) table with per-stage offsets.
    """

    if TYPE_CHECKING:  # for the type checker only: TorchScript cannot read class annotations here
        codebooks: torch.Tensor  # (Q * K, D) every stage's codebook, stage-major (buffer)

    def __init__(self, network: ImageCodec):
        super().__init__()
        self.register_buffer("codebooks", stage_codebooks(network).flatten(0, 1))
        self.codebook_size = network.config.codebook_size
        self.synthesis = network.synthesis

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        stages = codes.shape[1]
        offsets = (torch.arange(stages, device=codes.device) * self.codebook_size).view(1, stages, 1, 1)
        vectors = nn.functional.embedding(codes + offsets, self.codebooks).sum(dim=1)  # (B, h, w, D)
        return (self.synthesis(vectors.permute(0, 3, 1, 2)) + 0.5).clamp(0.0, 1.0)


class EncoderHalf(nn.Module):
    """Pixels (B, 3, H, W) in [0, 1] -> codes (B, Q, H/stride, W/stride) with every stage."""

    if TYPE_CHECKING:  # (see DecoderHalf)
        codebooks: torch.Tensor  # (Q, K, D) every stage's codebook (buffer)

    def __init__(self, network: ImageCodec):
        super().__init__()
        self.analysis = network.analysis
        self.register_buffer("codebooks", stage_codebooks(network))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        latents = self.analysis(pixels - 0.5)
        b, d, h, w = latents.shape
        vectors = latents.permute(0, 2, 3, 1).reshape(-1, d)
        codes, _ = greedy_residual_codes(vectors, list(self.codebooks.unbind(0)))
        return codes.view(b, h, w, -1).permute(0, 3, 1, 2)


@torch.inference_mode()
def stage_codebooks(network: ImageCodec) -> torch.Tensor:
    """(Q, K, D) latent-space vector of every code of every stage, read through ``quantizer.decode``.

    Stage s's vectors are decode(zeros for stages < s, k at stage s) - decode(zeros for stages < s),
    which is exact because residual VQ decoding sums the stages' vectors.
    """
    config = network.config
    q, k = config.num_quantizers, config.codebook_size
    quantizer = network.quantizer
    rows = []
    for stage in range(q):
        codes = torch.zeros(k, 1, 1, stage + 1, dtype=torch.int64)
        codes[..., stage] = torch.arange(k).view(k, 1, 1)
        with_stage = quantizer.decode(codes).reshape(k, -1)
        if stage:
            without = quantizer.decode(torch.zeros(1, 1, 1, stage, dtype=torch.int64)).reshape(1, -1)
            with_stage = with_stage - without
        rows.append(with_stage)
    return torch.stack(rows).float()


def export_halves(network: ImageCodec, directory: str | Path) -> dict[str, Path]:
    """Write ``encoder.pt`` and ``decoder.pt`` (TorchScript) under ``directory``; returns their paths."""
    directory = resolve_path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    network = network.eval()
    paths = {}
    for name, half in (("encoder", EncoderHalf(network)), ("decoder", DecoderHalf(network))):
        scripted = torch.jit.script(half.eval())
        paths[name] = directory / f"{name}.pt"
        scripted.save(str(paths[name]))
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vqcodec.train.export", description=__doc__.splitlines()[0]
    )
    parser.add_argument("config", help="the recipe's TOML config")
    parser.add_argument("--checkpoint", required=True, help="trainer checkpoint to export")
    parser.add_argument("--output", help="bundle path (default: [export] path of the config)")
    parser.add_argument("--no-ema", action="store_true", help="export the raw weights, not the EMA weights")
    parser.add_argument("--halves", help="also write TorchScript encoder/decoder halves to this folder")
    args = parser.parse_args(argv)
    with open(args.config, "rb") as f:
        config = tomllib.load(f)
    if args.output:
        config.setdefault("export", {})["path"] = args.output
    network = network_from_checkpoint(args.checkpoint, config, use_ema=not args.no_ema)
    path = export_image_bundle(network, config, extra=checkpoint_summary(args.checkpoint))
    print(json.dumps({"bundle": str(path)}))
    if args.halves:
        print(json.dumps({k: str(v) for k, v in export_halves(network, args.halves).items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
