"""Particle lists of a run whose DATA is a store of many tomograms: each row carries its own tomogram.

The store (:mod:`autoencoder3d.data.store`) holds each particle's uuid, tomogram
name, centre and pose; only those are read, never the volumes. Each
tomogram gets its own :class:`~.place.Placement` (name, size and voxel size
from the store's tomogram table, the tomogram file's header when the table
lacks them, and RELION 5's ``tomograms.star`` when one is known), so RELION 5's
centred Angstrom use that tomogram's centre and pixel size. Files:

- ``NNN.star`` / ``NNN_relion5.star``: one table, ``rlnTomoName`` and
  ``rlnMicrographName`` per row, rows grouped by tomogram in the store's order;
- ``NNN.csv``: a ``tomogram`` column first;
- ``all_imod/TOMO.mod`` (``selected_imod/`` with ``--clusters``): one IMOD
  model per tomogram, named like it, to open over it (``3dmod TOMO.rec
  all_imod/TOMO.mod``); object ``i + 1`` is the ``i``-th exported cluster in
  every model (empty where the tomogram has none of it) and is named after it.
  A tomogram name that is not a safe file name (``a/b``, ``a b``, ``..``, a
  very long one) is cleaned and gets a hash of itself (:func:`safe_file_name`),
  so every tomogram gets its own file, under the same name in every export.

A stored subvolume that was pose-normalized when the store was built is placed
as the single-tomogram export places one (:func:`~.geometry.pose_position`),
whether or not the run's POSE was True: the stored volume is the normalized one.
Everything is computed on arrays, so 10^5-10^6 particles take seconds.
"""

from __future__ import annotations

import hashlib
import os
import unicodedata
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from ..errors import InputError
from .angles import relion_angles_many
from .geometry import pose_positions
from .place import Placement, make_placement

if TYPE_CHECKING:
    import pandas as pd

    from ..volume import SubvolumeSet

XYZ = ("X", "Y", "Z")
UNSAFE_CHARACTERS = frozenset('/\\:*?"<>|')
MAX_NAME_BYTES = 200  # of a file's stem: below the usual 255-byte limit, with room for the extension


class Particles(NamedTuple):
    """The exported particles as arrays (one row each), grouped by tomogram, then cluster.

    Attributes:
        cluster: (N,) cluster ids.
        uuid: (N,) uuids.
        xyz: (N, 3) tomogram voxel positions (with a pose: of the normalized volume's voxel n // 2).
        angles: (N, 3) RELION rot, tilt, psi in degrees, NaN without a pose.
        rotation: (N, 3, 3) pose rotations, NaN without a pose.
        tomogram: (N,) tomogram names (None for the single tomogram of a pickle run).
    """

    cluster: np.ndarray
    uuid: np.ndarray
    xyz: np.ndarray
    angles: np.ndarray
    rotation: np.ndarray
    tomogram: np.ndarray

    def take(self, rows: np.ndarray | Sequence[int]) -> Particles:
        return Particles(*(field[rows] for field in self))

    def __len__(self):
        return len(self.cluster)


def particles_from_rows(rows: Sequence[tuple[int, str, np.ndarray, tuple[float, float, float] | None, np.ndarray | None]]
                        ) -> Particles:
    """:class:`Particles` of the single-tomogram export's rows (cluster, uuid, xyz, angles, rotation)."""
    n = len(rows)
    rotation = np.full((n, 3, 3), np.nan)
    angles = np.full((n, 3), np.nan)
    for i, row in enumerate(rows):
        if row[4] is not None:
            rotation[i], angles[i] = row[4], row[3]
    return Particles(np.array([r[0] for r in rows], dtype=int), np.array([r[1] for r in rows], dtype=object),
                     np.array([r[2] for r in rows], dtype=float).reshape(n, 3), angles, rotation,
                     np.full(n, None, dtype=object))


