"""`python -m bench regress`: re-run a fixed preset and compare every metric with a stored baseline.

On another machine (another CPU make, another library build) float rounding sends training down
another trajectory, much as a new seed does. The bands therefore come from the seed spread, and
every row has one: the regress preset trains one teacher per seed, so the teacher row has a spread
too. The baseline is made once with many seeds (``--update`` runs the preset's ``baseline_seeds``)
and, beside them, the check's own seeds, which it never contains: the check re-runs those few seeds
and is an independent test of the same code. The statistics are in ``bench.regress.bands``: bands
from the baseline alone, both sides, one-seed prediction bounds, and a family-wise false-alarm rate
of 5 % calibrated by simulation. Besides its band every comparison fails on a missing or NaN value,
and the check fails on any sanity flag of its runs and on a metric the baseline lacks.
Runs always start from scratch (teachers included) in a temporary folder.
"""
from __future__ import annotations

import getpass
import json
import math
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from bench.common.errors import BenchError
from bench.common.io import atomic_write_json
from bench.common.provenance import git_commit, machine_facts, now
from bench.config.schema import RunConfig, config_hash
from bench.regress import bands as stats
from bench.runs.orchestrate import run_methods
from bench.records.record import RunRecord
from bench.methods import parse_method

FORMAT = 2            # the baseline file's format (1: bands widened by the check's own seeds)
BASELINE_DIR = Path("results") / "baselines"
# What a run produces and the check does not compare, and why (every other number is compared).
NOT_COMPARED = {
    "timings": "machine speed, not the code's numbers",
    "per-class range, worst_class and noise": "the spread is compared as the class std, the worst class as "
                                              "its accuracy; its index is a label, the noise floor, bias, n "
                                              "and interval follow from the class sizes",
    "structure correlation matrices": "figures, not single numbers (their summaries corr_gap are compared)",
    "sanity check values": "any sanity flag fails the check instead",
}
CLASS_STATS = ("worst", "std")
STRUCTURE_PARTS = ("clean", "adv", "transfer")


def _scalars(node: dict, prefix: str) -> dict[str, float]:
    return {f"{prefix}:{k}": float("nan") if v is None else float(v) for k, v in node.items()
            if isinstance(v, (int, float)) or v is None}


def metric_values(rec: RunRecord) -> dict[str, float]:
    """Every number a record holds that the check compares: the protocol's accuracies, each transfer
    target's, the per-class worst class and spread, and the teacher-student structure."""
    values = {k: float(v) for k, v in rec.metrics.items()}
    for target, tr in rec.transfer.items():
        values.update(_scalars(tr["metrics"], f"transfer:{target}"))
    for attack, summary in (rec.per_class or {}).get("summary", {}).items():
        values.update(_scalars({k: summary.get(k) for k in CLASS_STATS}, f"class:{attack}"))
    for part in STRUCTURE_PARTS:
        values.update(_scalars((rec.structure or {}).get(part, {}), f"structure:{part}"))
    return values


@dataclass
class Measured:
    """What one regression run measured: per row, each metric's values in seed order, and the sanity
    flags that fired (row -> seed -> check names)."""
    seeds: list[int]
    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    flags: dict[str, dict[int, list[str]]] = field(default_factory=dict)


def collect(records: list[RunRecord], labels: dict[str, str]) -> Measured:
    """``labels`` maps a run's method label to the row it fills (a substitute scores as the original)."""
    out = Measured(sorted({r.seed for r in records}))
    for rec in sorted(records, key=lambda r: r.seed):
        row = "teacher" if rec.role == "teacher" else labels.get(rec.method, rec.method)
        for metric, value in metric_values(rec).items():
            out.values.setdefault(row, {}).setdefault(metric, []).append(value)
        fired = list((rec.sanity or {}).get("flags", []))
        if fired:
            out.flags.setdefault(row, {})[rec.seed] = fired
    return out


