"""The layering of README "How it is built", checked on the source: who may import whom, no import
cycles, and the torch-free promise of ``container``/``entropy`` (and the CLI front) in a fresh
interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "vqcodec"

# layer -> the layers its modules may import (besides their own). "base" is errors, _io, _lazy and
# registry; the package front ``vqcodec/__init__.py`` only maps names lazily and is not a layer.
ALLOWED = {
    "base": set(),
    "quantize": {"base"},
    "entropy": {"base"},
    "container": {"base"},
    "models": {"base", "quantize", "entropy"},
    "codec": {"base", "quantize", "models", "entropy", "container"},
    "train": {"base", "quantize", "models", "entropy"},
    "pillow": {"base", "codec", "container"},
    "cli": {"base", "quantize", "models", "entropy", "container", "codec", "train"},
}
# no module imports outside its layer's allowance (the video recipe's former exception is gone:
# the payload-1 coder is models.video_latent and training clips are read by train.data)
EXCEPTIONS: dict[str, set[str]] = {}
BASE = {"errors", "_io", "_lazy", "registry"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "front"
    top = parts[1]
    if top in BASE:
        return "base"
    if top == "__main__":
        return "cli"
    return top


def imports(tree: ast.Module, *, top_level_only: bool) -> set[str]:
    """vqcodec modules a module imports; top-level only: those run at import time (not inside
    functions or ``if TYPE_CHECKING:``), which are the ones that can form a cycle."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if top_level_only and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if top_level_only and isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                visit_list(child.orelse)
                continue
            if (
                isinstance(child, ast.ImportFrom)
                and child.level == 0
                and (child.module or "").startswith("vqcodec")
            ):
                found.add(child.module or "")
            elif isinstance(child, ast.Import):
                found.update(a.name for a in child.names if a.name.startswith("vqcodec"))
            visit(child)

    def visit_list(nodes: list[ast.stmt]) -> None:
        for n in nodes:
            visit(ast.Module(body=[n], type_ignores=[]))

    visit(tree)
    return found


def source_trees() -> dict[str, ast.Module]:
    return {module_name(p): ast.parse(p.read_text(), str(p)) for p in sorted(PACKAGE.rglob("*.py"))}


def test_no_module_imports_a_layer_it_must_not():
    wrong = []
    for module, tree in source_trees().items():
        layer = layer_of(module)
        if layer == "front":
            continue
        for target in imports(tree, top_level_only=False):
            target_layer = layer_of(target)
            if target_layer == layer or (target == "vqcodec" and layer == "cli"):  # cli: __version__
                continue
            if target_layer not in ALLOWED[layer] and target not in EXCEPTIONS.get(module, set()):
                wrong.append(f"{module} ({layer}) imports {target} ({target_layer})")
    assert not wrong, "\n".join(wrong)


def find_cycles(graph: dict[str, set[str]]) -> list[str]:
    """Every back edge of a depth-first walk, as 'a -> b -> a'."""
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt) :] + [nxt]))
            elif nxt not in state:
                walk(nxt)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            walk(module)
    return cycles


def test_no_import_cycles():
    trees = source_trees()
    known = set(trees)
    graph: dict[str, set[str]] = defaultdict(set)
    for module, tree in trees.items():
        for target in imports(tree, top_level_only=True):
            # ``from vqcodec.x import name`` may name a submodule or an attribute: resolve to a module
            while target not in known and "." in target:
                target = target.rsplit(".", 1)[0]
            if target != module and target in known:
                graph[module].add(target)
    # a package's __init__ importing its own submodules is how Python packages work; a cycle
    # is a module that, through others, imports itself
    for module in list(graph):
        graph[module] = {t for t in graph[module] if not module.startswith(t + ".")}
    cycles = find_cycles(graph)
    assert not cycles, "\n".join(cycles)


TORCH_FREE = [
    "vqcodec",
    "vqcodec.errors",
    "vqcodec.registry",
    "vqcodec.container",
    "vqcodec.container.salvage",
    "vqcodec.entropy",
    "vqcodec.entropy.priors",
    "vqcodec.entropy.coefficients",
    "vqcodec.entropy.motion",
    "vqcodec.entropy.fit",
    "vqcodec.models.catalog",
    "vqcodec.models.zoo",
    "vqcodec.cli",
]


def test_torch_free_modules_import_no_torch_in_a_fresh_interpreter():
    # one interpreter per module would cost a second each; importing them one after another and
    # checking after each import names the first one that pulls torch in
    code = (
        "import importlib, sys\n"
        f"for name in {TORCH_FREE!r}:\n"
        "    importlib.import_module(name)\n"
        "    assert 'torch' not in sys.modules, name + ' imported torch'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_walker_tells_runtime_from_lazy_and_guarded_imports():
    tree = ast.parse(
        "import os\nfrom vqcodec.codec import image\ndef f():\n    from vqcodec.cli import main\n"
    )
    assert imports(tree, top_level_only=True) == {"vqcodec.codec"}
    assert imports(tree, top_level_only=False) == {"vqcodec.codec", "vqcodec.cli"}
    assert "codec" not in ALLOWED["entropy"] and layer_of("vqcodec.codec.image") == "codec"
    guarded = ast.parse(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from vqcodec.train import x\n"
    )
    assert imports(guarded, top_level_only=True) == set()
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a -> b -> c -> a"]
    assert find_cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []
