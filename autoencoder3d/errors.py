"""The one exception type the command line turns into a clean error line."""

from __future__ import annotations


class InputError(Exception):
    """A problem with the user's input or environment, reported without a traceback.

    The message should name the file (or option) and say what is wrong with it.
    The command line prints it on one line and exits with status 2.
    """


class Terminated(KeyboardInterrupt):
    """SIGTERM (e.g. SLURM before preemption), handled like Ctrl-C: finished outputs stay, exit 143."""


def brief(value: object, limit: int = 60, quote: bool = True, _depth: int = 0) -> str:
    """A short description of ``value`` for an error message, whatever its size.

    Long strings are cut, big numbers and containers are described by their
    size, and nothing is rendered deeper than two levels, so a message about
    hostile input stays one short line.
    """
    if isinstance(value, (str, bytes, bytearray)):
        shown = value[:limit]
        text = repr(shown)  # escaped, so the message stays one line
        if not quote and isinstance(shown, str):
            text = text[1:-1]
        return text if len(value) <= limit else f"{text}... ({len(value)} long)"
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return repr(value)[:limit]
    if isinstance(value, int):
        return repr(value) if value.bit_length() <= 64 else f"an integer of {value.bit_length()} bits"
    if isinstance(value, (list, tuple, set, frozenset, dict)):
        return _brief_container(value, _depth)
    if hasattr(value, "kind") and hasattr(value, "itemsize") and not hasattr(value, "dtype"):
        return f"dtype {str(value)[:limit]}"
    shape = getattr(value, "shape", None)
    if isinstance(shape, tuple) and hasattr(value, "dtype"):
        if shape == ():
            return repr(value)[:limit]
        return f"an array of shape {shape[:8]} and dtype {str(value.dtype)[:limit]}"
    return f"a {type(value).__name__[:limit]}"


def _brief_container(value, depth):
    kind = type(value).__name__
    if depth >= 2 or len(value) > 4:
        return f"a {kind} of {len(value)} item{'' if len(value) == 1 else 's'}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{brief(k, 20, _depth=depth + 1)}: {brief(v, 20, _depth=depth + 1)}" for k, v in value.items()) + "}"
    parts = [brief(item, 20, _depth=depth + 1) for item in value]
    if isinstance(value, list):
        return "[" + ", ".join(parts) + "]"
    if isinstance(value, tuple):
        return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"
    return f"{kind}({{{', '.join(parts)}}})"
