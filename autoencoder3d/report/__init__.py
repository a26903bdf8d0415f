"""The cluster report (clus-center/index.html), its parts, the 2D maps of the codes, and the figures.

Modules: :mod:`.compare`, :mod:`.figures`, :mod:`.maps`, :mod:`.page`, :mod:`.parts`.
Every public name below is importable from here; its module is imported on first use.
"""

from ..util.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "RunOutputs": ".page",
    "annotate_card": ".compare",
    "card_badges": ".compare",
    "cluster_name": ".compare",
    "compare_section": ".compare",
    "duplicates_of": ".compare",
    "rln_class": ".compare",
    "selection_data": ".compare",
    "build_report": ".page",
    "card": ".parts",
    "central_slices": ".parts",
    "cluster_colors": ".maps",
    "code_maps": ".maps",
    "contrast_filters": ".parts",
    "data_uri": ".parts",
    "fmt": ".parts",
    "health_banner": ".parts",
    "load_encodings": ".page",
    "loss_html": ".parts",
    "montage": ".figures",
    "montage_name": ".figures",
    "montage_png": ".parts",
    "montage_uint16": ".figures",
    "montage_zoom": ".parts",
    "pca_2d": ".maps",
    "plot_history": ".figures",
    "png_bytes": ".parts",
    "read_run": ".page",
    "save_encodings": ".page",
    "settings_groups": ".parts",
    "settings_html": ".parts",
    "shared_contrast": ".parts",
    "shared_map": ".parts",
    "to_uint8": ".parts",
    "tomogram_counts": ".page",
    "tomograms_line": ".parts",
    "tsne_2d": ".maps",
    "write_montages": ".figures",
    "write_png16": ".figures",
    "write_report": ".page",
})
