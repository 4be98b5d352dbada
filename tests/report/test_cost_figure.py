"""Issue 22: the figure of robust accuracy against training cost puts each row at its counted cost."""
from __future__ import annotations

import matplotlib
import pytest

from bench.report import figures as plots
from bench.records.record import RunRecord


def _rec(method: str, seed: int, aa: float, step_flops: float | None, epochs: int = 30) -> RunRecord:
    extra = {"cost": {"train_flops_per_image_step": step_flops, "epochs": epochs}} if step_flops else {}
    return RunRecord(run_id=f"{method}-{seed}", role="student", method=method, method_name=method, options={},
                     note="", dataset="digits@0-4", arch="cnn-narrow", teacher_id="t0", seed=seed, config={},
                     metrics={"aa": aa}, curve={}, attack_settings={}, timings={}, extra=extra)


def test_each_row_sits_at_its_training_cost_and_mean_accuracy():
    rows = [plots.Row("cheap", "cheap", False, (_rec("cheap", 0, 0.4, 2e7), _rec("cheap", 1, 0.5, 2e7))),
            plots.Row("dear", "dear", False, (_rec("dear", 0, 0.6, 1e8),)),
            plots.Row("uncounted", "uncounted", False, (_rec("uncounted", 0, 0.7, None),))]
    pal = plots.palette(rows)
    fig = plots.robustness_vs_cost(rows, pal, "aa", "AutoAttack")
    points = {}
    for line in fig.axes[0].lines:
        if line.get_gid() and len(line.get_xdata()) == 1 and line.get_marker() in ("o", "s"):  # not the caps
            points[line.get_gid()] = (float(line.get_xdata()[0]), float(line.get_ydata()[0]))
    assert points["cheap"] == pytest.approx((2e7 * 30 / 1e9, 45.0))
    assert points["dear"] == pytest.approx((1e8 * 30 / 1e9, 60.0))
    assert "uncounted" not in points  # no count, no point
    assert fig.axes[0].get_xscale() == "log"
    fig.canvas.draw()
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text() and ax.get_xlim()[0] <= t.get_position()[0]
              <= ax.get_xlim()[1]]
    assert labels and all(not any(c in lab for c in "×^$") for lab in labels), labels  # plain numbers
    assert not [t.get_text() for t in ax.xaxis.get_minorticklabels() if t.get_text()]  # no overlapping minors
    matplotlib.pyplot.close(fig)
    assert plots.robustness_vs_cost(rows[2:], pal, "aa", "AutoAttack") is None
