"""``ddp``: DistributedDataParallel over torch.distributed (gloo on CPU, NCCL on CUDA).

The module's ``forward`` runs through the DDP wrapper (``self(x)`` inside ``training_step``); gradients
are all-reduced during backward, bucketed and overlapped. ``broadcast_buffers`` is False by default:
the quantizers keep their buffers (EMA codebooks, counts) identical across ranks with their own
collectives, and re-broadcasting rank 0's copy every forward would only cost time. Set it True for
modules with other buffers that must follow rank 0 (BatchNorm running stats, say).

In manual optimisation the steps may run networks outside ``forward`` (a GAN discriminator), which
DDP's reducer would not see; there the module is not wrapped and each ``optimizer.step()`` first
averages that optimizer's gradients over ranks (one flattened all-reduce per dtype).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from vqcodec.train.strategies.base import Strategy, install_forward_redirect, remove_forward_redirect


def _ddp_accepts(name: str) -> bool:
    return name in inspect.signature(DistributedDataParallel.__init__).parameters


class DDPStrategy(Strategy):
    name = "ddp"

    def __init__(
        self,
        *,
        broadcast_buffers: bool = False,
        find_unused_parameters: bool = False,
        gradient_as_bucket_view: bool = True,
        bucket_cap_mb: float | None = None,
        static_graph: bool = False,
    ):
        super().__init__()
        self.broadcast_buffers = broadcast_buffers
        # torch >= 2.13 renamed the per-forward buffer broadcast; it still syncs buffers at init
        sync_name = "forward_sync_buffers" if _ddp_accepts("forward_sync_buffers") else "broadcast_buffers"
        self.ddp_kwargs: dict[str, Any] = {
            sync_name: broadcast_buffers,
            "find_unused_parameters": find_unused_parameters,
            "gradient_as_bucket_view": gradient_as_bucket_view,
            "static_graph": static_graph,
        }
        if bucket_cap_mb is not None:
            self.ddp_kwargs["bucket_cap_mb"] = bucket_cap_mb
        self.wrapper: DistributedDataParallel | None = None

    def wants_process_group(self) -> bool:
        return True

    def setup_module(self, module: nn.Module) -> nn.Module:
        module = module.to(self.device)
        if not self.is_distributed or self.manual_optimization:
            if self.is_distributed:
                self._broadcast_parameters(module)
            return module
        if self.wrapper is not None and self.wrapper.module is module:
            return module
        if not any(p.requires_grad for p in module.parameters()):
            raise ValueError("DDP needs at least one trainable parameter")
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        self.wrapper = DistributedDataParallel(module, device_ids=device_ids, **self.ddp_kwargs)
        install_forward_redirect(module, self.wrapper)
        if not self.broadcast_buffers:
            # DDP copies rank 0's parameters at construction but buffers only when broadcasting them
            with torch.no_grad():
                for buffer in module.buffers():
                    dist.broadcast(buffer.data, src=0)
        return module

    def _broadcast_parameters(self, module: nn.Module) -> None:
        with torch.no_grad():
            for tensor in list(module.parameters()) + list(module.buffers()):
                dist.broadcast(tensor.data, src=0)

    def teardown_module(self, module: nn.Module) -> None:
        remove_forward_redirect(module)
        self.wrapper = None

    @contextlib.contextmanager
    def no_sync(self, module: nn.Module, enabled: bool) -> Iterator[None]:
        if enabled and self.wrapper is not None:
            with self.wrapper.no_sync():
                yield
        else:
            yield

    def reduce_gradients(self, params: list[torch.Tensor]) -> None:
        if not self.is_distributed or self.wrapper is not None:
            return
        grads = [p.grad for p in params if p.grad is not None]
        by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
        for grad in grads:
            by_dtype.setdefault(grad.dtype, []).append(grad)
        for group in by_dtype.values():
            flat = torch.cat([g.reshape(-1) for g in group])
            dist.all_reduce(flat)
            flat /= self.world_size
            offset = 0
            for grad in group:
                grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
                offset += grad.numel()


__all__ = ["DDPStrategy"]
