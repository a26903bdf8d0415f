"""Whole jobs: 'autoencoder3d train' and 'cluster' from DATA to a finished run folder.

Modules: :mod:`.obtain_models`, :mod:`.train`.
Every public name below is importable from here; its module is imported on first use.
"""

from ..util.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "cluster_and_write": ".train",
    "code_settings": ".obtain_models",
    "obtain_models": ".obtain_models",
    "prepare_subvolumes": ".train",
    "run_pose": ".train",
    "run_train": ".train",
})
