"""Simulated crowded tomograms with ground truth (the example data).

Modules: :mod:`.dataset`, :mod:`.imaging`, :mod:`.shapes`.
Every public name below is importable from here; its module is imported on first use.
"""

from ..util.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "ParticleClass": ".shapes",
    "Scene": ".dataset",
    "add_membranes": ".dataset",
    "bilayer": ".shapes",
    "canonical_pose": ".dataset",
    "centre_range": ".dataset",
    "check_options": ".dataset",
    "class_by_name": ".shapes",
    "ctf": ".imaging",
    "cut_subvolumes": ".dataset",
    "electron_wavelength": ".imaging",
    "frequencies": ".imaging",
    "image_volume": ".imaging",
    "jitter_offsets": ".dataset",
    "local_grid": ".shapes",
    "place_particles": ".dataset",
    "principal_frame": ".shapes",
    "random_rotation": ".dataset",
    "random_rotation_pose": ".dataset",
    "render_particle": ".shapes",
    "simulate_dataset": ".dataset",
    "small_rotation": ".dataset",
    "soft_edge": ".shapes",
    "wedge_mask": ".imaging",
})
