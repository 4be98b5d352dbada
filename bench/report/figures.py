"""The report's figures, each written as PNG and PDF: bar charts per metric, the robustness curve,
training curves and class-correlation heatmaps.

- One colour per row of the report in every figure (``palette``, fixed once per report from the
  ordered rows; the teacher is always the same neutral grey).
- Every interval is the mean over seeds with its 95 % Student-t interval (bench/report/stats.py, the same
  interval the tables print) and the figure says so; a row with one seed (a single trained teacher)
  has no spread and is drawn without a band or whisker.
- The robustness curve marks the threat model's ε; legends sit outside the axes, never on data.
- Artists carry ``gid`` = the row's name, so a test can find each row's lines, bands and bars.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter  # noqa: E402

from bench.common.io import atomic_write_bytes  # noqa: E402
from bench.report.stats import LEVEL, Interval, interval  # noqa: E402
from bench.records.record import RunRecord  # noqa: E402
from bench.config.schema import POLICIES, loss_terms, selection_key  # noqa: E402

TEACHER_COLOUR = "#555555"
# One colour per method in every report and figure: each registered method has its own, Okabe and Ito's
# colour-blind-safe set first (for the methods compared most), then Paul Tol's muted and bright sets;
# never the teacher's grey. Variants of one method in one report, and methods from users' files, take
# the colours no method of that report uses, in the report's row order.
METHOD_COLOURS = {
    "gacd": "#0072b2", "ard": "#e69f00", "crd": "#009e73", "pgd-at": "#d55e00", "rslad": "#cc79a7",
    "adaad": "#56b4e9", "iad": "#f0e442", "trades": "#332288", "kd": "#88ccee", "peeraid": "#44aa99",
    "mtard": "#117733", "absld": "#999933", "fair-ard": "#ddcc77", "fair-rslad": "#cc6677",
    "fair-iad": "#882255", "adaiad": "#aa4499", "dgad": "#4477aa", "igdm": "#ee6677", "natural": "#bbbbbb"}
SPARE_COLOURS = ("#000000", "#66ccee", "#228833", "#ccbb44", "#aa3377", "#ee7733", "#0077bb", "#33bbee",
                  "#009988", "#cc3311", "#ee3377")
SEED_STYLES = ("-", "--", ":", "-.")
NORM_TEXT = {"Linf": "L∞", "L2": "L2", "L1": "L1"}
STYLE = {"pdf.fonttype": 42, "ps.fonttype": 42,   # TrueType in the PDF: text stays text for journals
         "font.size": 9, "axes.titlesize": 9, "legend.fontsize": 8,
         "axes.spines.top": False, "axes.spines.right": False}
BAND_TEXT = f"{100 * LEVEL:g} % t-interval over n seeds"
THREAT_GID = "threat-model"


@dataclass(frozen=True)
class Row:
    """One row of the report: its name (the palette's key), legend label and records, one per seed."""
    name: str
    label: str
    teacher: bool
    records: tuple[RunRecord, ...]

    @property
    def n(self) -> int:
        return len(self.records)

    @property
    def legend(self) -> str:
        return f"{self.label} (n = {self.n})"


SELECTION_KEYS = tuple(selection_key(p) for p in POLICIES)   # the checkpoint policies' log columns
SELECTION_LABELS = {k: ("validation " if k.startswith("val") else "test ")
                    + k.split("_")[1].upper().replace("PGD", "PGD-") for k in SELECTION_KEYS}


def _hex(colour) -> str:
    return matplotlib.colors.to_hex(colour)


def method_of(label: str) -> str:
    """The method a row's label names: ``gacd:reweight=none`` -> ``gacd``."""
    return label.split(":", 1)[0]


def palette(rows: list[Row]) -> dict[str, str]:
    """{row name: colour}: each method its own colour (METHOD_COLOURS) in every report, the teacher grey;
    a second variant of a method, or an unknown method, a colour no row of this report has."""
    out: dict[str, str] = {}
    taken = {METHOD_COLOURS[method_of(r.label)] for r in rows if not r.teacher and method_of(r.label) in METHOD_COLOURS}
    spare = [c for c in (*SPARE_COLOURS, *METHOD_COLOURS.values()) if c not in taken]
    used: set[str] = set()
    for row in rows:
        own = TEACHER_COLOUR if row.teacher else METHOD_COLOURS.get(method_of(row.label))
        if own is None or (own in used and not row.teacher):
            own = spare.pop(0) if spare else _hex(plt.get_cmap("tab20")(len(out) % 20))
        out[row.name] = _hex(own)
        used.add(own)
    return out


def threat_model(records: list[RunRecord]) -> tuple[float, str]:
    """(ε, norm) the report's numbers are measured at; records written before the norm was stored
    are L∞."""
    rec = next((r for r in records if r.role == "student"), records[0])
    cfg, settings = rec.config or {}, rec.attack_settings or {}
    eps = (cfg.get("eval") or {}).get("eps", (settings.get("pgd20") or {}).get("eps", math.nan))
    places = (cfg.get("eval"), cfg.get("attack"), cfg, settings, settings.get("pgd20"), settings.get("aa"))
    norm = next((p["norm"] for p in places if isinstance(p, dict) and p.get("norm")), "Linf")
    return float(eps), str(norm)


def norm_text(norm: str) -> str:
    return NORM_TEXT.get(norm, norm)


def save(fig, stem: Path) -> list[str]:
    """Write ``stem``.png and ``stem``.pdf (tight margins, legends included), atomically; close."""
    names = []
    for fmt in ("png", "pdf"):
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=150, bbox_inches="tight", pad_inches=0.05)
        path = Path(stem).with_suffix(f".{fmt}")
        atomic_write_bytes(path, buf.getvalue())
        names.append(path.name)
    plt.close(fig)
    return names


