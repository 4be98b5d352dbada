"""Issue 20: the two protocols (bench/config/protocol.py), the recipes (bench.methods.base.Recipe) and the options
the official recipes turn on (items 3-6)."""
from dataclasses import replace

import pytest
import torch

from bench.cli.main import main
from bench.config.presets import PAPER_PRESETS
from bench.config.protocol import RECIPE_KEYS, method_config, method_label, recipe_rows
from bench.runs.identity import student_run_id
from bench.methods import METHODS, parse_method

C10 = PAPER_PRESETS["cifar10-resnet18"].config
C100 = PAPER_PRESETS["cifar100-resnet18"].config
STATED = [name for name, cls in METHODS.items() if cls.official is not None and cls.official.code]


def official(cfg, name):
    return method_config(replace(cfg, protocol="official"), METHODS.get(name))


def test_common_protocol_is_the_config_itself_for_every_method():
    for name, cls in METHODS.items():
        assert method_config(C10, cls) == C10, name


@pytest.mark.parametrize("name", STATED)
def test_every_official_recipe_trains_in_fp32_on_raw_pixels_and_names_its_source(name):
    """Items 3 and 5: the official scripts train in fp32; the robust ones on ToTensor() pixels (RepDistiller's
    KD and CRD normalise in their input pipeline, as the model does here); every field a recipe changes
    carries the file and line it was read from."""
    cls = METHODS.get(name)
    for cfg in (C10, C100):
        m = official(cfg, name)
        assert m.precision == "fp32" and m.protocol == "official"
        assert m.input_norm == ("none" if cls.inner else "dataset")
        rows = recipe_rows(name, cfg)
        assert rows and all("(no line recorded)" not in r["source"] for r in rows), rows


def test_recipes_as_the_scripts_run_them():
    """What `paper --protocol official --dry-run` must list (the issue's checks)."""
    rslad, adaad, iad, ard = (official(C10, m) for m in ("rslad", "adaad", "iad", "ard"))
    assert rslad.train.epochs == 300 and rslad.train.milestones == (215, 260, 285)
    assert adaad.train.weight_decay == 5e-4 and adaad.train.milestones == (100, 150)
    assert ard.train.milestones == (100,) and ard.train.checkpoint == "last"
    for name in ("rslad", "iad", "adaad"):
        assert official(C100, name).train.batch_size == 128, name
    assert official(C100, "ard").train.batch_size == 256
    assert iad.train.checkpoint == "best-test-pgd10" and adaad.train.checkpoint == "best-test-pgd10"
    trades = official(C10, "trades")
    assert (trades.attack.eps, round(trades.attack.eps * trades.attack.step_ratio, 6)) == (0.031, 0.007)


def test_official_labels_turn_on_the_scripts_clean_forward_only_under_official():
    off = replace(C10, protocol="official")
    assert method_label("ard:scale=0.1", off) == "ard:scale=0.1:clean_pass=True"
    assert method_label("ard:scale=0.1", C10) == "ard:scale=0.1"
    assert method_label("ard:scale=0.1:clean_pass=false", off) == "ard:scale=0.1"  # the user's word stands
    assert method_label("gacd", off) == "gacd"


def test_the_protocol_is_part_of_every_run_id():
    """A finished common run is never reused as official -- GACD's official recipe is the common config,
    and its run id still differs."""
    for name in ("gacd", "ard", "natural"):
        spec = parse_method(name)
        common = student_run_id(spec, method_config(C10, spec.cls), "t")
        off = student_run_id(spec, official(C10, name), "t")
        assert common != off, name


def test_limit_caps_any_recipe():
    capped = method_config(replace(C10, protocol="official", limit=replace(C10.limit, epochs=2, attack_steps=3)),
                           METHODS.get("rslad"))
    assert capped.train.epochs == 2 and capped.train.milestones == () and capped.attack.steps == 3


@pytest.mark.parametrize("argv, says", [
    (["run", "--preset", "cifar10-resnet18", "--protocol", "official", "--epochs", "3"], "train.epochs"),
    (["run", "--protocol", "official"], "digits@0-4 has none"),
    (["paper", "cifar10-resnet18", "--protocol", "official", "--bf16"], "fp32"),
    (["run", "--preset", "cifar10-resnet18", "--protocol", "official", "--bf16"], "precision"),
])
def test_what_the_official_protocol_refuses_is_one_line(capsys, argv, says):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0], err


