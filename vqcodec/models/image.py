"""The image codec network: analysis transform -> residual VQ -> synthesis transform.

One model serves every quality level: the residual VQ is trained with quantizer dropout
(a random number of active stages per batch), and quality level q decodes with the first
``config.quality_stages[q - 1]`` stages. Each stage costs log2(codebook_size) bits per
latent, i.e. ``log2(K) / stride**2`` bits per pixel before entropy coding (0.14 bpp for
K = 512 at stride 8, the bundled image-rvq8).

Shapes: pixels (B, 3, H, W) float in [0, 1] with H, W multiples of ``config.stride``;
latents (B, latent_dim, h, w) with h = H / stride; codes (B, S, h, w) int64, S = number of
stages used (stage-major, the layout the entropy priors take per image as (S, h, w)).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vqcodec.models.blocks import AnalysisTransform, SynthesisTransform
from vqcodec.models.config import ImageCodecConfig
from vqcodec.quantize import ResidualVQ
from vqcodec.quantize.kmeans import greedy_residual_codes


@dataclass
class ImageCodecOutput:
    """What a training forward pass returns.

    ``reconstruction``: (B, 3, H, W) float (not clamped, so the MSE gradient never vanishes);
    ``codes``: (B, S, h, w); ``loss``: named scalar terms (distortion ``mse`` plus the
    quantizer's own terms); ``metrics``: the quantizer's codebook-health metrics.
    """

    reconstruction: torch.Tensor
    codes: torch.Tensor
    loss: dict[str, torch.Tensor]
    metrics: dict[str, torch.Tensor]


class ImageCodec(nn.Module):
    """Conv autoencoder around a ResidualVQ; see the module docstring for shapes."""

    def __init__(self, config: ImageCodecConfig):
        super().__init__()
        self.config = config
        self.analysis = AnalysisTransform(
            config.encoder_channels, config.encoder_blocks, config.latent_dim, config.linear_path
        )
        self.synthesis = SynthesisTransform(
            config.decoder_channels, config.decoder_blocks, config.latent_dim, config.linear_path
        )
        self.quantizer = ResidualVQ(
            dim=config.latent_dim,
            num_quantizers=config.num_quantizers,
            codebook_size=config.codebook_size,
            codebook_dim=config.codebook_dim,
            decay=config.decay,
            kmeans_init=config.kmeans_init,
            threshold_ema_dead_code=config.threshold_ema_dead_code,
            commitment_weight=config.commitment_weight,
            quantize_dropout=True,
            channel_first=True,
        )

    @property
    def stride(self) -> int:
        return self.config.stride

    @property
    def quality_levels(self) -> int:
        return self.config.quality_levels

    def _check_pixels(self, pixels: torch.Tensor) -> None:
        if pixels.ndim != 4 or pixels.shape[1] != 3:
            raise ValueError(f"pixels must be (B, 3, H, W), got {tuple(pixels.shape)}")
        s = self.stride
        if pixels.shape[2] % s or pixels.shape[3] % s:
            raise ValueError(
                f"pixel height and width must be multiples of the stride {s}, got {tuple(pixels.shape[2:])}"
            )

    def analyse(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels (B, 3, H, W) in [0, 1] -> latents (B, latent_dim, H/stride, W/stride)."""
        return self.analysis(pixels - 0.5)

    def synthesise(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents (B, latent_dim, h, w) -> unclamped pixels (B, 3, h*stride, w*stride)."""
        return self.synthesis(latents) + 0.5

    def forward(self, pixels: torch.Tensor) -> ImageCodecOutput:
        """Training/validation pass; in training mode the quantizer drops a random number of stages."""
        self._check_pixels(pixels)
        latents = self.analyse(pixels)
        quantized = self.quantizer(latents)
        reconstruction = self.synthesise(quantized.quantized)
        loss = {"mse": F.mse_loss(reconstruction.float(), pixels.float())}
        loss.update(quantized.loss)
        codes = quantized.codes.permute(0, 3, 1, 2)
        return ImageCodecOutput(reconstruction, codes, loss, dict(quantized.metrics))

    @torch.no_grad()
    def initialise_linear_path(self, pixels: torch.Tensor) -> None:
        """Set both linear paths to the principal components of the stride x stride blocks of
        ``pixels`` (N, 3, H, W) in [0, 1]: encoder = projection on the top ``latent_dim``
        components, decoder = its transpose plus the mean block.

        The projection is orthonormal, so distances between latents equal distances between the
        blocks they reconstruct: the VQ's nearest code is the pixel-MSE-nearest one from the start.
        """
        encoder, decoder = self.analysis.linear, self.synthesis.linear
        if encoder is None or decoder is None:
            raise ValueError("the model has no linear path (config.linear_path is False)")
        assert encoder.bias is not None and decoder.bias is not None  # both built with bias=True
        s, k = self.stride, self.config.latent_dim
        if k > 3 * s * s:
            raise ValueError(f"latent_dim {k} exceeds the block size 3*{s}*{s}")
        blocks = F.pixel_unshuffle(pixels.float() - 0.5, s).permute(0, 2, 3, 1).reshape(-1, 3 * s * s)
        mean = blocks.mean(dim=0)
        _, _, components = torch.linalg.svd(blocks - mean, full_matrices=False)
        basis = components[:k]  # (k, 3*s*s), orthonormal rows
        encoder.weight.copy_(basis[:, :, None, None])
        encoder.bias.copy_(-(basis @ mean))
        decoder.weight.copy_(basis.t()[:, :, None, None])
        decoder.bias.copy_(mean)

    @torch.no_grad()
    def initialise_codebooks(self, latents: torch.Tensor, vectors_per_step: int, seed: int = 0) -> None:
        """Initialise every RVQ stage in turn from a pool of latents (N, latent_dim, h, w).

        Each stage's codebook is a random sample of the pool's residuals at that stage, with a little
        noise so no two codes are equal. The quantizer's own k-means initialisation runs on the first
        training batch only: with fewer latent vectors per batch than codes (1024 vectors for 16
        crops of 128x128 at stride 16, K = 1024) it memorises the batch and leaves exact-zero
        residuals, and the duplicate latents of flat image areas make its exact tie-breaking
        re-ranking dominate the step time. The EMA statistics are set to one training step's
        expected counts (``vectors_per_step / K`` per code) so the codebooks follow the moving
        encoder from the first steps.
        """
        generator = torch.Generator().manual_seed(seed)
        vectors = latents.permute(0, 2, 3, 1).reshape(-1, self.config.latent_dim).float()
        residual = vectors
        k = self.config.codebook_size
        size = vectors_per_step / k
        for index in range(self.config.num_quantizers):
            stage = self.quantizer.stage(index)
            if stage.project_in is not None:
                raise ValueError("codebook initialisation needs codebook_dim == latent_dim")
            pick = torch.randint(residual.shape[0], (k,), generator=generator)
            scale = residual.std(dim=0, keepdim=True).clamp_min(1e-6)
            codebook = residual[pick] + 0.01 * scale * torch.randn(k, residual.shape[1], generator=generator)
            stage.codebook.copy_(codebook)
            stage.embed_avg.copy_(codebook * size)
            stage.cluster_size.fill_(size)
            stage.steps_unused.zero_()
            stage.initted.fill_(True)
            # plain argmin: the pool's assignment needs no batch-independent tie-breaking
            residual = residual - codebook[greedy_residual_codes(residual, [codebook])[0][:, 0]]

    def encode(
        self,
        pixels: torch.Tensor,
        num_stages: int,
        *,
        code_bits: Sequence[torch.Tensor] | None = None,
        rate_weight: float = 0.0,
    ) -> torch.Tensor:
        """Pixels (B, 3, H, W) in [0, 1] -> codes (B, num_stages, H/stride, W/stride) int64.

        ``code_bits``/``rate_weight``: rate-distortion code choice (``ResidualVQ.encode``).
        """
        self._check_pixels(pixels)
        if not 1 <= num_stages <= self.config.num_quantizers:
            raise ValueError(f"num_stages must be in 1..{self.config.num_quantizers}, got {num_stages}")
        codes = self.quantizer.encode(
            self.analyse(pixels), num_stages=num_stages, code_bits=code_bits, rate_weight=rate_weight
        )
        return codes.permute(0, 3, 1, 2).to(torch.int64)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, S, h, w) with S <= num_quantizers -> pixels (B, 3, h*stride, w*stride) in [0, 1]."""
        if codes.ndim != 4 or not 1 <= codes.shape[1] <= self.config.num_quantizers:
            raise ValueError(
                f"codes must be (B, S, h, w) with 1 <= S <= {self.config.num_quantizers}, "
                f"got {tuple(codes.shape)}"
            )
        codes = codes.to(torch.int64)
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.config.codebook_size):
            raise ValueError(f"codes must lie in 0..{self.config.codebook_size - 1}")
        latents = self.quantizer.decode(codes.permute(0, 2, 3, 1))
        return self.synthesise(latents).clamp_(0.0, 1.0)

    @torch.no_grad()
    def to_codes(self, pixels: torch.Tensor, quality: int, **rate: Any) -> torch.Tensor:
        """Pixels (B, 3, H, W) in [0, 1] -> codes (B, S, h, w) for quality level 1..quality_levels.

        ``rate``: ``code_bits`` and ``rate_weight``, passed to :meth:`encode`.
        """
        return self.encode(pixels, self.config.stages_for_quality(quality), **rate)

    @torch.no_grad()
    def from_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, S, h, w) -> pixels (B, 3, H, W) in [0, 1]."""
        return self.decode(codes)


__all__ = ["ImageCodec", "ImageCodecOutput"]