def store_particles(subvolumes: SubvolumeSet, members: Mapping[int, Sequence[str]], selected: Sequence[int],
                    order: Sequence[str], note: Callable[[str], object]) -> Particles:
    """:class:`Particles` of the chosen clusters, grouped by tomogram (in ``order``), then cluster, then store order."""
    index = {u: i for i, u in enumerate(subvolumes.uuids)}
    chosen = [np.array(sorted(index[u] for u in members[cid] if u in index), dtype=np.int64) for cid in selected]
    wanted = sum(len(members[cid]) for cid in selected)
    rows = np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)
    cluster = np.repeat(np.asarray(selected, dtype=int), [len(c) for c in chosen])
    centers = np.asarray(subvolumes.centers, dtype=float)[rows]
    keep = np.all(np.isfinite(centers), axis=1)
    if wanted - int(keep.sum()):
        note(f"{wanted - int(keep.sum())} particles of the run have no centre in {subvolumes.source}; left out of the particle lists")
    rows, cluster, xyz = rows[keep], cluster[keep], centers[keep]
    n = len(rows)
    rotation = np.full((n, 3, 3), np.nan) if subvolumes.rotations is None else np.asarray(subvolumes.rotations, dtype=float)[rows]
    com = np.full((n, 3), np.nan) if subvolumes.centers_of_mass is None else np.asarray(subvolumes.centers_of_mass, dtype=float)[rows]
    posed = np.all(np.isfinite(rotation.reshape(n, 9)), axis=1)
    placed = posed & np.all(np.isfinite(com), axis=1)
    xyz[placed] = pose_positions(xyz[placed], com[placed], rotation[placed], subvolumes.v_siz)
    angles = np.full((n, 3), np.nan)
    try:
        angles[posed] = relion_angles_many(rotation[posed])
    except ValueError:
        raise InputError(f"{subvolumes.source}: a stored pose is not a proper rotation; build the data set again") from None
    rotation[~posed] = np.nan
    tomogram = np.asarray(subvolumes.tomograms, dtype=object)[rows]
    position = {name: i for i, name in enumerate(order)}
    grouped = np.lexsort((rows, cluster, np.array([position[t] for t in tomogram], dtype=np.int64)))
    uuids = np.asarray(subvolumes.uuids, dtype=object)[rows]
    return Particles(cluster, uuids, xyz, angles, rotation, tomogram).take(grouped)


def _header(path):
    """(shape, voxel size) from the tomogram file's header, or (None, None)."""
    from ..formats.mrc import read_tomogram

    if not path or not os.path.isfile(path):
        return None, None
    try:
        tomo = read_tomogram(path)
    except InputError:
        return None, None
    shape, voxel_size = tomo.shape, tomo.voxel_size
    tomo.close()
    return shape, voxel_size


def build_tomograms_star(subvolumes: SubvolumeSet, tomograms_star: str | os.PathLike | None, note: Callable[[str], object]
                        ) -> str | os.PathLike | None:
    """The tomograms.star to use: the one given, else the one the store was built from (when it is still there)."""
    if tomograms_star:
        return tomograms_star
    source = ((subvolumes.manifest or {}).get("sources") or {}).get("source") or {}
    stars = source.get("star") if source.get("kind") == "relion" else None
    if stars and isinstance(stars[0], str) and os.path.isfile(stars[0]):
        note(f"{stars[0]}: the tomograms.star the data set was built from gives each tomogram's RELION centre")
        return stars[0]
    return None


def store_placements(subvolumes: SubvolumeSet, names: Iterable[str], *, tomograms_star: str | os.PathLike | None = None,
                     ts_angpix: float | None = None, note: Callable[[str], object]) -> dict[str, Placement]:
    """tomogram name -> :class:`~.place.Placement`, from the store's tomogram table (and the files it names)."""
    table = subvolumes.tomogram_table or {}
    tomograms_star = build_tomograms_star(subvolumes, tomograms_star, note)
    places, unknown = {}, []
    for name in names:
        info = table.get(name) or {}
        shape, voxel_size = info.get("shape"), info.get("voxel_size")
        if shape is None or voxel_size is None:
            file_shape, file_voxel_size = _header(info.get("path"))
            shape = shape if shape is not None else file_shape
            voxel_size = voxel_size if voxel_size is not None else file_voxel_size
        place = make_placement(info.get("path"), shape, voxel_size, tomo_name=info.get("relion_name") or name,
                               ts_angpix=ts_angpix, tomograms_star=tomograms_star)
        if place.voxel_size is None or place.centre_angst is None:
            unknown.append(name)
        places[name] = place
    if unknown:
        note(f"{len(unknown)} tomograms without a known size or voxel size (e.g. {unknown[0]}): "
             "their particles are left out of the RELION 5 lists")
    return places


def store_unit_notes(places: Mapping[str, Placement], formats: Collection[str], note: Callable[[str], object]) -> None:
    """Say which unit NNN.star's pixel coordinates are in, tomogram by tomogram."""
    from .warp import pixel_units

    if "star" not in formats or not places:
        return
    tilt_series = [name for name, place in places.items() if pixel_units(place)[1]]
    own = len(places) - len(tilt_series)
    if tilt_series:
        note(f"NNN.star: rlnCoordinateX/Y/Z in tilt-series pixels (rlnPixelSize on each row) for {len(tilt_series)} tomograms")
    if own:
        note(f"tilt-series pixel size unknown for {own} tomograms (--ts-angpix or --tomograms): their NNN.star rows "
             "hold pixels of the tomogram (rlnPixelSize), which RELION's import does not rescale")


