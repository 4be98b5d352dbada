"""The report's figures and LaTeX tables, built from synthetic run records (2 methods x 2 seeds and a
one-seed teacher): PNG and PDF of every figure, one colour per method, interval bands that are the
tables' intervals, the threat model's eps, legends clear of the data, labelled heatmaps, tables that
compile."""
from __future__ import annotations

import math
import re
import shutil
import subprocess
from dataclasses import asdict, replace

import matplotlib
import numpy as np
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.image import AxesImage

from bench.config.schema import EvalConfig, RunConfig, TrainConfig
from bench.report import figures as plots
from bench.report.aggregate import accuracy_columns, group_records
from bench.report.build import build_report, report_figures
from bench.report.latex import latex_cell, latex_escape
from bench.report.stats import interval
from bench.records.record import RunRecord

CLASSES = ["zero", "one", "two", "three", "four"]
EPS_GRID = [0.05, 0.1, 0.15, 0.2, 0.25, 0.3]
EPOCHS = 4


def _record(role: str, method: str, seed: int, strength: float, note: str = "", flags=()) -> RunRecord:
    """A record as the runner writes one; ``strength`` sets its accuracies, the seed jitters them."""
    cfg = asdict(RunConfig(seed=seed, train=TrainConfig(epochs=EPOCHS, checkpoint="best-val")))
    rng = np.random.default_rng(seed * 7 + len(method))
    jitter = 0.03 * rng.standard_normal()
    acc = {"clean": 0.95, "fgsm": 0.7, "pgd20": 0.6, "cw": 0.55, "aa": 0.5}
    metrics = {k: min(1.0, v * strength + jitter) for k, v in acc.items()}
    curve = {f"{e:g}": max(0.0, min(1.0, strength * (1.0 - 3 * e) + jitter)) for e in EPS_GRID}
    history = [{"epoch": i + 1, "lr": 0.05, "seconds": 1.0, "kd_adv": 1.5 / (i + 1) + 0.1 * seed,
                "kd_nat": 0.5 * strength / (i + 1), "loss": (1.5 + 0.5 * strength) / (i + 1) + 0.1 * seed,
                "val_pgd20": min(1.0, 0.2 * i * strength + jitter)} for i in range(EPOCHS)]
    structure, transfer = {}, {}
    if role == "student":
        corr_t = np.eye(5) + 0.1 * (1 - np.eye(5))
        corr_s = corr_t + (1 - np.eye(5)) * (0.2 * (1 - strength) + 0.02 * seed)
        structure = {"clean": {"corr_gap": float(np.abs(corr_t - corr_s)[~np.eye(5, dtype=bool)].mean()),
                               "cka": 0.8 * strength, "agreement": 0.9},
                     "adv": {"corr_gap": 0.3, "cka": 0.6 * strength + jitter, "agreement": 0.7,
                             "fools_teacher": 0.3, "fools_teacher_given_student": 0.5},
                     "corr_teacher": corr_t.tolist(), "corr_student": corr_s.tolist(), "classes": CLASSES}
        transfer = {"digits@5-9": {"metrics": {"clean": 0.8 * strength, "pgd20": 0.4 * strength + jitter}}}
    checks = {"iterative_weaker": {"what": "PGD-20 minus FGSM accuracy", "threshold": 0.01,
                                   "value": 0.05 if flags else 0.0}}
    return RunRecord(
        run_id=f"{role}-{method}-{seed}", role=role, method=method, method_name=method, options={}, note=note,
        dataset="digits@0-4", arch="cnn-wide" if role == "teacher" else "cnn-narrow",
        teacher_id=None if role == "teacher" else "t0", seed=seed, config=cfg, metrics=metrics, curve=curve,
        attack_settings={"n": 50, "pgd20": {"eps": 0.2}}, timings={"train_s": 10.0 + seed, "eval_s": 2.0},
        transfer=transfer, structure=structure, history=history, data_info={"classes": [0, 1, 2, 3, 4]},
        sanity={"n": 50, "checks": checks, "flags": list(flags)}, teacher={"kind": "trained"},
        code={"train": "abc", "eval": "def", "commit": "0123"}, created=f"2026-01-01T00:00:0{seed}")