def _legend_outside(ax, handles=None, labels=None, title: str | None = None):
    """A legend to the right of the axes, clear of every data point."""
    kw = {} if handles is None else {"handles": handles, "labels": labels}
    return ax.legend(**kw, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False,
                     title=title, title_fontsize=8, alignment="left")


PANELS_PER_LINE = 4


def bars(rows: list[Row], values: dict[str, dict[str, list[float]]], metrics: list[str], pal: dict[str, str],
         title: str, xlabel: str, scale: float, xlim: float | None):
    """Small multiples: one panel per metric, one horizontal bar per row in the row's colour at the mean
    over its seeds, and a black dot per seed on the bar (the spread a reader can count: a t-interval of
    3 or 4 seeds spans most of the axis). The width is fixed (at most PANELS_PER_LINE panels a line),
    however many rows and metrics: more of either make the figure taller, never wider."""
    cols = min(PANELS_PER_LINE, len(metrics))
    lines = math.ceil(len(metrics) / cols)
    height = 0.45 + 0.17 * len(rows)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(lines, cols, figsize=(1.9 * cols + 1.6, height * lines + 0.5), squeeze=False,
                                 sharey=True)
        ys = list(range(len(rows)))[::-1]   # the first row on top
        for k, ax in enumerate(axes.ravel()):
            if k >= len(metrics):
                ax.set_visible(False)
                continue
            metric = metrics[k]
            for y, row in zip(ys, rows):
                seeds = [scale * v for v in values[row.name][metric] if not math.isnan(v)]
                if not seeds:
                    continue
                ax.barh([y], [float(np.mean(seeds))], 0.75, color=pal[row.name], gid=row.name)
                if len(seeds) > 1:   # spread vertically in seed order, so equal values stay countable
                    offsets = np.linspace(-0.22, 0.22, len(seeds))
                    ax.scatter(seeds, y + offsets, s=5, color="black", linewidths=0, zorder=3,
                               gid=f"{row.name}/seeds")
            ax.set_title(metric, fontsize=8)
            if xlim:
                ax.set_xlim(0, xlim)
            ax.tick_params(axis="x", labelsize=7)
            ax.tick_params(axis="y", labelsize=7)
            ax.xaxis.set_major_locator(MaxNLocator(3))
        axes[0, 0].set_yticks(ys)
        axes[0, 0].set_yticklabels([row.label for row in rows], fontsize=7)
        fig.suptitle(f"{title} — {xlabel}; bar: mean over seeds, dots: each seed", fontsize=9)
        fig.tight_layout()
    return fig


