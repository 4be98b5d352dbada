"""reports/README.md: the index of every report in a reports folder, rewritten whenever one is built."""
from __future__ import annotations

import json
from pathlib import Path

from bench.common.io import atomic_write_text


def _describe(folder: Path) -> str:
    """'digits@0-4; gacd, ard, crd; 3 seeds' from a report's runs.json ('' where it has none)."""
    try:
        runs = json.loads((folder / "runs.json").read_text())
    except (OSError, ValueError):
        return ""
    if not isinstance(runs, list):
        return ""
    runs = [r for r in runs if isinstance(r, dict)]
    students = [r for r in runs if r.get("role") == "student"]
    methods = list(dict.fromkeys(str(r.get("method", "?")).split(":")[0] for r in students))
    seeds = {r.get("seed") for r in students}
    data = sorted({str(r.get("dataset")) for r in runs if r.get("dataset")})
    return f"{', '.join(data)}; {', '.join(methods)}; {len(seeds)} seed{'s' * (len(seeds) != 1)}"


def write_index(reports_dir: Path) -> Path:
    """List every report under ``reports_dir`` (a folder holding README.md) with its data set, methods
    and seeds; `bench report` and `bench run` call it after each report they build."""
    reports_dir = Path(reports_dir)
    lines = ["# Reports", "",
             "Every report in this folder, rebuilt from its run records by `python -m bench report NAME`.", "",
             "| report | data; methods; seeds |", "|---|---|"]
    for folder in sorted(p.parent for p in reports_dir.glob("*/README.md")):
        lines.append(f"| [{folder.name}]({folder.name}/README.md) | {_describe(folder) or '–'} |")
    path = reports_dir / "README.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
