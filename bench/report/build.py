r"""Tables (Markdown, CSV, LaTeX) and figures (drawn by bench/report/figures.py) for a run-set, rebuilt from
results/ alone.

Every table cell is the mean over seeds with its 95 % Student-t interval, clipped to the quantity's
range, as ``mean [low, high]`` when n > 1 (bench/report/stats.py, scipy.stats); the LaTeX tables write the
same interval in math mode (``$m \pm h$``, or ``$m^{+a}_{-b}$`` where clipping made it asymmetric);
train time is the median. The CSVs keep the per-seed values. A row whose sanity checks fired
(bench/eval/sanity.py) is marked ⚠ in every table (``$^\dagger$`` in LaTeX) and named in the text.
"""
from __future__ import annotations

import json
import re
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from bench.attacks.threat import NORM_LABELS
from bench.common.errors import BenchError
from bench.common.io import atomic_write_json, atomic_write_text
from bench.common.provenance import changed_files, git_commit
from bench.common.tables import markdown_table
from bench.config.files import config_of
from bench.config.protocol import OFFICIAL_DATA
from bench.config.schema import Limit
from bench.eval.per_image import PER_IMAGE
from bench.report import figures as plots
from bench.report.aggregate import (
    ATTACK_TRANSFER_COLUMNS,
    CLASS_ATTACKS,
    COLUMNS,
    STRUCTURE_COLUMNS,
    Column,
    ablation_table,
    accuracy_columns,
    class_columns,
    corruption_columns,
    flagged,
    group_records,
    main_accuracy_columns,
    per_run_frame,
    published_table,
    row_name,
    short_name,
    strongest_class_column,
    table,
    teacher_label,
    transfer_columns,
)
from bench.report.checkpoints import best_last_lines, best_last_table, kept_lines, kept_table
from bench.report.index import write_index
from bench.report.latex import latex_table
from bench.report.noise import (class_noise_text, complete_class_counts, main_class_text,
                                worst_case_text)
from bench.report.recipes import recipe_markdown
from bench.report.stats import LEVEL, interval
from bench.records.record import RECORD, RunRecord, load_records
from bench.records.runset import entries, read_manifest

# --- figures --------------------------------------------------------------------------------------

def report_figures(groups: dict[str, list[RunRecord]], records: list[RunRecord], acc_cols: list[Column]
                   ) -> tuple[dict[str, str], dict]:
    """(palette: {row name: colour}, {figure stem: matplotlib Figure}) for every figure of the report,
    all drawn in the one palette."""
    rows = [plots.Row(name, short_name(recs[0]), recs[0].role == "teacher", tuple(recs)) for name, recs in groups.items()]
    students = [row for row in rows if not row.teacher]
    pal = plots.palette(rows)

    def cells(rows, cols):   # each row's value per seed, per column
        return {row.name: {c.label: [float(c.value(r)) for r in row.records] for c in cols} for row in rows}

    eps, norm = plots.threat_model(records)
    figures = {"accuracy_per_attack": plots.bars(rows, cells(rows, acc_cols), [c.label for c in acc_cols], pal,
                                                 "Accuracy per attack", "accuracy (%)", 100, 105),
               "robustness_curve": plots.robustness_curve(rows, pal, eps, norm),
               "training_curves": plots.training_curves(rows, pal)}
    strongest = next((k for k in ("aa", "pgd20") if any(k in r.metrics for r in records)), None)
    if strongest is not None:
        figures["robustness_vs_cost"] = plots.robustness_vs_cost(rows, pal, strongest, COLUMNS[strongest])
    cor = corruption_columns(records)
    if cor:
        names = [c for c in cor if c.path[1] == "mean"]
        figures["corruptions"] = plots.bars(rows, cells(rows, names), [c.label for c in names], pal,
                                            "Accuracy per common corruption (mean over severities)",
                                            "accuracy (%)", 100, 105)
    with_classes = [k for k in CLASS_ATTACKS if any(k in (r.per_class or {}).get("accuracy", {}) for r in records)]
    if with_classes:  # the strongest attack's per-class accuracy
        figures["per_class"] = plots.per_class(rows, pal, with_classes[-1], COLUMNS[with_classes[-1]])
    if any(r.structure for r in records):
        figures["correlation_heatmaps"] = plots.correlation_heatmaps(students)
        cka = [c for c in STRUCTURE_COLUMNS if c.label.startswith("CKA")]
        figures["cka"] = plots.bars(students, cells(students, cka), [c.label for c in cka], pal,
                                    "Linear CKA with the teacher", "CKA", 1.0, 1.05)
    return pal, {stem: fig for stem, fig in figures.items() if fig is not None}