def test_recipe_keys_are_config_fields():
    flat = {f"{a}.{b}" for a in ("train", "attack") for b in getattr(C10, a).__dataclass_fields__} | set(
        C10.__dataclass_fields__)
    assert set(RECIPE_KEYS) <= flat


def _bn_model():
    torch.manual_seed(0)
    from bench.models import build_model
    return build_model("cnn-narrow", 3, 1)


@pytest.mark.parametrize("name, order", [("ard", "adv clean"), ("trades", "clean adv clean"),
                                         ("adaad", "clean adv"), ("iad", "adv adv clean")])
def test_clean_pass_moves_batch_norm_statistics_as_the_script_and_nothing_else(name, order):
    """Item 4: the official scripts run S(x) in train mode every step even where its loss weight is 0 (ARD
    main.py:126; TRADES' second clean forward; AdaAD's `net(inputs)` before the adversarial one; IAD's before
    its warm-up ends). With clean_pass the running statistics are what that order of forwards gives; the loss
    terms (and so the gradients) are unchanged."""
    from bench.methods.base import Batch, Context

    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(8, 1, 8, 8, generator=g), torch.randint(0, 3, (8,), generator=g)
    x_adv = (x + 0.1 * torch.randn(8, 1, 8, 8, generator=g)).clamp(0, 1)
    teacher = _bn_model().eval()
    ctx = Context(num_classes=3, n_train=8, train_labels=y, student_dim=32, teacher_dim=32, device=torch.device("cpu"),
                  epochs=10, seed=0)
    out = {}
    for flag in (False, True):
        student = _bn_model().train()
        m = parse_method(f"{name}:clean_pass={flag}").build(ctx)
        terms = m.losses(Batch(x, y, torch.arange(8), student, teacher, epoch=0), x_adv)
        out[flag] = ({k: v.detach().item() for k, v in terms.items()}, student.body[0][1].running_mean.clone())
    assert out[True][0] == pytest.approx(out[False][0], rel=1e-6)
    assert not torch.equal(out[True][1], out[False][1])
    # the train-mode forwards the script runs in a step, in its order: replayed on a fresh student
    ref = _bn_model().train()
    with torch.no_grad():
        for which in order.split():
            ref(x if which == "clean" else x_adv)
    assert torch.allclose(out[True][1], ref.body[0][1].running_mean, atol=1e-7)


def test_trades_teacher_trains_with_trades_own_attack(monkeypatch, tmp_path):
    """Item 6: the CIFAR TRADES teacher trained here uses train_trades_cifar10.py's eps 0.031 and step 0.007,
    not the students' 8/255 and 2/255; its cache key says so."""
    import bench.train.teacher as teacher_mod
    from bench.config.presets import get_preset
    from bench.data.sources import load_dataset

    seen = {}

    def fake_train(model, method, data, train_cfg, attack_cfg, *args, **kwargs):
        seen["attack"] = attack_cfg
        return [{"seconds": 0.0}]
    monkeypatch.setattr(teacher_mod, "train_model", fake_train)
    cfg = get_preset("cifar10").config
    tc = replace(cfg.teacher, arch="cnn-narrow", train=replace(cfg.teacher.train, epochs=1))
    data = load_dataset("digits@0-4", train_limit=64)
    got = teacher_mod.get_teacher(replace(cfg, teacher=tc), 0, data, tmp_path, torch.device("cpu"), False)
    assert (seen["attack"].eps, round(seen["attack"].eps * seen["attack"].step_ratio, 6)) == (0.031, 0.007)
    key = teacher_mod._trained_key(replace(cfg, teacher=tc), tc, 0, data)[1]
    assert key["attack"]["eps"] == 0.031 and got.teacher_id.startswith("trades-")


# --- recipes per data set and per student architecture (what an author checking our row expects) ----

def _plan(name: str) -> str:
    from bench.config.presets import smoke
    from bench.runs.estimate import recipe_plan_lines
    preset = PAPER_PRESETS[name]
    full = replace(preset, config=replace(preset.config, protocol="official"))
    labels = tuple(method_label(m, full.config) for m in full.methods)
    return "\n".join(recipe_plan_lines(replace(full, methods=labels))), smoke(replace(full, methods=labels))


