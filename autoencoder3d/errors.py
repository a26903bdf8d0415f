"""The one exception type the command line turns into a clean error line."""


class InputError(Exception):
    """A problem with the user's input or environment, reported without a traceback.

    The message should name the file (or option) and say what is wrong with it.
    The command line prints it on one line and exits with status 2.
    """


class Terminated(KeyboardInterrupt):
    """SIGTERM (e.g. SLURM before preemption), handled like Ctrl-C: finished outputs stay, exit 143."""