def comparable(values: dict[str, dict[str, list[float]]]) -> tuple[dict, dict[str, str]]:
    """(the baseline values the check compares, {row metric: why not} for the others): a metric must
    have a finite value on every baseline seed to have a band."""
    keep, dropped = {}, {}
    n = max((len(v) for m in values.values() for v in m.values()), default=0)
    for row, metrics in values.items():
        for metric, vals in metrics.items():
            if len(vals) == n and all(math.isfinite(v) for v in vals):
                keep.setdefault(row, {})[metric] = vals
            else:
                dropped[f"{row} {metric}"] = "undefined or missing on some baseline seeds"
    return keep, dropped


def _matrix(values: dict[str, dict[str, list[float]]], d: stats.Design) -> np.ndarray:
    """(B, K): the baseline's seeds by comparisons."""
    return np.array([values[row][metric] for row, metric in d.keys], dtype=float).T


@dataclass(frozen=True)
class Bands:
    """Every comparison's band, from a baseline: the allowed range of the check's mean, the lowest
    value one check seed may take, and the changes of the true mean the check detects with POWER."""
    design: stats.Design
    mean: np.ndarray
    sd: np.ndarray
    low: np.ndarray
    high: np.ndarray
    seed_low: np.ndarray       # NaN where the metric has no one-seed test
    detect: np.ndarray         # (K, 2): drop, rise
    n_base: int

    @classmethod
    def of(cls, baseline: dict, n_check: int | None = None) -> "Bands":
        """For a check of the baseline's own number of check seeds, or of ``n_check`` (the level is
        then calibrated anew for that many, with the baseline's shares)."""
        cal, n = baseline["calibration"], n_check or len(baseline["check_seeds"])
        d = stats.design(baseline["values"], n, cal["shares"], tuple(cal["seed_metrics"]))
        base = _matrix(baseline["values"], d)
        level = cal["level"] if n == len(baseline["check_seeds"]) else stats.calibrate(base, d)
        b = base.shape[0]
        crit, sd, mean = stats.thresholds(level, d, b), stats.sigma(base, d.group), base.mean(0)
        low, high, seed_low = (np.full(len(d.keys), np.nan) for _ in range(3))
        for t in range(len(d.comp)):
            k = d.comp[t]
            if d.seed[t] >= 0:
                seed_low[k] = mean[k] - crit[t] * sd[k] * math.sqrt(1 + 1 / b)
            elif d.side[t] < 0:
                low[k] = mean[k] - crit[t] * sd[k] * math.sqrt(1 / b + 1 / n)
            else:
                high[k] = mean[k] + crit[t] * sd[k] * math.sqrt(1 / b + 1 / n)
        return cls(d, mean, sd, low, high, seed_low, stats.detectable(base, d, level), b)


def _verdict(got: list[float] | None, n: int, low: float, high: float, seed_low: float,
             seeds: list[int]) -> str:
    if not got or len(got) < n:
        return "MISSING"
    if not all(math.isfinite(v) for v in got):
        return "NaN"
    mean = sum(got) / len(got)
    if mean < low:
        return "DROP"
    if mean > high:
        return "RISE"
    collapsed = [s for s, v in zip(seeds, got) if v < seed_low]
    return f"SEED {','.join(map(str, collapsed))} LOW" if collapsed else "ok"


