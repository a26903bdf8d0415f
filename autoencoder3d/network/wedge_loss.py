"""A reconstruction loss counted only where the tomogram measured Fourier data.

A tilt series over +-``wedge`` degrees about y (beam along z) measures no
Fourier component within ``90 - wedge`` degrees of the z axis in the x-z
plane: the missing wedge. The plain voxel MSE asks the decoder to reproduce the
wedge's artefacts as well as the structure; this loss compares reconstruction
and input only on the measured components:

    loss = sum_k mask(k) |FFT(reconstruction - input)(k)|^2 / V^2

(``V`` voxels), which by Parseval's theorem is the voxel MSE when nothing is
masked. Frequencies are in cycles per voxel, so for cubic voxels the mask does
not depend on the voxel size.

The wedge is fixed in the tomogram's frame. A pose-normalized subvolume is the
tomogram resampled at ``t = R o + b`` (``R`` the subvolume's rotation,
:func:`autoencoder3d.prep.pose.normalize_one`), so its Fourier component at ``k``
is the tomogram's at ``R k``: its mask is the tomogram-frame mask read at
``R k``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .objective_options import DEFAULT_WEDGE

_EDGE = 1e-9  # frequencies on the wedge's edge count as measured despite rounding


def frequency_grid(shape: Sequence[int]) -> NDArray[np.float64]:
    """Frequencies (cycles per voxel) of a full ``fftn`` spectrum: array ``(3, n1 * n2 * n3)``."""
    axes = [np.fft.fftfreq(int(n)) for n in shape]
    return np.stack([g.ravel() for g in np.meshgrid(*axes, indexing="ij")])


def wedge_masks(shape: Sequence[int], rotations: ArrayLike | None = None, wedge: float = DEFAULT_WEDGE) -> NDArray[np.float32]:
    """Measured-region masks (1 measured, 0 missing) of the full ``fftn`` spectrum of each subvolume.

    Args:
        shape: subvolume shape ``(n1, n2, n3)``.
        rotations: ``(B, 3, 3)`` rotations from each subvolume's frame to the
            tomogram's (pose normalization's ``rotation``), or None for one
            subvolume in the tomogram's own frame.
        wedge: largest tilt angle in degrees (90: everything measured).

    Returns:
        float32 array ``(B, n1, n2, n3)`` (``(1, ...)`` when ``rotations`` is None).
    """
    shape = tuple(int(s) for s in shape)
    if rotations is None:
        rotations = np.eye(3)[None]
    rotations = np.asarray(rotations, dtype=np.float64)
    if wedge >= 90:
        return np.ones((len(rotations),) + shape, dtype=np.float32)
    k = frequency_grid(shape)
    tomogram_k = np.einsum("bij,jv->biv", rotations, k)  # R k for every subvolume
    slope = np.tan(np.deg2rad(wedge))
    measured = np.abs(tomogram_k[:, 2]) <= slope * np.abs(tomogram_k[:, 0]) + _EDGE
    return measured.reshape((len(rotations),) + shape).astype(np.float32)


def masked_fourier_mse(target: Any, reconstruction: Any, mask: Any) -> Any:
    """Per-subvolume ``sum mask |FFT(reconstruction - target)|^2 / V^2`` (Keras tensors, any backend).

    Args:
        target, reconstruction: ``(B, n1, n2, n3)`` or with a trailing channel of 1.
        mask: ``(B, n1, n2, n3)`` from :func:`wedge_masks`.

    Returns:
        ``(B,)`` float32 losses.
    """
    from keras import ops

    difference = ops.cast(reconstruction, "float32") - ops.cast(target, "float32")
    if len(difference.shape) == 5:
        difference = difference[..., 0]
    # the 3D FFT as Keras has it: a 2D FFT over the last two axes, then a 1D FFT over the first
    real, imag = ops.fft2((difference, ops.zeros_like(difference)))
    real, imag = ops.fft((ops.transpose(real, (0, 2, 3, 1)), ops.transpose(imag, (0, 2, 3, 1))))
    power = ops.transpose(real**2 + imag**2, (0, 3, 1, 2))
    voxels = float(np.prod(difference.shape[1:]))
    return ops.sum(power * ops.cast(mask, "float32"), axis=(1, 2, 3)) / (voxels * voxels)


def masked_fourier_mse_numpy(target: ArrayLike, reconstruction: ArrayLike, mask: ArrayLike) -> NDArray[np.float64]:
    """The same loss with numpy's FFT, in float64 (the reference for tests)."""
    difference = np.asarray(reconstruction, dtype=np.float64) - np.asarray(target, dtype=np.float64)
    axes = tuple(range(1, difference.ndim))
    power = np.abs(np.fft.fftn(difference, axes=axes)) ** 2
    voxels = float(np.prod(difference.shape[1:]))
    return (power * mask).sum(axis=axes) / voxels**2