def synthetic_records() -> list[RunRecord]:
    # the notes carry LaTeX specials (_ % & #), the flagged row a Unicode marker: the .tex must escape them
    return ([_record("teacher", "pgd-at", 0, 1.0)]
            + [_record("student", "gacd", s, 0.95, note="weights_1 at 50% & #2") for s in (0, 1)]
            + [_record("student", "ard", s, 0.85, flags=("iterative_weaker",) if s else ()) for s in (0, 1)])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The report built from the synthetic records on disk, and the figures drawn in memory."""
    root = tmp_path_factory.mktemp("report")
    records = synthetic_records()
    for rec in records:
        rec.save(root / "results" / "syn" / rec.run_id)
    out = build_report(root / "results", "syn", root / "reports")
    groups = group_records(records, ["gacd", "ard"])
    pal, figures = report_figures(groups, records, accuracy_columns(records))
    yield out, groups, pal, figures
    for fig in figures.values():
        matplotlib.pyplot.close(fig)


def _colours_by_row(fig) -> dict[str, set[str]]:
    """{gid: colours of its bars, lines, bands and markers} over every axes of a figure."""
    out: dict[str, set[str]] = {}
    for ax in fig.axes:
        for patch in ax.patches:
            if patch.get_gid():
                out.setdefault(patch.get_gid(), set()).add(matplotlib.colors.to_hex(patch.get_facecolor()))
        for line in ax.lines:
            if line.get_gid():
                out.setdefault(line.get_gid(), set()).add(matplotlib.colors.to_hex(line.get_color()))
        for coll in ax.collections:
            if coll.get_gid() and isinstance(coll, PolyCollection):
                out.setdefault(coll.get_gid(), set()).add(matplotlib.colors.to_hex(coll.get_facecolor()[0]))
    return out


def test_every_figure_is_written_as_png_and_pdf(built):
    out, _, _, figures = built
    assert set(figures) == {"accuracy_per_attack", "robustness_curve", "training_curves", "correlation_heatmaps",
                            "cka"}
    readme = (out / "README.md").read_text()
    for stem in figures:
        assert (out / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (out / f"{stem}.pdf").read_bytes()[:5] == b"%PDF-"
        assert f"({stem}.png)" in readme
    assert "Each figure is also a PDF" in readme


def test_one_colour_per_method_in_every_figure(built):
    _, groups, pal, figures = built
    teacher = next(name for name in groups if name.startswith("teacher"))
    assert pal[teacher] == plots.TEACHER_COLOUR
    assert len(set(pal.values())) == len(pal)            # every row its own colour
    seen: dict[str, set[str]] = {}
    for fig in figures.values():
        for gid, colours in _colours_by_row(fig).items():
            seen.setdefault(gid, set()).update(colours)
    students = [name for name in groups if name != teacher]
    assert set(students) <= set(seen) and teacher in seen
    for name, colours in seen.items():
        if name in pal:
            assert colours == {pal[name]}, name


def test_curve_bands_are_the_tables_interval_and_the_teacher_has_none(built):
    _, groups, _, figures = built
    ax = figures["robustness_curve"].axes[0]
    bands = {c.get_gid(): c for c in ax.collections if isinstance(c, PolyCollection)}
    teacher = next(name for name in groups if name.startswith("teacher"))
    assert teacher not in bands and len(groups[teacher]) == 1
    for name, recs in groups.items():
        if name == teacher:
            continue
        iv = interval([r.curve["0.2"] for r in recs], (0.0, 1.0))
        ys = bands[name].get_paths()[0].vertices
        at = ys[np.isclose(ys[:, 0], 0.2), 1]
        assert np.allclose(sorted({round(float(y), 6) for y in at}), [round(100 * iv.low, 6), round(100 * iv.high, 6)])
    assert "95 % t-interval over n seeds" in ax.get_legend().get_title().get_text()


def test_threat_model_eps_is_marked_with_its_norm(built):
    _, _, _, figures = built
    ax = figures["robustness_curve"].axes[0]
    line = next(line for line in ax.lines if line.get_gid() == plots.THREAT_GID)
    assert list(line.get_xdata()) == [0.2, 0.2] and line.get_label() == "ε = 0.2 (threat model, L∞)"
    assert "ε = 0.2 (threat model, L∞)" in [t.get_text() for t in ax.get_legend().get_texts()]
    l2 = _record("student", "ard", 0, 0.9)
    l2.config = {**l2.config, "eval": {**l2.config["eval"], "eps": 0.5, "norm": "L2"}}
    assert plots.threat_model([l2]) == (0.5, "L2")
    assert plots.threat_model([_record("student", "ard", 0, 0.9)]) == (EvalConfig().eps, "Linf")


def test_bars_show_the_mean_and_every_seed_as_a_dot(built):
    """Seed dots instead of t-interval whiskers (which span most of the axis at 3-4 seeds): the bar is
    the mean over seeds, one dot per seed at that seed's value, none for a one-seed teacher."""
    _, groups, _, figures = built
    fig = figures["accuracy_per_attack"]
    assert "bar: mean over seeds, dots: each seed" in fig._suptitle.get_text()
    ax = fig.axes[0]   # the first metric: clean accuracy
    bars = {p.get_gid(): p for p in ax.patches if p.get_gid()}
    dots = {c.get_gid().split("/")[0]: c for c in ax.collections if (c.get_gid() or "").endswith("/seeds")}
    for name, recs in groups.items():
        values = sorted(100 * r.metrics["clean"] for r in recs)
        assert bars[name].get_width() == pytest.approx(np.mean(values)), name
        if len(recs) == 1:
            assert name not in dots
        else:
            assert sorted(dots[name].get_offsets()[:, 0]) == pytest.approx(values), name
    assert not any(c.errorbar for c in ax.containers if hasattr(c, "errorbar"))
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert "gacd (weights_1 at 50% & #2)" not in labels and "gacd" in labels


