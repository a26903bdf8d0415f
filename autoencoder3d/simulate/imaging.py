"""How a simulated density is imaged: missing wedge, CTF with its envelope, and noise to an SNR.

Spectra are ``rfftn`` half-spectra of volumes indexed [x, y, z]; the beam is
along z and the tilt axis is y (see :mod:`autoencoder3d.simulate.dataset`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray


def electron_wavelength(voltage_kv: float) -> float:
    """Relativistic electron wavelength in Angstrom."""
    volts = voltage_kv * 1e3
    return 12.2643 / np.sqrt(volts * (1 + 0.978466e-6 * volts))


def frequencies(shape: Sequence[int], voxel_size: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spatial frequencies (1/Angstrom) of an rfftn spectrum, as broadcastable fx, fy, fz."""
    fx = np.fft.fftfreq(shape[0], d=voxel_size)[:, None, None]
    fy = np.fft.fftfreq(shape[1], d=voxel_size)[None, :, None]
    fz = np.fft.rfftfreq(shape[2], d=voxel_size)[None, None, :]
    return fx, fy, fz


def wedge_mask(shape: Sequence[int], voxel_size: float, wedge: float) -> np.ndarray:
    """1 where a tilt series over +-``wedge`` degrees about y measures, 0 in the missing wedge.

    The beam is along z; components within ``90 - wedge`` degrees of the z axis
    (in the x-z plane) are missing.
    """
    fx, fy, fz = frequencies(shape, voxel_size)
    if wedge >= 90:
        return np.ones((shape[0], shape[1], shape[2] // 2 + 1))
    missing = np.abs(fz) > np.tan(np.deg2rad(wedge)) * np.abs(fx)
    return np.broadcast_to(~missing, (shape[0], shape[1], shape[2] // 2 + 1)).astype(float)


def ctf(shape: Sequence[int], voxel_size: float, defocus_um: float, voltage_kv: float = 300.0, cs_mm: float = 2.0) -> np.ndarray:
    """The contrast transfer function with its envelope, on an rfftn spectrum.

    ``sin(pi/2 (Cs lambda^3 f^4 - 2 Dz lambda f^2)) * exp(-(f / (0.4 Nyquist))^2)``,
    with Dz negative for underfocus (Angstrom units throughout).
    """
    fx, fy, fz = frequencies(shape, voxel_size)
    f2 = fx**2 + fy**2 + fz**2
    lam = electron_wavelength(voltage_kv)
    cs = cs_mm * 1e7
    dz = defocus_um * 1e4
    phase = np.sin(np.pi / 2 * (cs * lam**3 * f2**2 - 2 * dz * lam * f2))
    nyquist = 0.5 / voxel_size
    return phase * np.exp(-f2 / (0.4 * nyquist) ** 2)


def _filtered(volume, transfer):
    return np.fft.irfftn(np.fft.rfftn(volume) * transfer, s=volume.shape, axes=(0, 1, 2))


def _noise(rng, shape, transfer, wedge, variance):
    """Half the variance filtered by the CTF (before it), half only by the wedge (after it)."""
    before = _filtered(rng.standard_normal(shape), transfer)
    after = _filtered(rng.standard_normal(shape), wedge)
    before *= np.sqrt(variance / 2 / before.var())
    after *= np.sqrt(variance / 2 / after.var())
    return before + after


def image_volume(
    rng: np.random.Generator, signal: np.ndarray, voxel_size: float, snr: float, wedge: float, defocus: float,
    voltage: float, cs: float,
) -> tuple[NDArray[np.float32], NDArray[np.float32], dict[str, float]]:
    """Image a (dark) density: missing wedge, CTF, and noise to ``snr``.

    Returns:
        (tomogram, clean, snr_stats): the noisy tomogram standardised to mean 0
        and standard deviation 1 (float32), the noise-free imaged volume on the
        same scale, and the SNR measured from a second noise realization:
        ``rho`` (their correlation), ``reached`` = rho / (1 - rho) (the variance
        ratio, comparable to ``snr``) and ``two_rho`` = 2 rho / (1 - rho)
        (the published estimator, the SNR of the two realizations' average).
    """
    shape = signal.shape
    wedge_t = wedge_mask(shape, voxel_size, wedge)
    transfer = wedge_t * ctf(shape, voxel_size, defocus, voltage, cs)
    clean = _filtered(signal.astype(np.float64), transfer)
    variance = clean.var() / snr
    noisy = clean + _noise(rng, shape, transfer, wedge_t, variance)
    other = clean + _noise(rng, shape, transfer, wedge_t, variance)
    rho = float(np.corrcoef(noisy.ravel(), other.ravel())[0, 1])
    mean, std = noisy.mean(), noisy.std()
    stats = {"asked": snr, "rho": rho, "reached": rho / (1 - rho), "two_rho": 2 * rho / (1 - rho)}
    return ((noisy - mean) / std).astype(np.float32), ((clean - clean.mean()) / std).astype(np.float32), stats