def compare(baseline: dict, now: Measured) -> list[dict]:
    """One row per comparison of the baseline (its verdict: ok, DROP, RISE, SEED s LOW, MISSING, NaN),
    then one per sanity flag of the check's runs and per metric the baseline lacks."""
    bands = Bands.of(baseline, len(now.seeds))
    d, n = bands.design, bands.design.n_check
    out = []
    for k, (row, metric) in enumerate(d.keys):
        got = now.values.get(row, {}).get(metric)
        finite = [v for v in got or [] if math.isfinite(v)]
        out.append({"row": row, "metric": metric, "baseline": bands.mean[k], "sd": bands.sd[k],
                    "n": bands.n_base, "now": sum(finite) / len(finite) if finite else float("nan"),
                    "low": bands.low[k], "high": bands.high[k], "seed_low": bands.seed_low[k],
                    "detect": tuple(bands.detect[k]), "focus": bool(d.focus[k]),
                    "verdict": _verdict(got, n, bands.low[k], bands.high[k], bands.seed_low[k],
                                        now.seeds)})
    for row, by_seed in now.flags.items():
        for seed, names in by_seed.items():
            out.append({"row": row, "metric": "sanity", "verdict": f"SANITY seed {seed}: {', '.join(names)}"})
    known = set(d.keys) | {tuple(k.split(" ", 1)) for k in baseline.get("not_compared", {})}
    for row, metrics in now.values.items():
        out += [{"row": row, "metric": m, "verdict": "NEW: not in the baseline (re-baseline)"}
                for m in metrics if (row, m) not in known]
    return out


def _pct(v: float, signed: bool = False) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{100 * v:{'+' if signed else ''}.1f}"


def format_table(rows: list[dict], show_all: bool = False) -> str:
    """The comparisons as a table: the focus ones and every failure (``show_all``: every row)."""
    shown = [r for r in rows if show_all or r.get("focus") or r["verdict"] != "ok"]
    lines = [f"  {'row':10s} {'metric':32s} {'baseline (sd)':>14s} {'now':>6s} {'band of the mean':>17s} "
             f"{'1 seed ≥':>8s} {'detects ↓/↑':>12s}  verdict"]
    for r in shown:
        if "baseline" not in r:
            lines.append(f"  {r['row']:10s} {r['metric']:32s} {'':>14s} {'':>6s} {'':>17s} {'':>8s} {'':>12s}  "
                         f"{r['verdict']}")
            continue
        base = f"{_pct(r['baseline'])} ({_pct(r['sd'])})"
        band = f"[{_pct(r['low'])}, {_pct(r['high'])}]"
        det = f"{_pct(r['detect'][0])}/{_pct(r['detect'][1])}"
        lines.append(f"{'*' if r['focus'] else ' '} {r['row']:10s} {r['metric']:32s} {base:>14s} "
                     f"{_pct(r['now']):>6s} {band:>17s} {_pct(r['seed_low']):>8s} {det:>12s}  {r['verdict']}")
    hidden = len(rows) - len(shown)
    if hidden:
        lines.append(f"  ... and {hidden} other comparisons within their bands (--all shows them)")
    lines.append(f"* PGD-20 and AutoAttack of the robust rows. band: the mean of the check's seeds; 1 seed: "
                 f"the lowest one seed may score; detects: the drop / rise of the true mean flagged with "
                 f"{stats.POWER:.0%} probability; a false alarm anywhere in a check of unchanged code: "
                 f"{stats.FAMILY_ALPHA:.0%} (simulated)")
    return "\n".join(lines)


def calibration(values: dict[str, dict[str, list[float]]], n_check: int,
                check_values: dict | None = None) -> dict:
    """The level of the baseline's tests: the lower of the simulated one (``bands.calibrate``) and,
    with ``check_values`` (the check's seeds, measured by the update), the one found on the splits of
    every measured seed (``bands.split_level``)."""
    d = stats.design(values, n_check)
    simulated = stats.calibrate(_matrix(values, d), d)
    split = None
    if check_values:
        every = {row: {m: v + check_values[row][m] for m, v in ms.items()} for row, ms in values.items()}
        split = stats.split_level(_matrix(every, d), d)
    return {"level": min(simulated, split if split is not None else simulated), "simulated": simulated,
            "split": split, "family_alpha": stats.FAMILY_ALPHA, "shares": dict(stats.SHARES),
            "seed_metrics": list(stats.SEED_METRICS), "sd_floor": stats.SD_FLOOR, "draws": stats.DRAWS,
            "seed": stats.SIM_SEED,
            "model": "the lower of: normal seed vectors with the baseline's means, sds and Ledoit-Wolf shrunk "
                     "correlations; every split of the measured seeds into baseline and check"}