def test_bar_figures_grow_taller_never_wider():
    """Small multiples: more metrics wrap onto new lines of panels, more rows make each panel taller."""
    def size(n_rows, n_metrics):
        rows = [plots.Row(f"m{i}", f"m{i}", False, ()) for i in range(n_rows)]
        metrics = [f"k{j}" for j in range(n_metrics)]
        values = {r.name: {m: [0.5, 0.6] for m in metrics} for r in rows}
        fig = plots.bars(rows, values, metrics, plots.palette(rows), "t", "accuracy (%)", 100, 105)
        w, h = fig.get_size_inches()
        matplotlib.pyplot.close(fig)
        return w * 150, h * 150   # pixels at the report's dpi
    small, wide = size(3, 5), size(14, 15)
    assert wide[0] == small[0] <= 1600 and wide[1] > small[1]


def test_a_method_has_one_colour_in_every_report():
    def rows(*labels):
        return [plots.Row(label, label, label == "teacher", ()) for label in labels]
    one = plots.palette(rows("teacher", "gacd", "ard", "crd"))
    other = plots.palette(rows("teacher", "rslad", "ard", "gacd:reweight=none", "gacd", "my-method"))
    assert one["ard"] == other["ard"] == plots.METHOD_COLOURS["ard"] and one["gacd"] == plots.METHOD_COLOURS["gacd"]
    assert other["gacd:reweight=none"] == plots.METHOD_COLOURS["gacd"] and other["gacd"] != other["gacd:reweight=none"]
    assert len(set(other.values())) == len(other) and other["teacher"] == plots.TEACHER_COLOUR
    assert len(set(plots.METHOD_COLOURS.values())) == len(plots.METHOD_COLOURS)
    from bench.methods import METHODS
    assert set(METHODS.names()) <= set(plots.METHOD_COLOURS)   # every registered method has its own


