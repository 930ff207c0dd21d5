"""Trainer overhead: steps/s of ``vqcodec.train.Trainer`` and of PyTorch Lightning against a plain loop.

All three run the same small conv autoencoder on the same in-memory 32x32 images, batch size, optimizer
(AdamW), gradient clipping and precision; the Trainer keeps CSV logging (every 50 steps), progress and
checkpoint writing off (disk I/O, not loop overhead). The two are *interleaved step by step* in one
process (a callback runs one hand-written step after each Trainer step and times both), so load from
other processes on a shared machine hits both sides alike. The table gives the overhead from median
wall-clock step times and from total process CPU time (steadier on a loaded machine, and the absolute
CPU microseconds the Trainer adds per step); the JSON also has the ratio of total wall times.

Lightning (``pip install -e .[bench]``; skipped when not installed) runs the same module code as a
``LightningModule`` with the same settings (CSV logger every 50 steps, no checkpoints, progress bar or
model summary), paired step by step with its own plain-loop twin the same way. The vqcodec and
Lightning passes alternate (``--repeats`` rounds), and each framework's overhead is against the plain
steps interleaved with it, so drift in machine load between passes does not enter the comparison.

A second table runs 2-process DDP (gloo, one thread per process, the same per-process batch) three
ways: a hand-written DDP loop (DistributedSampler + DistributedDataParallel), vqcodec's ``ddp``
strategy and Lightning's ``ddp`` strategy (in the same two processes, which Lightning adopts from
torchrun's variables). The three alternate run by run for ``--ddp-repeats`` rounds, in rotated
order; the table gives the median run of each: global samples/s, the speed-up over one process of
the plain loop, and the overhead against the plain DDP loop from the median and the best wall times
and from rank 0's CPU time. With a CUDA device a bf16 row is added to the first table.

    python benchmarks/trainer_overhead.py            # a few minutes on 2 CPU cores
    python benchmarks/trainer_overhead.py --steps 100 --repeats 2 --no-ddp

Writes ``benchmarks/results/trainer_overhead.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vqcodec.train import Callback, Trainer, TrainingModule, seed_everything  # noqa: E402
from vqcodec.train.launch import spawn  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "trainer_overhead.json"
CLIP = 1.0
LR = 1e-3


def network(width: int) -> nn.Module:
    """Pixels (B, 3, 32, 32) -> reconstruction (B, 3, 32, 32): a stride-4 conv autoencoder."""
    return nn.Sequential(
        nn.Conv2d(3, width, 3, 2, 1),
        nn.GELU(),
        nn.Conv2d(width, width, 3, 2, 1),
        nn.GELU(),
        nn.Conv2d(width, width, 3, 1, 1),
        nn.GELU(),
        nn.ConvTranspose2d(width, width, 4, 2, 1),
        nn.GELU(),
        nn.ConvTranspose2d(width, 3, 4, 2, 1),
    )


def dataset(n: int = 1024) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.rand(n, 3, 32, 32, generator=g))


def loader(batch_size: int) -> DataLoader:
    return DataLoader(dataset(), batch_size=batch_size, shuffle=True, drop_last=True)


class Autoencoder(TrainingModule):
    def __init__(self, width: int):
        super().__init__()
        self.net = network(width)

    def forward(self, pixels):
        return self.net(pixels)

    def training_step(self, batch, batch_idx):
        pixels = batch[0]
        loss = torch.mean((self(pixels).float() - pixels) ** 2)
        self.log("train/mse", loss.detach())
        return loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=LR)


class StepClock:
    """Wall and process CPU time from the end of step ``warmup`` to the end of step ``warmup + steps``
    (``tick(global_step)`` after every step; any framework's callback can drive it)."""

    def __init__(self, warmup: int, steps: int):
        self.warmup, self.steps = warmup, steps
        self.start = (0.0, 0.0)
        self.seconds = self.cpu = 0.0

    def tick(self, global_step: int) -> None:
        if global_step == self.warmup:
            self.start = (time.perf_counter(), time.process_time())
        elif global_step == self.warmup + self.steps:
            self.seconds = time.perf_counter() - self.start[0]
            self.cpu = time.process_time() - self.start[1]


class Clock(Callback):
    """vqcodec callback around a StepClock."""

    def __init__(self, warmup: int, steps: int):
        self.clock = StepClock(warmup, steps)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.clock.tick(trainer.global_step)


def hand_steps(width: int, batch_size: int, precision: str, device: torch.device) -> Iterator[None]:
    """The loop a user would write, one step per ``next()``: data, forward, backward, clip, step."""
    seed_everything(0)
    model = network(width).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    dtype = torch.bfloat16 if precision == "bf16-mixed" else None
    data = loader(batch_size)
    while True:
        for (pixels,) in data:
            pixels = pixels.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                loss = torch.mean((model(pixels).float() - pixels) ** 2)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP, foreach=True)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize()
            yield


