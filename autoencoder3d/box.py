"""The one rule for a subvolume's edge, shared by every command that cuts or trains on subvolumes.

The autoencoder pools twice by 2, so each edge must be a multiple of 4. ``pick``, ``extract``, ``dataset build``,
``simulate`` and ``train`` all ask :func:`box_problem`, so a box that training
would refuse is refused before hours of picking or extraction.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from .errors import InputError

MIN_BOX = 4


def box_problem(box: object) -> str | None:
    """Why ``box`` cannot be a subvolume edge (a phrase), or None when it can."""
    if isinstance(box, (bool, np.bool_)) or not isinstance(box, (int, np.integer)):
        return f"must be a whole number of voxels, got {box!r}"
    if box < MIN_BOX or box % 4:
        nearest = max(MIN_BOX, 4 * int(round(box / 4)))
        return f"must be a multiple of 4 (the autoencoder pools twice by 2), got {box}; try {nearest}"
    return None


def check_box_option(box: object, option: str = "--box") -> None:
    """Raise InputError (one line naming the option) when ``box`` breaks the rule."""
    problem = box_problem(box)
    if problem:
        raise InputError(f"{option}: {problem}")


def shape_problem(shape: Sequence[int]) -> str | None:
    """Why ``shape`` cannot be a subvolume's shape (a phrase), or None when every edge follows the rule."""
    if len(shape) != 3 or any(box_problem(int(edge)) for edge in shape):
        return f"subvolume shape {tuple(int(s) for s in shape)}: every edge must be a positive multiple of 4 (the autoencoder pools twice by 2)"
    return None


def fitting_shape(shape: Sequence[int]) -> tuple[int, ...] | None:
    """The largest subvolume shape within ``shape`` that follows the rule (each edge down to a multiple of 4),
    or None when an edge is below :data:`MIN_BOX`."""
    if len(shape) != 3 or any(int(edge) < MIN_BOX for edge in shape):
        return None
    return tuple(4 * (int(edge) // 4) for edge in shape)


def check_subvolume_shape(path: str | os.PathLike[str], shape: Sequence[int]) -> None:
    """Raise InputError (naming the data file) unless every edge of ``shape`` follows the rule."""
    problems = [box_problem(int(edge)) for edge in shape]
    if len(shape) != 3 or any(problems):
        raise InputError(
            f"{path}: subvolume shape {tuple(int(s) for s in shape)}: every edge must be divisible by 4 for the "
            "autoencoder (it pools twice by 2); cut the subvolumes again with such a --box"
        )
