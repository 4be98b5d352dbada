"""RobustBench zoo: the import shims, offline teacher loading (weights_only) and export."""
import argparse
import json
import sys
from pathlib import Path

import pytest
import torch

from bench import zoo
from bench.errors import BenchError
from bench.models import build_model

NAME = "Zhang2019Theoretically"


@pytest.fixture
def load_spy(monkeypatch):
    """Records the weights_only argument of every torch.load call."""
    calls = []
    real = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    return calls


@pytest.fixture(scope="module")
def zhang(tmp_path_factory):
    """RobustBench's architecture for Zhang2019Theoretically with random weights, saved where
    RobustBench looks for it (with the 'module.' prefix and 'state_dict' wrapper of real files)."""
    zoo.import_robustbench()
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


def test_offline_teacher_matches_robustbench_model(zhang, load_spy):
    raw, model_dir = zhang
    model = zoo.load_robustbench_model(NAME, "cifar10", "Linf", model_dir)
    assert load_spy and all(w is True for w in load_spy)
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

    rb = zoo.import_robustbench()
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
    zoo._alias_autoattack()
    assert "autoattack" not in sys.modules  # not aliased: the real one is left to be imported
    with zoo._temporary_pkg_resources():
        assert "pkg_resources" not in sys.modules
    import autoattack
    assert autoattack.REAL


def test_import_failure_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "robustbench", None)
    with pytest.raises(BenchError, match="cannot import robustbench"):
        zoo.import_robustbench()


def _record(**aa):
    return {"run_id": "gacd-s0", "role": "student", "method": "gacd", "teacher_id": "trades-wrn",
            "dataset": "cifar10", "arch": "resnet18",
            "metrics": {"clean": 0.8123, "fgsm": 0.6, "pgd20": 0.55, "cw": 0.52, "aa": 0.5012},
            "attack_settings": {"aa": {"name": "aa", "version": "standard", "eps": 8 / 255,
                                       "norm": "Linf", "n": 10000, **aa}},
            "config": {"student_arch": "resnet18", "data": {"name": "cifar10"},
                       "eval": {"eps": 8 / 255, "n": 10000, "aa_n": 10000}}}


def test_export_writes_robustbench_json_and_loadable_checkpoint(tmp_path, load_spy):
    torch.manual_seed(0)
    student = build_model("cnn-narrow", 10, 3)
    json_path, ckpt = zoo.export_robustbench(_record(), student.state_dict(), tmp_path, "Bench2025Gacd")
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
    zoo.load_robustbench_weights(fresh, ckpt)
    assert load_spy == [True]
    for k, v in student.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v)
    # the same file where RobustBench's model folder layout expects it
    assert zoo.robustbench_checkpoint_path("Bench2025Gacd", "cifar10", "Linf", tmp_path / "models") == ckpt


def test_export_notes_subset_and_refuses_without_aa(tmp_path):
    sd = {"w": torch.zeros(2)}
    json_path, _ = zoo.export_robustbench(_record(n=1000), sd, tmp_path, "Sub")
    assert "fewer than the full test set" in json.loads(json_path.read_text())["footnote"]
    rec = _record()
    del rec["metrics"]["aa"]
    with pytest.raises(BenchError, match="AutoAttack"):
        zoo.export_robustbench(rec, sd, tmp_path, "NoAA")
    rec = _record()
    rec["config"]["data"]["name"] = "digits@0-4"
    with pytest.raises(BenchError, match="leaderboards"):
        zoo.export_robustbench(rec, sd, tmp_path, "Digits")
    with pytest.raises(BenchError):
        zoo.export_robustbench(_record(), sd, tmp_path, "../escape")


def test_format_eps():
    assert zoo.format_eps(8 / 255) == "8/255"
    assert zoo.format_eps(0.031) == "0.031"
    assert zoo.format_eps(0.5) == "0.5"
