"""``vqcodec train CONFIG [--set key=value ...]``: run a training recipe, then its export hook.

The config format is described in ``vqcodec.train.config``. Under ``torchrun`` every process runs this
command (``torchrun --nproc-per-node 2 -m vqcodec train CONFIG --set trainer.strategy=ddp``); rank 0
writes logs, checkpoints and the exported bundle. ``--resume`` continues the newest run
under ``<default_root_dir>`` (``ckpt_path="last"``: ``version_<n>/checkpoints/last.ckpt``) when one exists.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from typing import Any

from vqcodec.cli._batch import add_threads_option, check_counts, configure_threads


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a codec from a recipe config",
        description="Train a codec from a TOML/JSON recipe config, then run the recipe's export hook.",
    )
    p.add_argument("config", help="recipe config (.toml or .json)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set trainer.max_steps=100 (repeatable)",
    )
    group = p.add_mutually_exclusive_group()
    group.add_argument("--ckpt-path", help="resume from this checkpoint")
    group.add_argument("--resume", action="store_true", help="resume the newest run's last.ckpt under <root>")
    p.add_argument("--no-export", action="store_true", help="skip the recipe's export hook after training")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")
    # -q is a quality level in every other command, so quiet has no short option here either
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--json", action="store_true", help="print a JSON summary at the end")
    add_threads_option(p, per="process")
    p.set_defaults(func=run)


def build_callbacks(config: dict[str, Any]) -> list[Any]:
    from vqcodec.train.callbacks import make_callback

    table = config.get("callbacks", {})
    if not isinstance(table, dict):
        raise ValueError("[callbacks] must be a table of callback-name tables")
    callbacks = []
    for name, options in table.items():
        if options is False:
            continue
        callbacks.append(make_callback(name, **(options if isinstance(options, dict) else {})))
    return callbacks


def run(args: argparse.Namespace) -> int:
    check_counts(args)  # before torch is imported
    import torch.distributed as dist

    from vqcodec.train import EMA, Trainer, seed_everything
    from vqcodec.train.config import load_config, resolve_recipe
    from vqcodec.train.launch import exit_now, shutdown_distributed

    # one thread per process by default: on a busy 2-core machine torch's default of one thread
    # per core made training 8.5x slower (benchmarks/cli_speed.py, README "Threads")
    configure_threads(args.threads)
    config = load_config(args.config, args.overrides)
    if args.print_config:
        print(json.dumps(config, indent=2, default=str))
        return 0
    trainer_options = dict(config.get("trainer", {}))
    known = set(inspect.signature(Trainer).parameters) - {"callbacks"}
    unknown = sorted(set(trainer_options) - known)
    if unknown:
        raise ValueError(
            f"unknown [trainer] option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    build_callbacks(config)  # fail on a bad [callbacks] table before the (possibly slow) builder runs
    seed = trainer_options.get("seed")
    if seed is not None:
        seed_everything(int(seed))  # before the builder, so weight initialisation is reproducible
    recipe = resolve_recipe(config)
    export_hook = None if args.no_export else recipe.export
    built = recipe.build(config)
    if not isinstance(built, tuple) or len(built) != 2:
        raise ValueError("the recipe builder must return (module, data)")
    module, data = built
    if getattr(module, "hparams", None) is None:
        module.hparams = {"config": config}  # into hparams.json and every checkpoint
    callbacks = build_callbacks(config)
    if args.quiet:
        trainer_options["enable_progress_bar"] = False

    trainer = Trainer(**trainer_options, callbacks=callbacks)
    ckpt_path = args.ckpt_path
    if args.resume:
        ckpt_path = "last"  # the trainer finds the newest run's last.ckpt (and says when there is none)
    trainer.fit(module, data, ckpt_path=ckpt_path)

    summary: dict[str, Any] = {
        "global_step": trainer.global_step,
        "epoch": trainer.current_epoch,
        "metrics": {k: v for k, v in sorted(trainer.callback_metrics.items())},
    }
    checkpoint = trainer.checkpoint_callback
    if checkpoint is not None:
        summary["last_checkpoint"] = checkpoint.last_model_path
        summary["best_checkpoint"] = checkpoint.best_model_path
    if export_hook is not None:
        full = trainer.full_module()  # collective under FSDP
        ema = next((c for c in trainer.callbacks if isinstance(c, EMA)), None)
        if ema is not None and config.get("export", {}).get("use_ema", True):
            ema.copy_to(full)
        if trainer.is_global_zero:
            full.eval()
            exported = export_hook(full, config, trainer)
            summary["export"] = str(exported) if exported is not None else None
        trainer.strategy.barrier()
    shut_down = dist.is_available() and dist.is_initialized() and trainer.strategy.created_process_group
    if shut_down:
        shutdown_distributed()
    if trainer.is_global_zero:
        if args.json:
            print(json.dumps(summary, indent=2))
        elif not args.quiet:
            shown = " ".join(f"{k}={v:.4g}" for k, v in summary["metrics"].items() if k.startswith("val"))
            print(f"trained {summary['global_step']} steps {shown}".rstrip(), file=sys.stderr)
            if summary.get("export"):
                print(f"exported {summary['export']}", file=sys.stderr)
    if shut_down:
        exit_now(0)  # a succeeded torchrun job must not abort in gloo's teardown at interpreter exit
    return 0