def train_gflop(rec: RunRecord) -> float:
    """A run's training cost per image over all its epochs: the counted step's FLOPs x epochs, in GFLOP."""
    cost = (rec.extra or {}).get("cost") or {}
    step, epochs = cost.get("train_flops_per_image_step"), cost.get("epochs")
    return step * epochs / 1e9 if step is not None and epochs else math.nan


def robustness_vs_cost(rows: list[Row], pal: dict[str, str], metric: str, label: str):
    """Each row's ``metric`` accuracy (mean over seeds, 95 % t-interval whiskers) against its training cost
    per image (median over seeds, log scale): what a method buys per unit of compute. None when no row
    counted its cost."""
    points = []
    for row in rows:
        costs = [c for c in (train_gflop(r) for r in row.records) if not math.isnan(c)]
        iv = interval([float(r.metrics.get(metric, math.nan)) for r in row.records], (0.0, 1.0))
        if costs and not math.isnan(iv.mean):
            points.append((row, float(np.median(costs)), iv))
    if not points:
        return None
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(5.0, 3.4))
        for row, cost, iv in points:
            err = None if math.isnan(iv.low) else [[100 * (iv.mean - iv.low)], [100 * (iv.high - iv.mean)]]
            ax.errorbar([cost], [100 * iv.mean], yerr=err, fmt="s" if row.teacher else "o", color=pal[row.name],
                        markersize=5, capsize=2, elinewidth=0.8, label=row.legend, gid=row.name)
        ax.set_xscale("log")
        _plain_log_ticks(ax.xaxis, [cost for _, cost, _ in points])
        ax.set_xlabel("training cost per image (GFLOP, all epochs; counted step x epochs)")
        ax.set_ylabel(f"{label} accuracy (%)")
        ax.set_title(f"{label} accuracy against training cost")
        _legend_outside(ax, title=f"whiskers: {BAND_TEXT}")
    return fig


def _plain_log_ticks(axis, values: list[float]) -> None:
    """Labels 0.2, 0.5, 1, 2 on a log axis spanning at most two decades (powers of ten only beyond), and
    none on the minor ticks: matplotlib's default labels every minor tick of a short log axis in
    scientific notation, and they overlap."""
    span = math.log10(max(values) / min(values)) if min(values) > 0 else math.inf
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if span <= 2 else (1.0,)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


BARS_UP_TO = 20   # classes: grouped bars up to this many, a sorted per-class profile beyond


def per_class(rows: list[Row], pal: dict[str, str], attack: str, label: str):
    """Accuracy per class under ``attack`` (mean over seeds): grouped bars, one group per class, where
    there are at most BARS_UP_TO classes; beyond, each row's per-class accuracies sorted from the worst
    class up (the worst classes are where rows differ). None when no record has per-class numbers."""
    def accs(rec):
        return (rec.per_class or {}).get("accuracy", {}).get(attack)

    rows = [row for row in rows if any(accs(r) for r in row.records)]
    if not rows:
        return None
    names = next(r.per_class.get("classes") for row in rows for r in row.records if accs(r))
    k = len(names)
    seeds = {row.name: {str(c): [accs(r)[c] if accs(r) and accs(r)[c] is not None else math.nan
                                 for r in row.records] for c in range(k)} for row in rows}
    cells = {name: {c: interval(v, (0.0, 1.0)) for c, v in per.items()} for name, per in seeds.items()}
    if k <= BARS_UP_TO:
        return bars(rows, {name: {names[int(c)]: v for c, v in per.items()} for name, per in seeds.items()},
                    list(names), pal, f"{label} accuracy per class", "accuracy (%)", 100, 105)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(5.0, 3.4))
        for row in rows:
            means = sorted(100 * iv.mean for iv in cells[row.name].values() if not math.isnan(iv.mean))
            ax.plot(range(1, len(means) + 1), means, color=pal[row.name], linewidth=1.2, label=row.legend,
                    gid=row.name, linestyle="--" if row.teacher else "-")
        ax.set_ylim(-2, 102)
        ax.set_xlabel(f"class rank (worst first, {k} classes)")
        ax.set_ylabel(f"{label} accuracy (%)")
        ax.set_title(f"{label} accuracy per class, sorted (mean over seeds)")
        _legend_outside(ax)
    return fig


