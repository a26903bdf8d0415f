"""Keep TensorFlow's native log lines off the terminal.

TensorFlow's C++ runtime writes informational lines ("oneDNN custom operations
are on", "Could not find cuda drivers", ...) straight to file descriptor 2,
ignoring ``TF_CPP_MIN_LOG_LEVEL`` in recent releases. A user deciding from our
messages should not have to read past them, so while a command runs, fd 2 goes
through a pipe that drops lines in the native log format and passes everything
else (our messages, tracebacks, progress bars) on unchanged. Set
``AUTOENCODER3D_TF_LOGS=1`` to see everything.
"""

import os
import re
import sys
import threading

from .. import progress

NATIVE_LOG = re.compile(
    rb"^(?:[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w./-]+:\d+\]|WARNING: All log messages before absl::InitializeLog)"
)


def _stderr_is_fd2():
    try:
        return sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):
        return False


class NativeLogFilter:
    """Context manager: filter TensorFlow's native log lines out of fd 2."""

    def __init__(self):
        self.active = _stderr_is_fd2() and os.environ.get("AUTOENCODER3D_TF_LOGS", "") in ("", "0")

    def __enter__(self):
        if not self.active:
            return self
        sys.stderr.flush()
        progress.remember_terminal(2)  # the pipe below is no terminal, but the user's stderr may be
        self._saved = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
        self._thread = threading.Thread(target=self._pump, args=(read_end,), daemon=True)
        self._thread.start()
        return self

    def _pump(self, read_end):
        with os.fdopen(read_end, "rb", buffering=0) as pipe:
            while True:
                chunk = pipe.read(65536)
                if not chunk:
                    return
                kept = b"".join(line for line in chunk.splitlines(keepends=True) if not NATIVE_LOG.match(line))
                if kept:
                    os.write(self._saved, kept)

    def __exit__(self, *exc):
        if self.active:
            sys.stderr.flush()
            os.dup2(self._saved, 2)  # closes the pipe's last write end: the pump sees EOF
            self._thread.join(timeout=5)
            os.close(self._saved)
            progress.forget_terminal()
        return False