def _tomogram_arrays(places, names):
    """Per tomogram (in ``names`` order): RELION name, series name, voxel size, RELION centre, written pixel, tilt-series flag."""
    from .warp import pixel_units

    t = len(names)
    arrays = {"relion": np.empty(t, dtype=object), "series": np.empty(t, dtype=object), "vs": np.full((t, 3), np.nan),
              "centre": np.full((t, 3), np.nan), "pixel": np.full(t, np.nan), "tilt": np.zeros(t, dtype=bool)}
    for i, name in enumerate(names):
        place = places[name]
        arrays["relion"][i], arrays["series"][i] = place.tomo_name, place.series_name
        if place.voxel_size is not None:
            arrays["vs"][i] = place.voxel_size
        if place.centre_angst is not None:
            arrays["centre"][i] = place.centre_angst
        pixel, tilt = pixel_units(place)
        arrays["pixel"][i], arrays["tilt"][i] = np.nan if pixel is None else pixel, tilt
    return arrays


def _extra(part, with_angles):
    extra = {"rlnClassNumber": part.cluster + 1}
    if with_angles:
        extra.update(rlnAngleRot=part.angles[:, 0], rlnAngleTilt=part.angles[:, 1], rlnAnglePsi=part.angles[:, 2])
    return extra


def tomogram_index(part: Particles, names: Iterable[str]) -> np.ndarray:
    """(N,) position of each particle's tomogram in ``names``."""
    import pandas as pd

    return pd.Categorical(part.tomogram, categories=list(names)).codes.astype(np.int64)


def store_tables(part: Particles, places: Mapping[str, Placement], names: Sequence[str], with_angles: bool
                 ) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, pd.DataFrame]:
    """(pixel table, RELION 5 table, rows with a known RELION centre, CSV table) of the particles, one row each.

    The columns are those of :func:`~.warp.pixel_table` and :func:`~.relion5.relion5_table`
    with each row's own tomogram; the CSV has ``tomogram`` first.
    """
    import pandas as pd

    arrays = _tomogram_arrays(places, names)
    t = tomogram_index(part, names)
    vs, pixel, tilt = arrays["vs"][t], arrays["pixel"][t], arrays["tilt"][t]
    extra = _extra(part, with_angles)
    coords = np.where(tilt[:, None], part.xyz * vs / np.where(tilt, pixel, 1.0)[:, None], part.xyz)
    columns = {"rlnTomoName": arrays["relion"][t], "rlnMicrographName": arrays["series"][t]}
    columns.update({f"rlnCoordinate{a}": coords[:, i] for i, a in enumerate(XYZ)})
    if np.isfinite(arrays["pixel"]).any():
        columns.update(rlnPixelSize=pixel, rlnDetectorPixelSize=pixel,
                       rlnMagnification=np.where(np.isfinite(pixel), 10000.0, np.nan))
    known = np.all(np.isfinite(vs), axis=1) & np.all(np.isfinite(arrays["centre"][t]), axis=1)
    angst = part.xyz * vs - arrays["centre"][t]
    relion5 = {"rlnTomoName": arrays["relion"][t]}
    relion5.update({f"rlnCenteredCoordinate{a}Angst": angst[:, i] for i, a in enumerate(XYZ)})
    csv = pd.DataFrame({"tomogram": part.tomogram, "x": part.xyz[:, 0], "y": part.xyz[:, 1], "z": part.xyz[:, 2], **extra,
                        "uuid": part.uuid, "cluster": part.cluster})
    return pd.DataFrame({**columns, **extra}), pd.DataFrame({**relion5, **extra}), known, csv


def cluster_rows(particles: Particles, selected: Sequence[int]) -> list[tuple[int, np.ndarray]]:
    """[(cluster id, row indices in order)] for each chosen cluster."""
    by_cluster = np.argsort(particles.cluster, kind="stable")
    bounds = np.searchsorted(particles.cluster[by_cluster], list(selected) + [max(selected) + 1])
    return [(cid, by_cluster[bounds[i]:bounds[i + 1]]) for i, cid in enumerate(selected)]


