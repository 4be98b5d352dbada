"""Records to numbers: rows grouped by method, each column's mean over seeds with its 95 % Student-t
interval (bench/report/stats.py), the ablation differences with Holm's correction, published numbers
beside ours, and the per-seed frame. A row whose sanity checks fired is marked ⚠."""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace
from typing import Callable

import pandas as pd

from bench.eval.per_image import differences, flags_for
from bench.eval.protocol import CORRUPTIONS, LABELS
from bench.report.references import published
from bench.report.stats import (NAN, SEEDS_IMAGES, Difference, holm, interval, paired_difference,
                                seeds_images_difference)
from bench.records.record import RunRecord

COLUMNS = LABELS  # each evaluation's column title


@dataclass(frozen=True)
class Column:
    label: str
    path: tuple[str, ...]        # where the value sits in a RunRecord (attribute, keys...)
    scale: float = 100.0         # 100: accuracies shown in %
    digits: int = 1
    bounds: tuple[float, float] | None = (0.0, 1.0)   # the range its interval is clipped to
    # False: the mean over seeds alone, for a derived figure (a noise floor) whose interval over
    # seeds would only say how little the runs' overall accuracies moved it
    seeds_interval: bool = True

    def value(self, rec: RunRecord) -> float:
        node = getattr(rec, self.path[0])
        for key in self.path[1:]:
            if isinstance(node, list) and isinstance(key, int) and key < len(node):
                node = node[key]
                continue
            if not isinstance(node, dict) or key not in node:
                return NAN
            node = node[key]
        return float(node) if node is not None else NAN


FLAG = " ⚠"
COST_LABEL = "Train MFLOP/img/epoch"   # one training step's FLOPs per image (the run's first step, counted)


def step_flops(rec: RunRecord) -> float:
    """A run's training FLOPs per image and epoch (``bench.train.loop`` counts its first step), or NaN."""
    value = ((rec.extra or {}).get("cost") or {}).get("train_flops_per_image_step")
    return float(value) if value is not None else NAN


def teacher_label(rec: RunRecord) -> str:
    info = rec.teacher or {}
    where = f"; {info['source']}" if info.get("kind", "trained") != "trained" else ""
    return f"{rec.method}, {rec.arch}{where}"


def row_name(rec: RunRecord) -> str:
    if rec.role == "teacher":
        return f"teacher ({teacher_label(rec)})"
    return f"{rec.method} ({rec.note})" if rec.note else rec.method


def short_name(rec: RunRecord) -> str:
    return "teacher" if rec.role == "teacher" else rec.method


def cell(mean: float, low: float = NAN, high: float = NAN, scale: float = 100.0, digits: int = 1,
         sign: bool = False) -> str:
    """``mean [low, high]``, or the mean alone when there is no interval."""
    if math.isnan(mean):
        return "–"
    f = f"{'+' if sign else ''}.{digits}f"
    text = f"{scale * mean:{f}}"
    return text if math.isnan(low) else f"{text} [{scale * low:{f}}, {scale * high:{f}}]"


def flagged(recs: list[RunRecord]) -> dict[str, int]:
    """{check name: number of seeds it fired on}."""
    out: dict[str, int] = {}
    for r in recs:
        for name in (r.sanity or {}).get("flags", []):
            out[name] = out.get(name, 0) + 1
    return out


def group_records(records: list[RunRecord], order: list[str]) -> dict[str, list[RunRecord]]:
    """Records grouped by row: the teacher first, then methods in the run-set's order."""
    rank = {m: i for i, m in enumerate(order)}
    ordered = sorted(records, key=lambda r: (r.role != "teacher", rank.get(r.method, len(rank)), r.created, r.seed))
    groups: dict[str, list[RunRecord]] = {}
    for rec in ordered:
        groups.setdefault(row_name(rec), []).append(rec)
    return {name + (FLAG if flagged(recs) else ""): recs for name, recs in groups.items()}


