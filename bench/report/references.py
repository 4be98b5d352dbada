"""Published numbers (bench/report/references.csv) matched to a run-set's rows, with the difference."""
from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

from bench.models import published_arch

REFERENCES = Path(__file__).with_name("references.csv")
_SURE = {"verified": 0, "second-hand": 1, "unverified": 2, "missing": 3}


@lru_cache(maxsize=None)
def load_references(path: Path = REFERENCES) -> tuple[dict, ...]:
    with open(path, newline="") as fh:
        return tuple(csv.DictReader(line for line in fh if not line.startswith("#")))


def published(method: str, role: str, dataset: str, arch: str) -> tuple[dict[str, dict], list[dict]]:
    """({metric: best-attested reference row}, every matching row) for one table row."""
    arch = published_arch(arch)  # e.g. a smoke run's narrow twin stands in for the full-width network
    rows = [r for r in load_references() if r["method"] == method and r["role"] == role
            and r["dataset"] == dataset and r["student"] == arch]
    best: dict[str, dict] = {}
    for r in sorted(rows, key=lambda r: _SURE.get(r["status"], 9)):
        if r["metric"] and r["value"]:
            best.setdefault(r["metric"], r)
    return best, rows
