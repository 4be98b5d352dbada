"""--config YAML files, dotted overrides and --print-config (bench/config/files.py), typed against
bench/config/schema.py's dataclasses."""
import dataclasses
import typing

import pytest

from bench.cli.commands import _resolve_run
from bench.cli.main import main
from bench.cli.parser import build_parser
from bench.config import files as configfile
from bench.config.schema import FileTeacher, RunConfig, TrainedTeacher, ZooTeacher
from bench.runs.identity import plan
from bench.methods import parse_method

FLAGS = ["run", "--methods", "ard,kd:t=2", "--seeds", "1,2", "--epochs", "3", "--eps", "0.1",
         "train.weight_decay=2e-4", "eval.aa_n=100", "teacher.train.epochs=5"]


def resolve(argv):
    """What `python -m bench` resolves ``argv`` to, without running it."""
    args, extra = build_parser().parse_known_args(argv)
    args.overrides = [*args.overrides, *extra]
    r = _resolve_run(args)
    return r.preset, r.config, list(r.methods), r.seeds


def printed(capsys, argv) -> str:
    assert main([*argv, "--print-config"]) == 0
    return capsys.readouterr().out


def run_ids(cfg, methods, seeds, data):
    return [e.run_id for e in plan(cfg, [parse_method(m) for m in methods], seeds, data)]


def test_print_config_then_config_is_the_same_run(capsys, tmp_path, digits):
    text = printed(capsys, FLAGS)
    (tmp_path / "x.yaml").write_text(text)
    assert printed(capsys, ["run", "--config", str(tmp_path / "x.yaml")]) == text
    _, cfg, methods, seeds = resolve(FLAGS)
    _, again, methods2, seeds2 = resolve(["run", "--config", str(tmp_path / "x.yaml")])
    assert again == cfg and (methods2, seeds2) == (methods, seeds) == (["ard", "kd:t=2"], (1, 2))
    assert (cfg.train.weight_decay, cfg.eval.aa_n, cfg.eval.eps, cfg.train.epochs, cfg.teacher.train.epochs) == \
        (2e-4, 100, 0.1, 3, 5)
    assert cfg.eval.curve_eps == tuple(round(e * 0.1 / 0.2, 6) for e in RunConfig().eval.curve_eps)  # flag logic kept
    ids = run_ids(cfg, methods, seeds, digits)
    assert ids == run_ids(again, methods2, seeds2, digits)
    assert ids != run_ids(RunConfig(), methods, seeds, digits)


def test_precedence_preset_file_flags_dotted(tmp_path):
    (tmp_path / "c.yaml").write_text("preset: gacd-ablation\nmethods: [kd]\nseeds: [4]\n"
                                     "train: {epochs: 4, lr: 0.01}\neval: {n: 50}\n")
    c = ["run", "--config", str(tmp_path / "c.yaml")]
    preset, cfg, methods, seeds = resolve(c)
    assert (preset.config.preset, cfg.preset, methods, seeds) == ("gacd-ablation", "gacd-ablation", ["kd"], (4,))
    assert (cfg.train.epochs, cfg.train.lr, cfg.eval.n, cfg.train.batch_size) == (4, 0.01, 50, 64)
    _, cfg, methods, seeds = resolve([*c, "--epochs", "3", "--methods", "ard", "--seeds", "0"])
    assert (cfg.train.epochs, cfg.train.lr, methods, seeds) == (3, 0.01, ["ard"], (0,))  # flags beat the file
    _, cfg, methods, seeds = resolve([*c, "--epochs", "3", "train.epochs=5", "--n", "7", "seeds=[8, 9]"])
    assert (cfg.train.epochs, cfg.eval.n, seeds) == (5, 7, (8, 9))  # dotted overrides beat flags
    _, cfg, _, _ = resolve([*c, "--preset", "digits"])  # --preset beats the file's preset:
    assert (cfg.preset, cfg.train.epochs) == ("digits", 4)


def _leaves(cls, prefix=""):
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if typing.get_args(tp) and all(dataclasses.is_dataclass(a) for a in typing.get_args(tp)):
            tp = typing.get_args(tp)[0]  # the teacher: its default kind here, the others in the next test
        if dataclasses.is_dataclass(tp):
            yield from _leaves(tp, f"{prefix}{f.name}.")
        elif not (f.name == "kind" and typing.get_origin(tp) is typing.Literal):
            yield f"{prefix}{f.name}", tp


