import dataclasses
import json

import pandas as pd
import pytest

from bench.cli.main import main
from bench.config import presets


def test_paper_list_and_unknown(capsys):
    assert main(["paper", "--list"]) == 0
    out = capsys.readouterr().out
    for name in ("cifar10-resnet18", "cifar10-mobilenetv2", "cifar100-resnet18"):
        assert name in out
    assert "Zhang2019Theoretically" in out and "Chen2021LTD_WRN34_10" in out
    assert main(["paper", "cifar10-vgg"]) == 2
    assert "known: cifar10-resnet18" in capsys.readouterr().err


def test_paper_presets_record_the_protocol():
    p = presets.PAPER_PRESETS["cifar10-resnet18"]
    assert p.config.teacher.name == "Zhang2019Theoretically" and p.config.student_arch == "resnet18"
    assert {m.split(":")[0] for m in p.methods} == {"natural", "pgd-at", "trades", "kd", "ard", "crd", "rslad", "iad",
                                                    "adaad", "adaiad", "dgad", "igdm", "mtard", "absld", "fair-ard",
                                                    "fair-rslad", "fair-iad", "peeraid", "gacd"}
    # MTARD's natural teacher: RobustBench's Standard on CIFAR-10, one trained here on CIFAR-100, tiny at smoke scale
    assert p.config.natural_teacher.name == "Standard"
    assert presets.PAPER_PRESETS["cifar100-resnet18"].config.natural_teacher.method == "natural"
    assert presets.smoke(p).config.natural_teacher.arch == "wrn-10-1"
    assert p.config.eval.n == 10000 and p.config.eval.aa_n == 10000 and p.config.probe.targets == ("cifar100", "stl10")
    assert presets.PAPER_PRESETS["cifar100-resnet18"].config.teacher.name == "Chen2021LTD_WRN34_10"
    s = presets.smoke(p)
    assert s.config.student_arch == "resnet18-tiny" and s.config.train.epochs == 2 and s.config.data.stand_in
    assert p.config.train.checkpoint == "best-val" and p.config.protocol == "common"


@pytest.mark.slow
def test_paper_dry_run_prints_plan_and_estimate(capsys):
    # three methods: each one's training step is counted (about a second each on the meta device)
    assert main(["paper", "cifar10-mobilenetv2", "--scale", "smoke", "--dry-run", "--device", "cpu", "--methods",
                 "adaad,crd,gacd"]) == 0
    out = capsys.readouterr().out
    assert "measured on cpu" in out and "img/s forward-backward" in out and "GFLOP/s" in out
    assert "adaad" in out and "estimate:" in out and "hours on cpu" in out
    rows = {ln.split()[0]: ln.split() for ln in out.splitlines() if ln.startswith(("adaad", "crd", "gacd"))}
    assert rows["crd"][4:7] == ["cpu,", "batch", "2"] and rows["gacd"][4:7] == ["meta,", "batch", "64"]
    assert float(rows["adaad:scale=0.1"][3]) > float(rows["gacd"][3])  # the teacher's input gradient per attack step
    assert '"student_arch": "mobilenetv2-tiny"' in out  # every hyper-parameter is printed


