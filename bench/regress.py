"""`python -m bench regress`: re-run a fixed preset and compare every metric with a stored baseline.

The allowed band of a metric comes from the seed spread stored with the baseline: a drop is
flagged when the mean over seeds falls below

    baseline mean - max(FLOOR, t_0.95(n-1) * sd * sqrt(2 / n))

i.e. more than a one-sided 95 % Student-t margin for the difference of two n-seed means, and never
less than FLOOR (accuracy points), so that a single test image flipping on a deterministic run
cannot fail CI. Runs always start from scratch (teacher included) in a temporary folder.
"""
from __future__ import annotations

import getpass
import math
import tempfile
from dataclasses import asdict
from pathlib import Path

from bench.config import RunConfig, config_hash
from bench.errors import BenchError
from bench.io import atomic_write_json
from bench.results import RunRecord, git_commit, now

FLOOR = 0.02   # two accuracy points
BASELINE_DIR = Path("results") / "baselines"


def metric_values(rec: RunRecord) -> dict[str, float]:
    """Every accuracy a record holds: the protocol's and each transfer target's."""
    values = {k: float(v) for k, v in rec.metrics.items()}
    for target, tr in rec.transfer.items():
        values.update({f"transfer:{target}:{k}": float(v) for k, v in tr["metrics"].items()})
    return values


def collect(records: list[RunRecord], labels: dict[str, str]) -> dict[str, dict[str, list[float]]]:
    """{row: {metric: [value per seed]}}; ``labels`` maps a run's method label to the row it fills."""
    out: dict[str, dict[str, list[float]]] = {}
    for rec in sorted(records, key=lambda r: r.seed):
        row = "teacher" if rec.role == "teacher" else labels.get(rec.method, rec.method)
        for metric, value in metric_values(rec).items():
            out.setdefault(row, {}).setdefault(metric, []).append(value)
    return out


def band(values: list[float], floor: float = FLOOR) -> tuple[float, float, float]:
    """(mean, sd, lowest allowed mean) of a baseline's per-seed values."""
    from scipy import stats

    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    margin = stats.t.ppf(0.95, n - 1) * sd * math.sqrt(2 / n) if n > 1 else 0.0
    return mean, sd, mean - max(floor, margin)


def compare(baseline: dict, now_values: dict[str, dict[str, list[float]]]) -> list[dict]:
    rows = []
    floor = baseline.get("floor", FLOOR)
    for row, metrics in baseline["values"].items():
        for metric, base_vals in metrics.items():
            mean, sd, lowest = band(base_vals, floor)
            got = now_values.get(row, {}).get(metric)
            now_mean = sum(got) / len(got) if got else float("nan")
            verdict = "missing" if not got else ("DROP" if now_mean < lowest else "ok")
            rows.append({"row": row, "metric": metric, "baseline": mean, "sd": sd, "n": len(base_vals),
                         "now": now_mean, "lowest": lowest, "verdict": verdict})
    return rows


def format_table(rows: list[dict]) -> str:
    lines = [f"{'row':24s} {'metric':28s} {'baseline':>15s} {'now':>7s} {'allowed ≥':>10s}  verdict"]
    for r in rows:
        base = f"{100 * r['baseline']:.1f} ± {100 * r['sd']:.1f} (n={r['n']})"
        lines.append(f"{r['row']:24s} {r['metric']:28s} {base:>15s} {100 * r['now']:7.1f} "
                     f"{100 * r['lowest']:10.1f}  {r['verdict']}")
    return "\n".join(lines)


def run_regression(cfg: RunConfig, methods: list[str], seeds: tuple[int, ...],
                   substitute: dict[str, str] | None = None) -> dict[str, dict[str, list[float]]]:
    """Train and evaluate from scratch in a temporary folder; ``substitute`` swaps a method for a
    variant that is then scored against the original's baseline (to test the check itself)."""
    from bench.runner import run_methods

    substitute = substitute or {}
    unknown = set(substitute) - set(methods)
    if unknown:
        raise BenchError(f"--substitute names {', '.join(sorted(unknown))}, not in the baseline's methods "
                         f"({', '.join(methods)})")
    actual = [substitute.get(m, m) for m in methods]
    from methods import parse_method
    labels = {parse_method(a).label: parse_method(m).label for m, a in zip(methods, actual)}
    with tempfile.TemporaryDirectory(prefix="bench-regress-") as tmp:
        records = run_methods(cfg, actual, "regress", Path(tmp), seeds=seeds)
    return collect(records, labels)


def config_changes(stored: dict, current: dict, defaults: dict, path: str = "") -> list[str]:
    """Where ``current`` differs from the baseline's config; a field the baseline predates counts as
    unchanged while it holds its default value."""
    changes = []
    for key, value in current.items():
        where = f"{path}{key}"
        if key not in stored:
            if value != defaults.get(key):
                changes.append(where)
        elif isinstance(value, dict) and isinstance(stored[key], dict):
            changes += config_changes(stored[key], value, defaults.get(key) or {}, where + ".")
        elif (list(value) if isinstance(value, tuple) else value) != stored[key]:
            changes.append(where)
    changes += [f"{path}{key}" for key in stored if key not in current]
    return changes


def write_baseline(path: Path, cfg: RunConfig, methods: list[str], seeds: tuple[int, ...],
                   values: dict, reason: str, previous: dict | None) -> dict:
    entry = {"who": getpass.getuser(), "why": reason, "when": now(), "commit": git_commit()}
    baseline = {"config": asdict(cfg), "config_id": config_hash(asdict(cfg)), "methods": methods,
                "seeds": list(seeds), "floor": FLOOR, "values": values,
                "history": [*(previous or {}).get("history", []), entry]}
    atomic_write_json(path, baseline)
    return baseline
