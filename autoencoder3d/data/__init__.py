"""DATA, opened: a published subvolume pickle or an on-disk data-set store of many tomograms (built from tables, RELION, copick).

Modules: :mod:`.open`.
Every public name below is importable from here; its module is imported on first use.
"""

from ..util.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "cropped_to_box": ".open",
    "data_polarity": ".open",
    "open_data": ".open",
    "store_polarity": ".open",
})
