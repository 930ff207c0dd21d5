"""The scalar-quantized image codec: block KLT -> uniform scalar quantization -> learned synthesis.

Why scalar quantization: above ~0.3 bpp a greedy residual VQ spends bits where they do not pay,
while uniform scalar quantization of an orthonormal transform is close to the MSE optimum at
mid/high rates; one step size per quality level spans every rate with one model (issue 17's
probe and ``benchmarks/image_sq_ablation.py``). The codes are still a quantizer's indices
(signed integers, one per transform coefficient), coded by
``vqcodec.entropy.CoefficientContextPrior``.

- Analysis (encoder only, float): the 8 x 8 x 3 pixel block, pixel-unshuffled to 192 values,
  minus the training mean, projected on all 192 principal components (``basis``, orthonormal
  rows, fitted on training photos). Keeping every component removes the 48-component quality
  ceiling of ``image-rvq8``: unquantized, the transform is lossless up to fp16 weights.
- Quantization (encoder only): ``q = sign(c) * floor(|c| / step + rounding)``, ``rounding`` < 0.5
  is a dead zone (RD-better than plain rounding at the same rate; measured in the ablation).
- Synthesis (decoder): ``pixels = PCA^-1(q * step) + refine(q * step / scale, log2 step)``, the
  exact linear inverse plus a conv network whose last layer starts at zero (so training starts
  from the linear decoder and can only improve it). The refinement sees the step size as an
  extra input plane, so one network removes the artefacts of every level.

Shapes: pixels (B, 3, H, W) float in [0, 1], H and W multiples of 8; coefficients and codes
(B, 192, H/8, W/8) (codes int64, signed); ``quality`` 1..len(config.steps), level 1 coarsest.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vqcodec.models.blocks import SynthesisTransform, zero_init
from vqcodec.models.device import cpu_bf16_is_fast

#: Pixels per block side; the transform has 3 * BLOCK**2 coefficients.
BLOCK = 8
COEFFICIENTS = 3 * BLOCK * BLOCK


@dataclass(frozen=True)
class ScalarImageCodecConfig:
    """Shape of the scalar-quantized image codec (rebuilt from its bundle's JSON alone).

    ``steps[q - 1]``: quantization step of quality level q (strictly decreasing: level 1 is the
    coarsest), in units of the orthonormal transform of pixels in [-0.5, 0.5].
    ``rounding``: the encoder's rounding offset (0.5 = nearest; smaller = dead zone). It is an
    encoder choice only: any integer codes decode.
    ``decoder_channels`` / ``decoder_blocks``: the refinement network (SynthesisTransform widths
    from the latent resolution up, and residual blocks per resolution).
    """

    steps: tuple[float, ...] = (0.4, 0.2, 0.1, 0.05)
    rounding: float = 0.35
    decoder_channels: tuple[int, ...] = (128, 64, 32)
    decoder_blocks: tuple[int, ...] = (2, 1, 0)
    kind: str = field(default="image-sq", init=False)

    def __post_init__(self) -> None:
        if len(self.decoder_channels) != 3 or len(self.decoder_blocks) != 3:
            raise ValueError("decoder_channels and decoder_blocks need 3 entries (stride 8)")
        if not self.steps or any(not (isinstance(s, (int, float)) and s > 0) for s in self.steps):
            raise ValueError("steps must be positive numbers")
        if list(self.steps) != sorted(set(self.steps), reverse=True):
            raise ValueError("steps must be strictly decreasing (level 1 is the coarsest)")
        if not 0.0 < self.rounding <= 0.5:
            raise ValueError(f"rounding must be in (0, 0.5], got {self.rounding}")

    @property
    def stride(self) -> int:
        return BLOCK

    @property
    def latent_dim(self) -> int:
        return COEFFICIENTS

    @property
    def quality_levels(self) -> int:
        return len(self.steps)

    def step_for_quality(self, quality: int) -> float:
        """The quantization step of level ``quality`` in 1..quality_levels."""
        if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= len(self.steps):
            raise ValueError(f"quality must be an integer in 1..{len(self.steps)}, got {quality!r}")
        return float(self.steps[quality - 1])

    def stages_for_quality(self, quality: int) -> int:
        """Code streams a level stores: every coefficient at every level."""
        self.step_for_quality(quality)
        return COEFFICIENTS

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScalarImageCodecConfig:
        data = dict(data)
        kind = data.pop("kind", "image-sq")
        if kind != "image-sq":
            raise ValueError(f"not a scalar image codec config (kind {kind!r})")
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown ScalarImageCodecConfig fields: {unknown}")
        for key in ("steps", "decoder_channels", "decoder_blocks"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def group_for_quality(quality: int, levels: int, groups: int) -> int:
    """The prior's table group of level ``quality`` in 1..levels: ``(quality - 1) * groups // levels``."""
    return (quality - 1) * groups // levels


class ScalarImageCodec(nn.Module):
    """Block KLT + scalar quantization + refined synthesis; see the module docstring for shapes."""

    # buffers (state-dict entries)
    basis: torch.Tensor  # (192, 192) orthonormal KLT rows
    mean: torch.Tensor  # (192,) mean block
    scale: torch.Tensor  # (192,) per-coefficient standard deviation

    def __init__(self, config: ScalarImageCodecConfig):
        super().__init__()
        self.config = config
        # orthonormal rows; identity until fitted (``initialise_transform``). Not torch.eye: bundles
        # are first built on the meta device, where eye imports torch._dynamo (2-3 s per process)
        self.register_buffer("basis", torch.zeros(COEFFICIENTS, COEFFICIENTS).fill_diagonal_(1.0))
        self.register_buffer("mean", torch.zeros(COEFFICIENTS))
        # per-coefficient standard deviation on training blocks: normalises the refinement's input
        self.register_buffer("scale", torch.ones(COEFFICIENTS))
        self.refine = SynthesisTransform(
            config.decoder_channels, config.decoder_blocks, COEFFICIENTS + 1, linear_path=False
        )
        last = self.refine.layers[-1]
        assert isinstance(last, nn.ConvTranspose2d)
        zero_init(last)
        # channels_last convolutions: the fp32 synthesis of a 768x512 picture 0.34 -> 0.29 s (1
        # thread, AVX2; results/bf16_refine_avx2.json); loaded weights keep this layout
        # (load_state_dict copies into these tensors)
        self.refine.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    @property
    def stride(self) -> int:
        return BLOCK

    @property
    def quality_levels(self) -> int:
        return self.config.quality_levels

    def _check_pixels(self, pixels: torch.Tensor) -> None:
        if pixels.ndim != 4 or pixels.shape[1] != 3:
            raise ValueError(f"pixels must be (B, 3, H, W), got {tuple(pixels.shape)}")
        if pixels.shape[2] % BLOCK or pixels.shape[3] % BLOCK:
            raise ValueError(
                f"pixel height and width must be multiples of {BLOCK}, got {tuple(pixels.shape[2:])}"
            )

    @torch.no_grad()
    def initialise_transform(self, pixels: torch.Tensor) -> None:
        """Fit the block KLT on training pixels (N, 3, H, W) in [0, 1] (float64 SVD)."""
        blocks = F.pixel_unshuffle(pixels.double() - 0.5, BLOCK).permute(0, 2, 3, 1).reshape(-1, COEFFICIENTS)
        if blocks.shape[0] < COEFFICIENTS:
            raise ValueError(
                f"fitting the transform needs at least {COEFFICIENTS} blocks, got {blocks.shape[0]}"
            )
        mean = blocks.mean(dim=0)
        _, singular, components = torch.linalg.svd(blocks - mean, full_matrices=False)
        self.basis.copy_(components.float())
        self.mean.copy_(mean.float())
        self.scale.copy_((singular / math.sqrt(max(1, blocks.shape[0] - 1))).clamp_min(1e-4).float())

    def analyse(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels (B, 3, H, W) in [0, 1] -> coefficients (B, 192, H/8, W/8) (float32)."""
        with torch.autocast(pixels.device.type, enabled=False):
            blocks = F.pixel_unshuffle(pixels.float() - 0.5, BLOCK) - self.mean[:, None, None]
            return torch.einsum("kc,bchw->bkhw", self.basis, blocks)

    def quantize(
        self, coefficients: torch.Tensor, step: float, rounding: float | None = None
    ) -> torch.Tensor:
        """Coefficients (B, 192, h, w) -> codes (B, 192, h, w) int64 (dead-zone rounding)."""
        offset = self.config.rounding if rounding is None else float(rounding)
        magnitude = torch.floor(coefficients.abs() / step + offset)
        return (torch.sign(coefficients) * magnitude).to(torch.int64)

    def synthesise(self, dequantized: torch.Tensor, step: float | torch.Tensor | None = None) -> torch.Tensor:
        """Dequantized coefficients (B, 192, h, w) -> unclamped pixels (B, 3, 8h, 8w).

        ``step``: the quantization step (a float, or (B,) per sample); None = the middle level's
        (the tile-halo probe calls it without one).
        """
        b = dequantized.shape[0]
        if step is None:
            step = self.config.steps[len(self.config.steps) // 2]
        steps = torch.as_tensor(step, dtype=torch.float32, device=dequantized.device).reshape(-1)
        if steps.numel() == 1:
            steps = steps.expand(b)
        # the exact linear inverse stays fp32 under bf16 autocast: its error would cap the top levels
        with torch.autocast(dequantized.device.type, enabled=False):
            linear = torch.einsum("kc,bkhw->bchw", self.basis, dequantized.float()) + self.mean[:, None, None]
            pixels = F.pixel_shuffle(linear, BLOCK) + 0.5
        level = torch.log2(steps)[:, None, None, None].expand(b, 1, *dequantized.shape[2:])
        inputs = torch.cat([dequantized / self.scale[:, None, None], level.to(dequantized.dtype)], dim=1)
        return pixels + self.refine(inputs).float()

    def forward(self, pixels: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        """Training pass: pixels (B, 3, H, W), per-sample steps (B,) -> reconstruction (B, 3, H, W).

        Quantization is applied as the encoder does (no gradient flows into the fixed transform).
        """
        self._check_pixels(pixels)
        with torch.no_grad():
            coefficients = self.analyse(pixels)
            s = steps.float()[:, None, None, None]
            magnitude = torch.floor(coefficients.abs() / s + self.config.rounding)
            dequantized = torch.sign(coefficients) * magnitude * s
        return self.synthesise(dequantized, steps)

    @torch.no_grad()
    def to_codes(self, pixels: torch.Tensor, quality: int) -> torch.Tensor:
        """Pixels (B, 3, H, W) in [0, 1] -> codes (B, 192, H/8, W/8) int64 for level ``quality``."""
        self._check_pixels(pixels)
        step = self.config.step_for_quality(quality)
        return self.quantize(self.analyse(pixels), step)

    @torch.no_grad()
    def from_codes(self, codes: torch.Tensor, quality: int) -> torch.Tensor:
        """Codes (B, 192, h, w) of level ``quality`` -> pixels (B, 3, 8h, 8w) in [0, 1]."""
        if codes.ndim != 4 or codes.shape[1] != COEFFICIENTS:
            raise ValueError(f"codes must be (B, {COEFFICIENTS}, h, w), got {tuple(codes.shape)}")
        step = self.config.step_for_quality(quality)
        # the refinement runs under bf16 autocast on a CPU with native bf16, as it was trained:
        # about 2x faster than fp32, PSNR within 1e-3 dB (benchmarks/bf16_refine.py; the exact
        # linear inverse stays fp32, see synthesise). Elsewhere fp32: emulated bf16 is ~15x slower.
        # Only codes must be exact across machines; pixels are the synthesis' float output.
        bf16 = codes.device.type == "cpu" and cpu_bf16_is_fast()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return self.synthesise(codes.float() * step, step).float().clamp_(0.0, 1.0)


__all__ = ["BLOCK", "COEFFICIENTS", "ScalarImageCodec", "ScalarImageCodecConfig", "group_for_quality"]
