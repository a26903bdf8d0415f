"""Where the particles of a data set come from: tables, RELION 5 star files, copick projects; how a worker opens a tomogram.

Modules: :mod:`.copick`, :mod:`.jobs`, :mod:`.openers`, :mod:`.relion`.
Every public name below is importable from here; its module is imported on first use.
"""

from ...util.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "TomogramJob": ".jobs",
    "ZarrXYZ": ".copick",
    "check_jobs": ".jobs",
    "copick_fingerprint": ".copick",
    "default_uuids": ".jobs",
    "file_fingerprint": ".jobs",
    "find_tomogram": ".jobs",
    "import_copick": ".copick",
    "job_origin": ".openers",
    "jobs_fingerprint": ".jobs",
    "jobs_from_copick": ".copick",
    "jobs_from_relion": ".relion",
    "jobs_from_table": ".jobs",
    "jobs_to_pick": ".jobs",
    "mrc_opener": ".jobs",
    "open_copick_tomogram": ".copick",
    "open_job_tomogram": ".openers",
    "open_project": ".copick",
    "read_pick_list": ".jobs",
    "read_tomograms_table": ".relion",
})