@pytest.mark.parametrize("preset", sorted(PAPER_PRESETS))
def test_every_paper_preset_plans_every_method_under_both_protocols(preset):
    """Each method's config exists under each protocol, the smoke twin's too (a recipe's per-student
    changes once clashed with its per-data-set ones on MobileNetV2: a TypeError before any work)."""
    from bench.config.presets import smoke
    for p in (PAPER_PRESETS[preset], smoke(PAPER_PRESETS[preset])):
        for protocol in ("common", "official"):
            cfg = replace(p.config, protocol=protocol)
            for label in p.methods:
                assert method_config(cfg, parse_method(method_label(label, cfg)).cls).protocol == protocol


def _rows(text: str) -> dict[str, str]:
    """method label -> its plan line and the note lines under it."""
    rows, label = {}, None
    for ln in text.splitlines():
        if ln.startswith("      ") and label:
            rows[label] += "\n" + ln.strip()
        elif ln.startswith("  "):
            label, _, rest = ln.strip().partition(": ")
            rows[label] = rest
    return rows


def test_cifar100_official_plan_shows_magnitudes_teachers_and_borrowed_recipes():
    text, _ = _plan("cifar100-resnet18")
    rows = _rows(text)
    # the scripts' arithmetic at C = 100 (the mean over the classes), IGDM's author-noted alpha
    assert {"fair-ard:scale=0.01:clean_pass=True", "fair-rslad:scale=0.01", "absld:scale=0.01:temps=code",
            "igdm:alpha=10"} <= set(rows)
    # every distilling row names its teacher: its recipe's own where that is a zoo entry, else the preset's
    own = {"rslad:scale=0.1", "mtard:scale=0.1"}
    assert all("teacher RobustBench Gowal2020Uncovering (wrn-70-16)" in rows[label] for label in own)
    assert all("teacher RobustBench Chen2021LTD_WRN34_10" in row for label, row in rows.items()
               if parse_method(label).cls.needs_teacher and label not in own)
    assert "not this row's teacher" not in text
    # a method whose script has no CIFAR-100 recipe runs the CIFAR-10 one, and says so
    borrowed = {parse_method(label).name for label, row in rows.items() if "CIFAR-10 recipe applied" in row}
    assert borrowed == {"trades", "mtard", "absld", "fair-ard", "fair-rslad", "fair-iad"}


def test_mobilenetv2_official_plan_runs_dgad_s_mobilenet_form_and_fixed_divisor():
    text, smoked = _plan("cifar10-mobilenetv2")
    assert "dgad:divisor=128:mobilenet_form=True:" in text
    assert "adaad:scale=0.1:clean_pass=True" in text
    assert "teacher RobustBench Chen2021LTD_WRN34_20 (wrn-34-20)" in _rows(text)["adaad:scale=0.1:clean_pass=True"]
    assert "kd: 240 epochs, lr 0.01" in text               # RepDistiller's MobileNetV2 lr over its schedule
    assert "CIFAR-100 recipe applied" in text              # RepDistiller's script is CIFAR-100 only
    # the smoke twin of MobileNetV2 runs the same form
    assert method_label("dgad", smoked.config) == "dgad:divisor=128:mobilenet_form=True"
    resnet = replace(C10, protocol="official")
    assert method_label("dgad", resnet) == "dgad:divisor=128"


def test_a_row_carries_its_recipe_notes():
    from bench.runs.orchestrate import row_note
    cfg = replace(C100, protocol="official")
    assert "CIFAR-10 recipe applied" in row_note(METHODS.get("fair-ard"), cfg)
    assert row_note(METHODS.get("fair-ard"), replace(cfg, protocol="common")) == ""
    from bench.config.presets import smoke
    tiny = replace(smoke(PAPER_PRESETS["cifar100-resnet18"]).config, protocol="official")   # a trained teacher
    assert "published with RobustBench Gowal2020Uncovering (WRN-70-16), not this row's teacher" in \
        row_note(METHODS.get("rslad"), tiny)
    assert "not this row's teacher" not in row_note(METHODS.get("rslad"), cfg)   # it runs the published one
    assert row_note(METHODS.get("ard"), replace(C10, protocol="official")) == ""   # TRADES' WRN-34-10, as published


