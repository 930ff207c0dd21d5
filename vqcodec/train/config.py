"""Recipe configs: TOML (or JSON) files with ``--set key=value`` overrides.

A recipe config has::

    [recipe]
    builder = "package.module:function"   # function(config: dict) -> (TrainingModule, data)
    export = "package.module:function"    # optional; default: ``export`` in the builder's module, if any

    [trainer]                              # Trainer keyword arguments (strategy, precision, max_steps, ...)
    strategy_options = { find_unused_parameters = true }   # optional, for the strategy's constructor

    [callbacks.ema]                        # optional: callbacks by name (see vqcodec.train.callbacks)
    decay = 0.999

plus whatever tables the builder reads (model, data, optim, export, ...). ``data`` returned by the
builder is a DataModule, a (train_loader, val_loader) pair, or a train loader.

Overrides: ``--set trainer.max_steps=100 --set data.batch_size=8 --set model.channels=[32,64]``; the
value is read as a TOML value (numbers, booleans, arrays, inline tables, quoted strings), and anything
that does not parse as one is taken as a bare string (``--set trainer.precision=bf16-mixed``).
"""

from __future__ import annotations

import copy
import importlib
import json
import os
import tomllib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any


def parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def apply_override(config: dict[str, Any], assignment: str) -> None:
    """Apply one ``dotted.key=value`` in place (tables are created as needed)."""
    key, sep, text = assignment.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"override must look like key=value, got {assignment!r}")
    parts = key.split(".")
    if any(not p for p in parts):
        raise ValueError(f"bad key in override {assignment!r}")
    node = config
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ValueError(f"override {key!r}: {part!r} is a value, not a table")
        node = child
    node[parts[-1]] = parse_value(text.strip())


def load_config(path: str | os.PathLike[str], overrides: Iterable[str] = ()) -> dict[str, Any]:
    """Read a .toml or .json recipe config and apply ``key=value`` overrides."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config not found: {path}")
    raw = path.read_bytes()
    try:
        if path.suffix.lower() == ".json":
            config = json.loads(raw)
        else:
            config = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path.name}: not a valid config: {exc}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path.name}: the config must be a table/object at the top level")
    config = copy.deepcopy(config)
    for assignment in overrides:
        apply_override(config, assignment)
    return config


def resolve_object(spec: str) -> Any:
    """``"package.module:attribute"`` -> the object."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"expected 'package.module:function', got {spec!r}")
    module = importlib.import_module(module_name)
    obj: Any = module
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{module_name} has no attribute {attribute!r}")
        obj = getattr(obj, part)
    return obj


def recipe_builder(config: dict[str, Any]) -> Callable[[dict[str, Any]], Any]:
    recipe = config.get("recipe")
    if not isinstance(recipe, dict) or "builder" not in recipe:
        raise ValueError("the config needs [recipe] builder = 'package.module:function'")
    builder = resolve_object(str(recipe["builder"]))
    if not callable(builder):
        raise ValueError(f"recipe builder {recipe['builder']!r} is not callable")
    return builder


def recipe_export_hook(config: dict[str, Any]) -> Callable[..., Any] | None:
    """``[recipe] export`` if set (``false`` disables it), else the builder module's ``export``."""
    recipe = config.get("recipe", {})
    spec = recipe.get("export")
    if spec is False:
        return None
    if spec:
        return resolve_object(str(spec))
    module_name = str(recipe["builder"]).partition(":")[0]
    hook = getattr(importlib.import_module(module_name), "export", None)
    return hook if callable(hook) else None


__all__ = [
    "apply_override",
    "load_config",
    "parse_value",
    "recipe_builder",
    "recipe_export_hook",
    "resolve_object",
]
