"""`python -m bench ...`: the command-line grammar and each command's body. Bad input: one line on stderr, exit status 2."""
from bench.cli.main import main

__all__ = ["main"]
