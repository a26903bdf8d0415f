"""Training on several GPUs (``--distribute mirrored``) or several machines (``--distribute multiworker``).

- ``mirrored``: :class:`tf.distribute.MirroredStrategy` over every GPU of this
  machine (on a machine without one, over its logical CPU devices, so that it
  can be tested on a CPU).
- ``multiworker``: :class:`tf.distribute.MultiWorkerMirroredStrategy`. Every
  worker runs the same command on the same data; TensorFlow splits each global
  batch of ``--batch-size`` subvolumes across the workers' replicas. The
  cluster comes from ``TF_CONFIG`` when it is set, otherwise from SLURM's
  variables (:func:`slurm_tf_config`): one task per node, the task's rank as
  the worker index, the port from ``--port``, ``AUTOENCODER3D_PORT`` or
  :data:`DEFAULT_PORT`. The chief (worker 0, or the task of type ``chief``)
  writes the run folder; the other workers write nothing there.

Everything but :func:`make_strategy` and :func:`share_from_chief` is plain
Python, tested without SLURM or TensorFlow.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from ..errors import InputError

if TYPE_CHECKING:
    import tensorflow as tf

log = logging.getLogger("autoencoder3d")

KINDS = ("mirrored", "multiworker")
DEFAULT_PORT = 12345
PORT_VARIABLE = "AUTOENCODER3D_PORT"
_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")
END_TIMEOUT_S = 24 * 3600  # how long the other workers wait for the chief to finish clustering and writing
_joined = []  # the cluster this process joined (make_strategy), for end_together


def expand_nodelist(text: str) -> list[str]:
    """Host names of a SLURM node list: ``"node[01-03,07],gpu5"`` -> node01, node02, node03, node07, gpu5.

    Handles several bracket groups in one name (``rack[1-2]-n[1-2]``) and keeps
    the zero padding of each range's first number, as SLURM does.
    """
    hosts = []
    for name in _split_outside_brackets(text.strip()):
        if name:
            hosts.extend(_expand_name(name, text))
    if not hosts:
        raise InputError(f"SLURM node list {text!r} names no host")
    return hosts


def _split_outside_brackets(text):
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += (char == "[") - (char == "]")
        if depth < 0 or depth > 1:
            raise InputError(f"SLURM node list {text!r}: unbalanced brackets")
        if char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth:
        raise InputError(f"SLURM node list {text!r}: unbalanced brackets")
    parts.append(text[start:])
    return [part.strip() for part in parts]


def _expand_name(name, text):
    """``a[1-2]b[3,5]`` -> a1b3, a1b5, a2b3, a2b5 (the first group varies slowest)."""
    opening = name.find("[")
    if opening < 0:
        return [name]
    closing = name.index("]", opening)
    head, tail = name[:opening], name[closing + 1 :]
    tails = _expand_name(tail, text)
    return [head + number + rest for number in _numbers(name[opening + 1 : closing], text) for rest in tails]


def _numbers(ranges, text):
    numbers = []
    for item in ranges.split(","):
        match = _RANGE.match(item.strip())
        if not match:
            raise InputError(f"SLURM node list {text!r}: cannot read the range {item!r}")
        first, last = match.group(1), match.group(2) or match.group(1)
        if int(last) < int(first):
            raise InputError(f"SLURM node list {text!r}: the range {item!r} runs backwards")
        numbers.extend(str(n).zfill(len(first)) for n in range(int(first), int(last) + 1))
    return numbers


def resolve_port(port: int | str | None = None, environ: Mapping[str, str] | None = None) -> int:
    """The port of every worker: ``port``, else ``$AUTOENCODER3D_PORT``, else 12345."""
    environ = os.environ if environ is None else environ
    value = port if port is not None else environ.get(PORT_VARIABLE, DEFAULT_PORT)
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if not 1 <= number <= 65535:
        where = "--port" if port is not None else PORT_VARIABLE
        raise InputError(f"{where}: expected a port number from 1 to 65535, got {value!r}")
    return number


def _slurm(environ, *names):
    for name in names:
        if environ.get(name, "").strip():
            return environ[name].strip()
    return None


def slurm_tf_config(environ: Mapping[str, str], port: int) -> dict[str, Any] | None:
    """``TF_CONFIG`` (a dict) for this SLURM task: one worker per node, the task's rank as its index.

    Reads the step's (else the job's) node list and task count and ``SLURM_PROCID``.
    Returns None outside a SLURM job.
    """
    nodelist = _slurm(environ, "SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST")
    rank = _slurm(environ, "SLURM_PROCID")
    if nodelist is None or rank is None:
        return None
    hosts = expand_nodelist(nodelist)
    ntasks = _slurm(environ, "SLURM_STEP_NUM_TASKS", "SLURM_NTASKS") or str(len(hosts))
    if not ntasks.isdigit() or int(ntasks) != len(hosts):
        raise InputError(
            f"SLURM runs {ntasks} tasks on {len(hosts)} nodes ({nodelist}); --distribute multiworker needs one task "
            "per node (srun --ntasks-per-node=1), each using all the GPUs of its node"
        )
    if not rank.isdigit() or int(rank) >= len(hosts):
        raise InputError(f"SLURM_PROCID {rank!r} is not a task of the {len(hosts)} tasks of this step")
    return {"cluster": {"worker": [f"{host}:{port}" for host in hosts]}, "task": {"type": "worker", "index": int(rank)}}


def cluster_config(environ: Mapping[str, str] | None = None, port: int | None = None) -> dict[str, Any]:
    """The ``TF_CONFIG`` dict to use: ``$TF_CONFIG`` when set, else one made from SLURM's variables.

    Raises:
        InputError: neither is there, or ``TF_CONFIG`` is not valid.
    """
    environ = os.environ if environ is None else environ
    text = environ.get("TF_CONFIG", "").strip()
    if text:
        return _parse_tf_config(text)
    config = slurm_tf_config(environ, resolve_port(port, environ))
    if config is None:
        raise InputError(
            "--distribute multiworker needs TF_CONFIG or a SLURM task (SLURM_JOB_NODELIST and SLURM_PROCID, i.e. "
            "started by srun); on one machine use --distribute mirrored"
        )
    return config


def _parse_tf_config(text):
    try:
        config = json.loads(text)
        task = config["task"]
        members = config["cluster"][task["type"]]
        index = int(task["index"])
        if not 0 <= index < len(members):
            raise ValueError(f"task index {index} but {len(members)} {task['type']} tasks")
    except (ValueError, KeyError, TypeError) as err:
        raise InputError(f"TF_CONFIG is not a valid cluster description ({type(err).__name__}: {err})") from None
    return config


def is_chief(config: Mapping[str, Any]) -> bool:
    """Whether this task writes the run folder: the ``chief`` task, or worker 0 when there is none."""
    task = config["task"]
    if "chief" in config["cluster"]:
        return task["type"] == "chief"
    return task["type"] == "worker" and int(task["index"]) == 0


def describe(config: Mapping[str, Any]) -> str:
    """``worker 1 of 2`` (for messages)."""
    n_tasks = sum(len(members) for members in config["cluster"].values())
    task = config["task"]
    return f"{task['type']} {task['index']} of {n_tasks}"


def use_cluster(environ: MutableMapping[str, str] | None = None, port: int | None = None) -> dict[str, Any]:
    """Resolve the cluster, put it in ``$TF_CONFIG`` for TensorFlow, and return it (a dict)."""
    environ = os.environ if environ is None else environ
    config = cluster_config(environ, port)
    environ["TF_CONFIG"] = json.dumps(config)
    return config


def make_strategy(kind: str, port: int | None = None) -> tf.distribute.Strategy:
    """The ``tf.distribute`` strategy of ``--distribute KIND``."""
    import tensorflow as tf

    if kind == "mirrored":
        # all GPUs; on a machine without one, the logical CPU devices (testable on CPU)
        devices = [d.name for d in tf.config.list_logical_devices("GPU")]
        devices = devices or [d.name for d in tf.config.list_logical_devices("CPU")]
        strategy = tf.distribute.MirroredStrategy(devices)
        log.info("training on %d replicas: %s", strategy.num_replicas_in_sync, ", ".join(devices))
        return strategy
    if kind != "multiworker":
        raise InputError(f"--distribute: expected one of {', '.join(KINDS)}, got {kind!r}")
    config = use_cluster(port=port)
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    _joined[:] = [config]
    _reduce_each_value(strategy)
    _give_sigterm_back()
    log.info("training as %s, %d replicas in all", describe(config), strategy.num_replicas_in_sync)
    return strategy


def _give_sigterm_back():
    """TensorFlow's coordination service takes SIGTERM over (and only logs it); give it back.

    Python's handler then stops the run at its last resume point (exit 143), as
    SLURM's pre-emption and the requeueing scripts expect.
    """
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        handler = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, signal.SIG_DFL if handler is None else handler)


def _reduce_each_value(strategy):
    """Let Keras 3's ``fit`` run under MultiWorkerMirroredStrategy.

    Keras (3.15) calls ``strategy.reduce`` on the whole ``(x, y)`` batch and with
    ``axis=0`` on scalar losses; the multi-worker strategy accepts neither
    (keras-team/keras#20585). Reduce each value on its own, scalars across the
    replicas only. Nothing changes for values the strategy already took.
    """
    import tensorflow as tf

    reduce = strategy.reduce

    def rank(value):
        local = strategy.experimental_local_results(value)[0]
        return tf.convert_to_tensor(local).shape.rank

    def reduce_each(reduce_op, value, axis=None):
        return tf.nest.map_structure(lambda v: reduce(reduce_op, v, axis=axis if axis is None or rank(v) else None), value)

    strategy.reduce = reduce_each


def share_from_chief(strategy: tf.distribute.Strategy, value: int) -> int:
    """The chief's ``value`` (an integer below 2**53, e.g. the seed), on every worker: a collective step."""
    import tensorflow as tf

    def chief_only():
        context = tf.distribute.get_replica_context()
        first = tf.equal(context.replica_id_in_sync_group, 0)
        mine = tf.where(first, tf.constant(float(value), tf.float64), tf.constant(0.0, tf.float64))
        return context.all_reduce("SUM", mine)

    shared = strategy.experimental_local_results(strategy.run(tf.function(chief_only)))[0]
    return int(shared.numpy())


def stop_watching_workers(strategy: tf.distribute.Strategy) -> None:
    """After training: stop TensorFlow's health check of the other workers.

    The check (a thread pinging every worker every 30 s) would log an error when
    the other workers, done with training, exit while the chief still clusters;
    nothing collective runs after training. TensorFlow has no public call for it.
    """
    stop = getattr(strategy.extended, "_stop_check_health_thread", None)
    if stop is not None:
        stop()


def end_together(timeout_s: float = END_TIMEOUT_S) -> None:
    """Every worker of a multi-worker training waits here for all the others (nothing if it joined none).

    The other workers thus end when the chief has written the run folder, and
    none of them is reported to the chief as crashed. A worker whose chief
    stopped first gets one line (InputError); a chief whose workers are gone
    logs a warning (its outputs are complete).
    """
    if not _joined:
        return
    from tensorflow.python.eager import context

    config = _joined[0]
    try:
        context.context().wait_at_barrier("autoencoder3d-end", int(timeout_s * 1000))
    except Exception as err:  # noqa: BLE001 - TensorFlow raises several kinds; all mean a task is gone
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        if is_chief(config):
            log.warning("the other workers ended before the chief (%s); the run folder is complete", first)
            return
        raise InputError(f"{describe(config)}: the chief stopped before finishing ({first}); see its messages") from None


def free_local_ports(n: int) -> list[int]:
    """``n`` TCP ports free on localhost now (for local workers: tests and benchmarks)."""
    import socket

    sockets = [socket.socket() for _ in range(n)]
    for sock in sockets:
        sock.bind(("localhost", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports
