"""Tables (Markdown, CSV, LaTeX) and plots for a run-set, rebuilt from results/ alone.

Every table cell is the mean over seeds with its 95 % Student-t interval when n > 1; the CSVs keep
the per-seed values.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
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
NAN = float("nan")


@dataclass(frozen=True)
class Column:
    label: str
    path: tuple[str, ...]        # where the value sits in a RunRecord (attribute, keys...)
    scale: float = 100.0         # 100: accuracies shown in %
    digits: int = 1

    def value(self, rec: RunRecord) -> float:
        node = getattr(rec, self.path[0])
        for key in self.path[1:]:
            if not isinstance(node, dict) or key not in node:
                return NAN
            node = node[key]
        return float(node) if node is not None else NAN


def mean_ci(values: list[float]) -> tuple[float, float, int]:
    """Mean, half-width of the 95 % Student-t confidence interval (nan for n < 2), n; nans dropped."""
    from scipy import stats

    values = [v for v in values if not math.isnan(v)]
    n = len(values)
    if n == 0:
        return NAN, NAN, 0
    mean = sum(values) / n
    if n < 2:
        return mean, NAN, n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, float(stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)), n


def welch_diff(a: list[float], b: list[float]) -> tuple[float, float]:
    """Difference of means a - b and the half-width of its 95 % Welch interval (nan if n < 2)."""
    from scipy import stats

    a = [v for v in a if not math.isnan(v)]
    b = [v for v in b if not math.isnan(v)]
    if not a or not b:
        return NAN, NAN
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    if len(a) < 2 or len(b) < 2:
        return ma - mb, NAN
    va = sum((v - ma) ** 2 for v in a) / (len(a) - 1) / len(a)
    vb = sum((v - mb) ** 2 for v in b) / (len(b) - 1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return ma - mb, 0.0
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return ma - mb, float(stats.t.ppf(0.975, df) * se)


def row_name(rec: RunRecord) -> str:
    if rec.role == "teacher":
        return f"teacher ({rec.method}, {rec.arch})"
    return f"{rec.method} ({rec.note})" if rec.note else rec.method


def short_name(rec: RunRecord) -> str:
    return "teacher" if rec.role == "teacher" else rec.method


def _fmt(mean: float, ci: float, scale: float = 100.0, digits: int = 1, sign: bool = False) -> str:
    if math.isnan(mean):
        return "–"
    text = f"{scale * mean:{'+' if sign else ''}.{digits}f}"
    return text if math.isnan(ci) else f"{text} ± {scale * ci:.{digits}f}"


def _groups(records: list[RunRecord], order: list[str]) -> dict[str, list[RunRecord]]:
    """Records grouped by row: the teacher first, then methods in the run-set's order."""
    rank = {m: i for i, m in enumerate(order)}
    ordered = sorted(records, key=lambda r: (r.role != "teacher", rank.get(r.method, len(rank)), r.created, r.seed))
    groups: dict[str, list[RunRecord]] = {}
    for rec in ordered:
        groups.setdefault(row_name(rec), []).append(rec)
    return groups


def table(groups: dict[str, list[RunRecord]], columns: list[Column], with_time: bool = False
          ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(display table: mean ± CI per cell and n; numeric table: mean, ci95 and n per column)."""
    shown, numeric = [], []
    for name, recs in groups.items():
        disp = {"Method": name}
        num = {"method": name, "short": short_name(recs[0])}
        for col in columns:
            mean, ci, _ = mean_ci([col.value(r) for r in recs])
            disp[col.label] = _fmt(mean, ci, col.scale, col.digits)
            num[f"{col.label} mean"], num[f"{col.label} ci95"] = mean, ci
        if with_time:
            mean, ci, _ = mean_ci([r.timings.get("train_s", NAN) for r in recs])
            disp["Train time (s)"] = _fmt(mean, ci, 1.0, 0)
            num["train_s mean"], num["train_s ci95"] = mean, ci
        disp["n"] = num["n"] = len(recs)
        shown.append(disp)
        numeric.append(num)
    return pd.DataFrame(shown), pd.DataFrame(numeric)


def markdown_table(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, row in df.iterrows():
        lines.append("| " + " | ".join(str(row[c]) for c in cols) + " |")
    return "\n".join(lines)


def _targets(records: list[RunRecord]) -> list[str]:
    return list(dict.fromkeys(t for r in records for t in r.transfer))


def _transfer_attacks(records: list[RunRecord], target: str) -> list[str]:
    return list(dict.fromkeys(k for r in records for k in r.transfer.get(target, {}).get("metrics", {})))


def accuracy_columns(records) -> list[Column]:
    present = {k for r in records for k in r.metrics}
    return [Column(label, ("metrics", key)) for key, label in COLUMNS.items() if key in present]


def transfer_columns(records) -> list[Column]:
    return [Column(f"{target} {COLUMNS.get(a, a)}", ("transfer", target, "metrics", a))
            for target in _targets(records) for a in _transfer_attacks(records, target)]


STRUCTURE_COLUMNS = [
    Column("corr gap clean", ("structure", "clean", "corr_gap"), 1.0, 3),
    Column("corr gap adv", ("structure", "adv", "corr_gap"), 1.0, 3),
    Column("CKA clean", ("structure", "clean", "cka"), 1.0, 3),
    Column("CKA adv", ("structure", "adv", "cka"), 1.0, 3),
    Column("agree clean %", ("structure", "clean", "agreement")),
    Column("agree adv %", ("structure", "adv", "agreement")),
    Column("adv fools T %", ("structure", "adv", "fools_teacher_given_student")),
]


def ablation_table(groups: dict[str, list[RunRecord]], reference: str, columns: list[Column]) -> pd.DataFrame:
    """Each row's difference from the reference row (Welch 95 % interval); * where it excludes 0."""
    ref = next((recs for recs in groups.values() if recs[0].role == "student" and recs[0].method == reference), None)
    if ref is None:
        return pd.DataFrame()
    rows = []
    for name, recs in groups.items():
        if recs[0].role != "student" or recs is ref:
            continue
        row = {"Variant": name, "n": len(recs)}
        for col in columns:
            diff, ci = welch_diff([col.value(r) for r in recs], [col.value(r) for r in ref])
            sure = not math.isnan(ci) and abs(diff) > ci
            row[f"Δ {col.label}"] = _fmt(diff, ci, col.scale, col.digits, sign=True) + (" *" if sure else "")
        rows.append(row)
    return pd.DataFrame(rows)


def published_table(groups: dict[str, list[RunRecord]], columns: list[Column]):
    """(table with ours / published / Δ per metric, notes) where any reference matches, else None."""
    from bench.references import published

    rows, notes, matched = [], [], False
    for name, recs in groups.items():
        rec = recs[0]
        best, all_rows = published(rec.method_name, rec.role, rec.dataset, rec.arch)
        row = {"Method": name}
        for col in columns:
            key = col.path[-1]
            ours = mean_ci([col.value(r) for r in recs])[0]
            ref = best.get(key)
            row[f"{col.label} ours"] = _fmt(ours, NAN)
            row[f"{col.label} published"] = ref["value"] if ref else "–"
            row[f"{col.label} Δ"] = _fmt(ours - float(ref["value"]) / 100, NAN, sign=True) if ref else "–"
        sources = sorted({f"{r['source']} ({r['status']})" for r in best.values()})
        row["source"] = "; ".join(sources) if sources else "–"
        matched |= bool(all_rows)
        if not best and rec.role == "student":
            why = next((r["source"] for r in all_rows if r["status"] == "missing"), "none in bench/references.csv")
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
        row.update({"train_s": r.timings.get("train_s"), "eval_s": r.timings.get("eval_s")})
        rows.append(row)
    return pd.DataFrame(rows)


# --- plots --------------------------------------------------------------------------------------

def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _bars(num: pd.DataFrame, labels: list[str], path: Path, title: str, ylabel: str, scale: float,
          ylim: float | None) -> None:
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(num) + 2), 4))
    width = 0.8 / max(1, len(labels))
    for j, label in enumerate(labels):
        xs = [i + (j - (len(labels) - 1) / 2) * width for i in range(len(num))]
        ci = num[f"{label} ci95"]
        err = None if ci.isna().all() else [0 if math.isnan(c) else scale * c for c in ci]
        ax.bar(xs, scale * num[f"{label} mean"], width, yerr=err, label=label, capsize=2)
    ax.set_xticks(range(len(num)))
    ax.set_xticklabels(num["short"], fontsize=8, rotation=20 if len(num) > 5 else 0, ha="right" if len(num) > 5 else "center")
    ax.set_ylabel(ylabel)
    if ylim:
        ax.set_ylim(0, ylim)
    ax.legend(fontsize=7, ncol=len(labels), loc="upper center", bbox_to_anchor=(0.5, -0.12), frameon=False)
    ax.set_title(title)
    _save(fig, path)


