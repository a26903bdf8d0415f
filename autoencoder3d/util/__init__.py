"""Helpers every stage uses: atomic writes, the folder lock, progress bars, CPU kernels, lazy names.

Modules: :mod:`.atomic`, :mod:`.cpu_kernels`, :mod:`.lazy`, :mod:`.lock`, :mod:`.progress`.
Every public name below is importable from here; its module is imported on first use.
"""

from .lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "RunFolderLock": ".lock",
    "atomic_directory": ".atomic",
    "atomic_open": ".atomic",
    "atomic_path": ".atomic",
    "cpu_features": ".cpu_kernels",
    "is_disk_full": ".atomic",
    "is_leftover": ".atomic",
    "is_temporary_folder": ".atomic",
    "kernel_record": ".cpu_kernels",
    "lazy_exports": ".lazy",
    "locked_if": ".lock",
    "onednn_active": ".cpu_kernels",
    "original_name": ".atomic",
    "prefer_onednn": ".cpu_kernels",
    "progress_bar": ".progress",
    "remove_empty_folders": ".lock",
    "stderr_is_terminal": ".progress",
    "temporary_folder": ".atomic",
    "warn_if_slow": ".cpu_kernels",
})
