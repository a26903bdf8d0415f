"""How a worker opens a job's tomogram, and what a resumed build compares, for each kind of opener.

An opener is a small dict a worker process can receive: ``{"kind": "mrc",
"path": ...}`` or ``{"kind": "copick", ...}``. Each kind's functions are looked
up here, so the sources that make jobs need not know of each other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...errors import InputError
from .jobs import file_fingerprint, jobs_fingerprint

if TYPE_CHECKING:
    from ...volume import Tomogram
    from .jobs import TomogramJob


def job_origin(job: TomogramJob) -> dict[str, object]:
    """What a tomogram's part is cut from: its rows (name, tomogram, centres, ids) and its tomogram's fingerprint.

    A resumed build cuts a part again when this differs from the one the part recorded.
    """
    if job.opener["kind"] == "copick":
        from .copick import copick_fingerprint

        tomogram = copick_fingerprint(job.opener)
    else:
        try:
            tomogram = file_fingerprint(job.opener["path"])
        except OSError as err:
            raise InputError(f"{job.opener['path']}: cannot read the tomogram ({err.strerror})") from None
    return {"rows": jobs_fingerprint([job]), "tomogram": tomogram}


def open_job_tomogram(job: TomogramJob) -> Tomogram:
    """The job's tomogram, indexed [x, y, z] and read on demand."""
    if job.opener["kind"] == "copick":
        from .copick import open_copick_tomogram

        return open_copick_tomogram(job.opener)
    from ...formats.mrc import read_tomogram

    return read_tomogram(job.opener["path"])
