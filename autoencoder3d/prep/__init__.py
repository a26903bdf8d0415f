"""Preparing subvolumes: contrast polarity, particle picking (Difference of Gaussian), pose normalization.

Modules: :mod:`.contrast`, :mod:`.flips`, :mod:`.pick`, :mod:`.pick_preview`, :mod:`.pose`.
Every public name below is importable from here; its module is imported on first use.
"""

from ..util.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "FlippedVolumes": ".flips",
    "PickPreview": ".pick_preview",
    "Picks": ".pick",
    "apply_flip": ".flips",
    "box_fits": ".pick",
    "canonical_flips": ".flips",
    "center_voxels": ".pick",
    "choose_slabs": ".pick_preview",
    "decide_polarity": ".contrast",
    "detect_polarity": ".contrast",
    "dog_pick": ".pick",
    "extract_boxes": ".pick",
    "flip_each": ".flips",
    "flip_matrix": ".flips",
    "flipped_copies": ".flips",
    "flipped_views": ".flips",
    "inverted_mass": ".pose",
    "make_uuids": ".pick",
    "normalize_one": ".pose",
    "parse_sigma": ".pick",
    "polarity_of_skew": ".contrast",
    "polarity_sign": ".contrast",
    "pose_normalize": ".pose",
    "principal_axes": ".pose",
    "recorded_polarity": ".contrast",
    "remove_redundant": ".pick",
    "resolve_polarity": ".contrast",
    "sigma_in_voxels": ".pick",
    "skewness": ".contrast",
    "smoothed_box": ".pose",
    "tomogram_mean": ".pose",
    "voxel_sample": ".contrast",
    "write_pick_preview": ".pick_preview",
    "write_pick_tables": ".pick",
})
