"""`python -m bench {run,eval,report,regress,export,paper,job,status,list}`. Bad input: one line on stderr,
exit status 2."""
from __future__ import annotations

import os
import sys

from bench.cli.commands import COMMANDS
from bench.cli.parser import build_parser, check_eps_flags
from bench.common.errors import BenchError


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        argv = sys.argv[1:] if argv is None else list(argv)
        if any("\x00" in str(a) for a in argv):   # no shell passes one; a caller from Python might
            raise BenchError("an argument contains a NUL byte")
        args, extra = parser.parse_known_args(argv)
        if extra and not (hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra)):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        if extra:  # KEY=VALUE overrides after an option (argparse takes one run of positionals only)
            args.overrides = [*args.overrides, *extra]
        args.argv = argv
        check_eps_flags(args)
        if not args.command:
            raise BenchError(f"choose a command: {', '.join(COMMANDS)} (see python -m bench --help)")
        if getattr(args, "methods_from", None):
            from bench.methods import load_file  # only when asked: the registry loads torch

            for path in args.methods_from:
                load_file(path)
        return COMMANDS[args.command](args)
    except BenchError as err:   # one line, whatever a library put in the message
        print(f"bench: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except BrokenPipeError:   # `bench list | head`: the reader has what it wanted; no traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's last flush must not raise again
        return 141  # as a shell reports a command ended by SIGPIPE
    except KeyboardInterrupt:
        print("bench: interrupted; finished epochs are checkpointed, run again to resume", file=sys.stderr)
        return 130