def test_legends_lie_outside_every_axes(built):
    _, _, _, figures = built
    for stem, fig in figures.items():
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        legends = [ax.get_legend() for ax in fig.axes if ax.get_legend()] + list(fig.legends)
        assert legends or stem in ("correlation_heatmaps", "accuracy_per_attack", "cka", "corruptions"), stem
        for legend in legends:
            box = legend.get_window_extent(renderer)
            for ax in fig.axes:
                assert not box.overlaps(ax.get_window_extent(renderer)), (stem, ax.get_title())


def test_training_curves_show_every_seed_and_validation_accuracy(built):
    _, groups, _, figures = built
    val_ax, *term_axes = [ax for ax in figures["training_curves"].axes if ax.get_visible()]
    assert "validation" in val_ax.get_title()
    for name, recs in groups.items():
        lines = [line for line in val_ax.lines if line.get_gid() == name]
        assert len(lines) == len(recs)
        assert len({line.get_linestyle() for line in lines}) == len(recs)   # one style per seed
    val = [line for line in val_ax.lines if line.get_gid() == next(iter(groups))][0]
    assert list(val.get_ydata()) == [100 * h["val_pgd20"] for h in next(iter(groups.values()))[0].history]


def test_training_curves_show_each_loss_term_on_one_axis_not_their_sum(built):
    """Per loss term (a method's total sums terms of different kinds): one panel per row, one line per
    term with the mean over seeds of that term, every panel on the same axis so rows compare."""
    _, groups, _, figures = built
    term_axes = [ax for ax in figures["training_curves"].axes if ax.get_visible()][1:]
    assert len(term_axes) == len(groups)
    for ax, (name, recs) in zip(term_axes, groups.items()):
        lines = {line.get_label(): line for line in ax.lines if line.get_gid() == name}
        assert set(lines) == {"kd_adv", "kd_nat"}                      # the terms, never "loss"
        for term, line in lines.items():
            want = np.mean([[h[term] for h in r.history] for r in recs], axis=0)
            assert np.allclose(line.get_ydata(), want)
    assert len({ax.get_ylim() for ax in term_axes}) == 1                  # one shared axis
    assert {ax.get_yscale() for ax in term_axes} == {"log"}


def test_heatmaps_carry_class_names_on_one_colour_scale(built):
    _, groups, _, figures = built
    fig = figures["correlation_heatmaps"]
    panels = [ax for ax in fig.axes if any(isinstance(i, AxesImage) for i in ax.images)]
    assert len(panels) == sum(1 for recs in groups.values() if recs[0].role == "student")
    for ax in panels:
        assert [t.get_text() for t in ax.get_xticklabels()] == CLASSES
        assert [t.get_text() for t in ax.get_yticklabels()] == CLASSES
    assert len({ax.images[0].get_clim() for ax in panels}) == 1                  # one shared scale
    colourbars = [ax for ax in fig.axes if ax not in panels and ax.get_visible()]
    assert len(colourbars) == 1 and "corr" in colourbars[0].get_ylabel()
    gap = np.mean([np.abs(np.asarray(r.structure["corr_teacher"]) - np.asarray(r.structure["corr_student"]))
                   for r in groups["gacd (weights_1 at 50% & #2)"]], axis=0)
    shown = next(ax for ax in panels if ax.images[0].get_gid() == "gacd (weights_1 at 50% & #2)")
    assert np.allclose(shown.images[0].get_array(), gap)                          # the mean over seeds


def test_class_names_fall_back_to_indices():
    rec = replace(_record("student", "ard", 0, 0.9), data_info={})
    rec.structure = {k: v for k, v in rec.structure.items() if k != "classes"}
    assert plots.class_names(rec, 3) == ["0", "1", "2"]
    assert plots.class_names(_record("student", "ard", 0, 0.9), 5) == CLASSES


def _body(tex: str) -> list[str]:
    return [line for line in tex.splitlines() if not line.startswith("%")]