def _plot_curve(groups: dict[str, list[RunRecord]], path: Path) -> bool:
    fig, ax = plt.subplots(figsize=(6, 4))
    drawn = False
    for name, recs in groups.items():
        eps = sorted({float(e) for r in recs for e in r.curve})
        if not eps:
            continue
        means = [mean_ci([r.curve.get(f"{e:.6g}", NAN) for r in recs])[0] for e in eps]
        ax.plot(eps, [100 * m for m in means], marker="o", label=short_name(recs[0]),
                linestyle="--" if recs[0].role == "teacher" else "-")
        drawn = True
    ax.set_xlabel("ε (L∞, pixels in [0,1])")
    ax.set_ylabel("PGD-20 accuracy (%)")
    ax.set_title("Robust accuracy vs ε (mean over seeds)")
    ax.legend(fontsize=7)
    _save(fig, path)
    return drawn


def _plot_training(groups: dict[str, list[RunRecord]], path: Path) -> bool:
    fig, ax = plt.subplots(figsize=(6, 4))
    drawn = False
    for name, recs in groups.items():
        hist = recs[0].history
        if hist:
            ax.plot([h["epoch"] for h in hist], [h["loss"] for h in hist], label=f"{short_name(recs[0])} (seed {recs[0].seed})")
            drawn = True
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (sum of terms)")
    ax.set_yscale("log")
    ax.set_title("Training curves")
    ax.legend(fontsize=7)
    _save(fig, path)
    return drawn


def _plot_heatmaps(groups: dict[str, list[RunRecord]], path: Path) -> bool:
    """|corr_T - corr_S| of the logits on clean test inputs, first seed of each student."""
    rows = [(short_name(recs[0]), recs[0].structure) for recs in groups.values()
            if recs[0].structure.get("corr_teacher")]
    if not rows:
        return False
    cols = min(4, len(rows))
    nrows = math.ceil(len(rows) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 3.0 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (name, st) in zip(axes.flat, rows):
        gap = (pd.DataFrame(st["corr_teacher"]) - pd.DataFrame(st["corr_student"])).abs().to_numpy()
        im = ax.imshow(gap, vmin=0, vmax=1, cmap="magma")
        ax.set_title(f"{name}\nmean {gap.mean():.3f}", fontsize=8)
        ax.axis("on")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8)
    fig.suptitle("|teacher − student| class-correlation of logits (clean test inputs)", fontsize=9)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# --- the report ---------------------------------------------------------------------------------

def _setup_lines(records: list[RunRecord], meta: dict) -> list[str]:
    students = [r for r in records if r.role == "student"] or records
    cfg = students[0].config
    ev, at = cfg["eval"], cfg["attack"]
    aa = next((r.attack_settings.get("aa") for r in records if "aa" in r.attack_settings), None)
    lines = [f"- Dataset: `{students[0].dataset}`; student `{cfg['student_arch']}`; teacher "
             f"`{cfg['teacher']['arch']}` ({cfg['teacher']['source']}, method `{cfg['teacher']['method']}`); "
             f"{cfg['train']['epochs']} epochs; seeds: {sorted({r.seed for r in students})}; checkpoint: "
             + ("last epoch." if cfg["train"].get("checkpoint", "last") == "last" else
                f"best PGD-20 accuracy on a {cfg['train']['val_fraction']:.0%} validation split of the training data "
                "(never the test set)."),
             f"- Threat model: L∞, ε = {ev['eps']:.4g} on pixels in [0, 1]. Training attack: PGD-{at['steps']}, "
             f"step {at['step_ratio']}·ε, the start and objective each method declares.",
             f"- FGSM (one step of ε), PGD-20 (step ε/4, random start), CW∞ (PGD-30 on the margin loss, step ε/4) "
             f"on the first {students[0].attack_settings.get('n', '?')} test images."]
    if aa:
        lines.append(f"- AutoAttack ({aa['package']}, version `{aa['version']}`: {', '.join(aa['attacks'])}; "
                     f"seed {aa['seed']}; {aa['n_target_classes']} target classes) on the first {aa['n']} test images.")
    stand_in = sorted({r.dataset for r in records if "stand_in" in r.data_info})
    if stand_in:
        lines.append(f"- **Smoke run on synthetic stand-in data for {', '.join(stand_in)}** (the real files were "
                     "not found): it checks the path end to end; its numbers mean nothing.")
    if meta.get("command"):
        lines.append(f"- Reproduce: `{meta['command']}`")
    return lines


