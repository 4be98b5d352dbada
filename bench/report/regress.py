"""`python -m bench regress`: re-run a fixed preset and compare every metric with a stored baseline.

On another machine (another CPU make, another library build) float rounding sends training down
another trajectory, much as a new seed does. The bands therefore come from the seed spread, and
every row has one: the regress preset trains one teacher per seed, so the teacher row has a spread
too. The baseline is made once with many seeds (``--update`` runs the preset's ``baseline_seeds``),
so its mean and its seed sd are precise; the check then re-runs the few seeds CI can afford. A
metric fails when the mean of the check's n seeds falls below

    baseline mean - max(FLOOR, t_q(df) * sd * sqrt(1/n_base + 1/n)),   q = 1 - alpha_i

taking the larger of two (sd, df): the row's own seed sd from the baseline's and this run's seeds
together, and the baseline's sd of that metric pooled over the rows alike (see ``bands``). The chance of
*any* false alarm in a check of unchanged code is held at FAMILY_ALPHA by a weighted Bonferroni
split: the focus comparisons (PGD-20 and AutoAttack of every robust row, one whose baseline PGD-20
is at least ROBUST_ROW) share FOCUS_SHARE of it, every other comparison the rest. Each band states
the drop it detects with POWER probability; tests/report/test_regress_bands.py checks both rates
by simulation. Runs always start from scratch (teachers included) in a temporary folder.
"""
from __future__ import annotations

import getpass
import json
import math
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

from bench.common.errors import BenchError
from bench.common.io import atomic_write_json
from bench.common.provenance import git_commit, now
from bench.config.schema import RunConfig, config_hash
from bench.runs.orchestrate import run_methods
from bench.runs.record import RunRecord
from methods import parse_method

FLOOR = 0.02          # two accuracy points
FAMILY_ALPHA = 0.05   # chance of any false alarm in one check of unchanged code
POWER = 0.8           # the power at which each band states its detectable drop
FOCUS_METRICS = ("pgd20", "aa")
FOCUS_SHARE = 0.8     # of FAMILY_ALPHA, spent on the focus comparisons (the numbers a release is judged by)
ROBUST_ROW = 0.2      # a row whose baseline PGD-20 mean is at least this is robust: its focus metrics get focus
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


@dataclass(frozen=True)
class Band:
    mean: float        # baseline mean over seeds
    sd: float          # the row's own seed sd, from the baseline's and this run's seeds together
    sd_pooled: float   # the baseline's seed sd of this metric, pooled over the rows alike (robust or not)
    n: int
    lowest: float      # the lowest mean over seeds that passes
    detectable: float  # the true drop the check flags with probability POWER (the check's power, stated)


@lru_cache(maxsize=None)
def _z(q: float) -> float:
    from scipy import stats
    return float(stats.norm.ppf(q))


@lru_cache(maxsize=None)
def _t(q: float, df: int) -> float:
    from scipy import stats
    return float(stats.t.ppf(q, df))


