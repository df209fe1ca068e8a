"""The module paths of the flat layout, forwarded to their subpackages for one release.

``import otinverse.ot`` (or ``from otinverse.restore import WPPRestorer``) still works and warns
with a ``DeprecationWarning`` that names the new home. The forwarding module holds no names of
its own: each attribute is looked up, on access, in the modules that now define it.
"""

from __future__ import annotations

import functools
import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings

#: Old module (under ``otinverse``) → its public home, then the private modules that also hold
#: the names it used to define (old code may have imported helpers).
MOVED = {
    "ot": ("solvers", "solvers._sinkhorn", "solvers._exact"),
    "batch": ("solvers", "solvers._batch"),
    "metrics": ("solvers", "solvers._exact"),
    "ground_cost": ("costs", "costs._ground_cost"),
    "transport": ("da", "da._transport"),
    "classify": ("classification", "classification._classify"),
    "mixture": ("classification", "classification._mixture"),
    "operators": ("imaging", "imaging._operators"),
    "restore": ("imaging", "imaging._restore", "datasets"),
    "pls": ("imaging", "imaging._pls"),
    "datasets_imaging": ("datasets", "datasets._imaging"),
    "datasets_stars": ("datasets", "datasets._stars"),
    "datasets_textures": ("datasets", "datasets._textures"),
}

_PACKAGE = __name__.rpartition(".")[0]


class ForwardingModule(types.ModuleType):
    """Stands for a moved module: every attribute comes from the modules that now hold it."""

    def __init__(self, name: str, homes: tuple[str, ...]):
        super().__init__(name)
        self._homes = tuple(f"{_PACKAGE}.{home}" for home in homes)

    def __getattr__(self, attr: str):
        if attr.startswith("__") and attr != "__all__":
            raise AttributeError(attr)
        for home in self._homes:
            module = importlib.import_module(home)
            if hasattr(module, attr):
                return getattr(module, attr)
        raise AttributeError(f"module {self.__name__!r} has no attribute {attr!r}")

    def __dir__(self):
        return sorted(importlib.import_module(self._homes[0]).__all__)


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        package, _, name = fullname.rpartition(".")
        if package != _PACKAGE or name not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec):
        return ForwardingModule(spec.name, MOVED[spec.name.rpartition(".")[2]])

    def exec_module(self, module):
        new = module._homes[0]
        warnings.warn(
            f"{module.__name__} is deprecated and will be removed in the next release; "
            f"import from {new} (or from {_PACKAGE}) instead",
            DeprecationWarning,
            stacklevel=2,
        )


class Package(types.ModuleType):
    """The class of the ``otinverse`` module: importing a moved module path binds it on the
    package, except where a public name has that name (``otinverse.ground_cost`` stays the
    function when ``otinverse.ground_cost`` the old module is imported, also before the function
    was first looked up: the package imports its public names lazily)."""

    def __setattr__(self, name, value):
        if isinstance(value, ForwardingModule) and name in self.__dict__.get("__all__", ()):
            return
        super().__setattr__(name, value)


def install(package: types.ModuleType) -> None:
    """Forwards the old module paths of ``package`` (idempotent)."""
    package.__class__ = Package
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.append(_Finder())


def forwarded(name: str) -> types.ModuleType:
    """The old module ``otinverse.<name>`` (for attribute access on the package)."""
    return importlib.import_module(f"{_PACKAGE}.{name}")


def points_first(old_order: tuple[str, ...], n_positional: int, is_old=None):
    """Accepts, for one release, the weights-first positional order ``old_order`` of a function
    that now takes its ``n_positional`` leading arguments points first and the weights by
    keyword. A call is in the old order when it passes more positional arguments than the new
    signature takes, passes a leading name both positionally and by keyword, or when
    ``is_old(args)`` says so; it is then bound by the old names, with a ``DeprecationWarning``."""

    def decorate(func):
        new_order = func.__code__.co_varnames[:n_positional]

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            old = (
                len(args) > n_positional
                or any(name in kwargs for name in new_order[: len(args)])
                or (is_old is not None and is_old(args))
            )
            if not old:
                return func(*args, **kwargs)
            if len(args) > len(old_order):
                raise TypeError(
                    f"{func.__name__}() takes at most {n_positional} positional arguments"
                )
            old_call = ", ".join(old_order[: len(args)])
            warnings.warn(
                f"{func.__name__}({old_call}, ...) is deprecated: pass the points first and the "
                f"weights by keyword, {func.__name__}({', '.join(new_order)}, a=..., b=...)",
                DeprecationWarning,
                stacklevel=2,
            )
            return func(**dict(zip(old_order, args, strict=False)), **kwargs)

        return wrapper

    return decorate