class Interleaved(Callback):
    """Runs one hand-written step after every Trainer step and times both, step by step.

    A Trainer step is the time from the end of this hook to its next call (everything the Trainer does
    for one batch: data, autocast, step, clipping, optimizer, logging, callbacks); a hand step is timed
    inside the hook. Pairing the steps makes load from other processes hit both sides alike. Both the
    wall clock and the process CPU clock are recorded: CPU time does not count the time the process
    waits for a core, so on a shared machine it is the steadier measure of work done.
    """

    def __init__(self, hand: Iterator[None], warmup: int, device: torch.device):
        self.hand, self.warmup, self.device = hand, warmup, device
        self.trainer_wall: list[float] = []
        self.hand_wall: list[float] = []
        self.trainer_cpu: list[float] = []
        self.hand_cpu: list[float] = []
        self.resumed = (0.0, 0.0)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self._sync()
        now = (time.perf_counter(), time.process_time())
        timed = trainer.global_step > self.warmup
        if timed:
            self.trainer_wall.append(now[0] - self.resumed[0])
            self.trainer_cpu.append(now[1] - self.resumed[1])
        next(self.hand)
        self._sync()
        done = (time.perf_counter(), time.process_time())
        if timed:
            self.hand_wall.append(done[0] - now[0])
            self.hand_cpu.append(done[1] - now[1])
        self.resumed = (time.perf_counter(), time.process_time())


def lightning_autoencoder(width: int):
    """``Autoencoder`` as a ``LightningModule``: the same network, loss, logging and optimizer."""
    import lightning as L

    class LightningAutoencoder(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = network(width)

        def forward(self, pixels):
            return self.net(pixels)

        def training_step(self, batch, batch_idx):
            pixels = batch[0]
            loss = torch.mean((self(pixels).float() - pixels) ** 2)
            self.log("train/mse", loss.detach())
            return loss

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=LR)

    return LightningAutoencoder()