# --- the report ---------------------------------------------------------------------------------

GLANCE = ("Clean", "PGD-20", "AutoAttack", "Worst case", "Corruptions")   # the main table's columns, at most


def glance_table(shown: pd.DataFrame, numeric: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """(the main table at a glance, what ranks it): method, clean, PGD-20, AutoAttack, the worst case
    where it is shown, the strongest attack's worst class, corruptions and n; students ranked by the
    strongest attack (ties by the next), teacher rows first; a method's note is a footnote below."""
    cols = [c for c in shown.columns if c in GLANCE or c.endswith(" worst class")]
    view = shown[["Method", *cols, "n"]].copy()
    teacher = (numeric["short"] == "teacher").to_numpy() if "short" in numeric else \
        shown["Method"].str.startswith("teacher").to_numpy()
    view["Method"] = [m if t else re.sub(r" \(.*\)", "", m) for m, t in zip(view["Method"], teacher)]
    keys = [f"{c} mean" for c in ("AutoAttack", "PGD-20", "Clean") if f"{c} mean" in numeric.columns]
    order = numeric.assign(_teacher=teacher)[["_teacher", *keys]].fillna(-1).reset_index(drop=True)
    order = order.sort_values(["_teacher", *keys], ascending=False, kind="stable").index
    return view.iloc[order].reset_index(drop=True), (keys[0].removesuffix(" mean") if keys else "the run order")


def _aa_subset(aa: dict, n, why: str) -> str:
    """What the AutoAttack line adds when it covers fewer images than the other attacks: which, and why."""
    if n is None or aa["n"] >= n:
        return ""
    return f" (a subset of the {n}: {why})" if why else f" (a subset of the {n} the other attacks use)"


def _setup_lines(records: list[RunRecord], meta: dict) -> list[str]:
    students = [r for r in records if r.role == "student"] or records
    cfg = students[0].config
    ev, at = cfg["eval"], cfg["attack"]
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
             + _checkpoint_text(students),
             _protocol_line(students),
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
                     f"seed {aa['seed']}; {aa['n_target_classes']} target classes) on the first {aa['n']} test images"
                     + _aa_subset(aa, students[0].attack_settings.get("n"), ev.get("aa_subset_why", "")) + ".")
    stand_in = sorted({r.dataset for r in records if "stand_in" in r.data_info})
    if stand_in:
        lines.append(f"- **Smoke run on synthetic stand-in data for {', '.join(stand_in)}** (the real files were "
                     "not found): it checks the path end to end; its numbers mean nothing.")
    released = sorted({str(v) for r in records if (v := (r.versions or {}).get("robust-kd-bench"))})
    lines.append(f"- Code identity (bench/common/provenance.py): "
                 + (f"bench {', '.join(released)}; " if released else "")
                 + f"training code {', '.join(code)}; evaluation code "
                 f"{', '.join(evals)}; git commit {', '.join(commits)}"
                 + _uncommitted(records) + ". A run is reused only while both digests match the code that runs.")
    built = git_commit()
    lines.append(f"- This report was built by the code at commit {built or 'unknown (not a git checkout)'}"
                 + (f", with uncommitted changes to {_files_text(changed_files())}" if built and built.endswith("-dirty")
                    else "") + ".")
    commands = meta.get("commands") or ([meta["command"]] if meta.get("command") else [])
    if len(commands) == 1:
        lines.append(f"- Reproduce: `{commands[0]}`")
    elif commands:
        lines.append("- Reproduce (the run-set was built by these commands, in order): "
                     + "; ".join(f"`{c}`" for c in commands))
    return lines


def _files_text(files: list[str], most: int = 8) -> str:
    shown = ", ".join(f"`{f}`" for f in files[:most])
    return shown + (f" and {len(files) - most} more" if len(files) > most else "")


