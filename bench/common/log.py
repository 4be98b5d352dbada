"""One progress line on stderr (stdout carries results); under torchrun only rank 0 speaks."""
from __future__ import annotations

import sys

from bench.common import distributed


def log(msg: str) -> None:
    if distributed.is_main():
        print(msg, file=sys.stderr, flush=True)
