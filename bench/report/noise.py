"""What the report says about sampling noise in its per-class numbers and about its worst case.

A per-class accuracy rests on that class's images alone (16-23 under AutoAttack on the digits
default): the spread across classes has a floor that binomial noise alone reaches, and the worst
class, the lowest of several noisy accuracies, reads low even when every class is alike. The text
gives both (``bench.eval.per_image.noise_floor``, ``worst_class_bias``) beside the images per class
and the worst class's Wilson interval. The worst case's caption says which attacks it folds in and
whether it equals an attack's column on every run (the main table then leaves it out).
"""
from __future__ import annotations

import re
import statistics
from typing import Callable

from bench.eval.per_image import with_counts
from bench.eval.protocol import LABELS
from bench.report.aggregate import CLASS_ATTACKS, worst_equals
from bench.records.record import RunRecord

Groups = dict[str, list[RunRecord]]


def complete_class_counts(records: list[RunRecord], per_image: Callable[[RunRecord], dict | None]
                          ) -> None:
    """Records made before the images per class were kept get them (and the noise figures) from
    their per_image.json, where it holds the very images their per-class accuracies came from."""
    for rec in records:
        if rec.per_class and not rec.per_class.get("n"):
            rec.per_class = with_counts(rec.per_class, per_image(rec))


# --- the worst case ----------------------------------------------------------------------------

def attack_label(name: str) -> str:
    """An attack the worst case folds in, as the caption writes it."""
    strong = re.fullmatch(r"sanity-pgd(\d+)x(\d+)", name)
    if strong:
        return f"PGD-{strong[1]} with {strong[2]} restarts (the convergence check's)"
    if name.startswith("sanity-"):
        return f"{name.removeprefix('sanity-')} (a sanity check's)"
    if name.startswith("curve@"):
        return f"PGD-20 of the ε-curve at ε = {name.removeprefix('curve@')}"
    return LABELS.get(name, name)


def folded_attacks(records: list[RunRecord]) -> dict[str, set[int]]:
    """{attack the worst case folds in: how many of its images it covered, over the runs}."""
    out: dict[str, set[int]] = {}
    for rec in records:
        worst = rec.attack_settings.get("worst") or {}
        covered = worst.get("folded", {})
        for name in worst.get("attacks", []):
            out.setdefault(name, set()).add(covered.get(name, worst.get("n", 0)))
    return out


def _folded_names(runs: list[RunRecord]) -> list[str]:
    sizes = [r.attack_settings.get("worst", {}).get("n") or 0 for r in runs]
    names = []
    for name, covered in folded_attacks(runs).items():
        if name == "clean":  # a condition of its own in the sentence
            continue
        fewer = sorted(c for c in covered if c < max(sizes))
        names.append(attack_label(name) + (f" on the first {fewer[0]} of them" if fewer else ""))
    return names


def worst_case_text(records: list[RunRecord]) -> str:
    """The main caption's sentences on the worst case: what it is, what it folds in, and whether it
    equals an attack's column on every run."""
    runs = [r for r in records if "worst" in r.metrics]
    if not runs:
        return ""
    text = ("Worst case: images classified correctly clean and under every attack run at ε, "
            "image by image, on the images every evaluation attack covered (AutoAttack's where "
            "it ran); it folds in " + ", ".join(_folded_names(runs)))
    if any("large_eps" in (r.sanity or {}).get("checks", {}) for r in runs):
        text += "; the large-ε sanity check is at another ε and is not part of it"
    text += "."
    equal = worst_equals(runs)
    if equal is not None:
        text += (f" It equals {LABELS[equal]} on every run, so the table leaves it out (runs.csv "
                 "keeps it).")
    before = [r for r in runs if "folded" not in r.attack_settings.get("worst", {})]
    if before:
        text += (f" {len(before)} of {len(runs)} runs were evaluated before the worst case "
                 "folded in the sanity check's attack and the ε-curve's point at ε: theirs "
                 "covers the evaluation's attacks alone.")
    return text


# --- per-class noise ---------------------------------------------------------------------------

def main_class_text(records: list[RunRecord]) -> str:
    """The main caption's sentence on its per-class columns."""
    text = ("The worst class: the accuracy of the class the strongest attack hurts most; class "
            "std: the standard deviation of its per-class accuracies in points")
    summaries = [s for r in records for s in (r.per_class or {}).get("summary", {}).values()]
    if any("floor" in s for s in summaries):
        text += ("; class std floor: the std binomial noise alone gives at each class's images "
                 "if every class had the run's overall accuracy (the mean over seeds), so a std "
                 "near its floor is no evidence that classes differ")
    return text + " (section Per-class robustness)."


def _row_means(groups: Groups, key: str, field: str) -> dict[str, float]:
    """{row: the mean over its seeds of a per-class summary figure}, for the rows that have it."""
    out = {}
    for name, recs in groups.items():
        values = [(r.per_class or {}).get("summary", {}).get(key, {}).get(field) for r in recs]
        values = [v for v in values if v is not None]
        if values:
            out[name] = statistics.fmean(values)
    return out


