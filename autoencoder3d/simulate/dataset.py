"""Simulated crowded cellular tomograms with ground truth (``autoencoder3d simulate``).

What is simulated (published facts: ``shared/spec/simulation-and-picking.md``):

1. Membranes: a flat sheet and spherical vesicles with a bilayer profile.
2. Particles of the classes in :mod:`autoencoder3d.simulate.shapes`, randomly
   rotated and packed without overlap (at least one voxel apart) between the
   membranes, each centred on its centre of mass.
3. Dense matter made dark (negative), then imaged in Fourier space on the whole
   volume: a missing wedge (tilt about y, beam along z, +-``wedge`` degrees),
   the CTF with its envelope, and Gaussian noise to the asked SNR (variance
   ratio), half of the noise variance before the CTF and half after. The wedge
   applies to the noise too, as in a reconstruction.
4. Subvolumes of side ``box`` cut around every particle at its centre plus a
   picking error (jitter of a few voxels).

A second, separate simulation of a few classes puts each particle in the
pose that pose normalization aims for (major principal axis along x, centre of
mass in the middle, up to the axes' signs and a few degrees), which gives the
already pose-normalized ``subvolumes_example_2.pickle``.

The same seed gives byte-identical files. Axis order is the package's [x, y, z]
(z = beam direction = thickness); centres are voxel indices.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..box import check_box_option
from ..errors import InputError
from ..volume import SubvolumeSet, cut_box
from .imaging import ctf, electron_wavelength, frequencies, image_volume, wedge_mask  # noqa: F401 - public here too
from .shapes import CLASSES, MEMBRANE_HALF_WIDTH_NM, ParticleClass, bilayer, principal_frame, render_particle

DEFAULTS = dict(
    seed=0,
    snr=0.3,
    shape=(200, 200, 120),
    voxel_size=10.0,
    copies=50,
    box=32,
    wedge=60.0,
    defocus=-5.0,
    voltage=300.0,
    cs=2.0,
    jitter=1.5,
    example_2_classes=("ribosome", "barrel", "double_ring", "filament"),
    example_2_copies=40,
)
"""Defaults of :func:`simulate_dataset` (voxel size in Angstrom, defocus in um, voltage in kV, Cs in mm)."""

MAX_TRIES = 200
TRUTH_FORMAT = "autoencoder3d-simulation-truth"


# ---------------------------------------------------------------- rotations


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A rotation matrix drawn uniformly (a normalised Gaussian quaternion)."""
    q = rng.standard_normal(4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def small_rotation(rng: np.random.Generator, sigma_deg: float) -> np.ndarray:
    """A rotation by a small random angle (normal, ``sigma_deg``) about a random axis."""
    axis = rng.standard_normal(3)
    axis /= np.linalg.norm(axis)
    angle = np.deg2rad(sigma_deg) * rng.standard_normal()
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


def canonical_pose(rng: np.random.Generator, axes: np.ndarray) -> np.ndarray:
    """The pose pose-normalization aims for: principal axes along x, y, z, random signs."""
    signs = rng.choice([-1.0, 1.0], size=2)
    flip = np.diag([signs[0], signs[1], signs[0] * signs[1]])
    return small_rotation(rng, 3.0) @ flip @ axes.T


# ---------------------------------------------------------------- packing


class Scene:
    """The noise-free volume being built: density, class labels, occupancy."""

    def __init__(self, shape: Sequence[int], voxel_nm: float):
        self.shape = tuple(shape)
        self.voxel_nm = voxel_nm
        self.density = np.zeros(self.shape, dtype=np.float32)
        self.labels = np.zeros(self.shape, dtype=np.uint8)
        self.occupied = np.zeros(self.shape, dtype=bool)

    def coordinates_nm(self) -> list[NDArray[np.float32]]:
        """Voxel centre coordinates in nm, as three broadcastable arrays."""
        return [
            (np.arange(n, dtype=np.float32) * self.voxel_nm).reshape([-1 if i == a else 1 for i in range(3)])
            for a, n in enumerate(self.shape)
        ]


def add_membranes(rng: np.random.Generator, scene: Scene, label: int, sheets: int = 1, vesicles: int = 2) -> list[dict[str, Any]]:
    """Add flat sheets and spherical vesicles with a bilayer profile.

    Returns:
        list of dicts describing each membrane (nm, tomogram frame).
    """
    x, y, z = scene.coordinates_nm()
    extent = np.array(scene.shape) * scene.voxel_nm
    found = []
    for _ in range(sheets):
        normal = np.array([1.0, 0.25 * rng.standard_normal(), 0.25 * rng.standard_normal()])
        normal /= np.linalg.norm(normal)
        point = np.array([rng.uniform(0.08, 0.15), 0.5, 0.5]) * extent
        t = (x - point[0]) * normal[0] + (y - point[1]) * normal[1] + (z - point[2]) * normal[2]
        _paint_membrane(scene, t, label)
        found.append({"type": "sheet", "point_nm": _r(point), "normal": _r(normal)})
    for _ in range(vesicles):
        radius = rng.uniform(0.18, 0.3) * extent.min()
        centre = rng.uniform(0.2, 0.8, size=3) * extent
        t = np.sqrt((x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2) - radius
        _paint_membrane(scene, t, label)
        found.append({"type": "vesicle", "centre_nm": _r(centre), "radius_nm": round(float(radius), 4)})
    return found


def _paint_membrane(scene, t_nm, label):
    near = np.abs(t_nm) < MEMBRANE_HALF_WIDTH_NM
    scene.density[near] += bilayer(t_nm[near]).astype(np.float32)
    scene.labels[near & (np.abs(t_nm) < 2.7)] = label
    scene.occupied |= near


def centre_range(shape: Sequence[int], box: int, jitter_max: int, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive (lo, hi) per axis for a centre whose particle and jittered box fit inside."""
    lo = np.full(3, max(box // 2 + jitter_max, radius))
    hi = np.array(shape) - 1 - max(box - box // 2 - 1 + jitter_max, radius)
    return lo, hi


def place_particles(
    rng: np.random.Generator, scene: Scene, plan: Sequence[tuple[int, ParticleClass, np.ndarray, np.ndarray]], box: int,
    jitter_max: int, pose_fn: Callable[[np.random.Generator, np.ndarray], np.ndarray], progress: bool = False,
    desc: str = "packing",
) -> list[dict[str, Any]]:
    """Place particles at random free positions, largest classes first.

    Args:
        plan: list of (label, ParticleClass, com_nm, axes) with one entry per copy.
        pose_fn: (rng, axes) -> rotation matrix (canonical -> tomogram).

    Returns:
        list of dicts: label, class name, integer centre, rotation.

    Raises:
        InputError: a particle found no free place (the volume is too crowded).
    """
    from scipy.ndimage import binary_dilation

    from ..util.progress import progress_bar

    order = sorted(range(len(plan)), key=lambda i: (-plan[i][1].radius_nm, i))
    placed = []
    for i in progress_bar(order, total=len(order), desc=desc, unit="particle", enabled=progress, leave=False):
        label, cls, com, axes = plan[i]
        rotation = pose_fn(rng, axes)
        density, radius = render_particle(cls, rotation, scene.voxel_nm, shift_nm=com)
        solid = density > 0.02
        keep_out = binary_dilation(solid)
        lo, hi = centre_range(scene.shape, box, jitter_max, radius)
        if np.any(hi < lo):
            raise InputError(f"--shape {scene.shape}: too small for a {cls.name} particle with its {box}-voxel box")
        centre = _free_spot(rng, scene.occupied, keep_out, radius, lo, hi)
        if centre is None:
            raise InputError(
                f"--copies: could not place {len(plan)} particles without overlap in a {scene.shape} volume "
                f"(stuck at particle {len(placed) + 1}, a {cls.name}); use a larger --shape or fewer --copies"
            )
        region = tuple(slice(c - radius, c + radius + 1) for c in centre)
        scene.occupied[region] |= solid
        scene.density[region] += density
        scene.labels[region][density > 0.5] = label
        placed.append({"index": i, "label": label, "class": cls.name, "center": centre, "rotation": rotation})
    placed.sort(key=lambda p: p["index"])
    return placed


def _free_spot(rng, occupied, keep_out, radius, lo, hi):
    """A random free centre: random tries first, then an exact search of all free places."""
    for _ in range(MAX_TRIES):
        centre = [int(rng.integers(a, b + 1)) for a, b in zip(lo, hi)]
        region = tuple(slice(c - radius, c + radius + 1) for c in centre)
        if not np.any(occupied[region] & keep_out):
            return centre
    from scipy.signal import fftconvolve

    window = tuple(slice(a - radius, b + radius + 1) for a, b in zip(lo, hi))
    overlap = fftconvolve(occupied[window].astype(np.float32), keep_out[::-1, ::-1, ::-1].astype(np.float32),
                          mode="valid")
    free = np.argwhere(overlap < 0.5)
    if len(free) == 0:
        return None
    return [int(c) for c in free[rng.integers(len(free))] + lo]


# ---------------------------------------------------------------- subvolumes


def jitter_offsets(rng: np.random.Generator, n: int, sigma: float, limit: int) -> np.ndarray:
    """Integer picking errors: normal with ``sigma`` voxels, clipped to +-``limit``."""
    if sigma <= 0:
        return np.zeros((n, 3), dtype=int)
    return np.clip(np.rint(rng.normal(0.0, sigma, size=(n, 3))), -limit, limit).astype(int)


def cut_subvolumes(
    rng: np.random.Generator, tomogram: np.ndarray, particles: Sequence[Mapping[str, Any]], box: int, jitter: float, set_name: str,
    voxel_size: float,
) -> tuple[SubvolumeSet, dict[str, dict[str, Any]]]:
    """Cut one box per particle at its jittered centre, in a random sample order.

    Returns:
        (SubvolumeSet, truth records {uuid: {...}}).
    """
    limit = _jitter_limit(jitter)
    offsets = jitter_offsets(rng, len(particles), jitter, limit)
    order = rng.permutation(len(particles))
    ids = [str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in particles]
    volumes = np.empty((len(particles), box, box, box), dtype=np.float32)
    centers = np.empty((len(particles), 3), dtype=np.int64)
    records = {}
    for k, i in enumerate(order):
        p = particles[i]
        picked = np.array(p["center"]) + offsets[i]
        volumes[k] = cut_box(tomogram, picked - box // 2, box, float(tomogram.mean()))
        centers[k] = picked
        records[ids[k]] = {
            "set": set_name,
            "class": p["class"],
            "label": p["label"],
            "center_true": [int(c) for c in p["center"]],
            "center_picked": [int(c) for c in picked],
            "rotation": [_r(row) for row in p["rotation"]],
        }
    subvolumes = SubvolumeSet(uuids=ids, volumes=volumes, centers=centers.astype(float), voxel_size=(voxel_size,) * 3)
    return subvolumes, records


def _jitter_limit(jitter):
    return int(np.ceil(2 * jitter)) if jitter > 0 else 0


def _r(values, digits=6):
    return [round(float(v), digits) for v in values]


# ---------------------------------------------------------------- the dataset


def check_options(
    *, seed: int, snr: float, shape: Sequence[int], voxel_size: float, copies: int, box: int, wedge: float,
    defocus: float, voltage: float, cs: float, jitter: float, example_2_classes: Sequence[str], example_2_copies: int,
) -> tuple[int, ...]:
    """Validate :func:`simulate_dataset`'s options; raise InputError naming the option."""
    names = [cls.name for cls in CLASSES]
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"--seed: must be a non-negative integer, got {seed!r}")
    if not np.isfinite(snr) or snr <= 0:
        raise InputError(f"--snr: must be a positive number (variance ratio, e.g. 0.3), got {snr!r}")
    check_box_option(box)
    if box < 8:
        raise InputError(f"--box: the simulation needs at least 8 voxels, got {box!r}")
    shape = tuple(shape)
    need = box + 2 * _jitter_limit(jitter) + 1
    if len(shape) != 3 or any(not isinstance(n, (int, np.integer)) or n < need for n in shape):
        raise InputError(f"--shape: must be three integers of at least {need} (box {box} plus picking error), got {shape!r}")
    if not np.isfinite(voxel_size) or not 1.0 <= voxel_size <= 50.0:
        raise InputError(f"--voxel-size: must be between 1 and 50 Angstrom, got {voxel_size!r}")
    if not isinstance(copies, (int, np.integer)) or copies < 1:
        raise InputError(f"--copies: must be a positive integer (copies per class), got {copies!r}")
    if not np.isfinite(wedge) or not 0 < wedge <= 90:
        raise InputError(f"--wedge: must be the largest tilt angle in degrees, in (0, 90], got {wedge!r}")
    if not np.isfinite(defocus) or defocus >= 0:
        raise InputError(f"--defocus: give the underfocus as a negative number of micrometres (e.g. -5), got {defocus!r}")
    if not np.isfinite(voltage) or voltage <= 0 or not np.isfinite(cs) or cs < 0:
        raise InputError(f"voltage and Cs must be positive, got {voltage!r} kV and {cs!r} mm")
    if not np.isfinite(jitter) or not 0 <= jitter <= box / 8:
        raise InputError(f"--jitter: must be between 0 and box/8 = {box / 8:g} voxels, got {jitter!r}")
    unknown = [c for c in example_2_classes if c not in names]
    if unknown or not example_2_classes:
        raise InputError(f"example 2 classes: {unknown or 'none given'}: choose from {', '.join(names)}")
    if not isinstance(example_2_copies, (int, np.integer)) or example_2_copies < 1:
        raise InputError(f"--example-2-copies: must be a positive integer, got {example_2_copies!r}")
    return shape


def simulate_dataset(
    out_dir: str | os.PathLike[str], *, membranes: bool = True, write_density: bool = False, progress: bool = False, **options: Any,
) -> dict[str, Any]:
    """Simulate the example data with ground truth and write it to ``out_dir``.

    Args:
        out_dir: folder to write (created if needed; files are replaced atomically).
        membranes: add a membrane sheet and two vesicles to the main tomogram.
        write_density: also write ``density.mrc`` (noise-free, positive density)
            and ``labels.mrc`` (uint8: 0 background, 1..6 the classes, 7 membrane).
        progress: show progress bars.
        **options: any of :data:`DEFAULTS`: ``seed``, ``snr`` (variance ratio),
            ``shape`` (x, y, z voxels), ``voxel_size`` (Angstrom), ``copies`` (per
            class), ``box``, ``wedge`` (largest tilt, degrees), ``defocus`` (um,
            negative = underfocus), ``voltage`` (kV), ``cs`` (mm), ``jitter``
            (picking error, voxels), ``example_2_classes``, ``example_2_copies``.

    Returns:
        dict: the files written, subvolume counts, the SNR reached and the time taken.

    Raises:
        InputError: a bad option (named in the message) or a volume too small.
    """
    from ..util.progress import progress_bar

    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise TypeError(f"simulate_dataset() got unknown options {unknown}")
    opts = {**DEFAULTS, **options}
    opts["shape"] = check_options(**opts)
    started = time.perf_counter()
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(opts["seed"]).spawn(7)]
    stages = progress_bar(total=3, desc="simulate", unit="step", enabled=progress)
    first = _simulate_set(opts, streams[0:4], CLASSES, opts["copies"], random_rotation_pose, opts["jitter"],
                          "example_1", membranes, progress)
    stages.update()
    chosen = [cls for cls in CLASSES if cls.name in opts["example_2_classes"]]
    second = _simulate_set(opts, [None] + streams[4:7], chosen, opts["example_2_copies"], canonical_pose, 0.0,
                           "example_2", False, progress)
    stages.update()
    files = _write_outputs(out_dir, opts, first, second, write_density)
    stages.update()
    stages.close()
    return {
        "out_dir": os.fspath(out_dir),
        "files": sorted(files.values()) + ["truth.json"],
        "subvolumes": {"example_1": len(first["subvolumes"]), "example_2": len(second["subvolumes"])},
        "snr": first["snr"],
        "seconds": time.perf_counter() - started,
    }


def random_rotation_pose(rng: np.random.Generator, axes: np.ndarray) -> np.ndarray:
    """A uniformly random pose (``axes`` unused): the pose of particles in a cell."""
    return random_rotation(rng)


def _simulate_set(opts, streams, classes, copies, pose_fn, jitter, set_name, membranes, progress):
    """One tomogram and its subvolumes; ``streams``: membranes, packing, imaging, cutting."""
    voxel_nm = opts["voxel_size"] / 10.0
    scene = Scene(opts["shape"], voxel_nm)
    walls = add_membranes(streams[0], scene, label=len(CLASSES) + 1) if membranes else []
    labels = {cls.name: label for label, cls in enumerate(CLASSES, 1)}
    plan = []
    for cls in classes:
        frame = principal_frame(cls, voxel_nm)
        plan += [(labels[cls.name], cls) + frame] * copies
    particles = place_particles(streams[1], scene, plan, opts["box"], _jitter_limit(jitter), pose_fn, progress,
                                f"packing {set_name}")
    tomogram, _, snr = _image(streams[2], scene, opts)
    subvolumes, records = cut_subvolumes(streams[3], tomogram, particles, opts["box"], jitter, set_name,
                                         opts["voxel_size"])
    return dict(scene=scene, walls=walls, particles=particles, tomogram=tomogram, snr=snr,
                subvolumes=subvolumes, records=records)


def _write_outputs(out_dir, opts, first, second, write_density):
    """Write the files of both sets and truth.json; return the file names by role."""
    from ..formats.mrc import write_mrc
    from ..formats.subvolume_pickle import save_subvolumes
    from ..util.atomic import atomic_open

    files = {"tomogram": "tomogram.rec", "example_1": "subvolumes_example_1.pickle",
             "example_2": "subvolumes_example_2.pickle"}
    stamp = f"autoencoder3d simulate, seed {opts['seed']}"
    voxel_size = opts["voxel_size"]
    if write_density:
        files.update(density="density.mrc", labels="labels.mrc")
        write_mrc(os.path.join(out_dir, files["density"]), first["scene"].density, voxel_size, label=stamp + " density")
        write_mrc(os.path.join(out_dir, files["labels"]), first["scene"].labels, voxel_size, label=stamp + " labels")
    write_mrc(os.path.join(out_dir, files["tomogram"]), first["tomogram"], voxel_size, label=stamp)
    save_subvolumes(os.path.join(out_dir, files["example_1"]), first["subvolumes"])
    save_subvolumes(os.path.join(out_dir, files["example_2"]), second["subvolumes"])
    truth = _truth(opts, files, first, second)
    with atomic_open(os.path.join(out_dir, "truth.json"), "w") as handle:
        json.dump(truth, handle, indent=1)
        handle.write("\n")
    return files


def _image(rng, scene, opts):
    return image_volume(rng, -scene.density, opts["voxel_size"], opts["snr"], opts["wedge"], opts["defocus"],
                        opts["voltage"], opts["cs"])


def _truth(opts, files, first, second):
    params = {k: (list(v) if isinstance(v, tuple) else v) for k, v in opts.items()}
    classes = []
    for label, cls in enumerate(CLASSES, 1):
        classes.append({
            "label": label,
            "name": cls.name,
            "description": cls.description,
            "bounding_diameter_nm": round(2 * cls.radius_nm, 1),
            "copies_example_1": sum(p["label"] == label for p in first["particles"]),
            "copies_example_2": sum(p["label"] == label for p in second["particles"]),
        })
    return {
        "format": TRUTH_FORMAT,
        "version": 1,
        "axis_order": "x, y, z (z = beam); centres are voxel indices of tomogram.rec; "
                      "example_2 centres refer to a second tomogram that is not written",
        "rotation_convention": "tomogram = rotation @ canonical + centre (canonical: the class's frame, "
                               "origin at its centre of mass)",
        "params": params,
        "files": files,
        "snr": {"example_1": _rounded(first["snr"]), "example_2": _rounded(second["snr"])},
        "classes": classes,
        "membrane_label": len(CLASSES) + 1,
        "membranes": first["walls"],
        "subvolumes": {**first["records"], **second["records"]},
    }


def _rounded(stats):
    return {k: round(float(v), 6) for k, v in stats.items()}
