"""Loggers and progress output (rank 0 only; the trainer reduces values over ranks first).

- ``CSVLogger``: always on; appends ``time,step,epoch,metric,value`` rows to ``<dir>/metrics.csv``
  (long format, so new metric names never rewrite the file and a resumed run keeps appending).
- ``TensorBoardLogger``: when the ``tensorboard`` package is installed (``torch.utils.tensorboard``);
  ``make_loggers`` adds it automatically then, under ``<dir>/tensorboard``.
- ``ProgressReporter``: a tqdm bar with the loss and steps/s when stderr is a terminal, otherwise one
  plain line per logging step (batch jobs, CI, files).
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO


class Logger:
    def log_metrics(self, metrics: dict[str, float], step: int, epoch: int = 0) -> None:
        raise NotImplementedError

    def log_hyperparams(self, params: dict[str, Any]) -> None:
        pass

    def finalize(self) -> None:
        pass


class CSVLogger(Logger):
    HEADER = ("time", "step", "epoch", "metric", "value")

    def __init__(
        self, save_dir: str | os.PathLike[str], filename: str = "metrics.csv", flush_every_s: float = 5.0
    ):
        self.save_dir = Path(save_dir)
        self.path = self.save_dir / filename
        self.flush_every_s = flush_every_s
        self._file: TextIO | None = None
        self._writer: Any = None
        self._last_flush = 0.0

    def _open(self) -> None:
        self.save_dir.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists() or self.path.stat().st_size == 0
        self._file = open(self.path, "a", newline="")
        self._writer = csv.writer(self._file)
        if new:
            self._writer.writerow(self.HEADER)

    def log_metrics(self, metrics: dict[str, float], step: int, epoch: int = 0) -> None:
        if self._file is None:
            self._open()
        now = time.time()
        for name, value in metrics.items():
            self._writer.writerow((f"{now:.3f}", step, epoch, name, repr(float(value))))
        if now - self._last_flush > self.flush_every_s:
            self._file.flush()  # type: ignore[union-attr]
            self._last_flush = now

    def log_hyperparams(self, params: dict[str, Any]) -> None:
        self.save_dir.mkdir(parents=True, exist_ok=True)
        (self.save_dir / "hparams.json").write_text(json.dumps(params, indent=2, default=str) + "\n")

    def finalize(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_csv_metrics(path: str | os.PathLike[str]) -> dict[str, list[tuple[int, float]]]:
    """``metrics.csv`` -> {metric: [(step, value), ...]} (for tests, notebooks and plots)."""
    out: dict[str, list[tuple[int, float]]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            out.setdefault(row["metric"], []).append((int(row["step"]), float(row["value"])))
    return out


def tensorboard_available() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


class TensorBoardLogger(Logger):
    def __init__(self, save_dir: str | os.PathLike[str]):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(save_dir))

    def log_metrics(self, metrics: dict[str, float], step: int, epoch: int = 0) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, step)

    def log_hyperparams(self, params: dict[str, Any]) -> None:
        self.writer.add_text("hparams", json.dumps(params, indent=2, default=str))

    def finalize(self) -> None:
        self.writer.close()


def make_loggers(logger: Any, root: Path) -> list[Logger]:
    """``logger``: True (CSV + TensorBoard when installed), False/None (none), "csv", "tensorboard",
    a Logger, or a list of those."""
    if logger is False or logger is None:
        return []
    if logger is True:
        loggers: list[Logger] = [CSVLogger(root)]
        if tensorboard_available():
            loggers.append(TensorBoardLogger(root / "tensorboard"))
        return loggers
    if isinstance(logger, Logger):
        return [logger]
    if logger == "csv":
        return [CSVLogger(root)]
    if logger == "tensorboard":
        if not tensorboard_available():
            raise RuntimeError("logger 'tensorboard' needs the tensorboard package")
        return [TensorBoardLogger(root / "tensorboard")]
    if isinstance(logger, (list, tuple)):
        return [lg for item in logger for lg in make_loggers(item, root)]
    raise ValueError(f"unsupported logger: {logger!r}")


def _format(value: float) -> str:
    return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.3e}"


class ProgressReporter:
    """Progress for the training loop: tqdm on a terminal, else a line per logging step."""

    def __init__(self, enabled: bool | None = None, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.enabled = True if enabled is None else enabled
        self.interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self._bar: Any = None
        self._last_step = 0
        self._last_time = 0.0

    def start(self, total: int | None, initial: int = 0) -> None:
        self._last_step, self._last_time = initial, time.perf_counter()
        if self.enabled and self.interactive:
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, file=self.stream, unit="step", dynamic_ncols=True)

    def update(self, step: int, epoch: int, metrics: dict[str, float], total: int | None) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        rate = (step - self._last_step) / max(1e-9, now - self._last_time)
        self._last_step, self._last_time = step, now
        shown = {k: _format(v) for k, v in metrics.items()}
        if self._bar is not None:
            self._bar.update(step - self._bar.n)
            self._bar.set_postfix(shown, refresh=False)
            return
        of = f"/{total}" if total else ""
        parts = " ".join(f"{k}={v}" for k, v in shown.items())
        print(
            f"step {step}{of} epoch {epoch} {rate:.2f} steps/s {parts}".rstrip(), file=self.stream, flush=True
        )

    def message(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


__all__ = [
    "CSVLogger",
    "Logger",
    "ProgressReporter",
    "TensorBoardLogger",
    "make_loggers",
    "read_csv_metrics",
    "tensorboard_available",
]