def _span(values, scale: float = 100.0) -> str:
    low, high = f"{scale * min(values):.1f}", f"{scale * max(values):.1f}"
    return low if low == high else f"{low}–{high}"


def _with_floor(groups: Groups) -> list[str]:
    return [k for k in CLASS_ATTACKS if _row_means(groups, k, "floor")]


def _counts_of(groups: Groups, key: str) -> tuple | None:
    """One attack's images per class: the same on every run (the usual case), a range otherwise."""
    seen = {tuple(r.per_class["n"][key]) for recs in groups.values() for r in recs
            if key in (r.per_class or {}).get("n", {})}
    if len(seen) <= 1:
        return seen.pop() if seen else None
    sizes = sorted(n for counts in seen for n in counts)
    return (f"{sizes[0]}–{sizes[-1]} (varying over runs)",)


def counts_text(groups: Groups) -> str:
    """The images per class behind each attack's per-class accuracies (attacks alike together)."""
    by_counts: dict[tuple, list[str]] = {}
    for key in CLASS_ATTACKS:
        counts = _counts_of(groups, key)
        if counts is not None:
            by_counts.setdefault(counts, []).append(LABELS[key])
    parts = [f"{' and '.join(labels)}: {', '.join(str(n) for n in counts)}"
             + (f" ({sum(counts)} images)" if all(isinstance(n, int) for n in counts) else "")
             for counts, labels in by_counts.items()]
    return ("Images per class (the n behind each per-class accuracy), class by class: "
            + "; ".join(parts) + ".") if parts else ""


def floor_text(groups: Groups) -> str:
    """The noise floor beside the measured spreads, per attack, over rows."""
    parts = []
    for key in _with_floor(groups):
        floors, stds = _row_means(groups, key, "floor"), _row_means(groups, key, "std")
        ratios = [stds[k] / floors[k] for k in floors if k in stds and floors[k] > 0]
        parts.append(f"{LABELS[key]} {_span(floors.values())} points against measured spreads of "
                     f"{_span(stds.values())}"
                     + (f" ({_span(ratios, 1.0)} times the floor)" if ratios else ""))
    if not parts:
        return ""
    return ("Class std floor: the standard deviation the per-class accuracies show from binomial "
            "sampling alone when every class has the run's overall accuracy p, at its class sizes "
            "n_k: √((K−1)/K² · Σ p(1−p)/n_k), the root of the exact expected variance over K "
            "classes (the expected std itself is a few % lower, by Jensen's inequality). Across "
            "rows (mean over seeds): " + "; ".join(parts) + ". A spread near its floor is what "
            "equal classes would show; only the excess speaks of a weak class.")


def bias_text(groups: Groups) -> str:
    """The worst class's expected shortfall under equal classes, per attack, over rows."""
    parts = []
    for key in _with_floor(groups):
        bias = _row_means(groups, key, "worst_bias")
        if bias:
            parts.append(f"{LABELS[key]} {_span([-b for b in bias.values()])}")
    if not parts:
        return ""
    return ("The worst class is the lowest of several noisy accuracies and reads low even when "
            "every class is alike: with every class at the run's overall accuracy, its expected "
            "shortfall below that accuracy (exact, from the classes' binomial distributions) is, "
            "in points across rows: " + "; ".join(parts) + ". Compare a worst class with the "
            "overall accuracy minus this, not with the overall accuracy.")


def _wilson_part(groups: Groups, key: str) -> str:
    """One attack's worst-class Wilson intervals: their widths over runs, and the median one."""
    runs = [(name, r, r.per_class["summary"][key]) for name, recs in groups.items() for r in recs
            if "worst_interval" in (r.per_class or {}).get("summary", {}).get(key, {})]
    if not runs:
        return ""
    widths = [100 * (s["worst_interval"][1] - s["worst_interval"][0]) for _, _, s in runs]
    name, rec, s = runs[widths.index(statistics.median_low(widths))]
    low, high = s["worst_interval"]
    return (f"{LABELS[key]} {min(widths):.0f}–{max(widths):.0f} points wide (e.g. "
            f"{name.split(' (')[0]} seed {rec.seed}: {100 * s['worst']:.1f} % of {s['worst_n']} "
            f"images, [{100 * low:.1f}, {100 * high:.1f}])")


def interval_text(groups: Groups) -> str:
    """How wide one class's accuracy is at its own n: the worst class's Wilson interval."""
    parts = [p for p in (_wilson_part(groups, key) for key in _with_floor(groups)) if p]
    if not parts:
        return ""
    return ("One class's accuracy is a proportion of its own n_k images: the worst class's 95 % "
            "Wilson interval, per run, is " + "; ".join(parts)
            + " (`per_class.summary.*.worst_interval` in runs.json).")


def class_noise_text(groups: Groups) -> list[str]:
    """The per-class section's paragraphs on sampling noise (none for runs without class sizes)."""
    texts = (counts_text(groups), floor_text(groups), bias_text(groups), interval_text(groups))
    return [t for t in texts if t]