def build_report(results_dir: Path, runset: str, reports_dir: Path) -> Path:
    runset_dir = Path(results_dir) / runset
    meta_path = runset_dir / RUNSET_FILE
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    records = load_records(runset_dir, meta.get("runs"))
    if not records:
        raise BenchError(f"no finished runs in {runset_dir}; run `python -m bench run` first")
    out = Path(reports_dir) / runset
    out.mkdir(parents=True, exist_ok=True)
    groups = _groups(records, meta.get("methods", []))
    students = {k: v for k, v in groups.items() if v[0].role == "student"}

    acc_cols, tr_cols = accuracy_columns(records), transfer_columns(records)
    shown, numeric = table(groups, acc_cols, with_time=True)
    tr_shown, tr_num = table(groups, tr_cols)
    st_shown, st_num = table(students, STRUCTURE_COLUMNS)
    has_structure = any(r.structure for r in records)

    atomic_write_text(out / "table.csv", shown.to_csv(index=False))
    atomic_write_text(out / "table.tex", shown.to_latex(index=False, escape=True))
    atomic_write_text(out / "summary.csv", pd.concat([numeric, tr_num.drop(columns=["method", "short", "n"])],
                                                     axis=1).to_csv(index=False))
    atomic_write_text(out / "runs.csv", per_run_frame(records, acc_cols + tr_cols + STRUCTURE_COLUMNS)
                      .to_csv(index=False))
    atomic_write_json(out / "runs.json", [{k: v for k, v in asdict(r).items() if k != "history"} for r in records])

    acc_labels = [c.label for c in acc_cols]
    _bars(numeric, acc_labels, out / "accuracy_per_attack.png", "Accuracy per attack", "accuracy (%)", 100, 105)
    plots = ["accuracy_per_attack.png"]
    if _plot_curve(groups, out / "robustness_curve.png"):
        plots.append("robustness_curve.png")
    if _plot_training(groups, out / "training_curves.png"):
        plots.append("training_curves.png")

    notes = sorted({(r.method_name, r.note) for r in records if r.note})
    text = [f"# Run-set `{runset}`", "", *_setup_lines(records, meta), "",
            "Accuracy in % (mean ± 95 % Student-t interval over seeds when n > 1; n = seeds).", "",
            markdown_table(shown), ""]
    text += [f"- `{name}`: {note}." for name, note in notes]
    text += [""] + [f"![{p}]({p})" for p in plots] + [""]

    if tr_cols:
        atomic_write_text(out / "transfer.csv", tr_shown.to_csv(index=False))
        text += ["## Transfer to other tasks", "",
                 "A linear head is trained on each target's training split on top of the frozen network; "
                 "accuracy (%) of the probed network on the target's test split, clean and under attack "
                 "on the whole network.", "", markdown_table(tr_shown), ""]
    if has_structure:
        atomic_write_text(out / "structure.csv", st_shown.to_csv(index=False))
        text += ["## Structural knowledge", "",
                 "Teacher–student similarity on clean test inputs and on the student's PGD-20 examples: mean "
                 "absolute gap between class-correlation matrices of logits (lower is closer), linear CKA of "
                 "penultimate features (1 = same up to rotation and scale), prediction agreement (%), and how "
                 "often an example that fools the student also fools the teacher (%).", "",
                 markdown_table(st_shown), ""]
        if _plot_heatmaps(students, out / "correlation_heatmaps.png"):
            text += ["Each panel: |teacher − student| class-correlation matrix of logits; darker is closer.", "",
                     "![correlation_heatmaps.png](correlation_heatmaps.png)", ""]
        _bars(st_num, ["CKA clean", "CKA adv"], out / "cka.png", "Linear CKA with the teacher", "CKA", 1.0, 1.05)
        text += ["Linear CKA between the student's and the teacher's penultimate features.", "", "![cka.png](cka.png)", ""]

    pub = published_table(groups, acc_cols)
    if pub is not None:
        atomic_write_text(out / "published.csv", pub[0].to_csv(index=False))
        text += ["## Published numbers", "",
                 "Our mean next to the best-attested published number for the same method, data set and "
                 "student (`bench/references.csv`; Δ = ours − published, in points).", "",
                 markdown_table(pub[0]), "", *pub[1], ""]

    reference = meta.get("compare_to")
    if reference:
        key_cols = [c for c in acc_cols if c.path[-1] in ("clean", "pgd20", "aa")] + tr_cols[:2] + \
                   [c for c in STRUCTURE_COLUMNS if c.label in ("corr gap adv", "CKA adv")]
        abl = ablation_table(groups, reference, key_cols)
        if not abl.empty:
            atomic_write_text(out / "ablation.csv", abl.to_csv(index=False))
            text += [f"## Ablation against `{reference}`", "",
                     f"Each row's difference from `{reference}` (mean over seeds, ± 95 % Welch interval; "
                     "accuracies in points, structure in raw units); * marks an interval that excludes 0.", "",
                     markdown_table(abl), ""]
    text += ["Files: `table.csv`, `table.tex`, `summary.csv` (means, intervals), `runs.csv` (per run and seed), "
             "`runs.json` (each run's full config, seed, versions and metrics)"
             + (", `transfer.csv`" if tr_cols else "") + (", `structure.csv`" if has_structure else "") + "."]
    atomic_write_text(out / "README.md", "\n".join(text) + "\n")
    return out
