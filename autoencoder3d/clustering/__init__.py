"""k-means of the codes, and scoring a clustering against ground truth.

Modules: :mod:`.baseline`, :mod:`.duplicates`, :mod:`.evaluate`, :mod:`.flip_kmeans`,
:mod:`.kmeans`, :mod:`.merge`.
Every public name below is importable from here; its module is imported on first use.
"""

from ..util.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "Clustering": ".kmeans",
    "FlipClustering": ".flip_kmeans",
    "ari": ".baseline",
    "baseline_clusters": ".evaluate",
    "check_flip_mode": ".flip_kmeans",
    "check_merge": ".merge",
    "cluster_encodings": ".kmeans",
    "cluster_flipped_encodings": ".flip_kmeans",
    "clustered_features": ".flip_kmeans",
    "compare_partitions": ".baseline",
    "contingency": ".evaluate",
    "contingency_table": ".baseline",
    "correlations": ".duplicates",
    "duplicates_record": ".duplicates",
    "evaluate_clustering": ".evaluate",
    "find_clustering": ".evaluate",
    "find_duplicates": ".duplicates",
    "flip_aware_kmeans": ".flip_kmeans",
    "flips_record": ".flip_kmeans",
    "format_report": ".evaluate",
    "kmeans_labels": ".baseline",
    "kmeans_method": ".kmeans",
    "labels_under": ".baseline",
    "load_clustering": ".evaluate",
    "load_truth": ".evaluate",
    "make_kmeans": ".kmeans",
    "merge_clusters": ".merge",
    "merge_record": ".merge",
    "parse_merge": ".merge",
    "pca_features": ".baseline",
    "plot_contingency": ".evaluate",
    "purity": ".evaluate",
    "rotate": ".duplicates",
    "rotation_name": ".duplicates",
    "rotations": ".duplicates",
    "run_baseline": ".baseline",
    "scores": ".evaluate",
    "stability": ".baseline",
    "too_many_codes": ".kmeans",
    "true_classes": ".evaluate",
    "unflipped_rows": ".flip_kmeans",
    "write_cluster_pickles": ".kmeans",
    "write_contingency_csv": ".evaluate",
})