def _uncommitted(records: list[RunRecord]) -> str:
    """Which files differed from the commit where runs came from a tree with uncommitted changes."""
    dirty = [r for r in records if str((r.code or {}).get("commit") or r.git_commit).endswith("-dirty")]
    if not dirty:
        return ""
    files = sorted({f for r in dirty for f in (r.code or {}).get("changed", [])})
    unknown = any("changed" not in (r.code or {}) for r in dirty)
    text = f" ({len(dirty)} of {len(records)} runs from uncommitted changes"
    text += f" to {_files_text(files)}" if files else ""
    return text + ("; older records do not list the files" if unknown else "") + ")"


def _checkpoint_text(students: list[RunRecord]) -> str:
    policies = sorted({r.config["train"].get("checkpoint", "last") for r in students})
    if policies == ["last"]:
        return "last epoch."
    if policies == ["best-val"]:
        return (f"best PGD-20 accuracy on a {students[0].config['train']['val_fraction']:.0%} validation split of "
                "the training data (never the test set); the last epoch beside it in *Best and last checkpoints*.")
    return ("per method, as its recipe selects (" + ", ".join(policies) + "; *Best and last checkpoints* gives "
            "both).")


def _protocol_line(students: list[RunRecord]) -> str:
    protocols = sorted({r.config.get("protocol", "common") for r in students})
    if protocols == ["official"]:
        return ("- Protocol **official** (reproduce): each method trained with its official script's recipe -- "
                "schedule, batch, weight decay, training attack, fp32, input pipeline, checkpoint policy (*Recipes* "
                "below); methods are not under one schedule, so compare each with its published number, not with "
                "each other.")
    if protocols == ["common"]:
        return ("- Protocol **common** (compare): every method under the one config above; numbers compare across "
                "methods, and differ from published ones by the protocol as well as by the method.")
    return "- **Protocols mixed in this run-set: " + ", ".join(protocols) + "**; rows are not comparable."


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
    skipped: dict[str, list[str]] = {}
    for r in recs:
        for check, why in r.sanity.get("skipped", {}).items():
            skipped.setdefault(check, []).append(f"{row_name(r)} s{r.seed}: {why}")
    for check, whys in skipped.items():
        lines.append(f"- `{check}` skipped on {len(whys)} of {len(recs)} evaluations, its answer decided by the "
                     f"numbers (e.g. {whys[0]}).")
    shares = [r.timings["eval_sanity_s"] / r.timings["eval_s"] for r in recs
              if r.timings.get("eval_sanity_s") is not None and r.timings.get("eval_s")]
    if shares:
        lines.append(f"- The checks took {100 * statistics.median(shares):.0f} % of an evaluation's time (median over "
                     f"{len(shares)} evaluations; `timings.eval_sanity_s` and `sanity.seconds` in runs.json).")
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


def corruption_sources_text(records) -> str:
    """A warning where the rows' corrupted images came from different places (generated and published
    images are different test sets: their numbers are not comparable)."""
    by_source: dict[str, list[str]] = {}
    for r in records:
        if r.corruptions:
            how = r.attack_settings.get("corruptions", {})
            by_source.setdefault(f"{how.get('source')} on {how.get('n')} images", []).append(row_name(r))
    if len(by_source) < 2:
        return ""
    return (" **Rows differ in their corrupted images, so their corruption numbers are not comparable:** "
            + "; ".join(f"{src}: {', '.join(dict.fromkeys(rows))}" for src, rows in by_source.items()) + ".")


def _table_section(out: Path, stem: str, shown, numeric, columns, title: str, intro: str) -> list[str]:
    """Write ``stem``.csv and ``stem``.tex; the README lines of its section: title, intro and table."""
    atomic_write_text(out / f"{stem}.csv", shown.to_csv(index=False))
    atomic_write_text(out / f"{stem}.tex", latex_table(shown, numeric, columns))
    return [f"## {title}", "", intro, "", markdown_table(shown), ""]


