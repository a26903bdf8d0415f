"""Keep TensorFlow's native log lines off the terminal.

TensorFlow's C++ runtime writes informational lines ("oneDNN custom operations
are on", "Could not find cuda drivers", ...) straight to file descriptor 2,
ignoring ``TF_CPP_MIN_LOG_LEVEL`` in recent releases. A user deciding from our
messages should not have to read past them, so while a command runs, fd 2 goes
through a pipe that drops lines in the native log format and passes everything
else on unchanged. Python's own ``sys.stderr`` (our messages, progress bars,
tracebacks) keeps writing to the original standard error, so it stays a
terminal where it was one (progress bars check that) and its lines keep their
order with standard output. Set ``AUTOENCODER3D_TF_LOGS=1`` to see everything.
"""

import logging
import os
import re
import sys
import threading

NATIVE_LOG = re.compile(
    rb"^(?:[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w./-]+:\d+\]|WARNING: All log messages before absl::InitializeLog)"
)


def _stderr_is_fd2():
    try:
        return sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):
        return False


class NativeLogFilter:
    """Context manager: filter TensorFlow's native log lines out of fd 2; ``sys.stderr`` bypasses the filter."""

    def __init__(self):
        self.active = _stderr_is_fd2() and os.environ.get("AUTOENCODER3D_TF_LOGS", "") in ("", "0")

    def __enter__(self):
        if not self.active:
            return self
        sys.stderr.flush()
        self._saved = os.dup(2)
        self._python_stderr = sys.stderr
        sys.stderr = os.fdopen(
            self._saved, "w", buffering=1, encoding=self._python_stderr.encoding, errors="backslashreplace", closefd=False
        )
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
            direct, sys.stderr = sys.stderr, self._python_stderr
            direct.flush()
            for handler in logging.getLogger().handlers:  # log handlers made inside the filter write on
                if getattr(handler, "stream", None) is direct:
                    handler.setStream(sys.stderr)
            direct.close()  # closefd=False: the saved descriptor stays open
            os.dup2(self._saved, 2)  # closes the pipe's last write end: the pump sees EOF
            self._thread.join(timeout=5)
            os.close(self._saved)
        return False