@pytest.mark.slow
def test_paper_smoke_end_to_end_in_both_protocols(capsys, tmp_path, monkeypatch, quick_autoattack):
    """Issue 20: `--scale smoke` runs both protocols end to end on CPU and writes both reports with best and last;
    a finished common run is never reused as official."""
    monkeypatch.setenv("BENCH_DATA_DIR", str(tmp_path / "no-data"))  # the real files are absent: stand-ins
    slim = dataclasses.replace(presets.PAPER_PRESETS["cifar10-resnet18"], methods=(
        "ard:scale=0.1", "gacd", "absld:scale=0.1", "peeraid:scale=0.1"))
    monkeypatch.setitem(presets.PAPER_PRESETS, "cifar10-resnet18", slim)
    common, official = tmp_path / "common", tmp_path / "official"
    assert main(["paper", "cifar10-resnet18", "--scale", "smoke", "--methods", "ard,gacd", "--results",
                 str(tmp_path / "r"), "--reports", str(common)]) == 0
    assert main(["paper", "cifar10-resnet18", "--scale", "smoke", "--protocol", "official", "--methods", "absld,peeraid",
                 "--results", str(tmp_path / "r2"), "--reports", str(official)]) == 0
    out = common / "cifar10-resnet18-smoke"
    pub = pd.read_csv(out / "published.csv")
    ard = pub[pub["Method"].str.startswith("ard")].iloc[0]
    assert ard["PGD-20 published"] == "53.27" and ard["AutoAttack published"] == "49.49"
    assert ard["protocol"] == "common, best-val"
    readme = (out / "README.md").read_text()
    assert "synthetic stand-in" in readme and "`gacd`: no published number (GACD paper tables not available)" in readme
    assert "Protocol **common**" in readme and "## Best and last checkpoints" in readme and "## Recipes" in readme
    runs = json.loads((out / "runs.json").read_text())
    assert {r["arch"] for r in runs} == {"resnet18-tiny", "wrn-10-1"}
    assert set(runs[1]["transfer"]) == {"cifar100", "stl10"}
    students = [r for r in runs if r["role"] == "student"]
    assert all(r["checkpoints"]["policy"] == "best-val" and set(r["checkpoints"]) >= {"best", "last"} for r in students)
    assert set(pd.read_csv(out / "best_last.csv")["policy"]) == {"best-val"}
    assert "Further checkpoints" not in readme   # the common protocol keeps only best and last

    out = official / "cifar10-resnet18-smoke"
    readme = (out / "README.md").read_text()
    assert "Protocol **official**" in readme and "## Best and last checkpoints" in readme
    runs = {r["method"]: r for r in json.loads((out / "runs.json").read_text()) if r["role"] == "student"}
    assert set(runs) == {"absld:scale=0.1:temps=code", "peeraid:scale=0.1"}
    absld, peeraid = runs["absld:scale=0.1:temps=code"], runs["peeraid:scale=0.1"]
    assert absld["config"]["protocol"] == "official" and absld["config"]["precision"] == "fp32"
    assert absld["config"]["train"]["milestones"] == [] and absld["config"]["train"]["epochs"] == 2  # capped
    assert absld["config"]["train"]["select_every"] is None    # the caps score every epoch
    assert absld["config"]["input_norm"] == "none" and absld["checkpoints"]["policy"] == "best-test-pgd20"
    record = json.loads((tmp_path / "r2" / "cifar10-resnet18-smoke" / absld["run_id"] / "record.json").read_text())
    assert {"test_pgd20", "fair_test_pgd20"} <= set(record["history"][0])
    # each script's further checkpoint, evaluated and reported under its own name beside selected and last
    assert {"best", "last", "fair-best"} <= set(absld["checkpoints"])
    assert {"best", "last", "plain-best"} <= set(peeraid["checkpoints"])
    assert set(peeraid["checkpoints"]["plain-best"]["metrics"]) >= {"clean", "pgd20", "aa"}
    kept = pd.read_csv(out / "checkpoints.csv")
    assert {(m.removesuffix(" ⚠").split(":")[0], c) for m, c in zip(kept["Method"], kept["checkpoint"])} == {
        ("absld", "selected"), ("absld", "fair-best"), ("absld", "last"),
        ("peeraid", "selected"), ("peeraid", "plain-best"), ("peeraid", "last")}
    assert "### Further checkpoints its script keeps" in readme
    assert "| absld | train.epochs | 2 | 300 |" in readme and "caps every recipe" in readme  # the recipes themselves
    common_ids = {p.name for p in (tmp_path / "r" / "cifar10-resnet18-smoke").iterdir()}
    assert not common_ids & {r["run_id"] for r in runs.values()}


@pytest.mark.slow
def test_paper_dry_run_checks_data_and_teacher_files_first(capsys, tmp_path, monkeypatch):
    from bench.cli.parser import MISSING_FILES_STATUS
    from bench.eval.corruptions import CORRUPTIONS
    data, zoo = tmp_path / "data", tmp_path / "rb"
    monkeypatch.setenv("BENCH_DATA_DIR", str(data))
    monkeypatch.setenv("BENCH_ROBUSTBENCH_DIR", str(zoo))
    argv = ["paper", "cifar10-resnet18", "--dry-run", "--device", "cpu", "--methods", "ard"]
    assert main(argv) == MISSING_FILES_STATUS != 0
    captured = capsys.readouterr()
    missing = [ln for ln in captured.err.splitlines() if "missing:" in ln]
    teacher = zoo / "cifar10" / "Linf" / "Zhang2019Theoretically.pt"
    wanted = [data / "cifar-10-batches-py", data / "cifar-100-python", data / "stl10_binary", data / "CIFAR-10-C",
              teacher]
    assert len(missing) == 5 and all(f"looked for {p};" in ln for p, ln in zip(wanted, missing)), missing
    assert "--download" in missing[0] and "Google Drive id" in missing[4]  # what to do
    assert "zenodo.org/record/2535967" in missing[3] and "--download" in missing[3]
    assert "estimate:" in captured.out  # the plan is printed all the same
    for folder in wanted[:4]:
        folder.mkdir(parents=True)
    for name in [*CORRUPTIONS, "labels"]:   # the released CIFAR-10-C's files (their contents are not read here)
        (data / "CIFAR-10-C" / f"{name}.npy").write_bytes(b"")
    teacher.parent.mkdir(parents=True)
    teacher.write_bytes(b"")
    assert main(argv) == 0
    assert "missing" not in capsys.readouterr().err