def write_store_lists(particle_dir: str | os.PathLike, particles: Particles, places: Mapping[str, Placement],
                      names: Sequence[str], selected: Sequence[int], last: str, formats: Collection[str],
                      with_angles: bool) -> list[tuple[str, str]]:
    """NNN.star, NNN_relion5.star and NNN.csv of each chosen cluster and of all of them; returns [(kind, path)]."""
    from ..formats.coords import write_csv, write_star

    pixel, relion5, known, csv = store_tables(particles, places, names, with_angles)
    groups = [(f"{cid:03d}", rows) for cid, rows in cluster_rows(particles, selected)]
    groups.append((last, np.arange(len(particles))))
    out = []
    for stem, rows in groups:
        if not len(rows):
            continue
        base = os.path.join(particle_dir, stem)
        if "star" in formats:
            write_star(base + ".star", pixel.iloc[rows].reset_index(drop=True))
            out.append(("star", base + ".star"))
            centred = rows[known[rows]]
            if len(centred):
                write_star(base + "_relion5.star", relion5.iloc[centred].reset_index(drop=True))
                out.append(("star", base + "_relion5.star"))
        if "csv" in formats:
            write_csv(base + ".csv", csv.iloc[rows].reset_index(drop=True))
            out.append(("csv", base + ".csv"))
    return out


def _digest(name):
    return hashlib.sha256(str(name).encode("utf-8", "surrogatepass")).hexdigest()[:8]


def _cut_utf8(text, limit):
    """The longest start of ``text`` whose UTF-8 takes at most ``limit`` bytes."""
    return text.encode("utf-8", "surrogatepass")[:limit].decode("utf-8", "ignore")


def safe_file_name(name: str) -> str:
    """A tomogram name usable as a file name on any system, stable from run to run.

    A name that is one already (no folder separator, reserved character, control
    character or white space, no leading dot, at most :data:`MAX_NAME_BYTES` bytes)
    is kept; any other is cleaned (those characters become ``_``, leading dots
    go, a long name is cut) and gets ``-`` and 8 hex digits of its SHA-256, so
    ``a/b`` and ``a b`` do not become the file of ``a_b``.
    """
    text = str(name)
    cleaned = "".join("_" if c in UNSAFE_CHARACTERS or c.isspace() or ord(c) < 32 or ord(c) == 127 else c for c in text)
    cleaned = cleaned.lstrip(".")
    if cleaned == text and len(text.encode("utf-8", "surrogatepass")) <= MAX_NAME_BYTES:
        return text
    return f"{_cut_utf8(cleaned, MAX_NAME_BYTES - 9) or 'tomogram'}-{_digest(text)}"


def _same_file_key(stem):
    """Stems that some file systems treat as one file (case, Unicode composition) share a key."""
    return unicodedata.normalize("NFC", stem).casefold()


def unique_file_names(names: Iterable[str]) -> dict[str, str]:
    """tomogram name -> file stem: :func:`safe_file_name`, made unique (also ignoring case) in ``names``' order."""
    stems, taken = {}, set()
    for name in names:
        stem = safe_file_name(name)
        if _same_file_key(stem) in taken:  # e.g. a name that is another's cleaned form, or differs only in case
            stem = f"{_cut_utf8(stem, MAX_NAME_BYTES - 9)}-{_digest(name)}"
        base, n = stem, 2
        while _same_file_key(stem) in taken:
            stem, n = f"{base}-{n}", n + 1
        taken.add(_same_file_key(stem))
        stems[name] = stem
    return stems


def write_imod_models(folder: str | os.PathLike, particles: Particles, selected: Sequence[int], names: Sequence[str],
                      note: Callable[[str], object] | None = None) -> list[str]:
    """One IMOD model per tomogram under ``folder``, object ``i + 1`` = ``selected[i]``; returns the paths.

    Files are named by :func:`unique_file_names`; ``note`` is told once when a name had to change.
    """
    from .imod_model import write_model

    t = tomogram_index(particles, names)
    starts = np.searchsorted(t, np.arange(len(names) + 1))  # particles are grouped by tomogram
    present = [name for i, name in enumerate(names) if starts[i + 1] > starts[i]]
    stems = unique_file_names(present)
    changed = [name for name in present if stems[name] != str(name)]
    if changed and note:
        note(f"{len(changed)} tomogram names are not usable as file names as they are: their IMOD models are named "
             f"NAME-HASH (e.g. {str(changed[0])!r} -> {stems[changed[0]]}.mod)")
    paths = []
    for i, name in enumerate(names):
        rows = np.arange(starts[i], starts[i + 1])
        if len(rows):
            path = os.path.join(folder, stems[name] + ".mod")
            write_model(path, particles.xyz[rows], particles.cluster[rows], objects=list(selected))
            paths.append(path)
    return paths
