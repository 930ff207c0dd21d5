"""One registry helper: name -> object (a class, a factory, a hook), for every layer.

Imports nothing heavy (no torch, no numpy), so torch-free layers and package fronts may use it.
Every name-keyed table in the package (quantizer types, model kinds, strategies, accelerators,
callbacks, loggers, recipes, export hooks) is a ``Registry``; an unknown name is one error that
lists the known ones::

    STRATEGIES: Registry[type[Strategy]] = Registry("strategy")

    @STRATEGIES.register("ddp")
    class DDPStrategy(Strategy): ...

    STRATEGIES.register("single", SingleDeviceStrategy)   # explicit form
    STRATEGIES.get("ddp")        # -> DDPStrategy
    STRATEGIES.get("dpp")        # UnknownNameError: unknown strategy 'dpp'; known: ddp, single

``name in registry``, ``sorted(registry)``, ``len(registry)`` and ``registry[name]`` work as on a
dict; unlike a dict, ``get`` never returns a default: a typo is always an error.
"""

from __future__ import annotations

from collections.abc import Callable, ItemsView, Iterator, ValuesView
from typing import Generic, TypeVar, overload

from vqcodec.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Names -> objects of one kind; ``kind`` names the kind in error messages ("strategy").

    ``error`` is the exception class an unknown name raises (default ``UnknownNameError``, both a
    ``KeyError`` and a ``ValueError``); it is called with the one-line message, so e.g.
    ``UnknownModelError`` fits.
    """

    def __init__(self, kind: str, *, error: type[Exception] = UnknownNameError):
        self.kind = kind
        self._error = error
        self._entries: dict[str, T] = {}

    @overload
    def register(self, name: str) -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, obj: T, *, replace: bool = False) -> T: ...

    def register(self, name: str, obj: T | None = None, *, replace: bool = False) -> T | Callable[[T], T]:
        """Add ``obj`` under ``name`` and return it; without ``obj``, a decorator that does so.

        A second, different object under a taken name raises ``ValueError`` unless ``replace=True``
        (registering the same object again is a no-op, so re-imports are harmless).
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} name must be a non-empty string, got {name!r}")
        if obj is None:

            def decorator(target: T) -> T:
                return self._add(name, target, replace)

            return decorator
        return self._add(name, obj, replace)

    def _add(self, name: str, obj: T, replace: bool) -> T:
        current = self._entries.get(name)
        if current is not None and current is not obj and not replace:
            raise ValueError(f"{self.kind} {name!r} is already registered (to {current!r})")
        self._entries[name] = obj
        return obj

    def unregister(self, name: str) -> T:
        """Remove ``name`` and return what it held (for tests that register a temporary entry)."""
        obj = self.get(name)
        del self._entries[name]
        return obj

    def get(self, name: str) -> T:
        """The object registered as ``name``; an unknown name raises, listing the known names."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):  # TypeError: an unhashable "name" from a config file
            raise self._error(self.unknown_message(name)) from None

    def unknown_message(self, name: object) -> str:
        known = ", ".join(sorted(self._entries)) or "(none)"
        return f"unknown {self.kind} {name!r}; known: {known}"

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def items(self) -> ItemsView[str, T]:
        return self._entries.items()

    def values(self) -> ValuesView[T]:
        return self._entries.values()

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        try:
            return name in self._entries
        except TypeError:
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, names={self.names()})"


__all__ = ["Registry", "UnknownNameError"]
