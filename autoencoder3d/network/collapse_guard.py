"""Stop training at the first epoch whose codes collapsed (see :mod:`.codes`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import keras
import numpy as np
from numpy.typing import ArrayLike

from .codes import CodesCollapsed, code_statistics, collapse_message, is_collapsed

if TYPE_CHECKING:
    from ..volume import Volumes

GUARD_SAMPLES = 256  # subvolumes encoded after each epoch to check the codes


class CollapseGuard(keras.callbacks.Callback):
    """After every epoch, encode a fixed sample of the training data; stop on a collapse.

    Raises :class:`CodesCollapsed` (one line naming the remedy); what was
    trained is kept, so the run folder shows what happened. With ``multiple_of``
    (JAX's data parallelism over that many devices), the sample and its batches
    are trimmed to multiples of it.
    """

    def __init__(self, encoder: keras.Model, volumes: Volumes, indices: ArrayLike, batch_size: int = 64, multiple_of: int = 1):
        super().__init__()
        self.encoder = encoder
        self.volumes = volumes
        indices = np.asarray(indices)[:GUARD_SAMPLES]
        self.indices = np.sort(indices[: len(indices) - len(indices) % multiple_of])
        self.batch_size = max(multiple_of, batch_size - batch_size % multiple_of)
        self.last = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if len(self.indices) < 2:
            return
        sample = np.asarray(self.volumes[self.indices], dtype=np.float32)[..., None]
        self.last = code_statistics(self.encoder.predict(sample, batch_size=self.batch_size, verbose=0))
        if is_collapsed(self.last):
            raise CodesCollapsed(collapse_message(self.last, len(self.indices), epoch + 1))
