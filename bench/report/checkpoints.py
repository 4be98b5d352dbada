"""Best and last: per method, the checkpoint its policy selected and the last epoch, side by side (clean,
PGD-20, AutoAttack), with the gap between them -- robust overfitting, when the last epoch is worse.
Only runs whose policy chose among epochs (best-val, best-test-*) have two checkpoints; a script that keeps
further ones (TrainConfig.also_keep: PeerAiD's plain-best, ABSLD's fair-best) gets each in a row of its own."""
from __future__ import annotations

import pandas as pd

from bench.report.aggregate import cell
from bench.report.stats import interval, paired_difference
from bench.config.schema import ALSO
from bench.records.record import RunRecord

METRICS = (("clean", "clean"), ("pgd20", "PGD-20"), ("aa", "AA"))
POLICY_TEXT = {"best-val": "best PGD-20 on a validation split of the training data",
               "best-test-pgd10": "best PGD-10 on the test set (an official script's own selection)",
               "best-test-pgd20": "best PGD-20 on the test set (an official script's own selection)"}


def _policies(recs: list[RunRecord]) -> str:
    return ", ".join(sorted({(r.checkpoints or {}).get("policy", "last") for r in recs}))


def best_last_table(groups: dict[str, list[RunRecord]]) -> pd.DataFrame | None:
    """One row per student method whose runs kept two checkpoints: the policy, the epochs, best and last
    (mean [95 % interval] over seeds) and best - last (paired over seeds); None when no run has two."""
    rows = []
    for name, recs in groups.items():
        two = [r for r in recs if r.role == "student" and "last" in (r.checkpoints or {})]
        if not two:
            continue
        row = {"Method": name, "policy": _policies(two), "n": len(two),
               "best epoch": "/".join(str(r.checkpoints["best"]["epoch"]) for r in two),
               "last epoch": "/".join(sorted({str(r.checkpoints["last"]["epoch"]) for r in two}))}
        for key, label in METRICS:
            best = {r.seed: r.checkpoints["best"]["metrics"].get(key, float("nan")) for r in two}
            last = {r.seed: r.checkpoints["last"]["metrics"].get(key, float("nan")) for r in two}
            if all(v != v for v in best.values()):  # the run-set did not evaluate this attack
                continue
            b, lst = interval(best.values(), (0, 1)), interval(last.values(), (0, 1))
            d = paired_difference(best, last)
            row[f"{label} best"] = cell(b.mean, b.low, b.high)
            row[f"{label} last"] = cell(lst.mean, lst.low, lst.high)
            row[f"{label} best−last"] = cell(d.diff, d.low, d.high, sign=True)
        rows.append(row)
    return pd.DataFrame(rows) if rows else None


def best_last_lines(groups: dict[str, list[RunRecord]], table_md: str) -> list[str]:
    policies = sorted({(r.checkpoints or {}).get("policy", "last") for recs in groups.values() for r in recs
                       if r.role == "student"})
    said = "; ".join(f"`{p}`: {POLICY_TEXT[p]}" for p in policies if p in POLICY_TEXT)
    return ["## Best and last checkpoints", "",
            "The main table's numbers are of the checkpoint each run's policy selected (" + said + "); here they "
            "stand beside the last epoch's, in %: mean over seeds [95 % interval]; best−last is paired over seeds. "
            "A positive gap is robust overfitting: the last epoch lost robustness the selection kept. A number "
            "selected on the test set is optimistic; it is there to reproduce a published number that was "
            "selected so, and its last-epoch twin is the honest one.", "", table_md, ""]


def kept_table(groups: dict[str, list[RunRecord]]) -> pd.DataFrame | None:
    """One row per (method, checkpoint) for the selected, the further kept (``ALSO``) and the last
    checkpoints of methods whose script keeps further ones: epochs, clean, PGD-20 and AutoAttack (mean
    [95 % interval] over seeds); None when no run keeps one."""
    rows = []
    for name, recs in groups.items():
        runs = [r for r in recs if r.role == "student" and any(k in (r.checkpoints or {}) for k in ALSO)]
        kept = [k for k in ("best", *ALSO, "last") if runs and all(k in r.checkpoints for r in runs)]
        for key in kept:
            row = {"Method": name, "checkpoint": "selected" if key == "best" else key, "n": len(runs),
                   "epoch": "/".join(str(r.checkpoints[key]["epoch"]) for r in runs)}
            for metric, label in METRICS:
                values = [r.checkpoints[key]["metrics"].get(metric, float("nan")) for r in runs]
                if all(v == v for v in values):
                    ci = interval(values, (0, 1))
                    row[label] = cell(ci.mean, ci.low, ci.high)
            rows.append(row)
    return pd.DataFrame(rows) if rows else None


def kept_lines(table_md: str) -> list[str]:
    return ["### Further checkpoints its script keeps", "",
            "Where an official script keeps more than one checkpoint, each is evaluated (clean, PGD-20, AutoAttack) "
            "and shown under its own name: " + "; ".join(f"`{k}`: {v}" for k, v in ALSO.items())
            + ". The main table reports the selected one.", "", table_md, ""]
