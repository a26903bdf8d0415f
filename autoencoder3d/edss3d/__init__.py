"""EDSS3D: labels from chosen clusters, the segmentation network, its training and prediction jobs, whole-tomogram segmentation.

Modules: :mod:`.jobs`, :mod:`.labels`, :mod:`.network`, :mod:`.patches`, :mod:`.tomogram`.
Every public name below is importable from here; its module is imported on first use.
"""

from ..util.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "DensenessHistogram": ".labels",
    "LazyDecoded": ".patches",
    "RowsOf": ".patches",
    "VoxelWeights": ".labels",
    "auto_iso": ".labels",
    "blend_window": ".tomogram",
    "box_starts": ".tomogram",
    "build_segmenter": ".network",
    "build_targets": ".labels",
    "check_labelled_voxels": ".labels",
    "check_model_box": ".network",
    "check_selection": ".labels",
    "choose_patches": ".patches",
    "class_weights": ".labels",
    "class_weights_from_counts": ".labels",
    "denseness": ".labels",
    "iter_segment": ".tomogram",
    "keep_max": ".network",
    "keras_predictor": ".tomogram",
    "label_scale": ".labels",
    "label_subvolumes": ".labels",
    "load_segmenter": ".network",
    "load_selection": ".labels",
    "one_hot": ".labels",
    "otsu_threshold": ".labels",
    "parse_iso": ".labels",
    "parse_select": ".labels",
    "patches_from_store": ".patches",
    "patches_in_memory": ".patches",
    "predict_probabilities": ".network",
    "probability_path": ".tomogram",
    "published_run": ".labels",
    "read_slab": ".tomogram",
    "remove_targets": ".patches",
    "run_seg_predict": ".jobs",
    "run_seg_train": ".jobs",
    "sample_background": ".labels",
    "segment_array": ".tomogram",
    "segment_tomogram": ".tomogram",
    "segmenter_box": ".network",
    "segmenter_classes": ".network",
    "store_targets": ".patches",
    "train_segmenter": ".network",
})