# --- each recipe's own teacher under official ------------------------------------------------------

def test_official_uses_each_recipe_s_zoo_teacher_and_common_the_run_s():
    from bench.config.presets import smoke
    from bench.config.protocol import recipe_notes

    assert official(C10, "adaad").teacher.name == "Chen2021LTD_WRN34_20"       # AdaAD's README
    assert official(C10, "adaad").teacher.arch == "wrn-34-20"
    assert official(C100, "rslad").teacher.name == official(C100, "mtard").teacher.name == "Gowal2020Uncovering"
    assert official(C100, "adaad").teacher == C100.teacher                      # the preset's is AdaAD's already
    assert official(C10, "ard").teacher == C10.teacher and official(C10, "gacd").teacher == C10.teacher
    assert method_config(C10, METHODS.get("adaad")).teacher == C10.teacher      # common: one teacher for all
    tiny = replace(smoke(PAPER_PRESETS["cifar10-resnet18"]).config, protocol="official")
    assert method_config(tiny, METHODS.get("adaad")).teacher == tiny.teacher     # a trained teacher stays
    assert "published with RobustBench Chen2021LTD_WRN34_20" in "; ".join(recipe_notes(METHODS.get("adaad"), tiny))


def test_a_dry_run_lists_every_recipe_teacher_it_lacks(tmp_path, monkeypatch):
    from bench.runs.estimate import missing_files
    monkeypatch.setenv("BENCH_ROBUSTBENCH_DIR", str(tmp_path))
    cfg = replace(C100, protocol="official")
    teachers = [m.what for m in missing_files(cfg, ["ard:scale=0.01", "rslad:scale=0.1", "mtard:scale=0.1"])
                if m.what.startswith("teacher")]
    assert teachers == ["teacher robustbench:Chen2021LTD_WRN34_10", "teacher robustbench:Gowal2020Uncovering"]


@pytest.mark.slow
def test_a_grid_loads_each_distinct_teacher_once_with_a_row_each(capsys, tmp_path, monkeypatch):
    """A method whose config names another teacher (as an official recipe's zoo teacher does) trains
    against it, the run-set gets one teacher row per distinct teacher, and the others keep the run's."""
    import json

    import bench.runs.identity as identity
    import bench.runs.orchestrate as orchestrate
    from bench.config.schema import FileTeacher
    from bench.models import build_model

    for name, seed in (("t.pt", 0), ("own.pt", 1)):
        torch.manual_seed(seed)
        torch.save(build_model("cnn-wide", 5, 1).state_dict(), tmp_path / name)
    own = FileTeacher(str(tmp_path / "own.pt"), "cnn-wide", "trades")

    def with_own(cfg, cls):
        out = method_config(cfg, cls)
        return replace(out, teacher=own) if cls.name == "kd" else out
    monkeypatch.setattr(orchestrate, "method_config", with_own)
    monkeypatch.setattr(identity, "method_config", with_own)
    assert main(["run", "--methods", "kd,ard", "--teacher", str(tmp_path / "t.pt"), "--teacher-method", "pgd-at",
                 "--epochs", "1", "--n", "20", "--attacks", "clean", "--transfer", "none", "--no-structure",
                 "--no-sanity", "--seeds", "0,1", "--name", "g", "--results", str(tmp_path / "r"),
                 "--reports", str(tmp_path / "p")]) == 0
    runs = json.loads((tmp_path / "p" / "g" / "runs.json").read_text())
    teachers = {r["teacher_id"] for r in runs if r["role"] == "teacher"}
    assert len(teachers) == 2 and len([r for r in runs if r["role"] == "teacher"]) == 2
    kd = {r["teacher_id"] for r in runs if r["method"] == "kd"}
    ard = {r["teacher_id"] for r in runs if r["method"].startswith("ard")}
    assert len(kd) == len(ard) == 1 and kd != ard and kd | ard == teachers
    manifest = json.loads((tmp_path / "r" / "g" / "runset.json").read_text())
    assert sum(e["role"] == "teacher" for e in manifest["entries"]) == 2
