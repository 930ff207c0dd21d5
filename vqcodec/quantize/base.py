"""Shared quantizer interface, the result type, and the exact layout of latents and codes.

Latent layouts (chosen by the explicit ``channel_first`` keyword, never guessed from shapes)
-------------------------------------------------------------------------------------------
``S`` below stands for the positional axes, in order: none, (N,) for sequences, (H, W) for images,
(T, H, W) for video (any number works).

* ``channel_first=True`` (default): latents are (B, C, *S), e.g. image (B, C, H, W), video (B, C, T, H, W).
* ``channel_first=False``: latents are (B, *S, C), e.g. sequences (B, N, C).

``C`` must equal the quantizer's ``dim``.  ``decode`` returns latents in the same layout.

Code layout (integer tensors, dtype int64)
------------------------------------------
Codes never carry the channel axis; multi-stream quantizers put their stream axis LAST:

* ``VectorQuantizer``: (B, *S), values in [0, codebook_size).  Image latents (B, C, H, W) -> (B, H, W).
* ``ResidualVQ``: (B, *S, Q), ``codes[..., q]`` is stage q's index in [0, codebook_size).
  Image -> (B, H, W, Q); video -> (B, T, H, W, Q).  ``encode(x, num_stages=k)`` returns the first k
  stages (B, *S, k); ``decode`` accepts any number k' <= Q of leading stages.  In a training ``forward``
  with ``quantize_dropout`` the stages that were dropped hold -1.
* ``FSQ``: (B, *S, L) with L = len(levels), ``codes[..., i]`` in [0, levels[i]): one stream per channel.
* ``LFQ``: (B, *S, G) with G = num_codebooks, each in [0, 2 ** (codebook_dim // G)): the sign bits of
  one group of channels read as a binary number, most significant bit = first channel of the group.

``quantizer.alphabet`` is a tuple with one entry per code stream (the trailing axis above; a single entry
for VectorQuantizer): the number of symbols the entropy layer must model for that stream.  The entropy
layer's per-image (S, H, W) layout is ``codes[i].movedim(-1, 0)`` for one image i of a multi-stream code
tensor and ``codes[i][None]`` for VectorQuantizer.

Numerics
--------
Every quantizer runs its distances, rounding and codebook updates in float32 with autocast disabled, so
codes under bf16/fp16 autocast equal the fp32 codes.  ``quantized`` is float32.  ``encode`` gives the same
codes for a vector whatever else is in the batch, and ``decode(encode(x))`` equals
``forward(x).quantized`` exactly in eval mode.  ``encode``/``decode`` never change any state.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Self, TypeVar, overload

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

# Below this many rows MKL switches to a gemv-like kernel whose rounding differs from the batched one,
# so a vector's projection would depend on the batch it came with; padding keeps one code path.
MIN_GEMM_ROWS = 32


ModuleT = TypeVar("ModuleT", bound=nn.Module)
ConfigT = TypeVar("ConfigT", bound="DataclassInstance")

if TYPE_CHECKING:

    class TypedModuleList(nn.ModuleList, Generic[ModuleT]):
        """``nn.ModuleList`` whose items the type checker knows to be ``ModuleT``.

        For the type checker only: at run time the name is ``nn.ModuleList`` itself, so modules, state
        dicts and reprs are exactly those of a plain ModuleList.  Build it from modules of one type,
        ``TypedModuleList([FSQ(...) for _ in range(q)])``, and annotate ``TypedModuleList[FSQ]``.
        """

        def __init__(self, modules: Iterable[ModuleT] | None = None) -> None: ...

        @overload
        def __getitem__(self, idx: slice) -> TypedModuleList[ModuleT]: ...

        @overload
        def __getitem__(self, idx: int) -> ModuleT: ...

        def __getitem__(self, idx: int | slice) -> ModuleT | TypedModuleList[ModuleT]: ...

        def __iter__(self) -> Iterator[ModuleT]: ...

else:
    TypedModuleList = nn.ModuleList


@dataclass
class QuantizerOutput:
    """Result of a quantizer's forward pass.

    quantized: latents in the input layout (float32), with straight-through (or rotation-trick) gradient.
    codes: int64 codes in the layout documented in this module.
    loss: named, already weighted loss terms (scalars); add ``total_loss`` to the training objective.
    metrics: detached scalars for logging (codebook usage fraction, perplexity, dead codes, ...).
    all_codes: only with ``ResidualVQ(return_all_codes=True)``: every stage's codebook vectors of the
        chosen codes, (Q, B, *S, C) in the input layout's channel order (see ResidualVQ).

    Unpacks like vector-quantize-pytorch's tuple: ``quantized, codes, loss = vq(x)`` gives
    ``(quantized, codes, total_loss)`` (the summed scalar loss); ``out[i]`` indexes the same triple.
    """

    quantized: torch.Tensor
    codes: torch.Tensor
    loss: dict[str, torch.Tensor] = field(default_factory=dict)
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)
    all_codes: torch.Tensor | None = None

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter((self.quantized, self.codes, self.total_loss))

    def __len__(self) -> int:
        return 3

    def __getitem__(self, index: int) -> torch.Tensor:
        return (self.quantized, self.codes, self.total_loss)[index]

    @property
    def total_loss(self) -> torch.Tensor:
        """Sum of the loss terms (a zero scalar when there are none)."""
        if not self.loss:
            return self.quantized.new_zeros(())
        return torch.stack([v.float() for v in self.loss.values()]).sum()


@contextlib.contextmanager
def full_precision(device: torch.device) -> Iterator[None]:
    """Disable autocast for ``device``'s type, so quantizer arithmetic stays in float32."""
    with torch.autocast(device_type=device.type, enabled=False):
        yield


