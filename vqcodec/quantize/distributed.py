"""Collective helpers that keep quantizer state identical on every rank.

Every helper is a no-op (or the identity) when torch.distributed is not initialised or the world has one
process, so single-process code pays nothing.  All helpers are *collectives*: when distributed, every rank
must call them in the same order, which is why the quantizers take every decision that guards a collective
(k-means init pending, any dead code, number of active RVQ stages) from state that is already identical
across ranks (all-reduced counts, broadcast draws).
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """True when torch.distributed is initialised with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def all_reduce_sum_(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place and return it."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_(tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
    """Overwrite ``tensor`` on every rank with rank ``src``'s value, in place."""
    if is_distributed():
        dist.broadcast(tensor, src=src)
    return tensor


def broadcast_int(value: int, src: int = 0) -> int:
    """Rank ``src``'s Python int, on every rank."""
    if not is_distributed():
        return int(value)
    t = torch.tensor([int(value)], dtype=torch.long)
    dist.broadcast(t, src=src)
    return int(t.item())


def all_gather_rows(rows: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's ``rows`` (M_r, D) in rank order -> (sum M_r, D).

    Ranks may hold different M_r: sizes are exchanged first and the rows padded to the largest, because
    all_gather needs equal shapes.  The result equals what a single process fed the concatenated batch sees.
    """
    if not is_distributed():
        return rows
    world = dist.get_world_size()
    size = torch.tensor([rows.shape[0]], dtype=torch.long, device=rows.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    counts = [int(s.item()) for s in sizes]
    longest = max(counts)
    padded = rows.new_zeros((longest, *rows.shape[1:]))
    padded[: rows.shape[0]] = rows
    gathered = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(gathered, padded.contiguous())
    return torch.cat([g[:n] for g, n in zip(gathered, counts)], dim=0)


def batch_mean(probs: torch.Tensor, sync: bool = True) -> torch.Tensor:
    """Mean soft assignment over the batch of all DDP ranks: (M, G, K) -> (G, K).

    Batch-level entropy terms are about the whole batch, so under DDP they must see every rank's vectors
    (the differentiable all-reduce sends each rank its share of the gradient).  ``sync=False``: local.
    """
    total = probs.sum(0)
    count = torch.tensor(float(probs.shape[0]), device=probs.device)
    if sync and is_distributed():
        from torch.distributed.nn.functional import all_reduce as differentiable_all_reduce

        total = differentiable_all_reduce(total)
        all_reduce_sum_(count)
    return total / count.clamp_min(1.0)