def _per_image_reader(runset_dir: Path):
    """record -> its per_image.json (``bench.eval.per_image``), None where the run kept none."""
    def read(rec: RunRecord) -> dict | None:
        path = runset_dir / rec.run_id / PER_IMAGE
        try:
            return json.loads(path.read_text()) if path.exists() else None
        except ValueError:  # written atomically; a damaged copy is left out, not trusted
            return None
    return read


def ablation_caption(reference: str) -> list[str]:
    """What the ablation table's cells and tests are (aggregate.py's ablation_table)."""
    return [
        f"Each row's difference from `{reference}` (Δ = row − `{reference}`): mean over seeds "
        "[95 % interval from the cell's test, not adjusted for the table's many tests]; "
        "accuracies in points, structure in raw units. Each "
        "cell has one two-sided test of the two methods, named after its p; the p-values are "
        "Holm-adjusted over every test in this table, and `*` marks an adjusted p < 0.05: the "
        "methods differ, not only these trained models on these images. No star is no evidence "
        "of no difference: with 3 seeds the test finds a 5-point difference about one time in "
        "five, a 10-point one about two in three (`benchmarks/results/image_tests_null.txt`).",
        "",
        "- `s×i`, the seeds × images test (an accuracy whose per-image flags every paired seed of "
        "both rows kept): each seed of a row and the same seed of the reference were evaluated on "
        "the same N test images, which gives an S × N matrix of differences (1 where only this row "
        "got the image right, −1 where only the reference did). Seeds and images are both samples "
        "(another training run gives other models, another test set other images), so the "
        "variance of the mean difference is the paired t's over seeds plus what sampling the "
        "images adds, from the matrix's two-way ANOVA: (MS_seed + max(0, MS_image − MS_resid)) / "
        "(S N); the critical value is Cochran and Cox's (the t quantiles at S − 1 and N − 1 df, "
        "weighted by the two parts). In simulated ablations of methods with equal expected "
        "accuracy (images one method prefers, seeds 2.5 or 5 points apart, or both) it rejects at "
        "most 5 % of the time at p < 0.05, where the exact McNemar test pooled over seeds that "
        "earlier reports used rejected up to 58 % (`python benchmarks/image_tests_null.py`).",
        "- `t`, the paired t over seeds (the other columns; accuracies on n images are tested on "
        "their integer counts); `W`, Welch's t, where the seeds do not pair. These hold the test "
        "images fixed: they speak for these images, not for other images of the same data.",
        "- `no spread`: the same difference on every seed (and no image effect beyond chance): "
        "no test, no star.",
    ]


@dataclass
class _Run:
    """What every section of a report reads: the run-set's records, grouped, and where files go."""
    runset: str
    runset_dir: Path
    out: Path
    meta: dict
    records: list[RunRecord]
    groups: dict[str, list[RunRecord]]
    students: dict[str, list[RunRecord]]
    acc_cols: list = field(default_factory=list)
    tr_cols: list = field(default_factory=list)
    figures: dict = field(default_factory=dict)


def build_report(results_dir: Path, runset: str, reports_dir: Path) -> Path:
    """reports/RUNSET: README.md (section by section below), its tables as CSV and LaTeX, its figures."""
    runset_dir = Path(results_dir) / runset
    meta = read_manifest(runset_dir)
    records = load_records(runset_dir, meta.get("runs"))
    if not records:
        raise BenchError(f"no finished runs in {runset_dir}; run `python -m bench run` first")
    out = Path(reports_dir) / runset
    out.mkdir(parents=True, exist_ok=True)
    complete_class_counts(records, _per_image_reader(runset_dir))
    groups = group_records(records, meta.get("methods", []))
    run = _Run(runset, runset_dir, out, meta, records, groups,
               {k: v for k, v in groups.items() if v[0].role == "student"},
               accuracy_columns(records), transfer_columns(records))
    shown, numeric = _main_files(run)
    run.figures = {stem: plots.save(fig, out / stem)
                   for stem, fig in report_figures(groups, records, run.acc_cols)[1].items()}
    text = _head(run, shown, numeric) + _every_attack(run, shown)
    for section in (_per_class, _corruptions, _transfer, _structure, _attack_transfer, _checkpoints, _published,
                    _recipes):
        text += section(run)
    text += sanity_lines(groups) + _ablation(run) + [_files_line(run)]
    atomic_write_text(out / "README.md", "\n".join(text) + "\n")
    write_index(Path(reports_dir))
    return out


