"""Loggers and progress output (rank 0 only; the trainer reduces values over ranks first).

- ``CSVLogger``: always on; appends ``time,step,epoch,metric,value`` rows to ``<dir>/metrics.csv``
  (long format, so new metric names never rewrite the file and a resumed run keeps appending), and
  writes logged images as PNG under ``<dir>/images/``.
- ``TensorBoardLogger``: when the ``tensorboard`` package is installed (``torch.utils.tensorboard``);
  ``make_loggers`` adds it automatically then, under ``<dir>/tensorboard``.
- ``WandbLogger`` / ``MLflowLogger``: when ``wandb`` / ``mlflow`` is installed (the ``loggers``
  extra) and asked for (``logger="wandb"``, ``logger=["csv", MLflowLogger(dir, experiment=...)]``).
- ``ProgressReporter``: a tqdm bar with the loss and steps/s when stderr is a terminal, otherwise one
  plain line per logging step (batch jobs, CI, files).
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from vqcodec.registry import Registry


class Logger:
    def log_metrics(self, metrics: dict[str, float], step: int, epoch: int = 0) -> None:
        raise NotImplementedError

    def log_image(self, name: str, image: Any, step: int) -> None:
        """``image``: a (3, H, W) or (1, H, W) float tensor in [0, 1]; loggers without images ignore it."""

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

    def log_image(self, name: str, image: Any, step: int) -> None:
        """PNG at ``<dir>/images/<name>/step=<step>.png`` (``/`` in the name makes sub-folders)."""
        path = self.save_dir / "images" / Path(*name.split("/")) / f"step={step}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        to_pil(image).save(path)

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


def to_pil(image: Any) -> Any:
    """A (C, H, W) float tensor in [0, 1] (C = 1 or 3) -> a PIL image (values clamped, rounded)."""
    import torch
    from PIL import Image

    if not torch.is_tensor(image) or image.ndim != 3 or image.shape[0] not in (1, 3):
        shape = tuple(image.shape) if torch.is_tensor(image) else type(image).__name__
        raise ValueError(f"an image to log must be a (1 or 3, H, W) tensor, got {shape}")
    pixels = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    if pixels.shape[0] == 1:
        return Image.fromarray(pixels[0].numpy(), mode="L")
    return Image.fromarray(pixels.permute(1, 2, 0).contiguous().numpy(), mode="RGB")


def image_grid(rows: list[Any], pad: int = 2) -> Any:
    """Rows of (N, C, H, W) batches (same shapes) -> one (C, H', W') image, a row per batch, white gaps."""
    import torch

    lines = []
    for batch in rows:
        n, c, h, w = batch.shape
        line = torch.ones(c, h, n * w + (n - 1) * pad, dtype=torch.float32)
        for i in range(n):
            line[:, :, i * (w + pad) : i * (w + pad) + w] = batch[i].detach().float().cpu()
        lines.append(line)
    width = lines[0].shape[2]
    gap = torch.ones(lines[0].shape[0], pad, width)
    out = [lines[0]]
    for line in lines[1:]:
        out += [gap, line]
    return torch.cat(out, dim=1)


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

    def log_image(self, name: str, image: Any, step: int) -> None:
        self.writer.add_image(name, image.detach().float().clamp(0, 1).cpu(), step)

    def log_hyperparams(self, params: dict[str, Any]) -> None:
        self.writer.add_text("hparams", json.dumps(params, indent=2, default=str))

    def finalize(self) -> None:
        self.writer.close()


def _require(module: str, logger: str) -> Any:
    """Import an optional logging package, or say in one line how to get it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        package = module.split(".")[0]
        raise RuntimeError(
            f"logger {logger!r} needs the {package} package: pip install 'vqcodec[loggers]'"
        ) from None


def _flatten(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"module": {"lr": 1e-3}} -> {"module/lr": 1e-3} (services that take flat key/value pairs)."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "/"))
        else:
            flat[name] = value
    return flat


class WandbLogger(Logger):
    """Weights & Biases: metrics, images and hyperparameters of one run (needs ``wandb``).

    ``save_dir``: where wandb keeps its files (the run folder by default); ``project``, ``name``,
    ``mode`` ("online", "offline": nothing leaves the machine, "disabled") and ``init_kwargs`` go
    to ``wandb.init``. Metrics are logged at the trainer's ``global_step`` with ``epoch`` beside
    them, images as ``wandb.Image``, hyperparameters into the run's config.
    """

    def __init__(
        self,
        save_dir: str | os.PathLike[str],
        *,
        project: str = "vqcodec",
        name: str | None = None,
        mode: str | None = None,
        **init_kwargs: Any,
    ):
        self._wandb = _require("wandb", "wandb")
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        self.run = self._wandb.init(project=project, name=name, dir=str(save_dir), mode=mode, **init_kwargs)

    def log_metrics(self, metrics: dict[str, float], step: int, epoch: int = 0) -> None:
        self.run.log({**{k: float(v) for k, v in metrics.items()}, "epoch": epoch}, step=step)

    def log_image(self, name: str, image: Any, step: int) -> None:
        self.run.log({name: self._wandb.Image(to_pil(image))}, step=step)

    def log_hyperparams(self, params: dict[str, Any]) -> None:
        self.run.config.update(json.loads(json.dumps(params, default=str)), allow_val_change=True)

    def finalize(self) -> None:
        self.run.finish()