def table(groups: dict[str, list[RunRecord]], columns: list[Column], main: bool = False
          ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(display table: mean [95 % interval] per cell, n, sanity; numeric table: mean, low, high, n)."""
    shown, numeric = [], []
    for name, recs in groups.items():
        disp = {"Method": name}
        num = {"method": name, "short": short_name(recs[0])}
        for col in columns:
            iv = interval([col.value(r) for r in recs], col.bounds)
            iv = iv if col.seeds_interval else replace(iv, low=NAN, high=NAN)
            disp[col.label] = cell(iv.mean, iv.low, iv.high, col.scale, col.digits)
            num[f"{col.label} mean"], num[f"{col.label} low"], num[f"{col.label} high"] = iv.mean, iv.low, iv.high
        if main:  # the run-set's main table also shows the train time and the sanity flags
            times = [r.timings.get("train_s", NAN) for r in recs]
            times = [t for t in times if t is not None and not math.isnan(t)]
            median = statistics.median(times) if times else NAN
            disp["Train time (s, median)"] = cell(median, scale=1.0, digits=0)
            num["train_s median"] = median
            flops = [step_flops(r) for r in recs]
            flops = [f for f in flops if not math.isnan(f)]
            per_image = statistics.median(flops) / 1e6 if flops else NAN
            disp[COST_LABEL] = "–" if math.isnan(per_image) else f"{per_image:.3g}" if per_image < 1000 else (
                f"{per_image:.0f}")
            num["train_mflop_per_image median"] = per_image
        disp["n"] = num["n"] = len(recs)
        if main:
            flags = flagged(recs)
            disp["Sanity"] = ", ".join(f"{k} ({v}/{len(recs)})" for k, v in flags.items()) if flags else (
                "ok" if any(r.sanity for r in recs) else "–")
        shown.append(disp)
        numeric.append(num)
    return pd.DataFrame(shown), pd.DataFrame(numeric)


def _targets(records: list[RunRecord]) -> list[str]:
    return list(dict.fromkeys(t for r in records for t in r.transfer))


def _transfer_attacks(records: list[RunRecord], target: str) -> list[str]:
    return list(dict.fromkeys(k for r in records for k in r.transfer.get(target, {}).get("metrics", {})))


def accuracy_columns(records) -> list[Column]:
    present = {k for r in records for k in r.metrics}
    return [Column(label, ("metrics", key)) for key, label in COLUMNS.items() if key in present]


NOT_ATTACKS = ("clean", "worst", CORRUPTIONS)   # metrics the worst case is not compared with


def worst_equals(records) -> str | None:
    """The attack whose accuracy is the worst case's on every run that has one (the last in the
    tables' order where several are: AutoAttack after PGD-20), or None where the worst case differs
    from every attack on some run: then it says something no attack column does."""
    runs = [r for r in records if "worst" in r.metrics]

    def same(key: str, rec: RunRecord) -> bool:
        return key in rec.metrics and abs(rec.metrics[key] - rec.metrics["worst"]) < 1e-6

    equal = [key for key in COLUMNS if key not in NOT_ATTACKS and all(same(key, r) for r in runs)]
    return equal[-1] if runs and equal else None


def main_accuracy_columns(records) -> list[Column]:
    """The main table's accuracy columns: the worst case only where it differs from an attack's
    column on some run (the caption says which attack it equals otherwise)."""
    drop = worst_equals(records) is not None
    return [c for c in accuracy_columns(records) if not (drop and c.path == ("metrics", "worst"))]


CLASS_ATTACKS = ("clean", "pgd20", "aa")   # the attacks whose per-class accuracy the tables show


def _class_columns(key: str, with_floor: bool) -> list[Column]:
    summary = ("per_class", "summary", key)
    cols = [Column(f"{COLUMNS[key]} worst class", (*summary, "worst")),
            Column(f"{COLUMNS[key]} class std", (*summary, "std"), bounds=(0.0, 0.5))]
    floor = Column(f"{COLUMNS[key]} class std floor", (*summary, "floor"), bounds=(0.0, 0.5),
                   seeds_interval=False)
    return cols + [floor] if with_floor else cols


def class_columns(records) -> list[Column]:
    """Per attack of CLASS_ATTACKS that ran: the worst class's accuracy, the standard deviation of
    the per-class accuracies (``bench.eval.per_image.class_summary``) and, where the images per
    class are known, that standard deviation's binomial noise floor (``per_image.noise_floor``:
    what equal classes would show at those class sizes; the mean over seeds, no interval)."""
    summaries = [(r.per_class or {}).get("summary", {}) for r in records]
    return [col for key in CLASS_ATTACKS if any(key in s for s in summaries)
            for col in _class_columns(key, any("floor" in s.get(key, {}) for s in summaries))]


def strongest_class_column(records) -> list[Column]:
    """The main table's worst-class and class-spread columns (with the spread's noise floor where
    it is known): of the strongest attack with per-class numbers (AutoAttack, else PGD-20, else
    clean)."""
    cols = class_columns(records)
    return [c for c in cols if c.path[2] == cols[-1].path[2]] if cols else []


def corruption_columns(records) -> list[Column]:
    """One column per corruption evaluated (its accuracy, mean over severities 1-5), then each severity's
    mean over the corruptions."""
    names = list(dict.fromkeys(k for r in records for k in (r.corruptions or {}).get("mean", {})))
    if not names:
        return []
    sev = max(len((r.corruptions or {}).get("by_severity", [])) for r in records)
    return ([Column(name.replace("_", " "), ("corruptions", "mean", name)) for name in names]
            + [Column(f"severity {i + 1}", ("corruptions", "by_severity", i)) for i in range(sev)])


def transfer_columns(records) -> list[Column]:
    return [Column(f"{target} {COLUMNS.get(a, a)}", ("transfer", target, "metrics", a))
            for target in _targets(records) for a in _transfer_attacks(records, target)]


ATTACK_TRANSFER_COLUMNS = [
    Column("T→S: student on teacher's PGD-20", ("structure", "transfer", "teacher_to_student")),
    Column("student's own PGD-20", ("structure", "transfer", "student_whitebox")),
    Column("S→T: teacher on student's PGD-20", ("structure", "transfer", "student_to_teacher")),
    Column("teacher's own PGD-20", ("structure", "transfer", "teacher_whitebox")),
]

STRUCTURE_COLUMNS = [
    Column("corr gap clean", ("structure", "clean", "corr_gap"), 1.0, 3, (0.0, 2.0)),
    Column("corr gap adv", ("structure", "adv", "corr_gap"), 1.0, 3, (0.0, 2.0)),
    Column("CKA clean", ("structure", "clean", "cka"), 1.0, 3),
    Column("CKA adv", ("structure", "adv", "cka"), 1.0, 3),
    Column("agree clean %", ("structure", "clean", "agreement")),
    Column("agree adv %", ("structure", "adv", "agreement")),
    Column("adv fools T %", ("structure", "adv", "fools_teacher_given_student")),
]


def ablation_table(groups: dict[str, list[RunRecord]], reference: str, columns: list[Column],
                   per_image: Callable[[RunRecord], dict | None] | None = None) -> pd.DataFrame:
    """Each row's difference from the reference row per column: mean [95 % interval] and the
    p-value of one two-sided test of the methods (``method_difference``), Holm-adjusted over
    every test of the table, the test named beside it (``TEST_TAGS``); ``*`` marks an adjusted
    p < 0.05."""
    ref = next((recs for recs in groups.values()
                if recs[0].role == "student" and recs[0].method == reference), None)
    if ref is None:
        return pd.DataFrame()
    tests = []   # (row name, seeds, column, Difference)
    for name, recs in groups.items():
        if recs[0].role != "student" or recs is ref:
            continue
        tests += [(name, len(recs), col, method_difference(recs, ref, col, per_image))
                  for col in columns]
    adjusted = holm([t[-1].p for t in tests])
    rows: dict[str, dict] = {}
    for (name, n, col, d), p in zip(tests, adjusted):
        row = rows.setdefault(name, {"Variant": name, "n": n})
        star = " *" if p < 0.05 else ""   # nan compares False: no test, no star
        row[f"Δ {col.label}"] = cell(d.diff, d.low, d.high, col.scale, col.digits, sign=True) + star
        row[f"p {col.label} (Holm)"] = _p_cell(p, d)
    return pd.DataFrame(list(rows.values()))


# How a p cell names its test: the seeds x images t (per-image flags on both rows), the paired t
# over seeds, Welch's t where the seeds do not pair.
TEST_TAGS = {SEEDS_IMAGES: "s×i", "paired t": "t", "Welch t": "W"}


def _p_cell(p: float, d: Difference) -> str:
    if d.note:   # "no spread": a difference identical everywhere has no p-value, not p = 0
        return d.note
    return "–" if math.isnan(p) else f"{p:.3g} {TEST_TAGS.get(d.test, d.test)}"


def method_difference(recs: list[RunRecord], ref: list[RunRecord], col: Column, per_image=None
                      ) -> Difference:
    """This row's method against the reference's on one column: the seeds x images t where both
    kept per-image flags for it on every paired seed (``bench.report.stats``), else the test over
    seeds, on the integer counts where the column is an accuracy on a known number of images."""
    pairs = _image_pairs(recs, ref, col, per_image) if per_image is not None else []
    if pairs:
        return seeds_images_difference(differences(pairs))
    return paired_difference({r.seed: col.value(r) for r in recs},
                             {r.seed: col.value(r) for r in ref}, n=_images(recs + ref, col))


def _images(recs: list[RunRecord], col: Column) -> int | None:
    """How many images every run evaluated the column's accuracy on, or None (differing, unknown,
    not an accuracy): the denominator ``paired_difference`` makes the accuracies counts with."""
    if col.path[0] == "metrics":
        where = [(r.attack_settings or {}).get(col.path[1]) for r in recs]
    elif col.path[0] == "transfer" and len(col.path) == 4:
        target, attack = col.path[1], col.path[3]
        where = [((r.transfer or {}).get(target) or {}).get("settings", {}).get(attack)
                 for r in recs]
    else:
        return None
    counts = {w.get("n") if isinstance(w, dict) else None for w in where}
    n = counts.pop() if len(counts) == 1 else None
    return n if isinstance(n, int) and n > 0 else None


def _image_pairs(recs: list[RunRecord], ref: list[RunRecord], col: Column, per_image) -> list[tuple]:
    """(this row's flags, the reference's) per seed, for an accuracy column, where the two rows
    ran the same seeds and every run kept per-image flags for it on the same images, flags that
    give the run's accuracy; else [] (the test over seeds then stands alone: a subset of the
    seeds, or another evaluation's flags, would test other numbers than the tables show)."""
    if col.path[0] != "metrics" or sorted(r.seed for r in recs) != sorted(r.seed for r in ref):
        return []
    by_seed = {r.seed: r for r in ref}
    pairs = []
    for rec in recs:
        other = by_seed[rec.seed]
        a, b = per_image(rec), per_image(other)
        if a is None or b is None or a["indices"] != b["indices"]:
            return []
        fa, fb = flags_for(a, col.path[1]), flags_for(b, col.path[1])
        if not (_gives(fa, col.value(rec)) and _gives(fb, col.value(other))):
            return []
        pairs.append((fa, fb))
    return pairs


