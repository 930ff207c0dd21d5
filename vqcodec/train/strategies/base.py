"""The strategy interface: process group, device placement, forward wrapping, collectives, state dicts.

State dicts in checkpoints are always *full* and *strategy-neutral*: the module's ``state_dict()`` keys
(plain tensors) and optimizer states keyed by parameter name (the layout of
``torch.distributed.checkpoint.state_dict`` with ``full_state_dict=True``), so a checkpoint written by
one strategy loads in any other, including a single process.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from vqcodec.train.accelerators import Accelerator
from vqcodec.train.checkpoint import clean_state_key
from vqcodec.train.launch import DistributedEnv, init_distributed


class ForwardRedirect:
    """Installed as ``module.forward`` so ``module(x)`` inside the steps runs through ``wrapper``
    (e.g. DDP), whose own call of the module then reaches the original ``forward``."""

    def __init__(self, original: Any, wrapper: nn.Module):
        self.original = original
        self.wrapper = wrapper
        self.inside = False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.inside:
            return self.original(*args, **kwargs)
        self.inside = True
        try:
            return self.wrapper(*args, **kwargs)
        finally:
            self.inside = False


def install_forward_redirect(module: nn.Module, wrapper: nn.Module) -> None:
    remove_forward_redirect(module)
    object.__setattr__(module, "forward", ForwardRedirect(module.forward, wrapper))


def remove_forward_redirect(module: nn.Module) -> None:
    if isinstance(module.__dict__.get("forward"), ForwardRedirect):
        del module.__dict__["forward"]


def param_names(module: nn.Module) -> dict[int, str]:
    """Parameter id -> its state-dict name (without ``torch.compile``'s ``_orig_mod.``)."""
    return {id(p): clean_state_key(name) for name, p in module.named_parameters()}


def optimizer_state_by_name(module: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """``optimizer.state_dict()`` with parameter names instead of integer ids."""
    names = param_names(module)
    state = optimizer.state_dict()
    index_to_name: dict[int, str] = {}
    for group_state, group in zip(state["param_groups"], optimizer.param_groups):
        for index, param in zip(group_state["params"], group["params"]):
            if id(param) not in names:
                raise ValueError("the optimizer holds a parameter that is not in the module")
            index_to_name[index] = names[id(param)]
    return {
        "state": {index_to_name[i]: v for i, v in state["state"].items()},
        "param_groups": [
            dict(g, params=[index_to_name[i] for i in g["params"]]) for g in state["param_groups"]
        ],
    }


def load_optimizer_state_by_name(
    module: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]
) -> None:
    """Inverse of ``optimizer_state_by_name`` for a plain (unsharded) module."""
    names = param_names(module)
    name_to_index: dict[str, int] = {}
    template = optimizer.state_dict()
    for group_state, group in zip(template["param_groups"], optimizer.param_groups):
        for index, param in zip(group_state["params"], group["params"]):
            name_to_index[names[id(param)]] = index
    groups = state["param_groups"]
    if len(groups) != len(template["param_groups"]):
        raise ValueError(
            f"checkpoint optimizer has {len(groups)} param groups, "
            f"this one has {len(template['param_groups'])}"
        )
    try:
        converted = {
            "state": {name_to_index[n]: v for n, v in state["state"].items()},
            "param_groups": [dict(g, params=[name_to_index[n] for n in g["params"]]) for g in groups],
        }
    except KeyError as exc:
        raise ValueError(
            f"checkpoint optimizer state names parameter {exc.args[0]!r} this optimizer lacks"
        ) from None
    optimizer.load_state_dict(converted)


class Strategy:
    """One process, one device (also the base of the distributed strategies)."""

    name = "base"

    def __init__(self) -> None:
        self.accelerator: Accelerator | None = None
        self.device = torch.device("cpu")
        self.env = DistributedEnv()
        self.created_process_group = False
        self.manual_optimization = False

    # ------------------------------------------------------------------ environment
    @property
    def is_distributed(self) -> bool:
        return self.env.world_size > 1

    @property
    def world_size(self) -> int:
        return self.env.world_size

    @property
    def rank(self) -> int:
        return self.env.rank

    @property
    def is_global_zero(self) -> bool:
        return self.env.rank == 0

    def setup_environment(self, accelerator: Accelerator) -> None:
        self.accelerator = accelerator
        self.env, created = (
            init_distributed(accelerator.backend) if self.wants_process_group() else (DistributedEnv(), False)
        )
        self.created_process_group = self.created_process_group or created
        self.device = accelerator.device(self.env.local_rank)
        accelerator.setup_device(self.device)

    def wants_process_group(self) -> bool:
        return False

    # ------------------------------------------------------------------ module
    def setup_module(self, module: nn.Module) -> nn.Module:
        """Move ``module`` to the device and wrap its forward; returns the module itself."""
        return module.to(self.device)

    def teardown_module(self, module: nn.Module) -> None:
        pass

    @contextlib.contextmanager
    def no_sync(self, module: nn.Module, enabled: bool) -> Iterator[None]:
        """Skip gradient synchronisation (accumulation micro-batches but the last) when ``enabled``."""
        yield

    @contextlib.contextmanager
    def eval_context(self, module: nn.Module) -> Iterator[None]:
        """Around a validation/test loop (FSDP: keeps every parameter gathered for its duration)."""
        yield

    def reduce_gradients(self, params: list[torch.Tensor]) -> None:
        """Average gradients over ranks (manual optimisation, where no wrapper syncs them)."""

    # ------------------------------------------------------------------ collectives
    def all_reduce(self, tensor: torch.Tensor, op: str = "mean") -> torch.Tensor:
        if not self.is_distributed:
            return tensor
        ops = {
            "sum": dist.ReduceOp.SUM,
            "mean": dist.ReduceOp.SUM,
            "max": dist.ReduceOp.MAX,
            "min": dist.ReduceOp.MIN,
        }
        tensor = tensor.clone()
        dist.all_reduce(tensor, op=ops[op])
        if op == "mean":
            tensor /= self.world_size
        return tensor

    def barrier(self) -> None:
        if self.is_distributed:
            dist.barrier()

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        if not self.is_distributed:
            return obj
        holder = [obj]
        dist.broadcast_object_list(holder, src=src)
        return holder[0]

    # ------------------------------------------------------------------ state
    def model_state_dict(self, module: nn.Module) -> dict[str, Any]:
        """Full module state dict (plain tensors on CPU); may be empty on ranks other than 0."""
        return {
            k: v.detach().cpu() if isinstance(v, torch.Tensor) else v for k, v in module.state_dict().items()
        }

    def load_model_state_dict(self, module: nn.Module, state: dict[str, Any], strict: bool = True) -> None:
        module.load_state_dict(state, strict=strict)

    def optimizer_state_dict(self, module: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        return optimizer_state_by_name(module, optimizer)

    def load_optimizer_state_dict(
        self, module: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]
    ) -> None:
        load_optimizer_state_by_name(module, optimizer, state)

    def full_tensor(self, tensor: torch.Tensor) -> torch.Tensor:
        """The whole tensor (gathers a sharded one; collective for sharded tensors)."""
        return tensor

    def shard_like(self, full: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """``full`` laid out like ``reference`` (sharded the same way), on its device."""
        return full.to(device=reference.device, dtype=reference.dtype)

    def full_module(self, module: nn.Module) -> nn.Module:
        """A plain module with full weights (for export); the module itself when it is not sharded."""
        return module


__all__ = [
    "ForwardRedirect",
    "Strategy",
    "install_forward_redirect",
    "load_optimizer_state_by_name",
    "optimizer_state_by_name",
    "remove_forward_redirect",
]
