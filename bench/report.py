"""Tables (Markdown, CSV, LaTeX) and plots for a run-set, rebuilt from results/ alone.

Every table cell is the mean over seeds with its 95 % Student-t interval, clipped to the quantity's
range, as ``mean [low, high]`` when n > 1 (bench/stats.py, scipy.stats); train time is the median.
The CSVs keep the per-seed values. A row whose sanity checks fired (bench/sanity.py) is marked ⚠ in
every table and named in the text.
"""
from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from bench.errors import BenchError  # noqa: E402
from bench.io import atomic_write_json, atomic_write_text  # noqa: E402
from bench.results import RECORD, RunRecord, load_records  # noqa: E402
from bench.runset import RUNSET_FILE, entries  # noqa: E402,F401  (RUNSET_FILE: where reports read the manifest)
from bench.stats import NAN, holm, interval, paired_difference  # noqa: E402

COLUMNS = {"clean": "Clean", "fgsm": "FGSM", "pgd20": "PGD-20", "cw": "CW∞", "aa": "AutoAttack"}


@dataclass(frozen=True)
class Column:
    label: str
    path: tuple[str, ...]        # where the value sits in a RunRecord (attribute, keys...)
    scale: float = 100.0         # 100: accuracies shown in %
    digits: int = 1
    bounds: tuple[float, float] | None = (0.0, 1.0)   # the range its interval is clipped to

    def value(self, rec: RunRecord) -> float:
        node = getattr(rec, self.path[0])
        for key in self.path[1:]:
            if not isinstance(node, dict) or key not in node:
                return NAN
            node = node[key]
        return float(node) if node is not None else NAN


FLAG = " ⚠"


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


def _fmt(mean: float, low: float = NAN, high: float = NAN, scale: float = 100.0, digits: int = 1,
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


def _groups(records: list[RunRecord], order: list[str]) -> dict[str, list[RunRecord]]:
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
            disp[col.label] = _fmt(iv.mean, iv.low, iv.high, col.scale, col.digits)
            num[f"{col.label} mean"], num[f"{col.label} low"], num[f"{col.label} high"] = iv.mean, iv.low, iv.high
        if main:  # the run-set's main table also shows the train time and the sanity flags
            times = [r.timings.get("train_s", NAN) for r in recs]
            times = [t for t in times if t is not None and not math.isnan(t)]
            median = statistics.median(times) if times else NAN
            disp["Train time (s, median)"] = _fmt(median, scale=1.0, digits=0)
            num["train_s median"] = median
        disp["n"] = num["n"] = len(recs)
        if main:
            flags = flagged(recs)
            disp["Sanity"] = ", ".join(f"{k} ({v}/{len(recs)})" for k, v in flags.items()) if flags else (
                "ok" if any(r.sanity for r in recs) else "–")
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
    Column("corr gap clean", ("structure", "clean", "corr_gap"), 1.0, 3, (0.0, 2.0)),
    Column("corr gap adv", ("structure", "adv", "corr_gap"), 1.0, 3, (0.0, 2.0)),
    Column("CKA clean", ("structure", "clean", "cka"), 1.0, 3),
    Column("CKA adv", ("structure", "adv", "cka"), 1.0, 3),
    Column("agree clean %", ("structure", "clean", "agreement")),
    Column("agree adv %", ("structure", "adv", "agreement")),
    Column("adv fools T %", ("structure", "adv", "fools_teacher_given_student")),
]


def ablation_table(groups: dict[str, list[RunRecord]], reference: str, columns: list[Column]) -> pd.DataFrame:
    """Each row's difference from the reference row over seeds: paired t-test where the seeds pair up
    (Welch otherwise), 95 % interval of the mean difference, Holm-adjusted p over every comparison of
    the table; * where the adjusted p < 0.05."""
    ref = next((recs for recs in groups.values() if recs[0].role == "student" and recs[0].method == reference), None)
    if ref is None:
        return pd.DataFrame()
    cells = []
    for name, recs in groups.items():
        if recs[0].role != "student" or recs is ref:
            continue
        for col in columns:
            d = paired_difference({r.seed: col.value(r) for r in recs}, {r.seed: col.value(r) for r in ref})
            cells.append((name, len(recs), col, d))
    adjusted = holm([d.p for *_, d in cells])
    rows: dict[str, dict] = {}
    for (name, n, col, d), p in zip(cells, adjusted):
        row = rows.setdefault(name, {"Variant": name, "n": n, "test": d.test})
        sure = not math.isnan(p) and p < 0.05
        row[f"Δ {col.label}"] = _fmt(d.diff, d.low, d.high, col.scale, col.digits, sign=True) + (" *" if sure else "")
        row[f"p {col.label} (Holm)"] = "–" if math.isnan(p) else f"{p:.3g}"
    return pd.DataFrame(list(rows.values()))


