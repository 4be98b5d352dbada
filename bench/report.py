"""Tables (Markdown, CSV, LaTeX) and plots for a run-set, rebuilt from results/ alone."""
from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from bench.errors import BenchError  # noqa: E402
from bench.io import atomic_write_json, atomic_write_text  # noqa: E402
from bench.results import RunRecord, load_records  # noqa: E402

COLUMNS = {"clean": "Clean", "fgsm": "FGSM", "pgd20": "PGD-20", "cw": "CW∞", "aa": "AutoAttack"}
RUNSET_FILE = "runset.json"


def mean_ci(values: list[float]) -> tuple[float, float, int]:
    """Mean, half-width of the 95 % Student-t confidence interval (nan for n < 2), n."""
    from scipy import stats

    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan"), n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, float(stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)), n


def row_name(rec: RunRecord) -> str:
    if rec.role == "teacher":
        return f"teacher ({rec.method}, {rec.arch})"
    return f"{rec.method} ({rec.note})" if rec.note else rec.method


def _fmt(mean: float, ci: float, scale: float = 100.0, digits: int = 1) -> str:
    if math.isnan(mean):
        return "–"
    text = f"{scale * mean:.{digits}f}"
    return text if math.isnan(ci) else f"{text} ± {scale * ci:.{digits}f}"


def _groups(records: list[RunRecord]) -> dict[str, list[RunRecord]]:
    """Records grouped by row (method variant or teacher), teacher first, then in run order."""
    ordered = sorted(records, key=lambda r: (r.role != "teacher", r.created))
    groups: dict[str, list[RunRecord]] = {}
    for rec in ordered:
        groups.setdefault(row_name(rec), []).append(rec)
    return groups


