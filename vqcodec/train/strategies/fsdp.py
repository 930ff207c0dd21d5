"""``fsdp``: fully sharded data parallel with FSDP2 (``torch.distributed.fsdp.fully_shard``).

Sharding units: walking the module bottom-up, every submodule whose not-yet-sharded parameters reach
``min_num_params`` becomes its own unit (or exactly the submodules of the classes in ``shard_classes``
when given), then the root. In training each unit gathers its parameters when it is *called* and frees
them after (``reshard_after_forward``): ``training_step`` must reach parameters by calling modules, as
``self(x)`` (the root's forward) does; validation and test keep all parameters gathered for the whole
loop, so there any code path works. Buffers are not sharded, so quantizer codebooks kept as EMA
buffers stay whole and the quantizers sync them themselves. A quantizer with a *learned* codebook
parameter that rewrites it inside ``forward`` (dead-code revival) must not be used under FSDP: the
rewrite lands in the gathered copy and is lost at reshard.

Mixed precision uses the trainer's autocast, like the other strategies (no FSDP param casting), so
the quantizers' float32 regions behave the same everywhere.

Checkpoints hold full state dicts gathered with ``torch.distributed.checkpoint.state_dict``
(rank 0 writes them), loadable by any strategy, a single process included.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from vqcodec.train.strategies.base import Strategy

if TYPE_CHECKING:
    from torch.distributed.device_mesh import DeviceMesh
    from torch.distributed.fsdp import FSDPModule


def _fsdp_api():
    from torch.distributed.fsdp import fully_shard

    return fully_shard


def _as_sharded(module: nn.Module) -> FSDPModule:
    """``module`` as the FSDPModule that ``fully_shard`` turned it into (it must have been sharded)."""
    from torch.distributed.fsdp import FSDPModule

    if not isinstance(module, FSDPModule):
        raise TypeError(f"{type(module).__name__} is not sharded")
    return module


def choose_units(
    module: nn.Module, min_num_params: int, shard_classes: tuple[type, ...] | None
) -> list[nn.Module]:
    """Submodules (never the root) to shard as their own units, children before parents."""
    if shard_classes:
        return [m for m in _post_order(module) if m is not module and isinstance(m, shard_classes)]
    pending: dict[int, int] = {}
    units: list[nn.Module] = []
    for m in _post_order(module):
        count = sum(p.numel() for p in m.parameters(recurse=False))
        count += sum(pending.pop(id(c), 0) for c in m.children())
        if m is not module and count > 0 and count >= min_num_params:
            units.append(m)
            count = 0
        pending[id(m)] = count
    return units


def _post_order(module: nn.Module, seen: set[int] | None = None) -> Iterator[nn.Module]:
    seen = set() if seen is None else seen
    if id(module) in seen:
        return
    seen.add(id(module))
    for child in module.children():
        yield from _post_order(child, seen)
    yield module


class FSDPStrategy(Strategy):
    name = "fsdp"

    def __init__(
        self,
        *,
        min_num_params: int = 100_000,
        shard_classes: tuple[type, ...] | list[type] | None = None,
        reshard_after_forward: bool = True,
    ):
        super().__init__()
        self.min_num_params = int(min_num_params)
        self.shard_classes = tuple(shard_classes) if shard_classes else None
        self.reshard_after_forward = reshard_after_forward
        self.mesh: DeviceMesh | None = None
        self._template: nn.Module | None = None
        self._sharded: set[int] = set()

    def wants_process_group(self) -> bool:
        return True

    def setup_module(self, module: nn.Module) -> nn.Module:
        module = module.to(self.device)
        if id(module) in self._sharded:
            return module
        if not self.is_distributed:
            return module
        from torch.distributed.device_mesh import init_device_mesh

        fully_shard = _fsdp_api()
        # a weightless skeleton of the unsharded module, to rebuild a plain copy for export
        self._template = copy.deepcopy(module).to("meta")
        self.mesh = init_device_mesh(self.device.type, (self.world_size,))
        for unit in choose_units(module, self.min_num_params, self.shard_classes):
            fully_shard(unit, mesh=self.mesh, reshard_after_forward=self.reshard_after_forward)
        fully_shard(module, mesh=self.mesh, reshard_after_forward=self.reshard_after_forward)
        self._sharded.add(id(module))
        return module

    @contextlib.contextmanager
    def no_sync(self, module: nn.Module, enabled: bool) -> Iterator[None]:
        if enabled and id(module) in self._sharded:
            sharded = _as_sharded(module)
            sharded.set_requires_gradient_sync(False)
            try:
                yield
            finally:
                sharded.set_requires_gradient_sync(True)
        else:
            yield

    @contextlib.contextmanager
    def eval_context(self, module: nn.Module) -> Iterator[None]:
        """Gather every unit's parameters for the whole evaluation loop.

        Validation code often reaches networks through methods other than ``forward`` (an encoder's
        ``analyse``, a quantizer's ``encode``), which FSDP's hooks do not see; with everything gathered
        (and no resharding after each forward) any code path works. It costs one full copy of the
        weights per rank for the duration of the evaluation.
        """
        if id(module) not in self._sharded:
            yield
            return
        from torch.distributed.fsdp import FSDPModule

        units = [m for m in module.modules() if isinstance(m, FSDPModule)]
        root = _as_sharded(module)
        root.set_reshard_after_forward(False)
        for unit in units:
            unit.unshard()
        try:
            yield
        finally:
            root.set_reshard_after_forward(self.reshard_after_forward)
            root.set_reshard_after_forward(False, recurse=False)  # FSDP's own choice for the root
            for unit in units:
                unit.reshard()

    # ------------------------------------------------------------------ state
    def _options(self, **kwargs: Any):
        from torch.distributed.checkpoint.state_dict import StateDictOptions

        return StateDictOptions(full_state_dict=True, **kwargs)

    def model_state_dict(self, module: nn.Module) -> dict[str, Any]:
        if id(module) not in self._sharded:
            return super().model_state_dict(module)
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        return get_model_state_dict(module, options=self._options(cpu_offload=True))

    def load_model_state_dict(self, module: nn.Module, state: dict[str, Any], strict: bool = True) -> None:
        if id(module) not in self._sharded:
            return super().load_model_state_dict(module, state, strict)
        from torch.distributed.checkpoint.state_dict import set_model_state_dict

        set_model_state_dict(module, state, options=self._options(strict=strict))

    def optimizer_state_dict(self, module: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        if id(module) not in self._sharded:
            return super().optimizer_state_dict(module, optimizer)
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        return get_optimizer_state_dict(module, optimizer, options=self._options(cpu_offload=True))

    def load_optimizer_state_dict(
        self, module: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]
    ) -> None:
        if id(module) not in self._sharded:
            return super().load_optimizer_state_dict(module, optimizer, state)
        from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

        set_optimizer_state_dict(module, optimizer, state, options=self._options())

    def full_tensor(self, tensor: torch.Tensor) -> torch.Tensor:
        full = getattr(tensor, "full_tensor", None)
        return full() if full is not None else tensor

    def shard_like(self, full: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        from torch.distributed.tensor import DTensor, distribute_tensor

        if isinstance(reference, DTensor):
            return distribute_tensor(
                full.to(device=reference.device, dtype=reference.dtype),
                reference.device_mesh,
                reference.placements,
            )
        return super().shard_like(full, reference)

    def full_module(self, module: nn.Module) -> nn.Module:
        """Collective: every rank must call it. Returns a plain CPU copy with full weights."""
        if id(module) not in self._sharded or self._template is None:
            return module
        state = self.model_state_dict(module)  # rank 0 only (cpu_offload)
        plain = copy.deepcopy(self._template).to_empty(device="cpu")
        for name, buffer in module.named_buffers():  # buffers are replicated, non-persistent ones included
            target = plain.get_buffer(name)
            target.copy_(buffer.detach().cpu())
        if state:
            plain.load_state_dict(state)
        return plain


__all__ = ["FSDPStrategy", "choose_units"]
