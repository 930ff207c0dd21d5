"""Recipe configs: TOML (or JSON) files with ``--set key=value`` overrides.

A recipe config has::

    [recipe]
    name = "image"                         # a registered recipe (RECIPES: image, image_sq, video), or
    # builder = "package.module:function"  # function(config: dict) -> (TrainingModule, data)
    # export = "package.module:function"   # function(module, config, trainer) -> path (ExportHook)

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
import dataclasses
import importlib
import json
import os
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from vqcodec.registry import Registry


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


class ExportHook(Protocol):
    """What a recipe runs after training (rank 0): write the trained model somewhere, return the path.

    ``module`` is the full (unsharded) TrainingModule in eval mode, with EMA weights copied in when the
    run had an EMA callback; ``config`` the resolved recipe config; ``trainer`` the Trainer that fitted it.
    """

    def __call__(self, module: Any, config: dict[str, Any], trainer: Any) -> Any: ...


@dataclass(frozen=True)
class Recipe:
    """A training recipe: ``build(config) -> (TrainingModule, data)`` and an optional export hook."""

    build: Callable[[dict[str, Any]], Any]
    export: ExportHook | None = None


# recipe name -> Recipe; the bundled codecs' recipes register in vqcodec/train/recipes/
RECIPES: Registry[Recipe] = Registry("recipe")
BUNDLED_RECIPES_MODULE = "vqcodec.train.recipes"


def resolve_recipe(config: dict[str, Any]) -> Recipe:
    """The Recipe a config's ``[recipe]`` table names.

    ``name = "image"``: a registered recipe (``RECIPES``; the bundled ones register on import of
    ``vqcodec.train.recipes``). ``builder = "package.module:function"`` (and optionally
    ``export = "package.module:function"``): a recipe outside the package. In both, ``export = false``
    disables the export hook.
    """
    table = config.get("recipe")
    if not isinstance(table, dict) or not ("name" in table or "builder" in table):
        raise ValueError(
            "the config needs [recipe] name = '<registered recipe>' or builder = 'package.module:function'"
        )
    if "name" in table:
        importlib.import_module(BUNDLED_RECIPES_MODULE)  # registers the bundled recipes
        recipe = RECIPES.get(str(table["name"]))
        export = recipe.export
        if table.get("export") not in (None, False):
            raise ValueError("[recipe] name comes with its export hook; set export = false to disable it")
    else:
        build = resolve_object(str(table["builder"]))
        if not callable(build):
            raise ValueError(f"recipe builder {table['builder']!r} is not callable")
        recipe = Recipe(build)
        export = resolve_object(str(table["export"])) if table.get("export") else None
        if export is not None and not callable(export):
            raise ValueError(f"recipe export hook {table['export']!r} is not callable")
    if table.get("export") is False:
        export = None
    return dataclasses.replace(recipe, export=export)


__all__ = [
    "BUNDLED_RECIPES_MODULE",
    "RECIPES",
    "ExportHook",
    "Recipe",
    "apply_override",
    "load_config",
    "parse_value",
    "resolve_recipe",
    "resolve_object",
]