class MLflowLogger(Logger):
    """MLflow tracking: metrics, images (artifacts) and parameters of one run (needs ``mlflow``
    or ``mlflow-skinny``).

    ``tracking_uri``: the server or store; default ``$MLFLOW_TRACKING_URI``, else a local SQLite
    store ``<save_dir>/mlflow.db`` with artifacts in ``<save_dir>/artifacts`` (nothing leaves the
    machine; MLflow's SQLite store needs SQLAlchemy, which full ``mlflow`` brings). ``experiment``
    is created when missing. Nested hyperparameters become flat ``section/key`` parameters
    (MLflow's values are strings of bounded length: longer ones are cut, marked by "...").
    """

    MAX_PARAM_LENGTH = 500  # the smallest limit MLflow servers enforce

    def __init__(
        self,
        save_dir: str | os.PathLike[str],
        *,
        experiment: str = "vqcodec",
        run_name: str | None = None,
        tracking_uri: str | None = None,
        tags: dict[str, str] | None = None,
    ):
        tracking = _require("mlflow.tracking", "mlflow")
        self._entities = _require("mlflow.entities", "mlflow")
        uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        store = Path(save_dir).resolve()
        if not uri:
            store.mkdir(parents=True, exist_ok=True)
            uri = f"sqlite:///{store / 'mlflow.db'}"
        self.client = tracking.MlflowClient(tracking_uri=uri)
        found = self.client.get_experiment_by_name(experiment)
        if found is not None:
            experiment_id = found.experiment_id
        elif uri.startswith("sqlite:"):  # a local store keeps its artifacts beside it, not in the cwd
            experiment_id = self.client.create_experiment(experiment, (store / "artifacts").as_uri())
        else:
            experiment_id = self.client.create_experiment(experiment)
        self.run_id: str = self.client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id

    def log_metrics(self, metrics: dict[str, float], step: int, epoch: int = 0) -> None:
        stamp = int(time.time() * 1000)
        rows = [self._entities.Metric(k, float(v), stamp, step) for k, v in metrics.items()]
        rows.append(self._entities.Metric("epoch", float(epoch), stamp, step))
        self.client.log_batch(self.run_id, metrics=rows)

    def log_image(self, name: str, image: Any, step: int) -> None:
        import numpy as np

        self.client.log_image(self.run_id, np.asarray(to_pil(image)), f"images/{name}/step={step}.png")

    def log_hyperparams(self, params: dict[str, Any]) -> None:
        limit = self.MAX_PARAM_LENGTH
        rows = []
        for key, value in _flatten(json.loads(json.dumps(params, default=str))).items():
            text = json.dumps(value) if not isinstance(value, str) else value
            rows.append(self._entities.Param(key, text if len(text) <= limit else text[: limit - 3] + "..."))
        for start in range(0, len(rows), 100):  # MLflow takes at most 100 parameters per batch
            self.client.log_batch(self.run_id, params=rows[start : start + 100])

    def finalize(self) -> None:
        self.client.set_terminated(self.run_id)


def _tensorboard_logger(root: Path) -> Logger:
    if not tensorboard_available():
        raise RuntimeError("logger 'tensorboard' needs the tensorboard package")
    return TensorBoardLogger(root / "tensorboard")


# logger name (Trainer(logger="csv")) -> factory(run folder) -> Logger
LOGGERS: Registry[Callable[[Path], Logger]] = Registry("logger")
LOGGERS.register("csv", CSVLogger)
LOGGERS.register("tensorboard", _tensorboard_logger)
LOGGERS.register("wandb", WandbLogger)
LOGGERS.register("mlflow", MLflowLogger)


def make_loggers(logger: Any, root: Path) -> list[Logger]:
    """``logger``: True (CSV + TensorBoard when installed), False/None (none), a name in ``LOGGERS``
    ("csv", "tensorboard", "wandb", "mlflow": those two only when named, with their defaults), a
    Logger, or a list of those."""
    if logger is False or logger is None:
        return []
    if logger is True:
        loggers: list[Logger] = [CSVLogger(root)]
        if tensorboard_available():
            loggers.append(TensorBoardLogger(root / "tensorboard"))
        return loggers
    if isinstance(logger, Logger):
        return [logger]
    if isinstance(logger, (list, tuple)):
        return [lg for item in logger for lg in make_loggers(item, root)]
    return [LOGGERS.get(logger)(root)]


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
    "LOGGERS",
    "Logger",
    "ProgressReporter",
    "MLflowLogger",
    "TensorBoardLogger",
    "WandbLogger",
    "image_grid",
    "make_loggers",
    "read_csv_metrics",
    "tensorboard_available",
    "to_pil",
]
