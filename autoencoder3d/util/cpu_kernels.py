"""TensorFlow's oneDNN CPU kernels: asked for unless the user decided, checked, recorded.

Without oneDNN this network trains about 5x slower on a CPU (measured: README,
"Training speed on a CPU"). TensorFlow switches oneDNN on by itself only on
some CPUs (here, with AVX-512 VNNI and BF16, it did), and reads
``TF_ENABLE_ONEDNN_OPTS`` once, when it is first imported; so the package's
``__init__`` calls :func:`prefer_onednn` before anything imports TensorFlow.
A value the user set, ``0`` included, is kept. This module imports no
TensorFlow itself.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

ENV = "TF_ENABLE_ONEDNN_OPTS"
CPU_FEATURES = ("avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_bf16", "amx_tile")

decided_by = None  # who set TF_ENABLE_ONEDNN_OPTS for this process (see prefer_onednn)
_warned = False


def prefer_onednn(environ: MutableMapping[str, str] | None = None, modules: Mapping[str, object] | None = None) -> str:
    """Set ``TF_ENABLE_ONEDNN_OPTS=1`` unless it is set or TensorFlow is already imported.

    Returns (and remembers in :data:`decided_by`) ``"user"``, ``"autoencoder3d"``
    or ``"tensorflow"`` (imported before this package: TensorFlow's own choice stands).
    """
    global decided_by
    environ = os.environ if environ is None else environ
    modules = sys.modules if modules is None else modules
    if ENV in environ:
        decided_by = "user"
    elif "tensorflow" in modules:
        decided_by = "tensorflow"
    else:
        environ[ENV] = "1"
        decided_by = "autoencoder3d"
    return decided_by


def onednn_active() -> bool | None:
    """Whether TensorFlow runs its oneDNN kernels in this process (None: TensorFlow cannot say)."""
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:
        return None
    return bool(_pywrap_util_port.IsMklEnabled())


def cpu_features(path: str | os.PathLike[str] = "/proc/cpuinfo") -> list[str]:
    """The CPU's vector and matrix features that decide TensorFlow's fast kernels (Linux; [] elsewhere)."""
    try:
        with open(path) as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return [name for name in CPU_FEATURES if name in flags]
    except OSError:
        pass
    return []


def kernel_record() -> dict[str, Any]:
    """What run.json records: oneDNN on or off, the variable, who set it, the CPU's features."""
    return {"onednn": onednn_active(), ENV: os.environ.get(ENV), "set_by": decided_by, "cpu_features": cpu_features()}


def warn_if_slow(log: logging.Logger | None = None) -> bool:
    """One warning line (once per process) when training will run on a CPU without oneDNN."""
    global _warned
    if _warned or onednn_active() is not False:
        return False
    import tensorflow as tf

    if tf.config.list_logical_devices("GPU"):
        return False
    _warned = True
    (log or logging.getLogger(__name__)).warning(
        "TensorFlow's oneDNN CPU kernels are off (%s=%s): training on this CPU runs several times slower; "
        "unset %s (autoencoder3d then switches them on) unless you need them off",
        ENV, os.environ.get(ENV, "unset"), ENV,
    )
    return True