def _main_files(run: _Run) -> tuple[pd.DataFrame, pd.DataFrame]:
    """table.csv/.tex, summary.csv, runs.csv and runs.json; (shown, numeric) of the main table."""
    records, out = run.records, run.out
    main_cols = main_accuracy_columns(records) + strongest_class_column(records)
    shown, numeric = table(run.groups, main_cols, main=True)
    _, tr_num = table(run.groups, run.tr_cols)
    cls_cols = class_columns(records)
    atomic_write_text(out / "table.csv", shown.to_csv(index=False))
    atomic_write_text(out / "table.tex", latex_table(shown, numeric, main_cols))
    atomic_write_text(out / "summary.csv", pd.concat([numeric, tr_num.drop(columns=["method", "short", "n"])],
                                                     axis=1).to_csv(index=False))
    # runs.csv keeps every column, the worst case too where the main table leaves it out
    run_cols = (run.acc_cols + [c for c in main_cols if c not in run.acc_cols] + run.tr_cols + STRUCTURE_COLUMNS
                + ATTACK_TRANSFER_COLUMNS + [c for c in cls_cols if c not in main_cols])
    atomic_write_text(out / "runs.csv", per_run_frame(records, run_cols).to_csv(index=False))
    atomic_write_json(out / "runs.json", [{k: v for k, v in asdict(r).items() if k != "history"} for r in records])
    return shown, numeric


def _head(run: _Run, shown: pd.DataFrame, numeric: pd.DataFrame) -> list[str]:
    """Title, setup, the ranked main table, missing runs and the methods' notes."""
    records, meta = run.records, run.meta
    missing = [e for e in entries(meta) if not (run.runset_dir / e.run_id / RECORD).exists()]
    notes = sorted({(r.method_name, r.note) for r in records if r.note})
    glance, ranked_by = glance_table(shown, numeric)
    text = [f"# Run-set `{run.runset}`", "", *_setup_lines(records, meta), "",
            "Accuracy in %: mean over seeds [95 % Student-t interval of the mean, clipped to 0–100] when n > 1; "
            f"n = seeds. Rows ranked by {ranked_by}, the teacher first as the reference; ⚠ marks a row whose "
            "sanity checks fired (section below); every attack, the class spread and the cost are in the next "
            "table.",
            "",
            markdown_table(glance), ""]
    if missing:
        text += [f"**Missing: {len(missing)} planned run(s) have no finished record yet** (`python -m bench status "
                 f"{run.runset}` says why); the table holds the others:", ""]
        text += [f"- {e.role} `{e.method}`" + (f" seed {e.seed}" if e.seed is not None else "") + f" ({e.run_id})"
                 for e in missing] + [""]
    return text + [f"- `{name}`: {note}." for name, note in notes]


def _every_attack(run: _Run, shown: pd.DataFrame) -> list[str]:
    """The full table (every attack, the class spread, the cost) and the main figures."""
    records, figures = run.records, run.figures
    text = ["", "## Every attack, the class spread and the cost", "",
            worst_case_text(records) + " " + main_class_text(records) + " "
            "Train time is the median over seeds; Train MFLOP/img/epoch is one training step's "
            "matmul and convolution FLOPs per image (attack, every network's forward and backward; "
            "torch.utils.flop_counter on the run's first step), median over seeds, – where the run did not count "
            "it (a teacher from a file or the zoo; runs before the count existed); Sanity names the checks that "
            "fired. The same numbers: `table.csv`, `summary.csv`.", "", markdown_table(shown), ""]
    text += [""] + [f"![{stem}.png]({stem}.png)" for stem in ("accuracy_per_attack", "robustness_curve",
                                                              "training_curves", "robustness_vs_cost")
                    if stem in figures]
    text += ["", f"Bars: the mean over seeds, a dot per seed. Bands: the {100 * LEVEL:g} % Student-t interval of "
             f"the mean over seeds (a row with one seed has none); the dotted line marks the threat model's ε; "
             f"the training curves show each loss term as the method weighs it (mean over seeds) on one axis "
             f"for every method"
             + (", and every seed's per-epoch score its checkpoint policy selected on"
                if any(k in h for r in records for h in r.history for k in plots.SELECTION_KEYS) else "")
             + ". Each figure is also a PDF.", ""]
    return text


