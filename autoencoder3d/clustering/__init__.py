"""k-means of the codes, and scoring a clustering against ground truth.

Modules: :mod:`.evaluate`, :mod:`.kmeans`.
Every public name below is importable from here; its module is imported on first use.
"""

from ..util.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "Clustering": ".kmeans",
    "baseline_clusters": ".evaluate",
    "cluster_encodings": ".kmeans",
    "contingency": ".evaluate",
    "evaluate_clustering": ".evaluate",
    "find_clustering": ".evaluate",
    "format_report": ".evaluate",
    "kmeans_method": ".kmeans",
    "make_kmeans": ".kmeans",
    "load_clustering": ".evaluate",
    "load_truth": ".evaluate",
    "plot_contingency": ".evaluate",
    "purity": ".evaluate",
    "scores": ".evaluate",
    "true_classes": ".evaluate",
    "write_cluster_pickles": ".kmeans",
    "write_contingency_csv": ".evaluate",
})
