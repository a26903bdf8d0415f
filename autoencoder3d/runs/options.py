"""What a run is asked to do: the options of ``autoencoder3d train`` and ``cluster``.

The run's fingerprint (:mod:`.fingerprint`) is made of them and of the inputs;
the decisions a rerun must keep (:mod:`.decisions`) fill the ones left open.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..network.objective_options import OBJECTIVE_DEFAULTS


@dataclass
class TrainOptions:
    """Options of ``autoencoder3d train``; the defaults are the published numbers.

    ``published`` trains the literal published setting (raw intensities,
    batch-summed L1, plain code layer) instead of the default that keeps the
    codes alive in any units (see :class:`~autoencoder3d.network.model.CodeSettings`).
    ``polarity`` says whether dense matter is ``"dark"`` (IMOD's default) or
    ``"bright"`` in the tomogram. ``polarity`` and ``smooth_sigma`` left None
    take what the run's model or the data set recorded, else ``"dark"`` and 2.0
    (:mod:`autoencoder3d.runs.decisions`). ``loss``, ``wedge``, ``augment``,
    ``self_label`` and ``self_label_k`` choose the training objective
    (:class:`~autoencoder3d.network.objective.Objective`; off by default).
    ``flips`` says how clustering treats pose normalization's four proper flips
    (:data:`~autoencoder3d.clustering.flip_kmeans.FLIP_MODES`; off as published).
    ``baseline`` adds the PCA baseline to the clustering
    (:mod:`autoencoder3d.clustering.baseline`); ``merge`` lists groups of cluster
    ids merged after k-means (:mod:`autoencoder3d.clustering.merge`).
    """

    epochs: int = 100
    batch_size: int = 128
    encoding_dim: int = 32
    l1: float = 1e-4
    patience: int = 20
    learning_rate: float = 0.001
    validation_split: float = 0.1
    n_init: int = 100
    kmeans: str = "auto"
    flips: str = "off"
    published: bool = False
    polarity: str | None = None
    smooth_sigma: float | None = None
    seed: int | None = None
    retrain: bool = False
    mixed_precision: str | None = None
    distribute: str | bool = False
    port: int | None = None
    deterministic: bool = False
    workers: int | None = None
    verbose: int = 1
    loss: str = OBJECTIVE_DEFAULTS["loss"]
    wedge: float = OBJECTIVE_DEFAULTS["wedge"]
    augment: bool = OBJECTIVE_DEFAULTS["augment"]
    self_label: int = OBJECTIVE_DEFAULTS["self_label"]
    self_label_k: int = OBJECTIVE_DEFAULTS["self_label_k"]
    baseline: bool = True
    merge: list[list[int]] | None = None

    def __post_init__(self):
        # ``distribute``: False, "mirrored" or "multiworker" (True, the old flag, is "mirrored"; False as
        # before, so that the fingerprints of earlier runs stay the same)
        self.distribute = {True: "mirrored", None: False}.get(self.distribute, self.distribute)