def _curve(rec: RunRecord) -> dict[float, float]:
    return {float(e): float(v) for e, v in rec.curve.items() if v is not None}


def robustness_curve(rows: list[Row], pal: dict[str, str], eps: float, norm: str):
    """PGD-20 accuracy against ε: the mean over seeds, a band for its 95 % t-interval where a row has
    more than one seed, and a vertical line at the threat model's ε. None when no row has a curve."""
    drawn = [(row, sorted({e for r in row.records for e in _curve(r)})) for row in rows]
    drawn = [(row, grid) for row, grid in drawn if grid]
    if not drawn:
        return None
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(5.0, 3.4))
        for row, grid in drawn:
            curves = [_curve(r) for r in row.records]
            ivs = [interval([c.get(e, math.nan) for c in curves], (0.0, 1.0)) for e in grid]
            colour = pal[row.name]
            ax.plot(grid, [100 * iv.mean for iv in ivs], color=colour, marker="s" if row.teacher else "o",
                    markersize=3.5, linewidth=1.4, linestyle="--" if row.teacher else "-", label=row.legend,
                    gid=row.name)
            if row.n > 1 and any(not math.isnan(iv.low) for iv in ivs):
                ax.fill_between(grid, [100 * iv.low for iv in ivs], [100 * iv.high for iv in ivs],
                                color=colour, alpha=0.2, linewidth=0, gid=row.name)
        if not math.isnan(eps):
            ax.axvline(eps, color="black", linestyle=":", linewidth=1.0, gid=THREAT_GID,
                       label=f"ε = {eps:g} (threat model, {norm_text(norm)})")
            ax.annotate(f"ε = {eps:g}", xy=(eps, 1.0), xycoords=("data", "axes fraction"), xytext=(0, 2),
                        textcoords="offset points", ha="center", va="bottom", fontsize=7)
        ax.set_ylim(-2, 102)
        ax.set_xlabel(f"ε ({norm_text(norm)}, pixels in [0, 1])")
        ax.set_ylabel("PGD-20 accuracy (%)")
        ax.set_title("Robust accuracy vs ε (mean over seeds)", pad=12)
        _legend_outside(ax, title=f"bands: {BAND_TEXT}")
    return fig


def _mean_terms(row: Row) -> dict[str, tuple[list[int], list[float]]]:
    """Each loss term's per-epoch mean over the row's seeds, as the loop summed it (weights included)."""
    hists = [r.history for r in row.records if r.history]
    out = {}
    for term in dict.fromkeys(k for h in hists for k in loss_terms(h[0])):
        epochs = sorted({h["epoch"] for hist in hists for h in hist if term in h})
        out[term] = (epochs, [float(np.mean([h[term] for hist in hists for h in hist if h["epoch"] == e and term in h]))
                              for e in epochs])
    return out


