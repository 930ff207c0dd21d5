"""Process-group set-up from torchrun's environment, and a spawn helper for tests and benchmarks.

Multi-process runs are started by ``torchrun`` (``torchrun --nproc-per-node 2 -m vqcodec train CFG``,
also across machines with ``--nnodes``/``--rdzv-endpoint``); it sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``, which ``init_distributed`` reads. Without them the
run is one process. ``spawn(fn, nprocs)`` starts ``nprocs`` local processes with the same variables
(a free port each time) for tests: ``fn`` must be importable (module level).
"""

from __future__ import annotations

import datetime
import os
import shutil
import socket
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch.distributed as dist
import torch.multiprocessing as mp

#: how :func:`spawn` may start its ranks
SPAWN_START_METHODS = ("spawn", "forkserver")
DEFAULT_TIMEOUT_S = float(os.environ.get("VQCODEC_DIST_TIMEOUT", 1800))


@dataclass(frozen=True)
class DistributedEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def distributed_env() -> DistributedEnv:
    """This process's place in the job: from an initialised process group, else torchrun's variables."""
    if dist.is_available() and dist.is_initialized():
        return DistributedEnv(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return DistributedEnv(
        int(os.environ.get("RANK", 0)),
        int(os.environ.get("WORLD_SIZE", 1)),
        int(os.environ.get("LOCAL_RANK", 0)),
    )


def init_distributed(backend: str, timeout_s: float | None = None) -> tuple[DistributedEnv, bool]:
    """Initialise the default process group from the environment when WORLD_SIZE > 1.

    Returns (env, created): ``created`` is False when a group already existed or the run is single-process.
    """
    env = distributed_env()
    if not env.is_distributed or dist.is_initialized():
        return env, False
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if name not in os.environ:
            raise RuntimeError(f"WORLD_SIZE={env.world_size} but {name} is not set (launch with torchrun)")
    timeout = datetime.timedelta(seconds=timeout_s or DEFAULT_TIMEOUT_S)
    dist.init_process_group(backend=backend, rank=env.rank, world_size=env.world_size, timeout=timeout)
    return distributed_env(), True


def free_port() -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawned(
    local_rank: int,
    fn: Callable[..., Any],
    nprocs: int,
    port: int,
    env: dict[str, str],
    args: tuple,
    done_dir: str = "",
) -> None:
    os.environ.update(env)
    os.environ.update(
        {
            "RANK": str(local_rank),
            "LOCAL_RANK": str(local_rank),
            "WORLD_SIZE": str(nprocs),
            "LOCAL_WORLD_SIZE": str(nprocs),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
    )
    fn(*args)
    distributed = dist.is_available() and dist.is_initialized()
    if distributed:
        dist.barrier()
    if done_dir:
        # every rank has finished fn and met the others: what follows is teardown only
        (Path(done_dir) / str(local_rank)).touch()
    if distributed:
        dist.destroy_process_group()
        exit_now(0)


def died_in_teardown(exc: Exception, done_dir: str, nprocs: int) -> bool:
    """Whether a spawned process was killed by a signal only after every rank had marked its work done.

    gloo can abort a rank (SIGABRT, "terminate called without an active exception") while process
    groups are being torn down, after the job itself succeeded; an exception raised by ``fn`` or a
    signal during the work is never excused.
    """
    signal_name = getattr(exc, "signal_name", None)
    return bool(signal_name) and all((Path(done_dir) / str(r)).exists() for r in range(nprocs))


def shutdown_distributed() -> None:
    """Barrier, then destroy every process group.

    Every rank reaches the barrier before any tears its connections down: gloo aborts a process whose
    peer disappears in the middle of a collective.
    """
    dist.barrier()
    dist.destroy_process_group()


def exit_now(code: int) -> None:
    """Flush stdio and leave without interpreter finalisation.

    Used only after a clean ``shutdown_distributed``: gloo worker threads can still hold work objects
    whose tensors get released while the interpreter is being torn down, which aborts the process with
    "terminate called without an active exception" (SIGABRT) after the job has succeeded
    (pytorch/pytorch#179291, #190489). Nothing is left to finalise at this point.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def spawn(
    fn: Callable[..., Any],
    nprocs: int,
    args: tuple = (),
    *,
    timeout_s: float = 120.0,
    env: dict[str, str] | None = None,
    start_method: str = "spawn",
) -> None:
    """Run ``fn(*args)`` in ``nprocs`` fresh processes wired like torchrun; raise if any fails or times out.

    ``env`` adds variables (e.g. ``{"OMP_NUM_THREADS": "1"}``) before ``fn`` runs. The children are
    terminated when the deadline passes, so a hung collective cannot hang the caller.
    ``start_method``: "spawn" (a fresh interpreter per rank) or "forkserver" (ranks forked from
    one server process that imported torch once: later calls in the same process start their
    ranks without importing torch again, which is most of a short run's start-up).
    """
    if start_method not in SPAWN_START_METHODS:
        known = ", ".join(SPAWN_START_METHODS)
        raise ValueError(f"start_method must be one of {known}, got {start_method!r}")
    if start_method == "forkserver":
        # takes effect when the server starts (the first forkserver call of this process)
        mp.get_context("forkserver").set_forkserver_preload(["torch", "torch.distributed", __name__])
    port = free_port()
    env = {"VQCODEC_DIST_TIMEOUT": str(int(timeout_s)), **(env or {})}
    done_dir = tempfile.mkdtemp(prefix="vqcodec-spawn-")
    context = mp.start_processes(
        _spawned,
        args=(fn, nprocs, port, env, args, done_dir),
        nprocs=nprocs,
        join=False,
        start_method=start_method,
    )
    deadline = time.monotonic() + timeout_s
    try:
        while not context.join(timeout=0.2):
            if time.monotonic() > deadline:
                raise TimeoutError(f"spawned processes did not finish within {timeout_s:.0f} s")
    except mp.ProcessExitedException as exc:
        if not died_in_teardown(exc, done_dir, nprocs):
            raise
        warnings.warn(
            f"spawned rank {exc.error_index} died with {exc.signal_name} after every rank had finished "
            "its work (process-group teardown); the run's results stand",
            RuntimeWarning,
            stacklevel=2,
        )
    finally:
        shutil.rmtree(done_dir, ignore_errors=True)
        for process in context.processes:
            if process.is_alive():
                process.terminate()
        for process in context.processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()


__all__ = [
    "DistributedEnv",
    "died_in_teardown",
    "distributed_env",
    "exit_now",
    "free_port",
    "init_distributed",
    "shutdown_distributed",
    "spawn",
]
