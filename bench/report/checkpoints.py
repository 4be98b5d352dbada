"""Best and last: per method, the checkpoint its policy selected and the last epoch, side by side (clean,
PGD-20, AutoAttack), with the gap between them -- robust overfitting, when the last epoch is worse.
Only runs whose policy chose among epochs (best-val, best-test-*) have two checkpoints."""
from __future__ import annotations

import pandas as pd

from bench.report.aggregate import cell
from bench.report.stats import interval, paired_difference
from bench.runs.record import RunRecord

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