def make_baseline(cfg: RunConfig, methods: list[str], measured: Measured, seeds: tuple[int, ...],
                  check_seeds: tuple[int, ...], facts: dict, entry: dict, previous: dict | None) -> dict:
    """The baseline document: ``measured`` split into the baseline's seeds and the check's."""
    idx = {s: i for i, s in enumerate(measured.seeds)}

    def part(which):
        return {row: {m: [vals[idx[s]] for s in which] for m, vals in metrics.items()}
                for row, metrics in measured.values.items()}
    values, dropped = comparable(part(seeds))
    flags = {row: {str(s): f for s, f in by.items()} for row, by in measured.flags.items()}
    return {"format": FORMAT, "config": asdict(cfg), "config_id": config_hash(asdict(cfg)), "methods": methods,
            "seeds": list(seeds), "check_seeds": list(check_seeds), "values": values,
            "check_values": part(check_seeds), "sanity_flags": flags, "not_compared": dropped,
            "calibration": calibration(values, len(check_seeds), part(check_seeds)), "machine": facts,
            "history": [*(previous or {}).get("history", []), entry]}


def moves(old: dict, new: dict) -> list[dict]:
    """Each comparison both baselines hold: the old and new mean, and whether the new baseline's mean
    lies outside the old one's band for a mean of as many seeds (the old baseline's two-sided mean tests)."""
    bands = Bands.of(old)
    d, b_new = bands.design, len(new["seeds"])
    rescale = math.sqrt(1 / bands.n_base + 1 / b_new) / math.sqrt(1 / bands.n_base + 1 / d.n_check)
    out = []
    for k, (row, metric) in enumerate(d.keys):
        vals = new["values"].get(row, {}).get(metric)
        if not vals:
            continue
        now = sum(vals) / len(vals)
        low = bands.mean[k] - (bands.mean[k] - bands.low[k]) * rescale
        high = bands.mean[k] + (bands.high[k] - bands.mean[k]) * rescale
        out.append({"row": row, "metric": metric, "old": bands.mean[k], "new": now,
                    "outside": not low <= now <= high})
    return out


def format_moves(rows: list[dict]) -> str:
    lines = [f"  {'row':10s} {'metric':32s} {'old':>6s} {'new':>6s} {'moved':>6s}"]
    lines += [f"{'!' if r['outside'] else ' '} {r['row']:10s} {r['metric']:32s} {_pct(r['old']):>6s} "
              f"{_pct(r['new']):>6s} {_pct(r['new'] - r['old'], True):>6s}" for r in rows]
    outside = sum(r["outside"] for r in rows)
    lines.append(f"! outside the old baseline's band: {outside} of {len(rows)}")
    return "\n".join(lines)


def _seed_group(cfg: RunConfig, methods: list[str], seeds: tuple[int, ...], folder: str, threads: int,
                method_files: tuple[str, ...]) -> list[RunRecord]:
    """One worker process of ``run_regression(jobs > 1)``: its seeds, teachers included, on ``threads`` threads."""
    import torch

    from bench.methods import load_file

    torch.set_num_threads(threads)
    for path in method_files:  # a spawned process has only the built-in methods
        load_file(path)
    return run_methods(cfg, methods, "regress", Path(folder), seeds=seeds)


def run_regression(cfg: RunConfig, methods: list[str], seeds: tuple[int, ...],
                   substitute: dict[str, str] | None = None, jobs: int = 1,
                   method_files: tuple[str, ...] = ()) -> Measured:
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


def parse_substitute(pairs: list[str] | None) -> dict[str, str]:
    """``--substitute method=variant`` pairs."""
    substitute = dict(pair.split("=", 1) for pair in pairs or [] if "=" in pair)
    if pairs and len(substitute) != len(pairs):
        raise BenchError("--substitute takes method=variant pairs")
    return substitute