def published_table(groups: dict[str, list[RunRecord]], columns: list[Column]):
    """(table with ours / published / Δ per metric, notes) where any reference matches, else None."""
    from bench.references import published

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
        for col in columns:
            key = col.path[-1]
            ours = interval([col.value(r) for r in recs]).mean
            ref = best.get(key)
            row[f"{col.label} ours"] = _fmt(ours)
            row[f"{col.label} published"] = ref["value"] if ref else "–"
            row[f"{col.label} Δ"] = _fmt(ours - float(ref["value"]) / 100, sign=True) if ref else "–"
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
        mean, low, high = num[f"{label} mean"], num[f"{label} low"], num[f"{label} high"]
        err = None if low.isna().all() else [
            [0 if math.isnan(lo) else scale * (m - lo) for m, lo in zip(mean, low)],
            [0 if math.isnan(hi) else scale * (hi - m) for m, hi in zip(mean, high)]]
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
        means = [interval([r.curve.get(f"{e:.6g}", NAN) for r in recs]).mean for e in eps]
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
        ax.set_title(f"{name}\noff-diagonal mean {st['clean']['corr_gap']:.3f}", fontsize=8)
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
    from bench.attacks import NORM_LABELS

    # records made before the L2 threat model carry no norm: they were L-inf
    norm, train_norm = (NORM_LABELS[c.get("norm", "Linf")] for c in (ev, at))
    aa = next((r.attack_settings.get("aa") for r in records if "aa" in r.attack_settings), None)
    teachers = [r for r in records if r.role == "teacher"]
    tcfg = cfg["teacher"]
    if tcfg.get("kind", "trained") == "trained" and "train" in tcfg:
        tt = tcfg["train"]
        how = (f"trained here with `{tcfg['method']}` for {tt['epochs']} epochs ({tt['schedule']} schedule"
               + (f", decay at {list(tt['milestones'])}" if tt["schedule"] == "step" else "")
               + f", lr {tt['lr']}, batch {tt['batch_size']}), "
               + ("one teacher per student seed" if tcfg.get("seed") is None else f"seed {tcfg['seed']}"))
    else:
        how = teacher_label(teachers[0]) if teachers else tcfg.get("kind", "")
    code = sorted({(r.code or {}).get("train", "?") for r in students})
    evals = sorted({(r.code or {}).get("eval", "?") for r in records})
    commits = sorted({str((r.code or {}).get("commit") or r.git_commit) for r in records})
    lines = [f"- Dataset: `{students[0].dataset}`; student `{cfg['student_arch']}`; teacher "
             f"`{tcfg['arch']}` ({how}); "
             f"{cfg['train']['epochs']} epochs; seeds: {sorted({r.seed for r in students})}; checkpoint: "
             + ("last epoch." if cfg["train"].get("checkpoint", "last") == "last" else
                f"best PGD-20 accuracy on a {cfg['train']['val_fraction']:.0%} validation split of the training data "
                "(never the test set)."),
             f"- Threat model: {norm}, ε = {ev['eps']:.4g} on pixels in [0, 1]. Training attack: PGD-{at['steps']}, "
             f"step {at['step_ratio']}·ε"
             + (f" in the {train_norm} ball" if train_norm != norm else "")
             + ", the start and objective each method declares.",
             ("- FGSM (one step of ε), PGD-20 (step ε/4, random start), CW∞ (PGD-30 on the margin loss, step ε/4)"
              if norm == "L∞" else
              "- FGSM (one step of length ε along the L2-normalised gradient), PGD-20 (steps of ε/4 along it, "
              "random start in the L2 ball), CW₂ (PGD-30 on the margin loss, step ε/4)")
             + f" on the first {students[0].attack_settings.get('n', '?')} test images."]
    if aa:
        lines.append(f"- AutoAttack ({aa['package']}, version `{aa['version']}`: {', '.join(aa['attacks'])}; "
                     f"seed {aa['seed']}; {aa['n_target_classes']} target classes) on the first {aa['n']} test images.")
    stand_in = sorted({r.dataset for r in records if "stand_in" in r.data_info})
    if stand_in:
        lines.append(f"- **Smoke run on synthetic stand-in data for {', '.join(stand_in)}** (the real files were "
                     "not found): it checks the path end to end; its numbers mean nothing.")
    lines.append(f"- Code identity (bench/provenance.py): training code {', '.join(code)}; evaluation code "
                 f"{', '.join(evals)}; git commit {', '.join(commits)}. A run is reused only while both digests "
                 "match the code that runs.")
    commands = meta.get("commands") or ([meta["command"]] if meta.get("command") else [])
    if len(commands) == 1:
        lines.append(f"- Reproduce: `{commands[0]}`")
    elif commands:
        lines.append("- Reproduce (the run-set was built by these commands, in order): "
                     + "; ".join(f"`{c}`" for c in commands))
    return lines