def training_curves(rows: list[Row], pal: dict[str, str]):
    """Training curves that compare across methods. The first panel (where the log has it): the
    checkpoint policy's accuracy per epoch (validation PGD-20), every seed a thin line in the row's
    colour, one line style per seed. Then one small panel per row: each of its loss terms as the loop
    summed it (mean over seeds), each line named at its end, every panel on one shared axis (log where
    every value is positive). A method's total sums terms of different kinds, so totals do not compare
    across methods; a term does (ARD's and RSLAD's adversarial KL, say). None without any history."""
    rows = [row for row in rows if any(r.history for r in row.records)]
    if not rows:
        return None
    seeds = sorted({r.seed for row in rows for r in row.records})
    style = {s: SEED_STYLES[i % len(SEED_STYLES)] for i, s in enumerate(seeds)}
    # the checkpoint policy's per-epoch score (bench/train/selection.py): val_pgd20, test_pgd10, test_pgd20
    keys = sorted({k for row in rows for r in row.records for h in r.history for k in SELECTION_KEYS if k in h})
    terms = {row.name: _mean_terms(row) for row in rows}
    panels = (["accuracy"] if keys else []) + [row.name for row in rows]
    cols = min(PANELS_PER_LINE, len(panels))
    lines = math.ceil(len(panels) / cols)
    values = [v for t in terms.values() for _, ys in t.values() for v in ys]
    positive = bool(values) and min(values) >= 0 and max(values) > 0
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(lines, cols, figsize=(2.1 * cols + 0.4, 1.9 * lines + 0.6), squeeze=False)
        flat = list(axes.ravel())
        for ax in flat[len(panels):]:
            ax.set_visible(False)
        if keys:
            _accuracy_panel(flat.pop(0), rows, pal, keys, style)
        shown = [v for v in values if v > 0] if positive else values
        low, high = (min(shown), max(shown)) if shown else (0.5, 1.0)
        for ax, row in zip(flat, rows):
            for i, (term, (epochs, ys)) in enumerate(terms[row.name].items()):
                ax.plot(epochs, ys, color=pal[row.name], linestyle=SEED_STYLES[i % len(SEED_STYLES)],
                        linewidth=1.1, gid=row.name, label=term)
            if positive:
                ax.set_yscale("log", nonpositive="mask")   # a term at exactly 0 (DGAD's clean KL) drops out
            pad = 0.05 * (high - low)
            ax.set_ylim(low / 1.3 if positive else low - pad, high * 1.3 if positive else high + pad)
            _name_line_ends(ax, terms[row.name])
            ax.set_title(row.label, fontsize=8)
            ax.tick_params(labelsize=7)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=4))
            ax.set_xlim(right=ax.get_xlim()[1] * 1.3)   # room for the names
        fig.suptitle("Training: each loss term as the method weighs it (mean over seeds; one shared axis)",
                     fontsize=9)
        fig.supxlabel("epoch", fontsize=8)
        if keys:   # the accuracy panel's key: a colour per row, a line style per seed
            handles = [Line2D([], [], color=pal[row.name], linewidth=1.4) for row in rows]
            handles += [Line2D([], [], color="black", linestyle=style[s], linewidth=0.9) for s in seeds]
            labels = [row.legend for row in rows] + [f"seed {s}" for s in seeds]
            ncol = min(6, len(labels))
            key_height = 0.2 * math.ceil(len(labels) / ncol) + 0.1
            fig.set_size_inches(fig.get_size_inches()[0], fig.get_size_inches()[1] + key_height)
            fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=7, frameon=False)
            fig.tight_layout(rect=(0, key_height / fig.get_size_inches()[1], 1, 1))
        else:
            fig.tight_layout()
    return fig


def _name_line_ends(ax, terms: dict[str, tuple[list[int], list[float]]], gap: float = 0.08) -> None:
    """Each line's name at its last point, moved apart vertically (in axes fractions) where ends meet."""
    to_axes = ax.transAxes.inverted()
    ends = []
    for term, (epochs, ys) in terms.items():
        last = next(((e, y) for e, y in zip(epochs[::-1], ys[::-1]) if y > 0 or ax.get_yscale() != "log"), None)
        if last is not None:
            ends.append([to_axes.transform(ax.transData.transform(last))[1], term, last])
    ends.sort()
    for i in range(1, len(ends)):
        ends[i][0] = max(ends[i][0], ends[i - 1][0] + gap)
    for y, term, (e, _) in ends:
        ax.annotate(term, xy=(e, y), xycoords=("data", "axes fraction"), xytext=(3, 0),
                    textcoords="offset points", fontsize=6, va="center", color="#333333", annotation_clip=False)


