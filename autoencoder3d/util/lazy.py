"""Lazy public names of a subpackage (PEP 562): ``from autoencoder3d.network import encode`` imports Keras only then."""

from __future__ import annotations

import importlib
from collections.abc import Callable


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]], list[str]]:
    """``(__getattr__, __dir__, __all__)`` for ``package`` whose public names live in its modules.

    Args:
        package: the subpackage's ``__name__``.
        exports: public name -> the module (relative to ``package``, e.g. ``".train"``) that defines it.
    """

    def __getattr__(name: str) -> object:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name], package), name)

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__, sorted(exports)
