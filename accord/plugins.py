"""User components named ``package.module:Name`` in the config (tasks, algorithms, credit, encoders).

One import rule for all of them, so every kind of component fails the same way: one line naming
what was asked for and why it cannot be used. Registries hold the built-in names and resolve any
name with a ``:`` through :func:`load_object` on lookup.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from accord.errors import ConfigError

V = TypeVar("V")


def is_plugin(name: str) -> bool:
    """Names with a ``:`` point at user code; the others are built-in registry keys."""
    return ":" in name


def load_object(spec: str, what: str, accept: Callable[[Any], bool] | None = None, expected: str = "") -> Any:
    """Import ``package.module:Name`` (``Name`` may be dotted, or a submodule); raise one-line ConfigErrors.

    ``accept`` checks the object's kind; when it refuses, the error says ``expected``.
    """
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"{what} '{spec}' must look like 'package.module:Name'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"cannot import '{spec}' ({e})") from None
    for i, part in enumerate(attr.split(".")):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            submodule = ".".join([module_name, *attr.split(".")[: i + 1]])
            try:  # `pkg:sub` where pkg does not import sub itself
                obj = importlib.import_module(submodule)
            except ImportError:
                raise ConfigError(f"cannot import '{spec}' (module '{module_name}' has no "
                                  f"attribute '{attr}')") from None
    if accept is not None and not accept(obj):
        raise ConfigError(f"{what} '{spec}' is {_kind(obj)}; expected {expected}")
    return obj


def _kind(obj: Any) -> str:
    if isinstance(obj, type):
        return f"the class {obj.__name__}"
    if inspect.isfunction(obj) or inspect.ismodule(obj):
        return f"the {type(obj).__name__} {obj.__name__}"
    return f"{type(obj).__name__} {obj!r:.40}"


class Registry(dict[str, V], Generic[V]):
    """Built-in components by name; ``registry[name]`` also imports ``package.module:Name`` plugins.

    Plugins are not stored, so iterating lists only the built-ins (what ``accord tasks`` shows).
    """

    def __init__(self, what: str, builtins: Mapping[str, V], load: Callable[[str], V]) -> None:
        super().__init__(builtins)
        self.what, self._load = what, load

    def resolve(self, name: str) -> V:
        """The component called ``name``, or a ConfigError naming the allowed built-ins."""
        if name in self:
            return dict.__getitem__(self, name)
        if is_plugin(name):
            return self._load(name)
        raise ConfigError(f"unknown {self.what} '{name}'; allowed: {', '.join(self)}, "
                          "or 'package.module:Name'")

    def __missing__(self, name: str) -> V:
        if not is_plugin(name):
            raise KeyError(name)
        return self._load(name)
