"""`bench run` ends with the result at a glance, not the whole report."""
from pathlib import Path

import pandas as pd

from bench.api import RunResult


def test_run_ends_with_a_ranked_summary_of_the_main_attacks():
    table = pd.DataFrame({"Method": ["teacher (pgd-at, cnn-wide)", "gacd (re-implemented from the paper)", "ard"],
                          "Clean": ["99.0", "98.0 [97.0, 99.0]", "97.0 [96.0, 98.0]"],
                          "FGSM": ["80.0", "75.0 [70.0, 80.0]", "76.0 [70.0, 82.0]"],
                          "PGD-20": ["70.0", "60.0 [55.0, 65.0]", "65.0 [60.0, 70.0]"],
                          "AutoAttack": ["50.0", "40.0 [35.0, 45.0]", "40.0 [30.0, 50.0]"], "n": [1, 3, 3]})
    summary = pd.DataFrame({"Clean mean": [0.99, 0.98, 0.97], "PGD-20 mean": [0.70, 0.60, 0.65],
                            "AutoAttack mean": [0.50, 0.40, 0.40]})
    lines = RunResult([], table, summary, None, (), (), "x", Path("results/x"), None).ranked().splitlines()
    assert lines[0].split() == ["Method", "Clean", "PGD-20", "AutoAttack", "n"]   # FGSM is in the report
    assert [line.split()[0] for line in lines[1:]] == ["teacher", "ard", "gacd"]  # AA ties broken by PGD-20
    assert "re-implemented" not in lines[2] + lines[3]                             # annotations: in the report