def read_baseline(path: Path) -> dict | None:
    if not Path(path).exists():
        return None
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise BenchError(f"baseline {path} is unreadable ({type(err).__name__}); restore it from git or "
                         "re-make it with --update --reason \"...\"") from None


@dataclass(frozen=True)
class Verdict:
    """The outcome of one regression check: every comparison with its band, and the run's flags."""
    rows: tuple[dict, ...]
    baseline: str
    last_change: dict                 # the baseline's latest history entry (who, why, when)
    seconds: float
    show_all: bool = False

    @property
    def failures(self) -> list[str]:
        return [f"{r['row']} {r['metric']} ({r['verdict']})" for r in self.rows if r["verdict"] != "ok"]

    @property
    def passed(self) -> bool:
        return not self.failures

    def lines(self) -> list[str]:
        last = self.last_change
        out = [format_table(list(self.rows), self.show_all),
               "not compared: " + "; ".join(f"{k} ({v})" for k, v in NOT_COMPARED.items()),
               f"baseline {self.baseline}: {last['when']} by {last['who']} ({last['why']}); wall {self.seconds:.0f} s"]
        if self.failures:
            out.append(f"REGRESSION: {len(self.failures)} of {len(self.rows)} comparisons fail: "
                       f"{', '.join(self.failures)}")
        else:
            out.append(f"no regression: {len(self.rows)} comparisons within their bands")
        return out


def _usable(baseline: dict, path: Path) -> dict:
    """The baseline, checked whole before any training: present, of this format, and readable to the end
    (every field the check uses, and its bands)."""
    if baseline is None:
        raise BenchError(f"no baseline at {path}; create one with --update --reason \"...\"")
    if not isinstance(baseline, dict) or baseline.get("format") != FORMAT:
        raise BenchError(f"baseline {path} is of an older format or not a baseline (its bands used the check's own "
                         "seeds); re-make it with --update --reason \"...\"")
    try:
        dict(baseline["config"]), list(baseline["methods"]), list(baseline["seeds"]), baseline["history"][-1]["why"]
        Bands.of(baseline)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, ZeroDivisionError) as err:
        raise BenchError(f"baseline {path} is damaged ({type(err).__name__}: {err}); restore it from git or "
                         "re-make it with --update --reason \"...\"") from None
    return baseline


def check(cfg: RunConfig, methods: list[str], seeds: tuple[int, ...], path: Path,
          substitute: dict[str, str] | None = None, jobs: int = 1, method_files: tuple[str, ...] = (),
          show_all: bool = False) -> Verdict:
    """Re-run ``cfg`` from scratch on ``seeds`` and compare every metric with the baseline at ``path``,
    made with the same config and methods. ``seeds``: the baseline's check seeds, or any others none of
    which is a baseline seed (more seeds detect smaller drops; the level is calibrated for their number)."""
    previous = _usable(read_baseline(path), path)
    changed = config_changes(previous["config"], asdict(cfg), asdict(RunConfig()))
    changed += ["methods"] if previous["methods"] != methods else []
    if set(seeds) & set(previous["seeds"]):
        raise BenchError(f"seeds {sorted(set(seeds) & set(previous['seeds']))} are baseline seeds of {path}: "
                         f"a check on them would not be an independent test (its own: {previous['check_seeds']})")
    if changed:
        raise BenchError(f"baseline {path} was made with another config ({', '.join(changed[:6])}); "
                         f"rerun with --update --reason \"...\" if the change is intended")
    t0 = time.perf_counter()
    rows = compare(previous, run_regression(cfg, methods, seeds, substitute, jobs, method_files))
    return Verdict(tuple(rows), str(path), previous["history"][-1], time.perf_counter() - t0, show_all)


