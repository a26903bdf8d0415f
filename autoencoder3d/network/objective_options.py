"""The training objective's options and their defaults: the one place they are set.

``autoencoder3d train``'s options (argparse), :class:`~autoencoder3d.runs.options.TrainOptions`
and a run's fingerprint all take their defaults from :data:`OBJECTIVE_DEFAULTS`.
This module imports no Keras, so commands that only read a run can ask it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

DEFAULT_WEDGE = 60.0  # largest tilt angle, degrees (the simulation's default)


@dataclass
class Objective:
    """What the network is trained to do besides reconstructing (defaults: nothing else, the published MSE)."""

    loss: str = "mse"
    wedge: float = DEFAULT_WEDGE
    augment: bool = False
    self_label: int = 0
    self_label_k: int = 10

    def __post_init__(self):
        if self.loss not in ("mse", "wedge"):
            raise ValueError(f"loss must be 'mse' or 'wedge', got {self.loss!r}")
        if not 0 < float(self.wedge) <= 90:
            raise ValueError(f"wedge must be the largest tilt angle in (0, 90] degrees, got {self.wedge!r}")
        if int(self.self_label) < 0 or int(self.self_label_k) < 2:
            raise ValueError("self_label must be >= 0 rounds and self_label_k >= 2 classes")

    @property
    def active(self) -> bool:
        return self.loss != "mse" or self.augment or self.self_label > 0

    def to_dict(self) -> dict[str, str | float | int | bool]:
        return asdict(self)

    @classmethod
    def from_options(cls, options: object) -> Objective:
        """The objective that a run's options (:class:`~autoencoder3d.runs.options.TrainOptions`) ask for."""
        return cls(**{k: getattr(options, k) for k in cls.__dataclass_fields__})


# option -> default; options at their default are left out of a fingerprint, so runs made before an option existed stay valid
OBJECTIVE_DEFAULTS = {f.name: f.default for f in fields(Objective)}
