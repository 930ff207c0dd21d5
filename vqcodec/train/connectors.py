"""Checkpoint connector of ``Trainer``: the run folder, ``ckpt_path`` resolution ("last"), writing a
full checkpoint and restoring one (layout in ``checkpoint.py``). A part of ``Trainer``: it runs on its
``TrainerState`` (``state.py``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from vqcodec.train.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    atomic_save,
    capture_rng_state,
    restore_rng_state,
)
from vqcodec.train.module import TrainingModule
from vqcodec.train.state import TrainerState
from vqcodec.train.utilities import (
    next_version,
    version_folders,
)


class CheckpointConnector(TrainerState):
    """Run folder and checkpoint I/O part of ``Trainer``."""

    @property
    def log_dir(self) -> Path:
        """This run's folder: ``<default_root_dir>/version_<n>`` (see ``Trainer``'s ``version``)."""
        if self._log_dir is None:
            self._log_dir = self._resolve_log_dir(None)
        return self._log_dir

    def _resolve_log_dir(self, resumed_from: Path | None) -> Path:
        """Pick the run folder (rank 0 decides, every rank gets the same answer)."""
        root = self.default_root_dir
        if self.version is False or self.version == "":
            return root
        if isinstance(self.version, str) and self.version:
            return root / self.version
        if isinstance(self.version, int) and not isinstance(self.version, bool):
            return root / f"version_{self.version}"
        if resumed_from is not None:
            # resuming a checkpoint of one of this root's runs (<run>/checkpoints/x.ckpt) continues that
            # run's folder: its metrics.csv goes on where the checkpoint left it
            folder, root_abs = resumed_from.resolve().parent.parent, root.resolve()
            if folder == root_abs:
                return root
            if folder.parent == root_abs:
                return root / folder.name
        chosen = root / f"version_{next_version(root)}" if self.is_global_zero else root
        if self.strategy.is_distributed:
            chosen = Path(self.strategy.broadcast_object(str(chosen)))
        return chosen

    def _resolve_ckpt_path(self, ckpt_path: Any) -> Path | None:
        """``"last"``: the newest ``last.ckpt`` of this root's runs (or of an explicit checkpoint dirpath)."""
        if ckpt_path is None:
            return None
        if str(ckpt_path) != "last":
            return Path(ckpt_path)
        candidates = [self.default_root_dir / "checkpoints" / "last.ckpt"]  # an unversioned run
        candidates += [
            folder / "checkpoints" / "last.ckpt" for folder in version_folders(self.default_root_dir)
        ]
        callback = self.checkpoint_callback
        if callback is not None and callback.dirpath is not None:
            candidates.append(Path(callback.dirpath) / "last.ckpt")
        found = [c for c in candidates if c.is_file()]
        if not found:
            self.print(f'ckpt_path="last": no last.ckpt under {self.default_root_dir}, starting from scratch')
            return None
        return max(found, key=lambda c: c.stat().st_mtime)

    def _gather_rng(self) -> list[Any]:
        assert self.accelerator is not None
        state = capture_rng_state(self.accelerator.rng_state())
        if not self.strategy.is_distributed:
            return [state]
        import torch.distributed as dist

        states: list[Any] = [None] * self.world_size
        dist.all_gather_object(states, state)
        return states

    def save_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Write a full checkpoint (collective: every rank must call it; rank 0 writes)."""
        module = self.module
        if module is None:
            raise RuntimeError("save_checkpoint needs a module: call fit first")
        assert self.precision_plugin is not None
        per_step = self._samples_per_step()
        checkpoint: dict[str, Any] = {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "state_dict": self.strategy.model_state_dict(module),
            "optimizers": [
                self.strategy.optimizer_state_dict(module, c.optimizer) for c in self.optimizer_configs
            ],
            "schedulers": [
                c.scheduler.scheduler.state_dict() if c.scheduler else None for c in self.optimizer_configs
            ],
            "precision": self.precision_plugin.state_dict(),
            "loop": {
                "global_step": self.global_step,
                "epoch": self.current_epoch,
                "batch_in_epoch": self.progress.batch_in_epoch,
                "micro_step": self._micro_step,
                "optimizer_steps": list(self._optimizer_steps),
                "total_batches": self.progress.total_batches,
                "time_elapsed": self.time_elapsed,
                "data_seed": self._data_seed,
                "world_size": self.world_size,
                "samples_in_epoch": self.progress.batch_in_epoch * per_step if per_step else None,
            },
            "rng": self._gather_rng(),
            "callbacks": {c.state_key: c.state_dict() for c in self.callbacks},
            "callback_metrics": dict(self.callback_metrics),
            "trainer": self._settings(),
            "hyper_parameters": getattr(module, "hparams", None),
            "init_args": module.__dict__.get("hparams_initial"),  # save_hyperparameters' arguments
            "datamodule": self.datamodule.state_dict() if self.datamodule is not None else None,
        }
        for callback in self.callbacks:
            callback.on_save_checkpoint(self._trainer, module, checkpoint)
        module.on_save_checkpoint(checkpoint)
        if self.is_global_zero:
            atomic_save(checkpoint, path)
        self.strategy.barrier()

    def _restore(self, module: TrainingModule, checkpoint: dict[str, Any]) -> None:
        assert self.precision_plugin is not None
        # an EMA run's state_dict holds the scored (averaged) weights; training resumes from the live ones
        self.strategy.load_model_state_dict(
            module, checkpoint.get("train_state_dict") or checkpoint["state_dict"]
        )
        optimizers = checkpoint.get("optimizers", [])
        if len(optimizers) != len(self.optimizer_configs):
            raise ValueError(
                f"checkpoint has {len(optimizers)} optimizers, "
                f"the module configures {len(self.optimizer_configs)}"
            )
        for config, state in zip(self.optimizer_configs, optimizers):
            self.strategy.load_optimizer_state_dict(module, config.optimizer, state)
        for config, state in zip(self.optimizer_configs, checkpoint.get("schedulers", [])):
            if config.scheduler is not None and state is not None:
                config.scheduler.scheduler.load_state_dict(state)
        self.precision_plugin.load_state_dict(checkpoint.get("precision", {}))
        loop = checkpoint["loop"]
        self.global_step = int(loop["global_step"])
        self.current_epoch = int(loop["epoch"])
        self.progress.batch_in_epoch = int(loop["batch_in_epoch"])
        self.progress.total_batches = int(loop.get("total_batches", self.global_step))
        self._micro_step = 0
        self._optimizer_steps = list(
            loop.get("optimizer_steps", [self.global_step] * len(self.optimizer_configs))
        )
        if int(loop.get("world_size", self.world_size)) != self.world_size and self.progress.batch_in_epoch:
            self.progress.batch_in_epoch = self._convert_position(loop)
        self.callback_metrics.update(checkpoint.get("callback_metrics", {}))
        saved = checkpoint.get("callbacks", {})
        for callback in self.callbacks:
            if callback.state_key in saved:
                callback.load_state_dict(saved[callback.state_key])
            callback.on_load_checkpoint(self._trainer, module, checkpoint)
        if self.datamodule is not None and checkpoint.get("datamodule"):
            self.datamodule.load_state_dict(checkpoint["datamodule"])
        module.on_load_checkpoint(checkpoint)

    def _samples_per_step(self) -> int | None:
        """Samples of the global data order one batch on every rank consumes (None if unknown)."""
        sampler = self.train_loader.sampler if self.train_loader is not None else None
        return sampler.batch_size * self.world_size if sampler is not None else None

    def _convert_position(self, loop: dict[str, Any]) -> int:
        """The epoch position of a checkpoint from another world size, in this run's batches.

        The global data order does not depend on the world size (ranks deal it out round-robin), so a
        position of S consumed samples carries over when S is a whole number of this run's global batches;
        otherwise the epoch restarts.
        """
        consumed = loop.get("samples_in_epoch")
        per_step = self._samples_per_step()
        if consumed is not None and per_step and int(consumed) % per_step == 0:
            return int(consumed) // per_step
        self.print(
            f"resuming with world size {self.world_size} (was {loop.get('world_size')}): epoch restarts"
        )
        return 0

    def _restore_rng(self, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get("rng") or []
        if not states:
            return
        state = states[self.rank] if self.rank < len(states) else states[self.rank % len(states)]
        accelerator_state = restore_rng_state(state)
        assert self.accelerator is not None
        if accelerator_state is not None:
            self.accelerator.set_rng_state(accelerator_state)


__all__ = ["CheckpointConnector"]