@dataclass(frozen=True)
class Update:
    """What ``--update`` did: the lines to print, and whether it wrote the baseline."""
    lines: tuple[str, ...]
    written: bool


def _candidate(path: Path) -> Path:
    return Path(path).with_suffix(".candidate.json")


def _measure(cfg, methods, seeds, path, jobs, method_files) -> tuple[Measured, dict, bool]:
    """The run behind a new baseline, or the one a refused update kept (same config, seeds and commit)."""
    key = {"config_id": config_hash(asdict(cfg)), "methods": methods, "seeds": list(seeds), "commit": git_commit()}
    kept = read_baseline(_candidate(path))
    if kept and kept.get("key") == key and not str(key["commit"]).endswith("-dirty"):
        return Measured(kept["seeds"], kept["values"], {r: {int(s): f for s, f in by.items()}
                                                        for r, by in kept["flags"].items()}), kept["facts"], True
    threads = __import__("torch").get_num_threads()
    measured = run_regression(cfg, methods, seeds, jobs=jobs, method_files=method_files)
    facts = {**machine_facts(cfg.device if cfg.device != "auto" else "cpu"), "threads": threads, "jobs": jobs}
    atomic_write_json(_candidate(path), {"key": key, "seeds": measured.seeds, "values": measured.values,
                                         "flags": measured.flags, "facts": facts})
    return measured, facts, False


def update(cfg: RunConfig, methods: list[str], seeds: tuple[int, ...], path: Path, reason: str | None,
           baseline_seeds: tuple[int, ...], jobs: int = 1, method_files: tuple[str, ...] = (),
           accept_moves: bool = False) -> Update:
    """Run ``cfg`` from scratch on ``baseline_seeds`` and the check's ``seeds`` (disjoint), and rewrite
    the baseline at ``path``, recording why. Prints the old baseline against the new one; a mean moved
    outside the old band is written only with ``accept_moves`` (the run is kept meanwhile, so that the
    accepted update does not train again)."""
    if not reason:
        raise BenchError("--update needs --reason \"why the numbers change\"")
    if set(seeds) & set(baseline_seeds):
        raise BenchError(f"the check's seeds {list(seeds)} must not be among the baseline's "
                         f"{list(baseline_seeds)}: the check would not be an independent test")
    t0 = time.perf_counter()
    measured, facts, reused = _measure(cfg, methods, (*baseline_seeds, *seeds), path, jobs, method_files)
    entry = {"who": getpass.getuser(), "why": reason, "when": now(), "commit": git_commit(),
             "seconds": round(time.perf_counter() - t0)}
    previous = read_baseline(path)
    new = make_baseline(cfg, methods, measured, baseline_seeds, seeds, facts, entry, previous)
    lines = ["(the run kept by the refused update, same config, seeds and commit)"] if reused else []
    self_check = compare(new, Measured(list(seeds), new["check_values"],
                                       {r: {s: f for s, f in by.items() if s in seeds}
                                        for r, by in measured.flags.items()}))
    failing = [f"{r['row']} {r['metric']} ({r['verdict']})" for r in self_check if r["verdict"] != "ok"]
    lines.append(f"the check's seeds {list(seeds)} against the new baseline: "
                 + (f"{len(failing)} fail: {', '.join(failing)}" if failing else
                    f"all {len(self_check)} comparisons pass"))
    refused = False
    if previous and previous.get("format") == FORMAT:
        moved = moves(previous, new)
        lines.append(format_moves(moved))
        refused = any(r["outside"] for r in moved) and not accept_moves
    if refused:
        lines.append(f"NOT WRITTEN: means moved outside the old baseline's band; if that is intended, rerun with "
                     f"--accept-moves (the run is kept in {_candidate(path)})")
        return Update(tuple(lines), False)
    atomic_write_json(path, new)
    _candidate(path).unlink(missing_ok=True)
    lines.append(f"baseline written: {path} ({entry['seconds']} s)")
    return Update(tuple(lines), True)