def _per_class(run: _Run) -> list[str]:
    records, cls_cols = run.records, class_columns(run.records)
    if not cls_cols:
        return []
    cls_shown, cls_num = table(run.groups, cls_cols)
    names = next(r.per_class["classes"] for r in records if r.per_class)
    text = _table_section(
        run.out, "per_class", cls_shown, cls_num, cls_cols, "Per-class robustness",
        "Accuracy (%) of the worst class and the standard deviation of the per-class accuracies (points), "
        + ("with the floor that sampling noise alone gives that standard deviation (points, "
           "below), " if any("floor" in c.label for c in cls_cols) else "")
        + "per attack; a model can hide a weak class behind a good average (Fair-ARD, ABSLD)."
        + ("" if [str(c) for c in names] == [str(i) for i in range(len(names))] else
           " Classes: " + ", ".join(f"{i} {c}" for i, c in enumerate(names)) + ".")
        + "".join(f"\n\n{para}" for para in class_noise_text(run.groups)))
    if "per_class" in run.figures:
        text += ["![per_class.png](per_class.png)", ""]
    return text


def _corruptions(run: _Run) -> list[str]:
    records, cor_cols = run.records, corruption_columns(run.records)
    if not cor_cols:
        return []
    cor_shown, cor_num = table(run.groups, cor_cols)
    how = next(r.attack_settings.get("corruptions", {}) for r in records if r.corruptions)
    text = _table_section(
        run.out, "corruptions", cor_shown, cor_num, cor_cols, "Common corruptions",
        f"Accuracy (%) under each common corruption (Hendrycks & Dietterich 2019), mean over severities "
        f"1-5, then each severity's mean over the corruptions; column `Corruptions` of the main table is "
        f"the mean of all. On the first {how.get('n')} test images; images {how.get('source')}"
        + (f", seed {how['seed']}" if how.get("seed") is not None else "")
        + f"; corruptions: {how.get('chosen')}. Not an attack: no ε, and not part of the worst case."
        + corruption_sources_text(records))
    if "corruptions" in run.figures:
        text += ["![corruptions.png](corruptions.png)", ""]
    return text


def _transfer(run: _Run) -> list[str]:
    if not run.tr_cols:
        return []
    tr_shown, tr_num = table(run.groups, run.tr_cols)
    return _table_section(run.out, "transfer", tr_shown, tr_num, run.tr_cols, "Transfer to other tasks",
                          "A linear head is trained on each target's training split on top of the frozen "
                          "network; accuracy (%) of the probed network on the target's test split, clean and "
                          "under attack on the whole network.")


def _structure(run: _Run) -> list[str]:
    if not any(r.structure for r in run.records):
        return []
    st_shown, st_num = table(run.students, STRUCTURE_COLUMNS)
    text = _table_section(
        run.out, "structure", st_shown, st_num, STRUCTURE_COLUMNS, "Structural knowledge",
        "Teacher–student similarity on clean test inputs and on the student's PGD-20 examples: mean "
        "absolute gap between class-correlation matrices of logits (lower is closer), linear CKA of "
        "penultimate features (1 = same up to rotation and scale), prediction agreement (%), and how "
        "often an example that fools the student also fools the teacher (%).")
    if "correlation_heatmaps" in run.figures:
        text += ["Each panel: |teacher − student| class-correlation matrix of logits, mean over the student's "
                 "seeds, on one colour scale; darker is closer.", "",
                 "![correlation_heatmaps.png](correlation_heatmaps.png)", ""]
    return text + ["Linear CKA between the student's and the teacher's penultimate features.", "",
                   "![cka.png](cka.png)", ""]


