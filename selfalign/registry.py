"""A named registry with did-you-mean errors, used for stages, parsers and model providers."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from selfalign.errors import ConfigError

T = TypeVar("T")


def did_you_mean(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


class Registry(Generic[T]):
    """Maps short names to objects; lookups of unknown names list what exists. `lazy` maps
    names to the module that registers them, imported on the first lookup, so a command that
    needs one stage does not import every stage's dependencies (`items()` imports them all)."""

    def __init__(self, what: str, lazy: dict[str, str] | None = None) -> None:
        self.what = what
        self._items: dict[str, T] = {}
        self._lazy = dict(lazy or {})

    def _names(self) -> list[str]:
        return sorted({*self._items, *self._lazy})

    def _load(self, name: str) -> None:
        if name not in self._items and name in self._lazy:
            module = self._lazy[name]
            importlib.import_module(module)
            if name not in self._items:  # the table and the module disagree: our bug
                raise RuntimeError(f"{module} does not register the {self.what} '{name}'")

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.what} '{name}' is registered twice")
            self._items[name] = obj
            return obj

        return deco

    def add(self, name: str, obj: T) -> None:
        self.register(name)(obj)

    def get(self, name: str, where: str = "") -> T:
        self._load(name)
        if name not in self._items:
            at = f"{where}: " if where else ""
            names = self._names()
            raise ConfigError(
                f"{at}unknown {self.what} '{name}'.{did_you_mean(name, names)} Available: {', '.join(names)}."
            )
        return self._items[name]

    def __contains__(self, name: object) -> bool:
        return name in self._items or name in self._lazy

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def items(self) -> list[tuple[str, T]]:
        for name in self._lazy:
            self._load(name)
        return sorted(self._items.items())