def _outside_math(line: str) -> str:
    return re.sub(r"(?<!\\)\$.*?(?<!\\)\$", "", line)


@pytest.mark.parametrize("name", ["table.tex", "transfer.tex", "structure.tex"])
def test_latex_tables_are_ascii_escaped_and_balanced(built, name):
    out = built[0]
    tex = (out / name).read_text()
    assert tex.isascii()
    assert "\\pm" in tex and "±" not in tex
    body = "\n".join(_body(tex))
    unescaped = re.sub(r"\\[{}]", "", body)
    assert unescaped.count("{") == unescaped.count("}")
    assert body.count("$") % 2 == 0 and all(line.count("$") % 2 == 0 for line in _body(tex))
    header = next(line for line in _body(tex) if line.startswith("Method"))
    columns = header.count("&") + 1
    for line in _body(tex):
        text = _outside_math(line)
        assert not re.search(r"(?<!\\)[%#_]", text), line           # specials escaped outside math
        if line.endswith("\\\\"):
            assert len(re.findall(r"(?<!\\)&", line)) == columns - 1, line
    if name == "table.tex":
        assert "CW$\\infty$" in tex and "weights\\_1 at 50\\% \\& \\#2" in tex
        assert "ard $^\\dagger$" in tex and "iterative\\_weaker (1/2)" in tex


def test_latex_cell_and_escape():
    assert latex_cell(0.5, 0.4, 0.6) == "$50.0 \\pm 10.0$"
    assert latex_cell(0.99, 0.95, 1.0) == "$99.0^{+1.0}_{-4.0}$"     # clipped at 100: asymmetric
    assert latex_cell(0.5, math.nan, math.nan) == "$50.0$" and latex_cell(math.nan, math.nan, math.nan) == "--"
    assert latex_escape("CW∞ ⚠ ε–Δ") == "CW$\\infty$ $^\\dagger$ $\\epsilon$--$\\Delta$"
    assert latex_escape("a_b 5% x&y #1 {z} ~ ^") == "a\\_b 5\\% x\\&y \\#1 \\{z\\} \\textasciitilde{} \\textasciicircum{}"
    assert latex_escape("café ✓").isascii()


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_latex_tables_compile(built, tmp_path):
    out = built[0]
    has_booktabs = subprocess.run(["kpsewhich", "booktabs.sty"], capture_output=True, text=True).stdout.strip()
    rules = ("\\usepackage{booktabs}" if has_booktabs else
             "\\newcommand{\\toprule}{\\hline}\\newcommand{\\midrule}{\\hline}\\newcommand{\\bottomrule}{\\hline}")
    inputs = "\n\n".join(f"\\input{{{out / name}}}" for name in ("table.tex", "transfer.tex", "structure.tex"))
    (tmp_path / "doc.tex").write_text(f"\\documentclass{{article}}\n{rules}\n\\begin{{document}}\n{inputs}\n"
                                      "\\end{document}\n")    # wide tables: overfull boxes warn, never fail
    res = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout[-2000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 0


def test_a_report_names_the_files_that_differed_from_the_commit(tmp_path):
    """A run from a tree with uncommitted changes: the report says which files differed (or that an
    older record does not say), and which commit built the report itself."""
    def stamped(rec, commit, changed=None):
        code = {**rec.code, "commit": commit} | ({"changed": changed} if changed is not None else {})
        return replace(rec, code=code, git_commit=commit)
    records = synthetic_records()
    records = ([stamped(r, "abc123") for r in records[:3]] + [stamped(records[3], "abc123-dirty", ["methods/ard.py"])]
               + [stamped(r, "abc123-dirty") for r in records[4:]])
    for rec in records:
        rec.save(tmp_path / "results" / "dirty" / rec.run_id)
    text = (build_report(tmp_path / "results", "dirty", tmp_path / "reports") / "README.md").read_text()
    assert (f"({len(records) - 3} of {len(records)} runs from uncommitted changes to `methods/ard.py`; "
            "older records do not list the files)") in text
    assert "This report was built by the code at commit " in text
