"""Convolutional building blocks of the analysis and synthesis transforms.

Chosen for CPU speed: 3x3 convolutions, stride-2 convolutions to go down, 4x4
transposed convolutions to go up (2.25x fewer multiply-adds than a 3x3 sub-pixel
convolution for the same output), and GELU residual blocks only at the low
resolutions where they are cheap.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResidualBlock(nn.Module):
    """``x + conv3x3(gelu(conv3x3(gelu(x))))``; (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.act = nn.GELU(approximate="tanh")
        # start as the identity so deep stacks train from the first step
        zero_init(self.conv2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.act(self.conv1(self.act(x))))


def zero_init(layer: nn.Conv2d | nn.ConvTranspose2d) -> None:
    """Set a convolution's weight and bias to zero (its output starts at zero)."""
    nn.init.zeros_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


def downsample(in_channels: int, out_channels: int, kernel_size: int = 3) -> nn.Conv2d:
    """Stride-2 convolution: (B, Cin, H, W) -> (B, Cout, H/2, W/2) for even H, W."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride=2, padding=kernel_size // 2)


def upsample(in_channels: int, out_channels: int) -> nn.ConvTranspose2d:
    """4x4 stride-2 transposed convolution: (B, Cin, h, w) -> (B, Cout, 2h, 2w)."""
    return nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1)


class AnalysisTransform(nn.Module):
    """Pixels (B, 3, H, W) centred on 0 -> latents (B, latent_dim, H/s, W/s), s = 2**len(channels).

    With ``linear_path`` the latents are a linear map of each s x s pixel block (``linear``, a 1x1
    convolution on the pixel-unshuffled image, 3*s*s -> latent_dim) plus the conv stack's output,
    whose last layer starts at zero: initialised with the blocks' principal components
    (``ImageCodec.initialise_linear_path``) the transform starts as a block PCA, which keeps most of
    a photo's energy in a few components, instead of as a random network.
    """

    def __init__(
        self, channels: tuple[int, ...], blocks: tuple[int, ...], latent_dim: int, linear_path: bool = False
    ):
        super().__init__()
        self.stride = 2 ** len(channels)
        layers: list[nn.Module] = []
        previous = 3
        for i, (width, n_blocks) in enumerate(zip(channels, blocks)):
            # the first layer sees only 3 channels, so a wider kernel is nearly free
            layers.append(downsample(previous, width, kernel_size=5 if i == 0 else 3))
            layers.append(nn.GELU(approximate="tanh"))
            layers.extend(ResidualBlock(width) for _ in range(n_blocks))
            previous = width
        last = nn.Conv2d(previous, latent_dim, 1)
        layers.append(last)
        self.layers = nn.Sequential(*layers)
        self.linear: nn.Conv2d | None = None
        if linear_path:
            self.linear = nn.Conv2d(3 * self.stride**2, latent_dim, 1)
            zero_init(last)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        latents = self.layers(pixels)
        if self.linear is not None:
            latents = latents + self.linear(F.pixel_unshuffle(pixels, self.stride))
        return latents


class SynthesisTransform(nn.Module):
    """Latents (B, latent_dim, h, w) -> pixels (B, 3, h*s, w*s) centred on 0, s = 2**len(channels).

    ``linear_path``: the mirror of AnalysisTransform's (latent_dim -> 3*s*s, then pixel shuffle),
    added to the conv stack, whose last layer starts at zero.
    """

    def __init__(
        self, channels: tuple[int, ...], blocks: tuple[int, ...], latent_dim: int, linear_path: bool = False
    ):
        super().__init__()
        self.stride = 2 ** len(channels)
        last: nn.Conv2d | nn.ConvTranspose2d = nn.Conv2d(latent_dim, channels[0], 3, padding=1)
        layers: list[nn.Module] = [last]
        for i, (width, n_blocks) in enumerate(zip(channels, blocks)):
            layers.extend(ResidualBlock(width) for _ in range(n_blocks))
            layers.append(nn.GELU(approximate="tanh"))
            out = channels[i + 1] if i + 1 < len(channels) else 3
            last = upsample(width, out)
            layers.append(last)
        self.layers = nn.Sequential(*layers)
        self.linear: nn.Conv2d | None = None
        if linear_path:
            self.linear = nn.Conv2d(latent_dim, 3 * self.stride**2, 1)
            zero_init(last)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        pixels = self.layers(latents)
        if self.linear is not None:
            pixels = pixels + F.pixel_shuffle(self.linear(latents), self.stride)
        return pixels


__all__ = ["ResidualBlock", "AnalysisTransform", "SynthesisTransform", "downsample", "upsample", "zero_init"]
