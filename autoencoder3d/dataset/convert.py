"""The published pickle as a store, and a store's contents in a few lines."""

import os

from ..star_coords import tomo_key


def convert_pickle(pickle, out, tomogram=None, dtype="float32"):
    """Write the subvolume pickle as a one-part store, in the pickle's order.

    Args:
        pickle: the published subvolume pickle.
        out: the store folder to write.
        tomogram: the tomogram the subvolumes were cut from (its name, path,
            voxel size and shape go into the store), or None.
        dtype: ``float32`` (bitwise the pickle's volumes) or ``float16``.

    Returns:
        the finished manifest.
    """
    from ..io import load_subvolumes, read_tomogram
    from .store import store_from_set

    subvolumes = load_subvolumes(pickle)
    info = {"name": tomo_key(os.path.splitext(os.fspath(pickle))[0]), "path": None}
    if tomogram is not None:
        tomo = read_tomogram(tomogram)
        info = {"name": tomo_key(tomogram), "path": os.path.abspath(tomogram),
                "voxel_size": [float(v) for v in tomo.voxel_size], "shape": list(tomo.shape)}
        tomo.close()
    return store_from_set(out, subvolumes, tomogram=info, dtype=dtype)


def describe_store(path):
    """Lines saying what a store holds: one per tomogram (name, count, voxel size), then the totals."""
    from .read import open_store

    subvolumes = open_store(path)
    manifest = subvolumes.manifest
    lines = []
    for part in manifest["parts"]:
        size = part.get("voxel_size")
        size = "?" if not size else "x".join(f"{float(v):g}" for v in size) + " A"
        lines.append(f"{part['name']}\t{part['n']}\t{size}")
    volumes = subvolumes.volumes
    gib = volumes.nbytes / 2**30
    pose = "pose-normalized" if manifest.get("pose_normalized") else "not pose-normalized"
    lines.append(f"total: {len(subvolumes)} subvolumes of {'x'.join(map(str, manifest['v_siz']))} in "
                 f"{len(manifest['parts'])} tomograms, {manifest['dtype']} ({gib:.3g} GiB), {pose}")
    return lines

