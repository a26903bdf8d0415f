"""Worker processes that stop when the build stops.

:func:`run_parallel` runs one call per process, at most ``workers`` at a time
(a tomogram each, so a worker's memory is returned when its tomogram is done):

- An error in one worker, Ctrl-C or SIGTERM in the parent: the parent
  terminates the running workers at once and re-raises; nothing waiting starts.
- The parent killed outright (SIGKILL, a node's out-of-memory killer): every
  worker reads a pipe whose only write end the parent holds; at its end of
  file a thread in the worker ends the worker, so none is left behind.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Iterable, Sequence
from multiprocessing.connection import wait
from typing import Any

from ...errors import InputError

STOP_SECONDS = 10  # a terminated worker that has not ended by then is killed


def run_parallel(function: Callable[..., Any], calls: Iterable[tuple], workers: int, on_result: Callable[[int, Any], object], *,
                 names: Sequence[str] | None = None, initializer: Callable[..., object] | None = None,
                 initargs: tuple = ()) -> None:
    """Run ``function(*args)`` for every ``args`` in ``calls`` in up to ``workers`` processes.

    Args:
        on_result: called in the parent as ``on_result(i, result)`` when call ``i`` finishes.
        names: what call ``i`` works on, for the message when its worker dies.
        initializer: run in each worker first, with ``initargs``.

    Raises:
        the first worker's exception; InputError when a worker died without one.
    """
    context = multiprocessing.get_context("fork")  # the console script cannot be re-imported by spawn
    lifeline, keep_alive = os.pipe()
    waiting, running = list(enumerate(calls)), {}
    try:
        while waiting or running:
            while waiting and len(running) < workers:
                number, args = waiting.pop(0)
                reader, writer = context.Pipe(duplex=False)
                process = context.Process(target=_worker, daemon=True,
                                          args=(writer, lifeline, keep_alive, function, args, initializer, initargs))
                process.start()
                writer.close()
                running[reader] = (process, number)
            for reader in wait(list(running)):
                process, number = running.pop(reader)
                kind, value = _receive(reader, process)
                if kind == "died":
                    what = names[number] if names else f"call {number}"
                    raise InputError(f"the worker for {what} died ({value}); rerun to resume")
                if kind == "error":
                    raise value
                on_result(number, value)
    finally:
        _stop([process for process, _ in running.values()])
        os.close(lifeline)
        os.close(keep_alive)


def _receive(reader, process):
    try:
        outcome = reader.recv()
    except (EOFError, OSError):
        process.join()
        code = process.exitcode
        reason = f"killed by signal {-code}" if code is not None and code < 0 else f"exit status {code}"
        outcome = ("died", reason)
    reader.close()
    process.join()
    return outcome


def _stop(processes):
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(STOP_SECONDS)
        if process.is_alive():
            process.kill()
            process.join()


def _worker(conn, lifeline, keep_alive, function, args, initializer, initargs):
    os.close(keep_alive)  # the parent's copy is then the only write end: its death closes the pipe
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the parent's terminate() ends a worker at once
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    threading.Thread(target=_exit_with_parent, args=(lifeline,), daemon=True).start()
    if initializer is not None:
        initializer(*initargs)
    try:
        outcome = ("done", function(*args))
    except BaseException as err:  # reported to the parent, which decides
        outcome = ("error", err)
    try:
        conn.send(outcome)
    except Exception:  # an exception that does not pickle
        conn.send(("error", RuntimeError(f"{type(outcome[1]).__name__}: {outcome[1]}")))


def _exit_with_parent(lifeline):
    while os.read(lifeline, 1):
        pass
    os._exit(1)
