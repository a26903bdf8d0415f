"""autoencoder3d: unsupervised mining of structures in cryo-electron tomograms.

A Keras 3 port of Autoencoder3D (Zeng, Leung, Zeev-Ben-Mordehai & Xu,
J. Struct. Biol. 202:150-160, 2018). The steps, each callable on its own:

- :func:`autoencoder3d.formats.subvolume_pickle.load_subvolumes` / :func:`~autoencoder3d.formats.mrc.read_tomogram`
- :func:`autoencoder3d.prep.pose.pose_normalize`
- :func:`autoencoder3d.network.model.build_autoencoder`
- :func:`autoencoder3d.network.train.train_autoencoder`
- :func:`autoencoder3d.clustering.kmeans.cluster_encodings`
- :func:`autoencoder3d.report.figures.write_montages`
- :func:`autoencoder3d.workflows.train.run_train` (the whole ``autoencoder3d train``)

Volumes are numpy arrays indexed ``[x, y, z]``; see :mod:`autoencoder3d.volume`.
Keras/TensorFlow are imported only by the modules that need them.

TensorFlow's oneDNN CPU kernels are asked for here, before TensorFlow is
imported, unless ``TF_ENABLE_ONEDNN_OPTS`` is already set (see
:mod:`autoencoder3d.util.cpu_kernels`; run.json records what was active).
"""

from .util import cpu_kernels as _cpu_kernels

_cpu_kernels.prefer_onednn()

__version__ = "0.1.0"
