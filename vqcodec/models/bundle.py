"""Model bundles: one ``.safetensors`` file holding everything a codec needs to run.

Layout of a bundle (format tag ``BUNDLE_FORMAT`` in the metadata):
- tensors ``model.<name>``: the network's inference state, floating tensors stored as fp16
  (they are widened to fp32 on load, so every process computes with the same fp32 values);
  training-only quantizer state (EMA statistics, usage counters) is left out;
- tensors ``prior.<name>``: the entropy prior's integer tables (``prior.state_dict()``);
- metadata (all strings): ``format``, ``media``, ``name``, ``description``, ``config`` (the
  model config as JSON), ``prior`` (``prior.config()`` as JSON, absent without a prior) and
  ``extra`` (JSON: training summary, anything the exporter wants to keep).
The sha256 of the file's bytes identifies the weights in every ``.vqc`` file made with them.

The entropy layer sits above this one, so ``vqcodec.entropy`` is imported only when a bundle
with a prior is loaded.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from vqcodec.entropy import load_prior
from vqcodec.errors import FormatError, ModelMismatchError
from vqcodec.models.catalog import model_info
from vqcodec.models.config import ImageCodecConfig
from vqcodec.models.image import ImageCodec
from vqcodec.models.image_sq import ScalarImageCodec, ScalarImageCodecConfig, group_for_quality
from vqcodec.models.video import VideoCodec, VideoCodecConfig
from vqcodec.registry import Registry

BUNDLE_FORMAT = "vqcodec-bundle-1"
MODEL_PREFIX = "model."
PRIOR_PREFIX = "prior."
#: Rate weight of the image encoder's code choice: -1.7 % BD-rate on Kodak (benchmarks/rate_weight.py).
DEFAULT_RATE_WEIGHT = 0.15

# quantizer buffers that only training reads or writes; the bundle does not carry them
TRAINING_ONLY_SUFFIXES = ("embed_avg", "cluster_size", "steps_unused", "num_updates", "initted")


#: encoder effort levels (CodecModel.effort): 0 fast, 1 rate-distortion quantization
EFFORT_LEVELS = 2


def file_sha256(path: str | os.PathLike[str]) -> bytes:
    """sha256 digest (32 bytes) of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.digest()