def _sd(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 and max(values) > min(values) else 0.0


def _pooled_sd(samples: list[list[float]]) -> tuple[float, int]:
    """Pooled standard deviation of several samples and its degrees of freedom."""
    parts = [v for v in samples if len(v) > 1]
    df = sum(len(v) - 1 for v in parts)
    return (math.sqrt(sum((len(v) - 1) * _sd(v) ** 2 for v in parts) / df) if df else 0.0), df


def robust_rows(values: dict[str, dict[str, list[float]]]) -> set[str]:
    """The rows whose baseline PGD-20 mean is at least ROBUST_ROW."""
    return {row for row, m in values.items() if m.get("pgd20") and statistics.mean(m["pgd20"]) >= ROBUST_ROW}


def focus(values: dict[str, dict[str, list[float]]]) -> set[tuple[str, str]]:
    """The (row, metric) pairs that get FOCUS_SHARE of the false-alarm rate: FOCUS_METRICS of the
    robust rows."""
    return {(row, metric) for row in robust_rows(values) for metric in FOCUS_METRICS if metric in values[row]}


def alphas(values: dict[str, dict[str, list[float]]], family_alpha: float = FAMILY_ALPHA,
           focus_share: float = FOCUS_SHARE) -> dict[tuple[str, str], float]:
    """Each comparison's false-alarm rate: a weighted Bonferroni split of ``family_alpha`` (they sum to
    it), ``focus_share`` of it over the focus pairs and the rest over the others; an equal split
    when ``focus_share`` is 0 (baselines made before the split) or one group is empty."""
    pairs = [(row, metric) for row, metrics in values.items() for metric in metrics]
    chosen = focus(values) if focus_share else set()
    if not chosen or len(chosen) == len(pairs):  # one group: the plain Bonferroni split
        return {p: family_alpha / len(pairs) for p in pairs}
    n_focus, n_rest = len(chosen), len(pairs) - len(chosen)
    return {p: family_alpha * (focus_share / n_focus if p in chosen else (1 - focus_share) / n_rest) for p in pairs}


def bands(values: dict[str, dict[str, list[float]]], now: dict[str, dict[str, list[float]]] | None = None,
          floor: float = FLOOR, family_alpha: float = FAMILY_ALPHA, focus_share: float = FOCUS_SHARE,
          n_now: int | None = None) -> dict[tuple[str, str], Band]:
    """The allowed band of every (row, metric) of a baseline's per-seed values, given this run's.

    The margin is the larger of two one-sided t-margins for the difference of the baseline's mean and
    this run's, each at the comparison's share of ``family_alpha`` (``alphas``): one with the row's own
    seed sd, estimated from the baseline's and this run's seeds together (n_base + n - 2 degrees of
    freedom), and one with the baseline's seed sd of the metric pooled over the rows alike (the robust
    rows, or the others; more degrees of freedom: it guards against a row whose own few seeds happen to
    agree). Never less than ``floor``.
    Without ``now`` (a band stated before the check runs) this run is taken to have ``n_now`` seeds
    (default: as many as the baseline) and the baseline's own sd alone.
    """
    now = now or {}
    rates = alphas(values, family_alpha, focus_share)
    robust = robust_rows(values)
    # the pooled sd of a metric is taken over rows alike: the robust rows together, the others together
    pooled = {(metric, group): _pooled_sd([metrics.get(metric, []) for row, metrics in values.items()
                                           if (row in robust) == group])
              for metric in {k for metrics in values.values() for k in metrics} for group in (True, False)}
    out = {}
    for row, metrics in values.items():
        for metric, vals in metrics.items():
            n = len(vals)
            mean = sum(vals) / n
            got = now.get(row, {}).get(metric) or []
            own, df_own = _pooled_sd([vals, got])
            sd_pooled, df_pooled = pooled[metric, row in robust]
            scale = math.sqrt(1 / n + 1 / (len(got) if got else (n_now or n)))
            q = 1 - rates[row, metric]
            margin = max(_t(q, df_own) * own if df_own else 0.0, _t(q, df_pooled) * sd_pooled if df_pooled else 0.0) * scale
            margin = max(floor, margin)
            # a true drop d moves the difference of the two means to -d with sd = sd_used * scale: the check
            # flags it with probability POWER once d = margin + z_POWER * sd_used * scale
            detectable = margin + _z(POWER) * max(own, sd_pooled) * scale
            out[row, metric] = Band(mean, own, sd_pooled, n, mean - margin, detectable)
    return out


def compare(baseline: dict, now_values: dict[str, dict[str, list[float]]]) -> list[dict]:
    rows = []
    limits = bands(baseline["values"], now_values, baseline.get("floor", FLOOR),
                   baseline.get("family_alpha", FAMILY_ALPHA), baseline.get("focus_share", 0.0))
    chosen = focus(baseline["values"]) if baseline.get("focus_share") else set()
    for (row, metric), b in limits.items():
        got = now_values.get(row, {}).get(metric)
        now_mean = sum(got) / len(got) if got else float("nan")
        verdict = "missing" if not got else ("DROP" if now_mean < b.lowest else "ok")
        rows.append({"row": row, "metric": metric, "baseline": b.mean, "sd": b.sd, "sd_used": max(b.sd, b.sd_pooled),
                     "n": b.n, "now": now_mean, "lowest": b.lowest, "detectable": b.detectable, "verdict": verdict,
                     "focus": (row, metric) in chosen})
    return rows


def format_table(rows: list[dict]) -> str:
    lines = [f"  {'row':24s} {'metric':28s} {'baseline (sd, n)':>18s} {'now':>7s} {'allowed ≥':>10s} "
             f"{'detects ≥':>10s}  verdict"]
    for r in rows:
        base = f"{100 * r['baseline']:.1f} ({100 * r['sd_used']:.1f}, {r['n']})"
        lines.append(f"{'*' if r.get('focus') else ' '} {r['row']:24s} {r['metric']:28s} {base:>18s} "
                     f"{100 * r['now']:7.1f} {100 * r['lowest']:10.1f} {100 * r['detectable']:9.1f}↓  {r['verdict']}")
    lines.append(f"detects ≥: the drop in points that this check flags with at least {POWER:.0%} probability at the "
                 f"seed sd shown (family-wise false-alarm rate {FAMILY_ALPHA:.0%} over all rows"
                 + (f"; * marks the focus comparisons, which share {FOCUS_SHARE:.0%} of it)"
                    if any(r.get("focus") for r in rows) else ")"))
    return "\n".join(lines)


def _seed_group(cfg: RunConfig, methods: list[str], seeds: tuple[int, ...], folder: str, threads: int,
                method_files: tuple[str, ...]) -> list[RunRecord]:
    """One worker process of ``run_regression(jobs > 1)``: its seeds, teachers included, on ``threads`` threads."""
    import torch

    from methods import load_file

    torch.set_num_threads(threads)
    for path in method_files:  # a spawned process has only the built-in methods
        load_file(path)
    return run_methods(cfg, methods, "regress", Path(folder), seeds=seeds)


def run_regression(cfg: RunConfig, methods: list[str], seeds: tuple[int, ...],
                   substitute: dict[str, str] | None = None, jobs: int = 1,
                   method_files: tuple[str, ...] = ()) -> dict[str, dict[str, list[float]]]:
    """Train and evaluate from scratch in a temporary folder; ``substitute`` swaps a method for a
    variant that is then scored against the original's baseline (to test the check itself).

    ``jobs`` > 1: the seeds are split over that many processes (a standard-library process pool), each
    with its share of this process's threads and whole seeds, so that no process waits for another's
    teacher. Two one-thread processes on a 2-core CPU finish two seeds of the preset 1.34x sooner than
    one process with both threads (179 s against 240 s; benchmarks/regress_jobs.py). The numbers are
    those of a run on that many threads: another float trajectory, as on another machine, which the
    bands allow for."""

    substitute = substitute or {}
    unknown = set(substitute) - set(methods)
    if unknown:
        raise BenchError(f"--substitute names {', '.join(sorted(unknown))}, not in the baseline's methods "
                         f"({', '.join(methods)})")
    actual = [substitute.get(m, m) for m in methods]
    labels = {parse_method(a).label: parse_method(m).label for m, a in zip(methods, actual)}
    jobs = max(1, min(jobs, len(seeds)))
    with tempfile.TemporaryDirectory(prefix="bench-regress-") as tmp:
        if jobs == 1:
            records = run_methods(cfg, actual, "regress", Path(tmp), seeds=seeds)
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            import torch

            threads = max(1, torch.get_num_threads() // jobs)
            groups = [tuple(seeds[k * len(seeds) // jobs:(k + 1) * len(seeds) // jobs]) for k in range(jobs)]
            with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
                parts = [pool.submit(_seed_group, cfg, actual, g, str(Path(tmp) / f"part{k}"), threads,
                                     tuple(method_files)) for k, g in enumerate(groups)]
                records = [rec for part in parts for rec in part.result()]
    return collect(records, labels)


# Config fields that were renamed, with how an old value reads in the new field.
RENAMED = {"bf16": ("precision", lambda on: "bf16" if on else "fp32")}


def config_changes(stored: dict, current: dict, defaults: dict, path: str = "") -> list[str]:
    """Where ``current`` differs from the baseline's config; a field the baseline predates counts as
    unchanged while it holds its default value, and a renamed field is compared under its new name."""
    stored = dict(stored)
    for old, (new, convert) in RENAMED.items():
        if old in stored and old not in current and new in current and new not in stored:
            stored[new] = convert(stored.pop(old))
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
                   values: dict, reason: str, previous: dict | None, check_seeds: tuple[int, ...] | None = None,
                   seconds: float | None = None) -> dict:
    """``seeds``: the baseline's; ``check_seeds``: the ones a check re-runs (default the same)."""
    entry = {"who": getpass.getuser(), "why": reason, "when": now(), "commit": git_commit(), "seconds": seconds}
    baseline = {"config": asdict(cfg), "config_id": config_hash(asdict(cfg)), "methods": methods,
                "seeds": list(seeds), "check_seeds": list(check_seeds or seeds), "floor": FLOOR,
                "family_alpha": FAMILY_ALPHA, "focus_share": FOCUS_SHARE, "values": values,
                "history": [*(previous or {}).get("history", []), entry]}
    atomic_write_json(path, baseline)
    return baseline


def parse_substitute(pairs: list[str] | None) -> dict[str, str]:
    """``--substitute method=variant`` pairs."""
    substitute = dict(pair.split("=", 1) for pair in pairs or [] if "=" in pair)
    if pairs and len(substitute) != len(pairs):
        raise BenchError("--substitute takes method=variant pairs")
    return substitute


def read_baseline(path: Path) -> dict | None:
    return json.loads(Path(path).read_text()) if Path(path).exists() else None


@dataclass(frozen=True)
class Verdict:
    """The outcome of one regression check: every (row, metric) compared with its band."""
    rows: tuple[dict, ...]
    baseline: str
    last_change: dict                 # the baseline's latest history entry (who, why, when)
    seconds: float

    @property
    def drops(self) -> list[str]:
        return [f"{r['row']} {r['metric']}" for r in self.rows if r["verdict"] != "ok"]

    @property
    def passed(self) -> bool:
        return not self.drops

    def lines(self) -> list[str]:
        last = self.last_change
        out = [format_table(list(self.rows)),
               f"baseline {self.baseline}: {last['when']} by {last['who']} ({last['why']}); wall {self.seconds:.0f} s"]
        if self.drops:
            out.append(f"REGRESSION: {len(self.drops)} metric(s) below their band: {', '.join(self.drops)}")
        else:
            out.append(f"no regression: {len(self.rows)} metrics within their bands")
        return out


def check(cfg: RunConfig, methods: list[str], seeds: tuple[int, ...], path: Path,
          substitute: dict[str, str] | None = None, jobs: int = 1, method_files: tuple[str, ...] = ()) -> Verdict:
    """Re-run ``cfg`` from scratch and compare every metric with the baseline at ``path``; the
    baseline must have been made with the same config, methods and seeds."""
    previous = read_baseline(path)
    if previous is None:
        raise BenchError(f"no baseline at {path}; create one with --update --reason \"...\"")
    changed = config_changes(previous["config"], asdict(cfg), asdict(RunConfig()))
    check_seeds = tuple(previous.get("check_seeds", previous["seeds"]))
    changed += [k for k, a, b in (("methods", previous["methods"], methods),
                                  ("seeds", check_seeds, tuple(seeds))) if a != b]
    if changed:
        raise BenchError(f"baseline {path} was made with another config ({', '.join(changed[:6])}); "
                         f"rerun with --update --reason \"...\" if the change is intended")
    t0 = time.perf_counter()
    rows = compare(previous, run_regression(cfg, methods, seeds, substitute, jobs, method_files))
    return Verdict(tuple(rows), str(path), previous["history"][-1], time.perf_counter() - t0)


def update(cfg: RunConfig, methods: list[str], seeds: tuple[int, ...], path: Path, reason: str | None,
           baseline_seeds: tuple[int, ...] | None = None, jobs: int = 1, method_files: tuple[str, ...] = ()) -> dict:
    """Re-run ``cfg`` from scratch on ``baseline_seeds`` (default: the check's ``seeds``) and rewrite the
    baseline at ``path``, recording why."""
    if not reason:
        raise BenchError("--update needs --reason \"why the numbers change\"")
    t0 = time.perf_counter()
    values = run_regression(cfg, methods, baseline_seeds or seeds, jobs=jobs, method_files=method_files)
    return write_baseline(path, cfg, methods, baseline_seeds or seeds, values, reason, read_baseline(path), seeds,
                          round(time.perf_counter() - t0))