def _accuracy_panel(ax, rows: list[Row], pal: dict[str, str], keys: list[str], style: dict) -> None:
    for row in rows:
        for rec in sorted(row.records, key=lambda r: r.seed):
            key = next((k for k in keys if any(k in h for h in rec.history)), None)
            val = [h for h in rec.history if key in h] if key else []
            if val:
                ax.plot([h["epoch"] for h in val], [100 * h[key] for h in val], color=pal[row.name],
                        linestyle=style[rec.seed], linewidth=0.9, alpha=0.85, gid=row.name)
    ax.set_title(" / ".join(SELECTION_LABELS[k] for k in keys) + " (%), every seed", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=4))


def class_names(rec: RunRecord, count: int) -> list[str]:
    """The student's class names: stored with the structure metrics, else the data's class list,
    else 0..C-1."""
    for names in (rec.structure.get("classes"), rec.data_info.get("class_names"), rec.data_info.get("classes")):
        if names and len(names) == count:
            return [str(c) for c in names]
    return [str(i) for i in range(count)]


def _tick_every(count: int, most: int = 20) -> int:
    return max(1, math.ceil(count / most))


def correlation_heatmaps(rows: list[Row]):
    """|teacher − student| class-correlation of logits on clean test inputs, mean over each student's
    seeds, class names on both axes, one colour scale and colour bar for the figure. None when no
    record holds the matrices."""
    panels = []
    for row in rows:
        recs = [r for r in row.records if r.structure.get("corr_teacher") and r.structure.get("corr_student")]
        if recs:
            gap = np.mean([np.abs(np.asarray(r.structure["corr_teacher"]) - np.asarray(r.structure["corr_student"]))
                           for r in recs], axis=0)
            off = float(np.mean([r.structure["clean"]["corr_gap"] for r in recs]))
            panels.append((row, gap, off, len(recs), class_names(recs[0], gap.shape[0])))
    if not panels:
        return None
    vmax = max(float(p[1].max()) for p in panels) or 1.0
    cols = min(4, len(panels))
    nrows = math.ceil(len(panels) / cols)
    with plt.rc_context(STYLE):
        # 2.4 in a panel: four panels and the colour bar stay within 1,600 px at the report's dpi
        fig, axes = plt.subplots(nrows, cols, figsize=(2.4 * cols + 0.9, 2.4 * nrows + 0.4), squeeze=False,
                                 layout="constrained")
        for ax in axes.flat[len(panels):]:
            ax.set_visible(False)
        for ax, (row, gap, off, n, names) in zip(axes.flat, panels):
            im = ax.imshow(gap, vmin=0.0, vmax=vmax, cmap="magma", gid=row.name)
            step = _tick_every(len(names))
            ticks = list(range(0, len(names), step))
            rotate = 90 if max(len(n) for n in names) > 2 else 0
            ax.set_xticks(ticks, [names[t] for t in ticks], fontsize=6, rotation=rotate)
            ax.set_yticks(ticks, [names[t] for t in ticks], fontsize=6)
            ax.tick_params(length=0, pad=1)
            ax.set_title(f"{row.label} (n = {n})\noff-diagonal mean {off:.3f}", fontsize=7.5)
            for side in ax.spines.values():
                side.set_visible(False)
        bar = fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.85)
        bar.set_label("|corr_T − corr_S|", fontsize=8)
        bar.ax.tick_params(labelsize=7)
        fig.suptitle("|teacher − student| class-correlation of logits (clean test inputs, mean over seeds)",
                     fontsize=9)
    return fig