SANITY_TEXT = {
    "iterative_weaker": "PGD-20 weaker than FGSM",
    "blackbox_stronger": "Square (black-box) breaks images the white-box attacks missed",
    "large_eps": "accuracy does not fall to about 0 at a large eps",
    "not_converged": "PGD with more steps and restarts breaks images every evaluation attack missed",
    "zero_gradients": "inputs with an all-zero gradient",
    "nondeterministic": "not deterministic in eval mode",
}


def sanity_lines(groups: dict[str, list[RunRecord]]) -> list[str]:
    """The report's text on the checks: what each is, and every row where one fired."""
    recs = [r for g in groups.values() for r in g if r.sanity]
    if not recs:
        return []
    s = recs[0].sanity
    checks = s.get("checks", {})
    lines = ["## Sanity checks", "",
             "Every evaluated model is checked for signs of an unreliable robustness number "
             "(AutoAttack's checks.py; Carlini et al. 2019); thresholds are stored with each record "
             "(`sanity` in runs.json), extra attacks run on the first "
             f"{s.get('n', '?')} evaluated images:", ""]
    for name, c in checks.items():
        lines.append(f"- `{name}`: {SANITY_TEXT.get(name, name)} ({c['what']}; flagged above {c['threshold']:.3g}).")
    lines.append("")
    hits = [(name, flagged(g), g) for name, g in groups.items() if flagged(g)]
    if not hits:
        lines += ["No check fired on any row.", ""]
        return lines
    lines += ["**Rows marked ⚠ carry a robustness number that a check calls unreliable:**", ""]
    for name, flags, g in hits:
        for check, count in flags.items():
            values = [r.sanity["checks"][check]["value"] for r in g if check in r.sanity.get("flags", [])]
            lines.append(f"- {name}: `{check}` ({SANITY_TEXT.get(check, check)}) on {count} of {len(g)} seeds; "
                         f"measured {', '.join(f'{v:.3g}' for v in values)}.")
    warnings = sorted({w for g in groups.values() for r in g for w in (r.sanity or {}).get("autoattack_warnings", [])})
    lines += [""] + [f"- AutoAttack warned: {w}" for w in warnings] + [""]
    return lines


def build_report(results_dir: Path, runset: str, reports_dir: Path) -> Path:
    runset_dir = Path(results_dir) / runset
    meta_path = runset_dir / RUNSET_FILE
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    records = load_records(runset_dir, meta.get("runs"))
    if not records:
        raise BenchError(f"no finished runs in {runset_dir}; run `python -m bench run` first")
    missing = [e for e in entries(meta) if not (runset_dir / e.run_id / RECORD).exists()]
    out = Path(reports_dir) / runset
    out.mkdir(parents=True, exist_ok=True)
    groups = _groups(records, meta.get("methods", []))
    students = {k: v for k, v in groups.items() if v[0].role == "student"}

    acc_cols, tr_cols = accuracy_columns(records), transfer_columns(records)
    shown, numeric = table(groups, acc_cols, main=True)
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
            "Accuracy in %: mean over seeds [95 % Student-t interval of the mean, clipped to 0–100] when n > 1; "
            "n = seeds; train time is the median over seeds; Sanity names the checks that fired (section below).",
            "",
            markdown_table(shown), ""]
    if missing:
        text += [f"**Missing: {len(missing)} planned run(s) have no finished record yet** (`python -m bench status "
                 f"{runset}` says why); the table holds the others:", ""]
        text += [f"- {e.role} `{e.method}`" + (f" seed {e.seed}" if e.seed is not None else "") + f" ({e.run_id})"
                 for e in missing] + [""]
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

    text += sanity_lines(groups)

    reference = meta.get("compare_to")
    if reference:
        key_cols = [c for c in acc_cols if c.path[-1] in ("clean", "pgd20", "aa")] + tr_cols[:2] + \
                   [c for c in STRUCTURE_COLUMNS if c.label in ("corr gap adv", "CKA adv")]
        abl = ablation_table(groups, reference, key_cols)
        if not abl.empty:
            atomic_write_text(out / "ablation.csv", abl.to_csv(index=False))
            text += [f"## Ablation against `{reference}`", "",
                     f"Each row's difference from `{reference}`: mean over seeds [95 % interval of the mean "
                     "difference]; accuracies in points, structure in raw units. Seeds share the initialisation "
                     "across methods, so the test is a paired t-test over seeds (Welch's where the seeds do not "
                     "pair; column `test`); p-values are Holm-adjusted over every comparison in this table, and "
                     "* marks an adjusted p < 0.05.", "",
                     markdown_table(abl), ""]
    text += ["Files: `table.csv`, `table.tex`, `summary.csv` (means, intervals), `runs.csv` (per run and seed), "
             "`runs.json` (each run's full config, seed, versions and metrics)"
             + (", `transfer.csv`" if tr_cols else "") + (", `structure.csv`" if has_structure else "") + "."]
    atomic_write_text(out / "README.md", "\n".join(text) + "\n")
    return out
