"""RobustBench: the import shims, offline zoo loading (weights_only, no downloads), export, and the
architecture facts (leaderboard name, smoke twin, published-number alias) on the registry's entries."""
import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

import pandas as pd

import pytest
import torch

from bench.common.errors import BenchError
from bench.common.io import load_weights
from bench.models import (
    ARCHS,
    build_model,
    leaderboard_name,
    published_arch,
    register_arch,
    robustbench_compat,
    smoke_arch,
    zoo,
)
from bench.report import export

NAME = "Zhang2019Theoretically"


@pytest.fixture
def load_spy(monkeypatch):
    """Records the weights_only argument of every torch.load call; where the call does not pass it
    (robustbench's), "forced" while $TORCH_FORCE_WEIGHTS_ONLY_LOAD makes torch load weights only,
    else "default" (torch < 2.6 then unpickles anything)."""
    calls = []
    real = torch.load

    def spy(*args, **kwargs):
        forced = os.environ.get(zoo.WEIGHTS_ONLY_ENV) == "1"
        calls.append(kwargs.get("weights_only", "forced" if forced else "default"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    return calls


@pytest.fixture(scope="module")
def zhang(tmp_path_factory):
    """RobustBench's architecture for Zhang2019Theoretically with random weights, saved where
    RobustBench looks for it (with the 'module.' prefix and 'state_dict' wrapper of real files)."""
    robustbench_compat.import_robustbench()
    from robustbench.model_zoo import model_dicts
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    torch.manual_seed(0)
    raw = model_dicts[BenchmarkDataset.cifar_10][ThreatModel.Linf][NAME]["model"]()
    for m in raw.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    raw.eval()
    model_dir = tmp_path_factory.mktemp("rb")
    path = model_dir / "cifar10" / "Linf" / f"{NAME}.pt"
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": {f"module.{k}": v for k, v in raw.state_dict().items()}}, path)
    return raw, model_dir


@pytest.fixture
def no_network(monkeypatch):
    """gdown (robustbench's downloader) fails the test if anything reaches it."""
    import gdown

    calls = []
    monkeypatch.setattr(gdown, "download", lambda *a, **k: calls.append((a, k)) or pytest.fail("gdown.download"))
    return calls


def test_offline_teacher_matches_robustbench_model(zhang, load_spy, no_network, monkeypatch):
    raw, model_dir = zhang
    rb_utils = robustbench_compat.import_robustbench().utils
    used = []
    real_load_model = rb_utils.load_model
    monkeypatch.setattr(rb_utils, "load_model", lambda *a, **k: used.append(k) or real_load_model(*a, **k))
    monkeypatch.delenv(zoo.NO_WEIGHTS_ONLY_ENV, raising=False)
    model = zoo.load_robustbench_model(NAME, "cifar10", "Linf", model_dir)
    assert len(used) == 1 and used[0]["model_dir"] == model_dir  # robustbench's own load path, bench's folder
    assert load_spy and all(w in (True, "forced") for w in load_spy) and not no_network
    assert zoo.WEIGHTS_ONLY_ENV not in os.environ   # restored after the call
    assert isinstance(model, zoo.ZooModel) and not model.training
    assert (model.feature_dim, model.num_classes) == (640, 10)
    assert model.head_name == "fc"
    torch.manual_seed(1)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        expected = raw(x)
        out = model(x)
        feats = model.features(x)
        split = model.head(feats)
    assert torch.equal(out, expected)
    assert feats.shape == (2, 640)
    assert torch.allclose(split, out, atol=1e-6, rtol=0)


def test_features_keep_the_graph(zhang):
    raw, _ = zhang
    model = zoo.ZooModel(raw, NAME)
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    model.features(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert not raw.fc._forward_pre_hooks and not raw.fc._forward_hooks  # hooks are removed


def test_checkpoint_with_pickled_object_is_refused(tmp_path):
    path = zoo.robustbench_checkpoint_path(NAME, "cifar10", "Linf", tmp_path)
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": {}, "args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(BenchError, match="not a readable PyTorch weights file"):
        zoo.load_robustbench_model(NAME, "cifar10", "Linf", tmp_path)


def test_missing_checkpoint_names_the_path(tmp_path):
    expected = tmp_path / "cifar10" / "Linf" / f"{NAME}.pt"
    with pytest.raises(BenchError) as err:
        zoo.load_robustbench_model(NAME, "cifar10", "Linf", tmp_path)
    msg = str(err.value)
    assert str(expected) in msg and "\n" not in msg
    assert not expected.parent.exists()  # nothing created, nothing downloaded


def test_default_model_dir_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv(zoo.MODEL_DIR_ENV, str(tmp_path))
    assert zoo.robustbench_checkpoint_path(NAME) == tmp_path / "cifar10" / "Linf" / f"{NAME}.pt"
    monkeypatch.delenv(zoo.MODEL_DIR_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert zoo.default_model_dir() == tmp_path / "cache" / "bench" / "robustbench"


def test_unknown_name_lists_known_names(tmp_path):
    known = zoo.known_models("cifar10", "Linf")
    with pytest.raises(BenchError) as err:
        zoo.load_robustbench_model("NoSuchModel2099", "cifar10", "Linf", tmp_path)
    msg = str(err.value)
    assert "NoSuchModel2099" in msg and "\n" not in msg
    assert sum(name in msg for name in known) >= 3
    with pytest.raises(BenchError, match=NAME):  # a near miss suggests the right name
        zoo.load_robustbench_model("Zhang2019Theoreticaly", "cifar10", "Linf", tmp_path)


def test_unsupported_entries_and_bad_enums(tmp_path):
    with pytest.raises(BenchError, match="ensemble"):
        zoo.load_robustbench_model("Chen2020Adversarial", "cifar10", "Linf", tmp_path)
    with pytest.raises(BenchError, match="timm"):
        zoo.load_robustbench_model("Debenedetti2022Light_XCiT-S12", "cifar10", "Linf", tmp_path)
    with pytest.raises(BenchError, match="no dataset"):
        zoo.load_robustbench_model(NAME, "mnist", "Linf", tmp_path)
    with pytest.raises(BenchError, match="no threat model"):
        zoo.load_robustbench_model(NAME, "cifar10", "L3", tmp_path)


def test_compat_layer_aliases_pyautoattack_only_without_real_autoattack():
    import pyautoattack
    import pyautoattack.state

    rb = robustbench_compat.import_robustbench()
    assert rb.load_model is rb.utils.load_model
    import importlib.util
    real = sys.modules["autoattack"] is not pyautoattack and importlib.util.find_spec("autoattack")
    if not real:
        assert sys.modules["autoattack"] is pyautoattack
        assert sys.modules["autoattack.state"] is pyautoattack.state
    # the pkg_resources stand-in is gone after the import but robustbench's reference works
    loaders = sys.modules["robustbench.loaders"]
    if getattr(loaders.pkg_resources, "__bench_stub__", False):
        assert "pkg_resources" not in sys.modules
    ids = loaders.pkg_resources.resource_filename("robustbench.loaders",
                                                  "helper_files/imagenet_test_image_ids.txt")
    assert Path(ids).read_text().strip()


def test_compat_layer_never_shadows_real_modules(tmp_path, monkeypatch):
    for mod in ("autoattack", "pkg_resources"):
        (tmp_path / mod).mkdir()
        (tmp_path / mod / "__init__.py").write_text("REAL = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "autoattack", raising=False)
    monkeypatch.delitem(sys.modules, "autoattack.state", raising=False)
    monkeypatch.delitem(sys.modules, "pkg_resources", raising=False)
    robustbench_compat._alias_autoattack()
    assert "autoattack" not in sys.modules  # not aliased: the real one is left to be imported
    with robustbench_compat._temporary_pkg_resources():
        assert "pkg_resources" not in sys.modules
    import autoattack
    assert autoattack.REAL


def test_import_failure_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "robustbench", None)
    with pytest.raises(BenchError, match="cannot import robustbench"):
        robustbench_compat.import_robustbench()


def _record(**aa):
    return {"run_id": "gacd-s0", "role": "student", "method": "gacd", "teacher_id": "trades-wrn",
            "dataset": "cifar10", "arch": "resnet18",
            "metrics": {"clean": 0.8123, "fgsm": 0.6, "pgd20": 0.55, "cw": 0.52, "aa": 0.5012},
            "attack_settings": {"aa": {"name": "aa", "version": "standard", "eps": 8 / 255,
                                       "norm": "Linf", "n": 10000, **aa}},
            "config": {"student_arch": "resnet18", "data": {"name": "cifar10"},
                       "eval": {"eps": 8 / 255, "n": 10000, "aa_n": 10000}}}


def test_export_writes_robustbench_json_and_loadable_checkpoint(tmp_path, load_spy, no_network, monkeypatch):
    torch.manual_seed(0)
    student = build_model("cnn-narrow", 10, 3)
    json_path, ckpt = export.export_robustbench(_record(), student.state_dict(), tmp_path, "Bench2025Gacd")
    assert json_path == tmp_path / "model_info" / "cifar10" / "Linf" / "Bench2025Gacd.json"
    assert ckpt == tmp_path / "models" / "cifar10" / "Linf" / "Bench2025Gacd.pt"
    info = json.loads(json_path.read_text())
    assert info["clean_acc"] == "81.23" and info["autoattack_acc"] == "50.12"
    assert info["eps"] == "8/255" and info["dataset"] == "cifar10"
    assert info["architecture"] == "ResNet-18"
    for key in ("link", "name", "authors", "venue", "reported"):
        assert info[key] == ""
    assert "10000 of the 10000" in info["footnote"] and "standard" in info["footnote"]
    assert "fewer than the full test set" not in info["footnote"]
    float(info["autoattack_acc"]), float(info["clean_acc"])  # RobustBench sorts on these

    fresh = build_model("cnn-narrow", 10, 3)
    load_spy.clear()
    load_weights(fresh, ckpt, "cnn-narrow")
    assert load_spy == [True]
    for k, v in student.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v)
    # the same file where RobustBench's model folder layout expects it, and RobustBench's own load_model
    # reads it once the architecture is in its zoo
    assert zoo.robustbench_checkpoint_path("Bench2025Gacd", "cifar10", "Linf", tmp_path / "models") == ckpt
    rb_utils = robustbench_compat.import_robustbench().utils
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel
    monkeypatch.setitem(rb_utils.all_models[BenchmarkDataset.cifar_10][ThreatModel.Linf], "Bench2025Gacd",
                        {"model": lambda: build_model("cnn-narrow", 10, 3), "gdrive_id": "none"})
    loaded = rb_utils.load_model("Bench2025Gacd", model_dir=tmp_path / "models", dataset="cifar10",
                                 threat_model="Linf")
    for k, v in student.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    assert not no_network


def test_leaderboard_entry_is_written_in_robustbench_model_info_layout(tmp_path):
    robustbench_compat.import_robustbench()
    from robustbench.utils import ModelInfo

    entry = export.leaderboard_entry(_record())
    assert isinstance(entry.autoattack_acc, float) and isinstance(entry.eps, float)
    assert (entry.dataset, entry.threat_model, entry.architecture) == ("cifar10", "Linf", "ResNet-18")
    assert entry.clean_acc == pytest.approx(0.8123) and entry.autoattack_acc == pytest.approx(0.5012)
    json_path, _ = export.export_robustbench(_record(), {"w": torch.zeros(2)}, tmp_path, "Layout")
    info = json.loads(json_path.read_text())
    # robustbench's own ModelInfo fields for an L-p leaderboard, in its order (no corruption fields)
    rb_fields = [f.name for f in dataclasses.fields(ModelInfo) if not f.name.startswith("corruptions")]
    assert list(info) == rb_fields
    assert info == entry.model_info()
    assert float(info["clean_acc"]) == pytest.approx(100 * entry.clean_acc, abs=0.005)
    assert info["footnote"] == entry.footnote and info["number_forward_passes"] == entry.number_forward_passes
    l2 = export.LeaderboardEntry("cifar10", "L2", 0.5, "ResNet-18", 0.6, reported=0.61)
    assert l2.model_info()["eps"] == "0.5" and l2.model_info()["reported"] == "61.00"
    assert l2.model_info()["clean_acc"] == ""
    for bad in ({"autoattack_acc": 50.1}, {"clean_acc": -0.1}, {"threat_model": "L3"}, {"dataset": "stl10"},
                {"eps": 0}, {"eps": True}):
        with pytest.raises(BenchError):
            dataclasses.replace(l2, **bad)


def test_export_notes_subset_and_refuses_without_aa(tmp_path):
    sd = {"w": torch.zeros(2)}
    json_path, _ = export.export_robustbench(_record(n=1000), sd, tmp_path, "Sub")
    assert "fewer than the full test set" in json.loads(json_path.read_text())["footnote"]
    rec = _record()
    del rec["metrics"]["aa"]
    with pytest.raises(BenchError, match="AutoAttack"):
        export.export_robustbench(rec, sd, tmp_path, "NoAA")
    rec = _record()
    rec["config"]["data"]["name"] = "digits@0-4"
    with pytest.raises(BenchError, match="leaderboards"):
        export.export_robustbench(rec, sd, tmp_path, "Digits")
    with pytest.raises(BenchError):
        export.export_robustbench(_record(), sd, tmp_path, "../escape")
    assert not (tmp_path / "model_info" / "digits@0-4").exists()


def test_format_eps():
    assert export.format_eps(8 / 255) == "8/255"
    assert export.format_eps(0.031) == "0.031"
    assert export.format_eps(0.5) == "0.5"


# --------------------------------------------------------------------------------------------
# robustbench's load_model, guarded: no downloads, weights_only only
# --------------------------------------------------------------------------------------------

def test_robustbench_load_path_refuses_to_download(tmp_path, monkeypatch, no_network):
    """A file that vanishes between bench's check and robustbench's read makes robustbench try to
    download it: bench's guard refuses, gdown is never reached, robustbench's functions come back."""
    rb_utils = robustbench_compat.import_robustbench().utils
    before = (rb_utils.download_gdrive, rb_utils.download_gdrive_new)
    entry = zoo._zoo("cifar10", "Linf")[NAME]
    missing = zoo.robustbench_checkpoint_path(NAME, "cifar10", "Linf", tmp_path)
    monkeypatch.setattr(zoo, "locate_robustbench_model", lambda *a, **k: (entry, missing))
    with pytest.raises(BenchError, match="never downloads") as err:
        zoo.load_robustbench_model(NAME, "cifar10", "Linf", tmp_path)
    assert "\n" not in str(err.value) and not missing.exists() and not no_network
    assert (rb_utils.download_gdrive, rb_utils.download_gdrive_new) == before


def test_unsafe_torch_load_default_is_refused(zhang, monkeypatch, load_spy):
    _, model_dir = zhang
    monkeypatch.setenv(zoo.NO_WEIGHTS_ONLY_ENV, "1")
    with pytest.raises(BenchError, match="weights_only"):
        zoo.load_robustbench_model(NAME, "cifar10", "Linf", model_dir)
    assert load_spy == []  # refused before anything is read


def test_checkpoint_of_another_network_does_not_fit(tmp_path):
    path = zoo.robustbench_checkpoint_path(NAME, "cifar10", "Linf", tmp_path)
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": build_model("cnn-narrow", 10, 3).state_dict()}, path)
    with pytest.raises(BenchError, match="does not fit") as err:
        zoo.load_robustbench_model(NAME, "cifar10", "Linf", tmp_path)
    assert "\n" not in str(err.value)


# --------------------------------------------------------------------------------------------
# Architecture facts on the registry's entries
# --------------------------------------------------------------------------------------------

def test_every_twin_and_alias_named_on_an_entry_is_registered():
    named = 0
    for name, arch in ARCHS.items():
        assert arch.name == name
        for other in (arch.smoke, arch.published_as):
            if other is not None:
                assert other in ARCHS, f"{name} names unregistered {other}"
                assert other != name
                named += 1
    assert named >= 5


def test_parameter_notes_on_the_entries_are_true():
    """An entry's summary that gives "about N parameters" (bench list shows it) matches the network."""
    import re

    checked = 0
    for name, arch in ARCHS.items():
        note = re.search(r"about ([0-9.]+)([kM]) parameters", arch.summary)
        if note:
            count = sum(p.numel() for p in build_model(name, 10, 1 if name.startswith("cnn") else 3).parameters())
            scale = {"k": 1e3, "M": 1e6}[note[2]]
            assert round(count / scale, len(note[1].partition(".")[2])) == float(note[1]), (name, count)
            checked += 1
    assert checked >= 5


def test_the_three_users_read_the_entries():
    from bench.config.presets import get_preset, smoke
    from bench.report.references import published

    assert smoke_arch("wrn-34-10") == ARCHS.get("wrn-34-10").smoke == "wrn-10-1"
    assert smoke_arch("cnn-narrow") == "cnn-narrow" and smoke_arch("no-such-arch") == "no-such-arch"
    s = smoke(get_preset("cifar10")).config
    assert (s.student_arch, s.teacher.arch) == (ARCHS.get("resnet18").smoke, ARCHS.get("wrn-34-10").smoke)
    assert published_arch("resnet18-tiny") == "resnet18" and published_arch("resnet18") == "resnet18"
    assert published("ard", "student", "cifar10", "resnet18-tiny") == published("ard", "student", "cifar10", "resnet18")
    assert published("ard", "student", "cifar10", "resnet18")[0]  # there are published numbers to match
    assert leaderboard_name("wrn-34-10") == "WideResNet-34-10" and leaderboard_name("wrn-10-1") == "wrn-10-1"


def test_registering_an_architecture_twice_raises_and_unknown_lists_names():
    with pytest.raises(ValueError, match="already registered"):
        register_arch("resnet18")(lambda num_classes, in_channels=3, mean=None, std=None: None)
    with pytest.raises(BenchError) as err:
        build_model("resnet-19", 10)
    assert "resnet18" in str(err.value) and "wrn-34-10" in str(err.value)


def test_bench_list_shows_the_facts(capsys):
    from bench.cli.main import main
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.split()[:1] == ["wrn-34-10"])
    assert "WideResNet-34-10" in line and "smoke twin wrn-10-1" in line and "46.2M parameters" in line
    assert any(ln.split()[:1] == ["resnet18-tiny"] and "published as resnet18" in ln for ln in out.splitlines())


def _with_corruptions(source="generated on the fly (bench/eval/corruptions.py: make_cifar_c.py's tables)", n=1000):
    rec = _record()
    per = {"gaussian_noise": [0.7, 0.6, 0.5, 0.4, 0.3], "fog": [0.9, 0.85, 0.8, 0.75, 0.7]}
    rec["metrics"]["corruptions"] = 0.65
    rec["corruptions"] = {"accuracy": per}
    rec["attack_settings"]["corruptions"] = {"n": n, "corruptions": list(per), "severities": [1, 2, 3, 4, 5],
                                             "source": source, "seed": 0, "chosen": "as configured"}
    return rec


def test_a_run_with_corruptions_gets_a_row_on_robustbenchs_corruptions_leaderboard(tmp_path):
    """Issue 22: the corruption accuracy goes where RobustBench's format has a field for it, in the layout and
    field order of its own corruptions JSONs, with the per-(corruption, severity) row robustbench.eval reads."""
    robustbench_compat.import_robustbench()
    from robustbench.utils import ModelInfo

    sd = {"w": torch.zeros(2)}
    written = export.export_submissions(_with_corruptions(), sd, tmp_path, "Both")
    lp, corr, csv = (tmp_path / "model_info" / "cifar10" / "Linf" / "Both.json",
                     tmp_path / "model_info" / "cifar10" / "corruptions" / "Both.json",
                     tmp_path / "model_info" / "cifar10" / "corruptions" / "Both.unaggregated.csv")
    assert {lp, corr, csv, tmp_path / "models" / "cifar10" / "corruptions" / "Both.pt"} <= set(written)
    info = json.loads(corr.read_text())
    wanted = [f.name for f in dataclasses.fields(ModelInfo)
              if f.name not in ("autoattack_acc", "corruptions_acc_3d", "corruptions_mce_3d")]
    assert list(info) == wanted and info["eps"] is None and info["corruptions_acc"] == "65.00"
    assert info["clean_acc"] == "81.23" and info["corruptions_mce"] == ""
    assert "not comparable with the leaderboard" in info["footnote"] and "first 1000 of the 10000" in info["footnote"]
    assert "Only gaussian_noise, fog" in info["footnote"] and "AlexNet" in info["footnote"]
    assert "corruptions_acc" not in json.loads(lp.read_text())  # the L-p row is unchanged
    table = pd.read_csv(csv, header=[0, 1], index_col=0)  # as robustbench.eval reads unaggregated_results.csv
    assert list(table.index) == ["Both"] and table.loc["Both", ("fog", "2")] == pytest.approx(0.85)
    assert table.loc["Both"].mean() == pytest.approx(0.65)  # its corruptions_acc is this row's mean


def test_corruption_export_from_the_published_files_and_without_autoattack(tmp_path):
    rec = _with_corruptions(source="published .npy files in /data/CIFAR-10-C", n=10000)
    del rec["metrics"]["aa"]
    written = export.export_submissions(rec, {"w": torch.zeros(2)}, tmp_path, "CorrOnly")
    assert not (tmp_path / "model_info" / "cifar10" / "Linf").exists() and len(written) == 3
    note = json.loads(written[0].read_text())["footnote"]
    assert "Images from the published .npy files in /data/CIFAR-10-C." in note and "not comparable" not in note
    assert "Fewer than the full test set" not in note
    del rec["metrics"]["corruptions"]
    with pytest.raises(BenchError, match="AutoAttack"):
        export.export_submissions(rec, {"w": torch.zeros(2)}, tmp_path, "Neither")
    with pytest.raises(BenchError, match="no eps"):
        export.LeaderboardEntry("cifar10", "corruptions", 8 / 255, "ResNet-18", None, corruptions_acc=0.5)
    with pytest.raises(BenchError, match="corruptions_acc"):
        export.LeaderboardEntry("cifar10", "corruptions", None, "ResNet-18", None)