def _gives(flags, accuracy: float) -> bool:
    """Whether per-image flags give the stored accuracy (a float32 of k/n: within 1e-6)."""
    return flags is not None and len(flags) > 0 and abs(float(flags.mean()) - accuracy) <= 1e-6


def published_table(groups: dict[str, list[RunRecord]], columns: list[Column]):
    """(table with ours / published / Δ per metric, notes) where any reference matches, else None."""

    rows, notes, matched = [], [], False
    for name, recs in groups.items():
        rec = recs[0]
        best, all_rows = published(rec.method_name, rec.role, rec.dataset, rec.arch)
        reported = (rec.teacher or {}).get("reported") or {}
        for metric in ("clean", "aa"):  # what the RobustBench zoo reports for this very model
            if metric in reported:
                best[metric] = {"value": f"{reported[metric]:.2f}", "source": reported["source"], "status": "verified"}
        all_rows = all_rows or ([reported] if reported else [])
        row = {"Method": name}
        # what the number is comparable to: its protocol and checkpoint policy
        row["protocol"] = (f"{rec.config.get('protocol', 'common')}, "
                           f"{(rec.checkpoints or {}).get('policy', rec.config['train'].get('checkpoint', 'last'))}"
                           if rec.role == "student" else "–")
        for col in columns:
            key = col.path[-1]
            ours = interval([col.value(r) for r in recs]).mean
            ref = best.get(key)
            row[f"{col.label} ours"] = cell(ours)
            row[f"{col.label} published"] = ref["value"] if ref else "–"
            row[f"{col.label} Δ"] = cell(ours - float(ref["value"]) / 100, sign=True) if ref else "–"
        sources = sorted({f"{r['source']} ({r['status']})" for r in best.values()})
        row["source"] = "; ".join(sources) if sources else "–"
        matched |= bool(all_rows)
        if not best and rec.role == "student":
            why = next((r["source"] for r in all_rows if r["status"] == "missing"), "none in bench/report/references.csv")
            notes.append(f"- `{rec.method}`: no published number ({why}).")
        rows.append(row)
    return (pd.DataFrame(rows), notes) if matched else None


def per_run_frame(records: list[RunRecord], columns: list[Column]) -> pd.DataFrame:
    rows = []
    for r in records:
        row = {"run_id": r.run_id, "row": row_name(r), "role": r.role, "method": r.method, "seed": r.seed,
               "dataset": r.dataset, "arch": r.arch, "teacher_id": r.teacher_id}
        row.update({c.label: c.value(r) for c in columns})
        row.update({f"pgd20@{e}": v for e, v in r.curve.items()})
        row.update({"train_s": r.timings.get("train_s"), "eval_s": r.timings.get("eval_s"),
                    "train_flops_per_image_step": step_flops(r)})
        rows.append(row)
    return pd.DataFrame(rows)
