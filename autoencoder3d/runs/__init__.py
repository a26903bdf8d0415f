"""A run folder: its layout and files (RunFolder), the fingerprint of a model's inputs, the decisions a rerun must keep, earlier clusterings.

Modules: :mod:`.decisions`, :mod:`.fingerprint`, :mod:`.folder`, :mod:`.options`, :mod:`.previous`.
Every public name below is importable from here; its module is imported on first use.
"""

from ..util.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "RunFolder": ".folder",
    "TrainOptions": ".options",
    "data_digest": ".fingerprint",
    "decide_preparation": ".decisions",
    "differences": ".fingerprint",
    "file_digest": ".fingerprint",
    "fingerprint": ".fingerprint",
    "keep_or_move": ".previous",
    "members_of": ".folder",
    "only_length_differs": ".decisions",
    "other_outputs": ".previous",
    "parse_clusters": ".folder",
    "recorded_model_options": ".decisions",
    "refuse_if_different": ".fingerprint",
    "remove_leftovers": ".folder",
    "same_clustering": ".previous",
    "written_files": ".folder",
})
