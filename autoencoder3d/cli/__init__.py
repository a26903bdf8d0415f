"""Command-line interface: a thin layer over the package's functions, one module per subcommand (:mod:`.commands`)."""

from ..util.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {"main": ".main", "edss3d_main": ".main"})
