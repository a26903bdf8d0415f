"""Clustering that does not split a structure by pose normalization's sign flips, against plain clustering, in one run.

Used by ``scripts/bench_science.py --flips``. The data sets are those of
``--objectives`` (scripts/science_candidates.py): a held-out simulation with
ground truth and the real microtubule crops with proxy labels, both
pose-normalized. For each data set and seed it measures:

- ``PCA pose``: k-means on PCA (32 components) of the pose-normalized voxels;
- ``PCA pose, canonical flips``: the same after turning each subvolume to the
  proper flip that best matches the mean of all (:func:`canonical_flips`);
- ``PCA pose, flip-aware k-means``: PCA fitted to all four flips of every
  subvolume, each subvolume given by its four flips' components, clustered by
  :func:`flip_aware_kmeans`;
- ``autoencoder``: the default model's codes, k-means;
- ``autoencoder, codes averaged over flips``: the same model's codes of the
  four flips, averaged, k-means;
- ``autoencoder, flip-aware k-means``: the same model's codes of the four
  flips, flip-aware k-means;
- ``autoencoder on canonical flips``: a model trained and encoding on the
  canonically flipped subvolumes, k-means;
- ``autoencoder with flip views, flip-aware k-means`` (only when ``--methods``
  names ``views``; the groups are ``PCA``, ``model``, ``canonical``, ``views``): a model trained with ``--augment`` (its views are the flips),
  flip-aware k-means on its codes of the four flips.

The seed is both the training seed and the k-means seed. Rows are appended to
``--json`` as they are measured; a rerun skips the rows already there.
"""

import time

import numpy as np

PCA_METHODS = ("PCA pose", "PCA pose, canonical flips", "PCA pose, flip-aware k-means")
DEFAULT_MODEL = ("autoencoder", "autoencoder, codes averaged over flips", "autoencoder, flip-aware k-means")
CANONICAL_MODEL = ("autoencoder on canonical flips",)
VIEWS_MODEL = ("autoencoder with flip views, flip-aware k-means",)
METHODS = PCA_METHODS + DEFAULT_MODEL + CANONICAL_MODEL
ALL_METHODS = METHODS + VIEWS_MODEL


def chosen_methods(words):
    """The methods of the comma-separated groups in ``words`` (``PCA``, ``model``: the default model's three rows,
    ``canonical``, ``views``), in that order; all but ``views`` when None."""
    groups = {"PCA": PCA_METHODS, "model": DEFAULT_MODEL, "canonical": CANONICAL_MODEL, "views": VIEWS_MODEL}
    if not words:
        return METHODS
    unknown = [w for w in words.split(",") if w not in groups]
    if unknown:
        raise SystemExit(f"--methods {words}: unknown {', '.join(unknown)}; choose from {', '.join(groups)}")
    return tuple(m for name, methods in groups.items() if name in words.split(",") for m in methods)


def n_init(k):
    return 100 if k <= 10 else 10


def plain_scores(features, labels, ks, seed):
    from science_candidates import scores_at

    return scores_at(features, labels, ks, seed)


def flip_scores(features, labels, ks, seed):
    """Scores of flip-aware k-means of ``features`` (4, N, D) at each k."""
    from bench_science import score

    from autoencoder3d.clustering.flip_kmeans import flip_aware_kmeans

    out = {}
    for k in ks:
        result = flip_aware_kmeans(features, k, seed=seed, n_init=n_init(k))
        out[str(k)] = dict(score(list(labels), result.labels), nonempty=int(len(set(result.labels.tolist()))))
    return out


def pca_of_flips(volumes, seed, components=32):
    """PCA fitted to all four flips of every subvolume; the components of each flip: (4, N, components)."""
    from sklearn.decomposition import PCA

    from autoencoder3d.prep.flips import flipped_copies

    copies = flipped_copies(volumes).reshape(4 * len(volumes), -1)
    pca = PCA(n_components=min(components, len(volumes) - 1), random_state=seed, svd_solver="randomized").fit(copies)
    return pca.transform(copies).reshape(4, len(volumes), -1)


def codes_of_flips(encoder, volumes):
    from autoencoder3d.network.train import encode
    from autoencoder3d.prep.flips import PROPER_FLIPS

    return encode(encoder, volumes, flips=PROPER_FLIPS)


def trained_encoder(volumes, rotations, fields, args, seed):
    import shutil
    import tempfile

    import keras
    from science_candidates import NOTHING

    from autoencoder3d.network.objective import Objective
    from autoencoder3d.network.train import train_autoencoder

    keras.utils.set_random_seed(seed)
    model_dir = tempfile.mkdtemp(prefix="bench-flips-")
    try:
        (_, encoder, _), info = train_autoencoder(volumes, model_dir, epochs=args.epochs, batch_size=args.batch_size, seed=seed,
                                                  verbose=0, objective=Objective(**{**NOTHING, **fields}), rotations=rotations)
        return encoder, len(info["history"])
    finally:
        shutil.rmtree(model_dir, ignore_errors=True)