def lightning_fit(
    width: int, batch_size: int, warmup: int, steps: int, root: str, on_batch_end, **options
) -> None:
    """Fit ``lightning_autoencoder(width)`` for ``warmup + steps`` steps with the settings every
    Lightning row shares (clipping, CSV logger every 50 steps, no checkpoints, progress bar, model
    summary or sanity check); ``on_batch_end(trainer, module, outputs, batch, batch_idx)`` runs after
    every step; ``options`` add to or replace the ``lightning.Trainer`` arguments."""
    import logging

    import lightning as L
    from lightning.pytorch.loggers import CSVLogger

    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)  # no banner lines in the table
    warnings.filterwarnings("ignore", message=r".*(LeafSpec|logging interval).*")

    class BatchEnd(L.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            on_batch_end(trainer, module, outputs, batch, batch_idx)

    L.seed_everything(0, verbose=False)
    settings = dict(
        max_steps=warmup + steps,
        gradient_clip_val=CLIP,
        callbacks=[BatchEnd()],
        logger=CSVLogger(root, name="lightning"),
        log_every_n_steps=50,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    L.Trainer(**{**settings, **options}).fit(lightning_autoencoder(width), loader(batch_size))


def lightning_run(
    width: int, batch_size: int, precision: str, warmup: int, steps: int, root: str, paired: Interleaved
) -> None:
    """The same training as ``trainer_run`` under ``lightning.Trainer`` (fp32 = "32-true")."""
    seed_everything(0)
    lightning_fit(
        width,
        batch_size,
        warmup,
        steps,
        root,
        paired.on_train_batch_end,
        accelerator="cpu" if paired.device.type == "cpu" else "gpu",
        devices=1,
        precision="32-true" if precision == "32" else precision,
    )


def lightning_available() -> bool:
    try:
        import lightning  # noqa: F401
    except ImportError:
        return False
    return True


def trainer_run(
    width: int,
    batch_size: int,
    precision: str,
    warmup: int,
    steps: int,
    root: str,
    strategy: str = "single",
    callback: Callback | None = None,
    accelerator: str = "auto",
) -> StepClock:
    """Fit ``warmup + steps`` steps; returns the clock of the last ``steps``."""
    seed_everything(0)
    clock = Clock(warmup, steps)
    trainer = Trainer(
        strategy=strategy,
        accelerator=accelerator,
        precision=precision,
        max_steps=warmup + steps,
        gradient_clip_val=CLIP,
        callbacks=[clock] + ([callback] if callback else []),
        enable_checkpointing=False,
        enable_progress_bar=False,
        logger="csv",
        default_root_dir=root,
    )
    trainer.fit(Autoencoder(width), loader(batch_size))
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    return clock.clock


def plain_ddp_run(width: int, batch_size: int, warmup: int, steps: int) -> StepClock:
    """The DDP loop a user would write (gloo, DistributedSampler, DistributedDataParallel, clipping,
    AdamW); the clock of the last ``steps`` steps on this rank (the ranks step in lock-step)."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data.distributed import DistributedSampler

    dist.init_process_group("gloo")
    seed_everything(0)
    model = DistributedDataParallel(network(width))
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    sampler = DistributedSampler(dataset(), shuffle=True, seed=0, drop_last=True)
    data = DataLoader(dataset(), batch_size=batch_size, sampler=sampler, drop_last=True)
    clock = StepClock(warmup, steps)
    step, epoch = 0, 0
    while step < warmup + steps:
        sampler.set_epoch(epoch)
        for (pixels,) in data:
            loss = torch.mean((model(pixels).float() - pixels) ** 2)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP, foreach=True)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            clock.tick(step)
            if step == warmup + steps:
                break
        epoch += 1
    return clock


def lightning_ddp_run(width: int, batch_size: int, warmup: int, steps: int, root: str) -> StepClock:
    """``lightning.Trainer(strategy="ddp", devices=2)`` in the two processes ``spawn`` started: with
    torchrun's variables set Lightning adopts them (TorchElasticEnvironment) instead of launching."""
    os.environ.setdefault("GROUP_RANK", "0")
    clock = StepClock(warmup, steps)
    lightning_fit(
        width,
        batch_size,
        warmup,
        steps,
        root,
        lambda trainer, *_: clock.tick(trainer.global_step),
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        precision="32-true",
    )
    return clock


def _ddp_worker(
    framework: str, width: int, batch_size: int, warmup: int, steps: int, root: str, out: str
) -> None:
    torch.set_num_threads(1)
    if framework == "plain":
        clock = plain_ddp_run(width, batch_size, warmup, steps)
    elif framework == "lightning":
        clock = lightning_ddp_run(width, batch_size, warmup, steps, root)
    else:
        clock = trainer_run(width, batch_size, "32", warmup, steps, root, strategy="ddp", accelerator="cpu")
    if int(os.environ["RANK"]) == 0:
        Path(out).write_text(json.dumps({"seconds": clock.seconds, "cpu": clock.cpu}))


def _row(framework: str, device: torch.device, precision: str, batch_size: int, runs: list) -> dict:
    """Pool the paired step times of every run of one framework into one table row."""
    wall_t = torch.tensor([t for r in runs for t in r.trainer_wall], dtype=torch.float64)
    wall_h = torch.tensor([t for r in runs for t in r.hand_wall], dtype=torch.float64)
    cpu_t = sum(sum(r.trainer_cpu) for r in runs)
    cpu_h = sum(sum(r.hand_cpu) for r in runs)
    trainer_median, hand_median = float(wall_t.median()), float(wall_h.median())
    return {
        "framework": framework,
        "device": device.type,
        "precision": precision,
        "batch_size": batch_size,
        "steps": len(wall_t),
        "loop_steps_per_s": 1.0 / hand_median,
        "trainer_steps_per_s": 1.0 / trainer_median,
        "overhead_pct_wall_median": 100.0 * (trainer_median / hand_median - 1.0),
        "overhead_pct_wall_total": 100.0 * (float(wall_t.sum()) / float(wall_h.sum()) - 1.0),
        "overhead_pct_cpu_total": 100.0 * (cpu_t / cpu_h - 1.0),
        "overhead_us_per_step_cpu": 1e6 * (cpu_t - cpu_h) / len(wall_t),
        "images_per_s": batch_size / trainer_median,
    }


def overhead_rows(
    args: argparse.Namespace, device: torch.device, precisions: list[str], with_lightning: bool
) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as root:
        for precision in precisions:
            runs: dict[str, list[Interleaved]] = {"vqcodec": [], "lightning": []}
            for _ in range(args.repeats):  # alternate the frameworks, so load drift hits both
                paired = Interleaved(
                    hand_steps(args.width, args.batch_size, precision, device), args.warmup, device
                )
                trainer_run(
                    args.width,
                    args.batch_size,
                    precision,
                    args.warmup,
                    args.steps,
                    root,
                    callback=paired,
                    accelerator=device.type,
                )
                runs["vqcodec"].append(paired)
                if with_lightning:
                    paired = Interleaved(
                        hand_steps(args.width, args.batch_size, precision, device), args.warmup, device
                    )
                    lightning_run(
                        args.width, args.batch_size, precision, args.warmup, args.steps, root, paired
                    )
                    runs["lightning"].append(paired)
            for framework, done in runs.items():
                if done:
                    rows.append(_row(framework, device, precision, args.batch_size, done))
    return rows


def ddp_rows(args: argparse.Namespace, with_lightning: bool) -> list[dict]:
    """2-process DDP on gloo: the plain DDP loop, vqcodec and Lightning, run by run for ``--ddp-repeats``
    rounds with the order rotated every round (so neither start-up order nor load drift favours one),
    against one process of the plain loop. Per framework: the median and the best run's wall time, and
    rank 0's process CPU time (which does not count time spent waiting for a core or for the other
    rank), each as an overhead against the plain DDP loop."""
    steps = max(10, args.steps // 2)
    frameworks = ["plain", "vqcodec"] + (["lightning"] if with_lightning else [])
    with tempfile.TemporaryDirectory() as root:
        torch.set_num_threads(1)
        single = []
        runs: dict[str, list[dict]] = {f: [] for f in frameworks}
        out = Path(root) / "ddp.json"
        for round_index in range(args.ddp_repeats):
            hand = hand_steps(args.width, args.batch_size, "32", torch.device("cpu"))
            for _ in range(args.warmup):
                next(hand)
            start = time.perf_counter()
            for _ in range(steps):
                next(hand)
            single.append(time.perf_counter() - start)
            shift = round_index % len(frameworks)
            for framework in frameworks[shift:] + frameworks[:shift]:
                spawn(
                    _ddp_worker,
                    2,
                    args=(framework, args.width, args.batch_size, args.warmup, steps, root, str(out)),
                    timeout_s=600,
                    env={"OMP_NUM_THREADS": "1"},
                )
                runs[framework].append(json.loads(out.read_text()))
        torch.set_num_threads(args.threads)
    samples = steps * args.batch_size

    def stats(framework: str) -> dict[str, float]:
        wall = torch.tensor([r["seconds"] for r in runs[framework]], dtype=torch.float64)
        cpu = torch.tensor([r["cpu"] for r in runs[framework]], dtype=torch.float64)
        return {"best": float(wall.min()), "median": float(wall.median()), "cpu": float(cpu.median())}

    plain = stats("plain")
    one = samples / min(single)
    rows = [
        {"framework": "plain", "processes": 1, "samples_per_s": one, "speedup": 1.0, "seconds": single},
    ]
    for framework in frameworks:
        mine = stats(framework)
        rate = 2 * samples / mine["median"]
        rows.append(
            {
                "framework": framework,
                "processes": 2,
                "samples_per_s": rate,
                "speedup": rate / one,
                "overhead_pct_wall_median": 100.0 * (mine["median"] / plain["median"] - 1.0),
                "overhead_pct_wall_best": 100.0 * (mine["best"] / plain["best"] - 1.0),
                "overhead_pct_cpu_median": 100.0 * (mine["cpu"] / plain["cpu"] - 1.0),
                "seconds": [r["seconds"] for r in runs[framework]],
                "cpu_seconds_rank0": [r["cpu"] for r in runs[framework]],
            }
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ddp-repeats", type=int, default=6, help="rounds of the DDP table")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--width", type=int, default=32, help="conv channels of the benchmark network")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the overhead table")
    parser.add_argument("--no-ddp", action="store_true")
    parser.add_argument("--no-lightning", action="store_true", help="skip the Lightning rows")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with_lightning = not args.no_lightning and lightning_available()
    if not args.no_lightning and not with_lightning:
        print("lightning is not installed (pip install -e .[bench]): vqcodec rows only", file=sys.stderr)
    rows = overhead_rows(args, torch.device("cpu"), ["32", "bf16-mixed"], with_lightning)
    if torch.cuda.is_available():
        rows += overhead_rows(args, torch.device("cuda"), ["bf16-mixed"], with_lightning)
    print(
        f"Trainers vs plain loop (each paired step by step with its own plain loop, {args.repeats} x "
        f"{args.steps} steps, batch {args.batch_size}, {args.threads} thread(s))"
    )
    print(
        f"{'trainer':<9} {'device':<6} {'precision':<11} {'loop steps/s':>12} {'trainer steps/s':>15} "
        f"{'overhead wall':>13} {'overhead CPU':>12} {'CPU us/step':>11}"
    )
    for r in rows:
        print(
            f"{r['framework']:<9} {r['device']:<6} {r['precision']:<11} {r['loop_steps_per_s']:>12.2f} "
            f"{r['trainer_steps_per_s']:>15.2f} {r['overhead_pct_wall_median']:>+12.2f}% "
            f"{r['overhead_pct_cpu_total']:>+11.2f}% {r['overhead_us_per_step_cpu']:>+11.0f}"
        )
    result = {
        "benchmark": "trainer_overhead",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "threads": args.threads,
        "lightning": __import__("lightning").__version__ if with_lightning else None,
        "settings": {k: v for k, v in vars(args).items() if k != "output"},
        "overhead": rows,
        "ddp": [],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2, default=str) + "\n")  # kept if DDP is cut short
    ddp = [] if args.no_ddp else ddp_rows(args, with_lightning)
    if ddp:
        print(
            f"\nDDP (gloo, 1 thread per process, same per-process batch; {args.ddp_repeats} rotating rounds)"
        )
        print(
            f"{'trainer':<9} {'processes':>9} {'samples/s':>10} {'speedup':>8} "
            f"{'overhead vs plain DDP: wall median':>34} {'best':>7} {'CPU':>7}"
        )
        for r in ddp:
            cells = ""
            if r["processes"] == 2:
                cells = (
                    f"{r['overhead_pct_wall_median']:>+33.2f}% {r['overhead_pct_wall_best']:>+6.2f}% "
                    f"{r['overhead_pct_cpu_median']:>+6.2f}%"
                )
            print(
                f"{r['framework']:<9} {r['processes']:>9} {r['samples_per_s']:>10.1f} {r['speedup']:>7.2f}x "
                + cells
            )
    result["ddp"] = ddp
    args.output.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"\nwrote {args.output.relative_to(REPO) if args.output.is_relative_to(REPO) else args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