def summary_frame(records: list[RunRecord]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(display table with mean ± CI, numeric table with mean/ci/n columns)."""
    shown, numeric = [], []
    for name, recs in _groups(records).items():
        short = "teacher" if recs[0].role == "teacher" else recs[0].method
        disp, num = {"Method": name}, {"method": name, "short": short}
        for key, label in COLUMNS.items():
            vals = [r.metrics[key] for r in recs if key in r.metrics]
            mean, ci, n = mean_ci(vals) if vals else (float("nan"), float("nan"), 0)
            disp[label] = _fmt(mean, ci)
            num.update({f"{key}_mean": mean, f"{key}_ci95": ci})
        mean, ci, n = mean_ci([r.timings.get("train_s", float("nan")) for r in recs])
        disp["Train time (s)"] = _fmt(mean, ci, scale=1.0, digits=0)
        disp["n"] = n
        num.update({"train_s_mean": mean, "train_s_ci95": ci, "n": n})
        shown.append(disp)
        numeric.append(num)
    return pd.DataFrame(shown), pd.DataFrame(numeric)


def markdown_table(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, row in df.iterrows():
        lines.append("| " + " | ".join(str(row[c]) for c in cols) + " |")
    return "\n".join(lines)


def per_run_frame(records: list[RunRecord]) -> pd.DataFrame:
    rows = []
    for r in records:
        rows.append({"run_id": r.run_id, "row": row_name(r), "role": r.role, "method": r.method,
                     "seed": r.seed, "dataset": r.dataset, "arch": r.arch, "teacher_id": r.teacher_id,
                     **{k: r.metrics.get(k) for k in COLUMNS},
                     **{f"pgd20@{e}": v for e, v in r.curve.items()},
                     "train_s": r.timings.get("train_s"), "eval_s": r.timings.get("eval_s")})
    return pd.DataFrame(rows)


def _plot_attacks(num: pd.DataFrame, path: Path) -> None:
    keys = [k for k in COLUMNS if f"{k}_mean" in num and num[f"{k}_mean"].notna().any()]
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(num) + 2), 4))
    width = 0.8 / max(1, len(keys))
    for j, key in enumerate(keys):
        xs = [i + (j - (len(keys) - 1) / 2) * width for i in range(len(num))]
        ci = num[f"{key}_ci95"]
        err = None if ci.isna().all() else [0 if math.isnan(c) else 100 * c for c in ci]
        ax.bar(xs, 100 * num[f"{key}_mean"], width, yerr=err, label=COLUMNS[key], capsize=2)
    ax.set_xticks(range(len(num)))
    ax.set_xticklabels(num["short"], fontsize=8)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=7, ncol=len(keys), loc="upper center", bbox_to_anchor=(0.5, -0.1), frameon=False)
    ax.set_title("Accuracy per attack")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_curve(groups: dict[str, list[RunRecord]], path: Path) -> bool:
    fig, ax = plt.subplots(figsize=(6, 4))
    drawn = False
    for name, recs in groups.items():
        eps = sorted({float(e) for r in recs for e in r.curve})
        if not eps:
            continue
        means = [sum(r.curve.get(f"{e:.6g}", float("nan")) for r in recs) / len(recs) for e in eps]
        ax.plot(eps, [100 * m for m in means], marker="o", label=name, linestyle="--" if "teacher" in name else "-")
        drawn = True
    ax.set_xlabel("ε (L∞, pixels in [0,1])")
    ax.set_ylabel("PGD-20 accuracy (%)")
    ax.set_title("Robust accuracy vs ε")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return drawn


def _plot_training(groups: dict[str, list[RunRecord]], path: Path) -> bool:
    fig, ax = plt.subplots(figsize=(6, 4))
    drawn = False
    for name, recs in groups.items():
        hist = recs[0].history
        if not hist:
            continue
        ax.plot([h["epoch"] for h in hist], [h["loss"] for h in hist], label=f"{name} (seed {recs[0].seed})")
        drawn = True
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (sum of terms)")
    ax.set_yscale("log")
    ax.set_title("Training curves")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return drawn


def _setup_lines(records: list[RunRecord], meta: dict) -> list[str]:
    students = [r for r in records if r.role == "student"] or records
    cfg = students[0].config
    ev, at = cfg["eval"], cfg["attack"]
    aa = next((r.attack_settings.get("aa") for r in records if "aa" in r.attack_settings), None)
    lines = [f"- Dataset: `{students[0].dataset}`; student `{cfg['student_arch']}`; teacher "
             f"`{cfg['teacher']['arch']}` ({cfg['teacher']['source']}, method `{cfg['teacher']['method']}`); "
             f"{cfg['train']['epochs']} epochs; seeds: {sorted({r.seed for r in records})}.",
             f"- Threat model: L∞, ε = {ev['eps']:.4g} on pixels in [0, 1]. Training attack: PGD-{at['steps']}, "
             f"step {at['step_ratio']}·ε, the start and objective each method declares.",
             f"- FGSM (one step of ε), PGD-20 (step ε/4, random start), CW∞ (PGD-30 on the margin loss, step ε/4) "
             f"on the first {students[0].attack_settings.get('n', '?')} test images."]
    if aa:
        lines.append(f"- AutoAttack ({aa['package']}, version `{aa['version']}`: {', '.join(aa['attacks'])}; "
                     f"seed {aa['seed']}; {aa['n_target_classes']} target classes) on the first {aa['n']} test images.")
    if meta.get("command"):
        lines.append(f"- Reproduce: `{meta['command']}`")
    return lines


def build_report(results_dir: Path, runset: str, reports_dir: Path) -> Path:
    runset_dir = Path(results_dir) / runset
    records = load_records(runset_dir)
    if not records:
        raise BenchError(f"no finished runs in {runset_dir}; run `python -m bench run` first")
    meta_path = runset_dir / RUNSET_FILE
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    out = Path(reports_dir) / runset
    out.mkdir(parents=True, exist_ok=True)

    shown, numeric = summary_frame(records)
    groups = _groups(records)
    atomic_write_text(out / "table.csv", shown.to_csv(index=False))
    atomic_write_text(out / "summary.csv", numeric.to_csv(index=False))
    atomic_write_text(out / "runs.csv", per_run_frame(records).to_csv(index=False))
    atomic_write_text(out / "table.tex", shown.to_latex(index=False, escape=True))
    # Every number's config and seed, beside the tables (checkpoints stay out of git).
    atomic_write_json(out / "runs.json", [{k: v for k, v in asdict(r).items() if k != "history"}
                                          for r in records])
    _plot_attacks(numeric, out / "accuracy_per_attack.png")
    plots = ["accuracy_per_attack.png"]
    if _plot_curve(groups, out / "robustness_curve.png"):
        plots.append("robustness_curve.png")
    if _plot_training(groups, out / "training_curves.png"):
        plots.append("training_curves.png")

    notes = sorted({(r.method_name, r.note) for r in records if r.note})
    text = [f"# Run-set `{runset}`", "", *_setup_lines(records, meta), "",
            "Accuracy in % (mean ± 95 % Student-t interval when n > 1 seeds; n = seeds).", "",
            markdown_table(shown), ""]
    text += [f"- `{name}`: {note}." for name, note in notes]
    text += ["", "Files: `table.csv`, `table.tex`, `summary.csv` (means, intervals), `runs.csv` (per run and seed), "
             "`runs.json` (each run's full config, seed, versions and metrics).", ""]
    text += [f"![{p}]({p})" for p in plots]
    atomic_write_text(out / "README.md", "\n".join(text) + "\n")
    return out