def flatten_latents(
    latents: torch.Tensor, dim: int, channel_first: bool
) -> tuple[torch.Tensor, tuple[int, ...]]:
    """(B, C, *S) or (B, *S, C) -> (vectors (M, C) float32, lead_shape (B, *S)) with M = B * prod(S)."""
    if latents.ndim < 2:
        raise ValueError(f"latents need at least 2 dimensions (B, C, ...), got shape {tuple(latents.shape)}")
    channel_axis = 1 if channel_first else latents.ndim - 1
    if latents.shape[channel_axis] != dim:
        layout = "(B, C, ...)" if channel_first else "(B, ..., C)"
        raise ValueError(
            f"latents of shape {tuple(latents.shape)} have {latents.shape[channel_axis]} channels on axis "
            f"{channel_axis}, expected dim={dim} with channel_first={channel_first} {layout}"
        )
    if channel_first:
        latents = latents.movedim(1, -1)
    lead_shape = tuple(latents.shape[:-1])
    return latents.reshape(-1, dim).float(), lead_shape


def flatten_mask(mask: torch.Tensor | None, lead_shape: tuple[int, ...]) -> torch.Tensor | None:
    """Validity mask (B, *S) bool (True = real data, False = padding) -> (M,) bool, or None."""
    if mask is None:
        return None
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be a bool tensor, got {mask.dtype}")
    if tuple(mask.shape) != tuple(lead_shape):
        raise ValueError(f"mask shape {tuple(mask.shape)} must equal the latents' (B, *S) {lead_shape}")
    return mask.reshape(-1)


def lengths_to_mask(lengths: torch.Tensor, max_length: int) -> torch.Tensor:
    """Sequence lengths (B,) -> validity mask (B, max_length) bool, True for the first lengths[b]."""
    return torch.arange(max_length, device=lengths.device)[None, :] < lengths[:, None]


def unflatten_latents(
    vectors: torch.Tensor, lead_shape: tuple[int, ...], channel_first: bool
) -> torch.Tensor:
    """(M, C) vectors -> (B, C, *S) if channel_first else (B, *S, C)."""
    out = vectors.reshape(*lead_shape, vectors.shape[-1])
    return out.movedim(-1, 1) if channel_first else out


def stable_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """float32 ``F.linear`` whose result for a row does not depend on how many rows come with it.

    x: (M, in) -> (M, out).  Tiny batches are padded to MIN_GEMM_ROWS rows (see that constant).
    """
    weight = weight.float()
    bias = bias.float() if bias is not None else None
    m = x.shape[0]
    if 0 < m < MIN_GEMM_ROWS:
        padded = torch.cat([x, x.new_zeros((MIN_GEMM_ROWS - m, x.shape[1]))], dim=0)
        return F.linear(padded, weight, bias)[:m]
    return F.linear(x, weight, bias)


class Quantizer(nn.Module, Generic[ConfigT]):
    """Base class: the interface every vqcodec quantizer implements.

    Subclasses set ``config_class`` and implement ``forward``, ``encode``, ``decode`` and ``alphabet``.
    """

    config_class: ClassVar[type[DataclassInstance]]
    dim: int  # channels C of the latents

    def __init__(self, config: ConfigT) -> None:
        super().__init__()
        self._config = config

    @property
    def config(self) -> ConfigT:
        """The frozen config dataclass this quantizer was built from."""
        return self._config

    @classmethod
    def from_config(cls, config: Any) -> Self:
        if not isinstance(config, cls.config_class):
            raise TypeError(
                f"{cls.__name__}.from_config needs a {cls.config_class.__name__}, got {type(config)}"
            )
        return cls(**dataclasses.asdict(config))

    @property
    def alphabet(self) -> tuple[int, ...]:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, latents: torch.Tensor) -> QuantizerOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def encode(self, latents: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def decode(self, codes: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def extra_repr(self) -> str:
        return repr(self._config)


def codebook_health(counts: torch.Tensor, dead: torch.Tensor) -> dict[str, torch.Tensor]:
    """Logging metrics from one step's code counts (K,) and a dead-code mask (K,).

    usage: fraction of codes used at least once; perplexity: exp(entropy) of the empirical code
    distribution (K = perfectly uniform use); dead_codes: number of codes flagged dead.
    """
    counts = counts.float()
    total = counts.sum().clamp_min(1.0)
    probs = counts / total
    entropy = -(probs * torch.log(probs.clamp_min(1e-12))).sum()
    return {
        "usage": (counts > 0).float().mean().detach(),
        "perplexity": torch.exp(entropy).detach(),
        "dead_codes": dead.sum().float().detach(),
    }