def _other_value(tp, current):
    """A valid value of type ``tp`` that differs from ``current``."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) is typing.Literal:
        return next(a for a in typing.get_args(tp) if a != current)
    if typing.get_origin(tp) is tuple:
        return [{str: "x", int: 3, float: 0.25}[typing.get_args(tp)[0]]]
    if args and len(args) < len(typing.get_args(tp)):  # Optional[X]
        return None if current is not None else _other_value(args[0], None)
    if len(args) > 1:  # a Union of tuples or None: the tuple
        return _other_value(args[0], current)
    return {bool: lambda v: not v, int: lambda v: (v or 0) + 1, float: lambda v: (v or 0) * 2 + 0.5,
            str: lambda v: f"{v}x"}[tp](current)


@pytest.mark.slow
def test_every_field_is_reachable_by_a_dotted_override():
    base = RunConfig()
    flat = configfile._flat(configfile._plain(dataclasses.asdict(base)))
    checked = 0
    for key, tp in _leaves(RunConfig):
        if key in ("preset", "seed"):  # the base preset (--preset) and the grid's seeds, not fields to set
            continue
        if key in ("teacher.attack", "natural_teacher.attack"):  # None (the run's attack) or a mapping: below
            continue
        value = _other_value(tp, flat[key])
        cfg, _ = configfile.apply(base, configfile.parse_dotted([f"{key}={configfile._scalar(value)}"]))
        got = configfile._flat(configfile._plain(dataclasses.asdict(cfg)))
        assert got[key] == value, key
        assert {k: v for k, v in got.items() if k != key} == {k: v for k, v in flat.items() if k != key}, key
        checked += 1
    # every leaf but preset, seed, the kind (the next test) and the attack of teacher and natural_teacher
    assert checked == len(flat) - 6
    # the trained teacher's own training attack: a mapping over AttackConfig's defaults, or null (the run's)
    cfg, _ = configfile.apply(base, configfile.parse_dotted(["teacher.attack.eps=0.031", "teacher.attack.steps=7"]))
    assert (cfg.teacher.attack.eps, cfg.teacher.attack.steps, cfg.teacher.attack.step_ratio) == (0.031, 7, 0.25)
    assert configfile.apply(cfg, configfile.parse_dotted(["teacher.attack=null"]))[0].teacher.attack is None


def test_every_teacher_kind_is_reachable(tmp_path, capsys):
    for kind in ("robustbench", "file"):
        for key, tp in _leaves({"robustbench": ZooTeacher, "file": FileTeacher}[kind], "teacher."):
            default = getattr({"robustbench": ZooTeacher, "file": FileTeacher}[kind](), key.split(".")[1])
            value = _other_value(tp, default)
            cfg, _ = configfile.apply(RunConfig(), configfile.parse_dotted(
                [f"teacher.kind={kind}", f"{key}={configfile._scalar(value)}"]))
            assert cfg.teacher.kind == kind
            got = getattr(cfg.teacher, key.split(".")[1])
            assert (list(got) if isinstance(got, tuple) else got) == value, key


def test_teacher_kind_switch_via_yaml(tmp_path, capsys):
    (tmp_path / "zoo.yaml").write_text("teacher:\n  kind: robustbench\n  name: Carmon2019Unlabeled\n")
    _, cfg, _, _ = resolve(["run", "--config", str(tmp_path / "zoo.yaml")])
    assert cfg.teacher == ZooTeacher(name="Carmon2019Unlabeled", arch="wrn-34-10")
    (tmp_path / "file.yaml").write_text("teacher: {kind: file, path: t.pt, method: trades, mean: [0.5], std: [0.25]}\n")
    f = ["run", "--config", str(tmp_path / "file.yaml")]
    _, cfg, _, _ = resolve(f)
    assert cfg.teacher == FileTeacher(path="t.pt", method="trades", mean=(0.5,), std=(0.25,))
    text = printed(capsys, f)
    (tmp_path / "again.yaml").write_text(text)
    assert resolve(["run", "--config", str(tmp_path / "again.yaml")])[1] == cfg
    _, cfg, _, _ = resolve([*f, "teacher.kind=trained", "teacher.train.epochs=2"])  # and back, by dotted keys
    assert isinstance(cfg.teacher, TrainedTeacher) and cfg.teacher.train.epochs == 2


@pytest.mark.parametrize("extra,yaml_text,pattern", [
    (["train.bogus=1"], None, "unknown config key 'train.bogus'; known keys of train: epochs, batch_size, lr"),
    (["train.epochs=abc"], None, "config key train.epochs: expected int, got 'abc'"),
    (["train.epochs=2.5"], None, "config key train.epochs: expected int, got 2.5"),
    (["train.schedule=linear"], None, "config key train.schedule: expected one of cosine, step, got 'linear'"),
    (["train.milestones=[10, x]"], None, "config key train.milestones: expected a list of int"),
    (["eval.sanity.n=lots"], None, "config key eval.sanity.n: expected int or null, got 'lots'"),
    (["teacher.kind=zoo"], None, "config key teacher.kind: expected one of trained, robustbench, file, got 'zoo'"),
    (["teacher.kind=robustbench", "teacher.train.epochs=3"], None,
     "unknown config key 'teacher.train'; known keys of teacher: name, arch, threat_model, kind"),
    (["train=5"], None, "config key train: expected a mapping of epochs,"),
    (["train.epochs"], None, "override 'train.epochs' is not key=value"),
    (["preset=cifar10"], None, "preset names the base configuration"),
    (["seeds=[1, 1]"], None, "seeds: expected a list of distinct non-negative integers"),
    ([], "colour: red\n", "unknown config key 'colour'; known keys: preset, protocol, data, student_arch, teacher"),
    ([], "train:\n  lr: fast\n", "config key train.lr: expected float, got 'fast'"),
    ([], "- a list\n", "must be a mapping of config keys, got list"),
    ([], "train: {epochs: [\n", "is not valid YAML"),
    ([], "preset: nosuch\n", "unknown preset 'nosuch'; known:"),
    (["--config", "/nonexistent/x.yaml"], None, "config file /nonexistent/x.yaml does not exist"),
])
def test_bad_config_is_one_line_exit_2(tmp_path, capsys, extra, yaml_text, pattern):
    argv = ["run", "--methods", "kd", *extra, "--print-config"]
    if yaml_text is not None:
        (tmp_path / "bad.yaml").write_text(yaml_text)
        argv += ["--config", str(tmp_path / "bad.yaml")]
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err and not captured.out, captured
    assert pattern in lines[0], lines[0]


@pytest.mark.parametrize("override,pattern", [
    ("train.epochs=0", "config key train.epochs = 0 must be >= 1"),
    ("eval.eps=0", "config key eval.eps = 0.0 must be > 0"),
    ("train.val_fraction=1.5", "config key train.val_fraction = 1.5 must be > 0 and < 1"),
    ("teacher.train.lr=-0.1", "config key teacher.train.lr = -0.1 must be > 0"),
])
def test_values_out_of_range_are_one_line_before_any_work(capsys, override, pattern):
    assert main(["run", "--methods", "kd", override]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and pattern in err[0], err


def test_regress_takes_a_config_file_too(tmp_path, capsys):
    (tmp_path / "r.yaml").write_text("train: {bogus: 1}\n")
    assert main(["regress", "--config", str(tmp_path / "r.yaml")]) == 2
    assert "unknown config key 'train.bogus'" in capsys.readouterr().err
    assert main(["regress", "eval.n=x"]) == 2
    assert "config key eval.n: expected int or null, got 'x'" in capsys.readouterr().err


@pytest.mark.slow
def test_every_preset_round_trips_through_yaml(tmp_path):
    from bench.config.presets import all_presets

    for name, preset in all_presets().items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(configfile.to_yaml(preset.config, preset.methods, preset.seeds))
        _, cfg, grid = configfile.load(None, path)
        assert cfg == preset.config, name
        configfile.check_ranges(cfg)  # the catalogue is inside the bounds it imposes
        assert (grid.methods, grid.seeds) == (tuple(preset.methods), tuple(preset.seeds)), name
