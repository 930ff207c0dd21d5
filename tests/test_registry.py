"""vqcodec.registry: the one name -> object table every layer uses."""

import subprocess
import sys

import pytest

from vqcodec.errors import UnknownModelError, UnknownNameError
from vqcodec.registry import Registry


def test_register_explicit_and_decorator():
    things: Registry[object] = Registry("thing")
    marker = object()
    assert things.register("a", marker) is marker

    @things.register("b")
    def make_b():
        return "b"

    assert things.get("a") is marker
    assert things["b"] is make_b and make_b() == "b"
    assert "a" in things and "c" not in things and [] not in things
    assert things.names() == ["a", "b"] and sorted(things) == ["a", "b"] and len(things) == 2
    assert dict(things.items()) == {"a": marker, "b": make_b} and list(things.values()) == [marker, make_b]


def test_unknown_name_lists_the_known_ones():
    things: Registry[int] = Registry("strategy")
    things.register("single", 1)
    things.register("ddp", 2)
    with pytest.raises(UnknownNameError, match=r"^unknown strategy 'dpp'; known: ddp, single$"):
        things.get("dpp")
    # a failed lookup and a bad config value: both usual handlers catch it
    with pytest.raises(KeyError):
        things["x"]
    with pytest.raises(ValueError):
        things.get(["unhashable"])  # type: ignore[arg-type]
    assert str(UnknownNameError("plain message")) == "plain message"


def test_custom_error_class_and_empty_registry():
    models: Registry[int] = Registry("model", error=UnknownModelError)
    with pytest.raises(UnknownModelError, match=r"unknown model 'x'; known: \(none\)"):
        models.get("x")


def test_duplicates_are_refused_unless_replaced():
    things: Registry[object] = Registry("thing")
    first, second = object(), object()
    things.register("a", first)
    things.register("a", first)  # same object again: harmless
    with pytest.raises(ValueError, match="'a' is already registered"):
        things.register("a", second)
    things.register("a", second, replace=True)
    assert things.get("a") is second
    assert things.unregister("a") is second and "a" not in things
    with pytest.raises(ValueError, match="non-empty string"):
        things.register("", first)


def test_registry_imports_no_torch():
    code = "import sys, vqcodec.registry; assert 'torch' not in sys.modules and 'numpy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
