"""k-means of the codes, and scoring a clustering against ground truth.

Modules: :mod:`.baseline`, :mod:`.duplicates`, :mod:`.evaluate`, :mod:`.kmeans`, :mod:`.merge`.
Every public name below is importable from here; its module is imported on first use.
"""

from ..util.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "Clustering": ".kmeans",
    "ari": ".baseline",
    "check_merge": ".merge",
    "compare_partitions": ".baseline",
    "contingency_table": ".baseline",
    "correlations": ".duplicates",
    "duplicates_record": ".duplicates",
    "find_duplicates": ".duplicates",
    "kmeans_labels": ".baseline",
    "merge_clusters": ".merge",
    "merge_record": ".merge",
    "parse_merge": ".merge",
    "pca_features": ".baseline",
    "rotate": ".duplicates",
    "rotation_name": ".duplicates",
    "rotations": ".duplicates",
    "run_baseline": ".baseline",
    "stability": ".baseline",
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