def _attack_transfer(run: _Run) -> list[str]:
    if not any("transfer" in (r.structure or {}) for r in run.records):
        return []
    at_shown, at_num = table(run.students, ATTACK_TRANSFER_COLUMNS)
    return _table_section(
        run.out, "attack_transfer", at_shown, at_num, ATTACK_TRANSFER_COLUMNS,
        "Transfer of attacks between teacher and student",
        "Accuracy (%) on PGD-20 examples (the evaluation's ε and steps) of the first test images: the "
        "student on examples crafted on the teacher (T→S) beside the student on its own, and the "
        "teacher on the student's examples (S→T) beside the teacher on its own. A student that resists "
        "the teacher's examples far better than its own has robustness of its own; one that falls to "
        "them shares the teacher's weaknesses.")


def _checkpoints(run: _Run) -> list[str]:
    text = []
    best_last = best_last_table(run.groups)
    if best_last is not None:
        atomic_write_text(run.out / "best_last.csv", best_last.to_csv(index=False))
        text += best_last_lines(run.groups, markdown_table(best_last))
    kept = kept_table(run.groups)
    if kept is not None:
        atomic_write_text(run.out / "checkpoints.csv", kept.to_csv(index=False))
        text += kept_lines(markdown_table(kept))
    return text


def _published(run: _Run) -> list[str]:
    pub = published_table(run.groups, run.acc_cols)
    if pub is None:
        return []
    atomic_write_text(run.out / "published.csv", pub[0].to_csv(index=False))
    official = all(r.config.get("protocol", "common") == "official" for r in run.records if r.role == "student")
    return ["## Published numbers", "",
            "Our mean next to the best-attested published number for the same method, data set and "
            "student (`bench/report/references.csv`; Δ = ours − published, in points). "
            + ("Protocol official: each row ran its method's own recipe and checkpoint policy (column "
               "`protocol`), the like of the published number's; Δ measures the reproduction."
               if official else
               "Protocol common: each row ran the one common schedule, the published numbers each method's own "
               "recipe, so Δ measures the protocol as well as the method; `--protocol official` reproduces "
               "each method's recipe."), "",
            markdown_table(pub[0]), "", *pub[1], ""]


def _recipes(run: _Run) -> list[str]:
    data = {r.dataset.partition('@')[0] for r in run.records}
    if not (data and data <= set(OFFICIAL_DATA) and run.students and run.meta.get("config")):
        return []
    base = config_of(run.meta["config"])  # the run-set's config: the common protocol's, before any recipe
    text = ["## Recipes", "", recipe_markdown(base, [v[0].method for v in run.students.values()]), ""]
    if base.limit != Limit():
        caps = ", ".join(f"{k} {v}" for k, v in asdict(base.limit).items() if v)
        text += [f"This run-set caps every recipe ({caps}): the table shows the recipes themselves.", ""]
    return text


def _ablation(run: _Run) -> list[str]:
    reference = run.meta.get("compare_to")
    if not reference:
        return []
    key_cols = [c for c in run.acc_cols if c.path[-1] in ("clean", "pgd20", "aa", "worst")] + run.tr_cols[:2] + \
               [c for c in STRUCTURE_COLUMNS if c.label in ("corr gap adv", "CKA adv")]
    abl = ablation_table(run.groups, reference, key_cols, per_image=_per_image_reader(run.runset_dir))
    if abl.empty:
        return []
    atomic_write_text(run.out / "ablation.csv", abl.to_csv(index=False))
    return [f"## Ablation against `{reference}`", "", *ablation_caption(reference), "", markdown_table(abl), ""]


def _files_line(run: _Run) -> str:
    records = run.records
    return ("Files: `table.csv`, `table.tex`, `summary.csv` (means, intervals), `runs.csv` (per run and seed), "
            "`runs.json` (each run's full config, seed, versions and metrics)"
            + (", `per_class.csv`, `per_class.tex`" if class_columns(records) else "")
            + (", `corruptions.csv`, `corruptions.tex`" if corruption_columns(records) else "")
            + (", `transfer.csv`, `transfer.tex`" if run.tr_cols else "")
            + (", `structure.csv`, `structure.tex`" if any(r.structure for r in records) else "")
            + (", `attack_transfer.csv`, `attack_transfer.tex`"
               if any("transfer" in (r.structure or {}) for r in records) else "")
            + "; every figure as PNG and PDF (" + ", ".join(f"`{stem}`" for stem in run.figures) + ").")
