"""User-facing errors: the CLI prints their message on one line and exits with status 2."""


class BenchError(Exception):
    """Bad input or a missing resource; the message is meant for the user, without a traceback."""