def pca_rows(volumes, labels, ks, seed):
    from bench_science import pca_features

    from autoencoder3d.prep.flips import canonical_flips, flip_each

    started = time.perf_counter()
    yield "PCA pose", plain_scores(pca_features(volumes, seed), labels, ks, seed), None, started
    started = time.perf_counter()
    canonical = flip_each(volumes, canonical_flips(volumes))
    yield "PCA pose, canonical flips", plain_scores(pca_features(canonical, seed), labels, ks, seed), None, started
    started = time.perf_counter()
    yield "PCA pose, flip-aware k-means", flip_scores(pca_of_flips(volumes, seed), labels, ks, seed), None, started


def model_rows(wanted, volumes, rotations, labels, ks, seed, args):
    from autoencoder3d.network.codes import code_statistics
    from autoencoder3d.prep.flips import canonical_flips, flip_each

    if any(m in wanted for m in DEFAULT_MODEL):
        started = time.perf_counter()
        encoder, epochs = trained_encoder(volumes, rotations, {}, args, seed)
        codes = codes_of_flips(encoder, volumes)
        stats = code_statistics(codes[0])
        yield DEFAULT_MODEL[0], plain_scores(codes[0], labels, ks, seed), dict(epochs=epochs, codes=stats), started
        yield DEFAULT_MODEL[1], plain_scores(codes.mean(axis=0), labels, ks, seed), dict(epochs=epochs, codes=stats), started
        yield DEFAULT_MODEL[2], flip_scores(codes, labels, ks, seed), dict(epochs=epochs, codes=stats), started
    if CANONICAL_MODEL[0] in wanted:
        started = time.perf_counter()
        choice = canonical_flips(volumes)
        canonical = flip_each(volumes, choice)
        from autoencoder3d.prep.flips import PROPER_FLIPS, flip_matrix

        turned = np.einsum("nij,njk->nik", rotations, np.stack([flip_matrix(PROPER_FLIPS[c]) for c in choice]))
        encoder, epochs = trained_encoder(canonical, turned, {}, args, seed)
        from autoencoder3d.network.train import encode

        codes = encode(encoder, canonical)
        yield CANONICAL_MODEL[0], plain_scores(codes, labels, ks, seed), dict(epochs=epochs, codes=code_statistics(codes)), started
    if VIEWS_MODEL[0] in wanted:
        started = time.perf_counter()
        encoder, epochs = trained_encoder(volumes, rotations, {"augment": True}, args, seed)
        codes = codes_of_flips(encoder, volumes)
        yield VIEWS_MODEL[0], flip_scores(codes, labels, ks, seed), dict(epochs=epochs, codes=code_statistics(codes[0])), started


def measure(datasets, wanted, args):
    """Every (data set, method, seed) row, skipping those already in ``args.json``."""
    from science_candidates import RowLog

    log = RowLog(args)
    for seed in args.seeds:
        for name, (volumes, rotations, labels, _raw, ks) in datasets.items():
            todo = [m for m in wanted if (name, m, seed) not in log.done]
            produced = []
            if any(m in PCA_METHODS for m in todo):
                produced.append(pca_rows(volumes, labels, ks, seed))
            if any(m not in PCA_METHODS for m in todo):
                produced.append(model_rows(todo, volumes, rotations, labels, ks, seed, args))
            for rows_of in produced:
                for method, scores, extra, started in rows_of:
                    if method not in todo:
                        continue
                    log.add(dict(dataset=name, method=method, seed=seed, n=len(volumes), box=int(volumes.shape[1]),
                                 scores=scores, seconds=round(time.perf_counter() - started, 1), **(extra or {})))
    return log.rows


def flips(args):
    """The flip table: plain, canonical and flip-aware clustering of PCA and of the autoencoder, mean +- sd over seeds."""
    import shutil
    import tempfile

    import science_candidates as sc

    started = time.perf_counter()
    work = tempfile.mkdtemp(prefix="bench-flips-data-")
    datasets, ks_of = sc.evaluation_datasets(args, work)
    wanted = chosen_methods(args.methods)
    rows = measure(datasets, wanted, args)
    shutil.rmtree(work, ignore_errors=True)
    print(f"\n{args.box}^3 boxes (32 nm), {args.copies} per class and tomogram, {args.sim_tomograms} simulated tomogram(s), "
          f"{args.epochs} epochs, batch {args.batch_size}, seeds {args.seeds}, "
          f"simulation seed {args.sim_seed} at SNR {args.snrs[0]:g}; {time.perf_counter() - started:.0f} s this run. "
          "Cells: mean ± sd over seeds.\n")
    print(sc.table([r for r in rows if r["method"] in wanted and r["dataset"] in datasets], ks_of))