def inference_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The part of ``model.state_dict()`` inference needs, floating tensors as contiguous fp16."""
    state = {}
    for key, value in model.state_dict().items():
        if key.rsplit(".", 1)[-1] in TRAINING_ONLY_SUFFIXES:
            continue
        value = value.detach().cpu()
        if value.is_floating_point():
            value = value.to(torch.float16)
        state[key] = value.contiguous()
    return state


@dataclass(frozen=True)
class ModelKind:
    """What a bundle needs to know about one kind of model (the config's ``kind`` field).

    ``config_class`` rebuilds the frozen config from its JSON dict (``from_dict``), and
    ``network_class`` builds a freshly initialised network from that config.
    """

    config_class: type[Any]
    network_class: type[nn.Module]


#: config ``kind`` -> ModelKind: the one place a model kind registers (a new kind adds one line)
MODEL_KINDS: Registry[ModelKind] = Registry("model kind")
MODEL_KINDS.register("image", ModelKind(ImageCodecConfig, ImageCodec))
MODEL_KINDS.register("image-sq", ModelKind(ScalarImageCodecConfig, ScalarImageCodec))
MODEL_KINDS.register("video", ModelKind(VideoCodecConfig, VideoCodec))


def build_network(config: Any) -> nn.Module:
    """A freshly initialised network for ``config`` (the frozen config of a registered model kind)."""
    kind = MODEL_KINDS.get(str(getattr(config, "kind", "")))
    if not isinstance(config, kind.config_class):
        raise TypeError(f"config {type(config).__name__} is not a {kind.config_class.__name__}")
    return kind.network_class(config)


def config_from_dict(data: Mapping[str, Any]) -> Any:
    """Rebuild a model config from its JSON dict, dispatching on ``kind`` (ValueError if unknown)."""
    return MODEL_KINDS.get(str(data.get("kind", "image"))).config_class.from_dict(dict(data))


class CodecModel:
    """A loaded bundle: the network in eval mode plus its identity and entropy prior.

    ``to_codes(pixels (B, 3, H, W) in [0, 1], quality) -> codes (B, S, h, w)`` and
    ``from_codes(codes) -> pixels (B, 3, H, W)`` run without gradients on the CPU in fp32;
    H and W must be multiples of ``stride``. Calls are safe from several threads at once
    (inference reads the weights only).
    """

    def __init__(
        self,
        network: nn.Module,
        *,
        name: str,
        sha256: bytes,
        config: Any,
        prior: Any = None,
        description: str = "",
        media: str = "image",
        path: Path | None = None,
        extra: dict[str, Any] | None = None,
    ):
        self.network = network.eval()
        self.name = name
        self.sha256 = sha256
        self.config = config
        self.prior = prior
        self.description = description
        self.media = media
        self.path = path
        self.extra = extra or {}
        self._rate_weight = DEFAULT_RATE_WEIGHT if media == "image" else 0.0
        self._effort = 0
        self._code_bits: list[torch.Tensor] | None = None
        self._code_bits_lock = threading.Lock()

    @property
    def rate_weight(self) -> float:
        """Weight of the rate term in the encoder's code choice (ResidualVQ.encode); 0 = nearest code.

        Only the encoder reads it: decoding is unaffected and files stay decodable by any version.
        Read-only, because a loaded model is cached and shared across threads: use
        :meth:`with_rate_weight` for another setting.
        """
        return self._rate_weight

    def with_rate_weight(self, rate_weight: float) -> CodecModel:
        """A CodecModel sharing this one's network, prior and caches whose encoder uses ``rate_weight``."""
        if not rate_weight >= 0:
            raise ValueError(f"rate_weight must be >= 0, got {rate_weight!r}")
        view = copy.copy(self)
        view._rate_weight = float(rate_weight)
        return view

    @property
    def effort(self) -> int:
        """How hard the encoder works for the same format: 0 (the default, fast) or 1 (slower,
        smaller files). At 1 a scalar-quantized model picks its codes by rate-distortion
        optimisation under its own context tables (``CoefficientContextPrior.rd_quantize``); RVQ
        models have one level only (their codes already weigh the rate, see :attr:`rate_weight`).
        Read-only like ``rate_weight``: :meth:`with_effort` gives a view with another setting."""
        return self._effort

    @property
    def max_effort(self) -> int:
        """The highest effort this model has (1 for scalar-quantized models, else 0)."""
        return EFFORT_LEVELS - 1 if self.scalar and self.prior is not None else 0

    def with_effort(self, effort: int) -> CodecModel:
        """A CodecModel sharing this one's weights and caches whose encoder works at ``effort``."""
        if isinstance(effort, bool) or not isinstance(effort, int) or not 0 <= effort <= self.max_effort:
            raise ValueError(
                f"effort must be an integer in 0..{self.max_effort} for model {self.name!r}, got {effort!r}"
            )
        view = copy.copy(self)
        view._effort = effort
        return view

    @property
    def stride(self) -> int:
        return int(self.config.stride)

    @property
    def quality_levels(self) -> int:
        return int(self.config.quality_levels)

    def stages_for_quality(self, quality: int) -> int:
        return int(self.config.stages_for_quality(quality))

    @property
    def scalar(self) -> bool:
        """True for scalar-quantized models (signed codes, one stream per coefficient)."""
        return isinstance(self.config, ScalarImageCodecConfig)

    @property
    def alphabet(self) -> tuple[int, ...] | None:
        """Symbols per code stream: one stream per RVQ stage, ``codebook_size`` symbols each;
        None for scalar models, whose signed codes have no fixed alphabet."""
        if self.scalar:
            return None
        return (int(self.config.codebook_size),) * int(self.config.num_quantizers)

    def compress(self, codes: np.ndarray, quality: int) -> bytes:
        """Codes (S, h, w) of level ``quality`` -> entropy payload (the model owns its bitstream)."""
        if self.prior is None:
            raise ValueError(f"model {self.name!r} has no entropy prior")
        if self.scalar:
            return bytes(self.prior.encode(codes, group=self._group(quality)))
        return bytes(self.prior.encode(codes))

    def decompress(self, payload: bytes, shape: tuple[int, int, int], quality: int) -> np.ndarray:
        """Entropy payload -> codes (S, h, w) int32 of level ``quality`` (FormatError if damaged)."""
        if self.prior is None:
            raise ValueError(f"model {self.name!r} has no entropy prior")
        if self.scalar:
            return np.asarray(self.prior.decode(payload, shape=shape, group=self._group(quality)))
        return np.asarray(self.prior.decode(payload, shape=shape))

    def _group(self, quality: int) -> int:
        self.config.step_for_quality(quality)  # ValueError outside 1..levels
        return group_for_quality(quality, self.quality_levels, int(self.prior.num_groups))

    def at_quality(self, quality: int) -> CodecModel:
        """A view whose ``from_codes(codes)`` decodes codes of level ``quality`` (scalar models need
        the level's step size; RVQ codes carry their level in their stage count)."""
        return _QualityView(self, quality) if self.scalar else self

    def code_bits(self) -> list[torch.Tensor] | None:
        """What each code of each stage costs under the prior's context-free tables, in bits:
        [(K,) float32] per stage, or None without a prior."""
        if self.prior is None or not hasattr(self.prior, "code_bits"):
            return None
        with self._code_bits_lock:
            if self._code_bits is None:
                self._code_bits = [
                    torch.from_numpy(self.prior.code_bits(s)).float() for s in range(self.prior.num_streams)
                ]
            return self._code_bits

    def to_codes(self, pixels: torch.Tensor, quality: int) -> torch.Tensor:
        """Pixels (B, 3, H, W) float in [0, 1] -> codes (B, S, H/stride, W/stride) int64."""
        rate: dict[str, Any] = {}
        if self._rate_weight > 0:
            bits = self.code_bits()
            if bits is not None:
                rate = {"code_bits": bits, "rate_weight": self._rate_weight}
        network = self.network
        with torch.inference_mode():
            if isinstance(network, ImageCodec):
                return network.to_codes(pixels.float(), quality, **rate)
            if isinstance(network, ScalarImageCodec) and self._effort > 0:
                return self._rd_codes(network, pixels.float(), quality)
            if isinstance(network, (ScalarImageCodec, VideoCodec)):  # nearest codes only
                return network.to_codes(pixels.float(), quality)
        raise TypeError(f"model {self.name!r} has no image network ({type(network).__name__})")

    def _rd_codes(self, network: ScalarImageCodec, pixels: torch.Tensor, quality: int) -> torch.Tensor:
        """Effort-1 codes (B, 192, h, w) of a scalar model: rate-distortion quantization per image."""
        network._check_pixels(pixels)
        step = self.config.step_for_quality(quality)
        group = self._group(quality)
        coefficients = network.analyse(pixels).double().numpy()
        codes = [
            self.prior.rd_quantize(c, step, group=group, rounding=self.config.rounding) for c in coefficients
        ]
        return torch.from_numpy(np.stack(codes))

    def from_codes(self, codes: torch.Tensor, quality: int | None = None) -> torch.Tensor:
        """Codes (B, S, h, w) -> pixels (B, 3, h*stride, w*stride) float in [0, 1].

        ``quality`` is required for scalar models (it gives the step size) and ignored otherwise.
        """
        network = self.network
        with torch.inference_mode():
            if isinstance(network, ScalarImageCodec):
                if quality is None:
                    raise ValueError("scalar-quantized codes decode only with their quality level")
                return network.from_codes(codes, quality)
            if isinstance(network, (ImageCodec, VideoCodec)):
                return network.from_codes(codes)
        raise TypeError(f"model {self.name!r} has no image network ({type(network).__name__})")

    def __repr__(self) -> str:
        return f"CodecModel(name={self.name!r}, sha256={self.sha256.hex()[:16]}..., media={self.media!r})"


class _QualityView(CodecModel):
    """A CodecModel bound to one quality level (shares everything with the model it wraps)."""

    def __init__(self, model: CodecModel, quality: int):  # noqa: D107 - no CodecModel.__init__: a view
        self.__dict__.update(model.__dict__)
        self._quality = quality

    def from_codes(self, codes: torch.Tensor, quality: int | None = None) -> torch.Tensor:
        return super().from_codes(codes, self._quality if quality is None else quality)


def save_bundle(
    path: str | os.PathLike[str],
    model: nn.Module,
    prior: Any,
    config: Any,
    description: str,
    *,
    name: str | None = None,
    media: str = "image",
    extra: dict[str, Any] | None = None,
    reference: str | None = None,
    reference_prefix: str = "image.",
) -> bytes:
    """Write ``model`` and ``prior``'s integer tables to one safetensors file atomically; returns sha256.

    ``reference`` names a bundled model (e.g. the image model inside a video model): the
    tensors under ``reference_prefix`` are then not stored again; the metadata pins that
    bundle's name and sha256 instead, and ``load_bundle`` takes them from it.
    """
    path = Path(path)
    tensors = {MODEL_PREFIX + k: v for k, v in inference_state(model).items()}
    reference_meta = None
    if reference is not None:
        base_path, base_sha = _reference_file(reference)
        base = load_file(str(base_path))
        prefix = MODEL_PREFIX + reference_prefix
        for key in [k for k in tensors if k.startswith(prefix)]:
            base_key = MODEL_PREFIX + key[len(prefix) :]
            if base_key not in base or not torch.equal(base[base_key], tensors[key].to(base[base_key].dtype)):
                raise ValueError(f"tensor {key!r} differs from the reference bundle {reference!r}")
            del tensors[key]
        reference_meta = {"name": reference, "sha256": base_sha.hex(), "prefix": reference_prefix}
    metadata = {
        "format": BUNDLE_FORMAT,
        "media": media,
        "name": name or path.stem,
        "description": description,
        "config": json.dumps(config.to_dict(), sort_keys=True),
        "extra": json.dumps(extra or {}, sort_keys=True),
    }
    if reference_meta is not None:
        metadata["reference"] = json.dumps(reference_meta, sort_keys=True)
    if prior is not None:
        for key, array in prior.state_dict().items():
            array = np.asarray(array)
            if array.dtype.kind not in "iu":
                raise TypeError(f"prior array {key!r} is {array.dtype}: bundles hold integer tables only")
            tensors[PRIOR_PREFIX + key] = torch.from_numpy(np.ascontiguousarray(array))
        metadata["prior"] = json.dumps(prior.config(), sort_keys=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        os.chmod(tmp, 0o644)  # a package data file, readable by everyone like its neighbours
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return file_sha256(path)


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The bundle's metadata strings, without loading its tensors."""
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise FormatError(f"not a readable model bundle: {exc}", field="bundle") from exc
    if metadata.get("format") != BUNDLE_FORMAT:
        raise FormatError(
            f"not a vqcodec model bundle (format tag {metadata.get('format')!r})", field="format"
        )
    return metadata


def load_bundle(path: str | os.PathLike[str]) -> tuple[nn.Module, Any, Any, dict[str, Any]]:
    """Read a bundle -> (network in eval mode, prior or None, config, meta).

    ``meta`` has ``name``, ``description``, ``media``, ``sha256`` (bytes), ``extra`` (dict).
    Raises FormatError when the file is not a bundle or its tensors do not fit its config.
    """
    path = Path(path)
    metadata = read_metadata(path)
    try:
        config = config_from_dict(json.loads(metadata["config"]))
        tensors = load_file(str(path))
        reference = json.loads(metadata["reference"]) if "reference" in metadata else None
    except (KeyError, ValueError, TypeError, SafetensorError) as exc:
        raise FormatError(f"bad model bundle {path.name}: {exc}", field="config") from exc
    if reference is not None:
        tensors.update(_reference_tensors(reference, path.name))
    # Check the file's tensors against a network built on the meta device first: a hostile
    # config (say 60,000 channels) must be refused before anything of its size is allocated.
    with torch.device("meta"):
        expected = build_network(config).state_dict()
    state = {}
    for key, value in tensors.items():
        if not key.startswith(MODEL_PREFIX):
            continue
        key = key[len(MODEL_PREFIX) :]
        if key not in expected:
            raise FormatError(f"bundle tensor {key!r} does not belong to this model", field="model")
        if tuple(value.shape) != tuple(expected[key].shape):
            raise FormatError(f"bundle tensor {key!r} has shape {tuple(value.shape)}", field="model")
        state[key] = value.to(expected[key].dtype)
    missing = [k for k in expected if k not in state and k.rsplit(".", 1)[-1] not in TRAINING_ONLY_SUFFIXES]
    if missing:
        raise FormatError(f"bundle lacks tensors {missing[:3]}", field="model")
    network = build_network(config)
    _mark_initialised(network)
    network.load_state_dict(state, strict=False)
    network.eval()
    prior = None
    if "prior" in metadata:
        arrays = {k[len(PRIOR_PREFIX) :]: v.numpy() for k, v in tensors.items() if k.startswith(PRIOR_PREFIX)}
        prior = load_prior(json.loads(metadata["prior"]), arrays)
    meta = {
        "name": metadata.get("name", path.stem),
        "description": metadata.get("description", ""),
        "media": metadata.get("media", "image"),
        "sha256": file_sha256(path),
        "extra": json.loads(metadata.get("extra", "{}")),
    }
    return network, prior, config, meta


def _reference_file(name: str) -> tuple[Path, bytes]:
    """Path and sha256 of the bundled model ``name`` (from the catalogue, which pins its sha256)."""
    info = model_info(name)
    return info.path, bytes.fromhex(info.sha256)


def _reference_tensors(reference: Any, bundle_name: str) -> dict[str, torch.Tensor]:
    """The tensors a bundle takes from the bundled model it references, renamed into its own keys."""
    try:
        name, sha256, prefix = str(reference["name"]), str(reference["sha256"]), str(reference["prefix"])
        base_path, _ = _reference_file(name)
    except (KeyError, TypeError) as exc:
        raise FormatError(f"bad model bundle {bundle_name}: {exc}", field="reference") from exc
    actual = file_sha256(base_path)
    if actual.hex() != sha256:
        raise ModelMismatchError(
            f"bundle {bundle_name} needs {name} with sha256 {sha256[:12]}, found {actual.hex()[:12]}"
        )
    base = load_file(str(base_path))
    own = MODEL_PREFIX + prefix
    return {own + k[len(MODEL_PREFIX) :]: v for k, v in base.items() if k.startswith(MODEL_PREFIX)}


def _mark_initialised(network: nn.Module) -> None:
    """Set k-means 'initialised' flags so a loaded codebook is never re-initialised from data."""
    for name, buffer in network.named_buffers():
        if name.rsplit(".", 1)[-1] == "initted":
            buffer.fill_(True)


def load_codec_model(path: str | os.PathLike[str], *, name: str | None = None) -> CodecModel:
    """Load a bundle file as a ready-to-use CodecModel."""
    network, prior, config, meta = load_bundle(path)
    return CodecModel(
        network,
        name=name or meta["name"],
        sha256=meta["sha256"],
        config=config,
        prior=prior,
        description=meta["description"],
        media=meta["media"],
        path=Path(path),
        extra=meta["extra"],
    )


__all__ = [
    "BUNDLE_FORMAT",
    "MODEL_KINDS",
    "CodecModel",
    "ModelKind",
    "build_network",
    "config_from_dict",
    "file_sha256",
    "inference_state",
    "load_bundle",
    "load_codec_model",
    "read_metadata",
    "save_bundle",
]

if TYPE_CHECKING:  # mypy checks that the shipped model implements the codec layer's seam
    from vqcodec.models.interface import ImageCodecModel

    _implements_the_seam: type[ImageCodecModel] = CodecModel
