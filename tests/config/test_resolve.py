"""The one resolver (bench/config/resolve.py): preset < config file < flags < dotted overrides; the grid
from the highest layer naming it; a new data set's default radius; dotted keys to one nested layer."""
import pytest

from bench.common.errors import BenchError
from bench.config.files import nested
from bench.config.presets import get_preset
from bench.config.resolve import Flags, resolve
from bench.config.threat import default_eps


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("preset: gacd-ablation\nmethods: [kd]\nseeds: [4]\n"
                    "train: {epochs: 4, lr: 0.01, batch_size: 32}\neval: {n: 50}\n")
    return path


def test_preset_alone(config_file):
    r = resolve(preset="digits")
    base = get_preset("digits")
    assert r.preset is base and r.config == base.config
    assert (r.methods, r.seeds) == (base.methods, base.seeds)
    assert resolve().config == base.config  # the default preset
    assert resolve(default="regress").config == get_preset("regress").config


def test_each_layer_beats_the_one_below(config_file):
    base = get_preset("gacd-ablation").config
    file = resolve(config=config_file)  # the file names its preset
    assert file.preset.config is base and file.config.preset == "gacd-ablation"
    assert (file.config.train.epochs, file.config.train.lr, file.config.train.batch_size, file.config.eval.n) == \
        (4, 0.01, 32, 50)
    assert file.config.train.weight_decay == base.train.weight_decay  # what no layer names stays the preset's
    flags = resolve(config=config_file, flags=Flags(epochs=3, batch_size=16))
    assert (flags.config.train.epochs, flags.config.train.batch_size, flags.config.train.lr) == (3, 16, 0.01)
    dotted = resolve(config=config_file, flags=Flags(epochs=3, batch_size=16),
                     overrides=["train.epochs=2", "eval.n=7"])
    assert (dotted.config.train.epochs, dotted.config.train.batch_size, dotted.config.train.lr,
            dotted.config.eval.n) == (2, 16, 0.01, 7)
    mapping = resolve(config=config_file, flags=Flags(epochs=3), overrides={"train.epochs": 2, "eval": {"n": 7}})
    assert (mapping.config.train.epochs, mapping.config.eval.n) == (2, 7)
    assert resolve(preset="digits", config=config_file).config.preset == "digits"  # --preset beats preset: in a file


def test_methods_and_seeds_come_from_the_highest_layer_naming_them(config_file):
    assert resolve(preset="gacd-ablation").methods == get_preset("gacd-ablation").methods
    r = resolve(config=config_file)
    assert (r.methods, r.seeds) == (("kd",), (4,))
    r = resolve(config=config_file, flags=Flags(methods=("ard",)))
    assert (r.methods, r.seeds) == (("ard",), (4,))  # the file still gives the seeds
    r = resolve(config=config_file, flags=Flags(methods=("ard",), seeds=(0, 1)))
    assert (r.methods, r.seeds) == (("ard",), (0, 1))
    assert resolve(config=config_file, flags=Flags(n_seeds=3)).seeds == (0, 1, 2)
    assert resolve(config=config_file, flags=Flags(seed=5)).seeds == (5,)
    r = resolve(config=config_file, flags=Flags(methods=("ard",), seeds=(0, 1)),
                overrides=["methods=[crd,natural]", "seeds=[7]"])
    assert (r.methods, r.seeds) == (("crd", "natural"), (7,))
    assert resolve(overrides={"seed": 9}).seeds == (9,)


@pytest.mark.parametrize("flags,overrides,pattern", [
    (Flags(seeds=(0,), n_seeds=2), None, "--seeds or --n-seeds"),
    (Flags(seed=1, seeds=(0,)), None, "--seed or --seeds"),
    (Flags(seeds=(1, 1)), None, "repeat a seed"),
    (Flags(), ["seeds=[1,1]"], "distinct"),
    (Flags(), ["train.no_such_key=1"], "unknown config key 'train.no_such_key'"),
])
def test_bad_grids_and_keys_are_one_line(flags, overrides, pattern):
    with pytest.raises(BenchError, match=pattern):
        resolve(preset="digits", flags=flags, overrides=overrides)


def test_dataset_without_eps_brings_its_default_eps():
    digits = resolve(preset="digits").config
    assert digits.eval.eps == default_eps(digits.data.name) == 0.2
    r = resolve(preset="digits", flags=Flags(dataset="cifar10"))
    eps = default_eps("cifar10")
    assert eps == pytest.approx(8 / 255)
    assert r.config.data.name == "cifar10" and r.config.eval.eps == eps
    assert r.config.attack.eps == eps  # the training attack follows the threat model
    assert r.config.eval.curve_eps == tuple(round(e * eps / 0.2, 6) for e in digits.eval.curve_eps)
    assert r.config.eval.curve_eps[-1] == pytest.approx(1.5 * eps, abs=1e-6)  # the curve keeps its shape
    explicit = resolve(preset="digits", flags=Flags(dataset="cifar10", eps=0.1)).config
    assert (explicit.eval.eps, explicit.attack.eps) == (0.1, 0.1)  # --eps wins
    assert explicit.eval.curve_eps == tuple(round(e * 0.1 / 0.2, 6) for e in digits.eval.curve_eps)
    same = resolve(preset="digits", flags=Flags(dataset="digits@5-9")).config
    assert (same.eval.eps, same.eval.curve_eps) == (0.2, digits.eval.curve_eps)  # digits' own radius: unchanged
    l2 = resolve(preset="digits", flags=Flags(norm="L2")).config
    assert (l2.eval.norm, l2.eval.eps, l2.attack.norm) == ("L2", default_eps("digits", "L2"), "L2")


def test_nested_builds_one_layer():
    assert nested({"train.epochs": 2, "eval": {"n": 5}}) == {"train": {"epochs": 2}, "eval": {"n": 5}}
    assert nested({"train.epochs": 2, "train.lr": 0.1, "eval.sanity.n": 3}) == \
        {"train": {"epochs": 2, "lr": 0.1}, "eval": {"sanity": {"n": 3}}}
    assert nested({"train": {"epochs": 2}, "train.lr": 0.1}) == {"train": {"epochs": 2, "lr": 0.1}}
    assert nested({"train.epochs": 2, "train": {"lr": 0.1}}) == {"train": {"epochs": 2, "lr": 0.1}}  # merged
    with pytest.raises(BenchError, match="sets inside 'train'"):
        nested({"train": 5, "train.lr": 0.1})


@pytest.mark.slow
def test_run_and_paper_build_their_config_through_the_one_resolver(monkeypatch, capsys, tmp_path):
    """`bench run` and `bench paper` (either scale) call bench.config.resolve.resolve and use what it
    returns: the protocol and layer checks, the method labels and the corruption files apply to both."""
    import bench.config.resolve as resolver
    from bench.cli.main import main

    calls = []
    real = resolver.resolve

    def recording(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append(out)
        return out
    monkeypatch.setattr(resolver, "resolve", recording)
    monkeypatch.setenv("BENCH_DATA_DIR", str(tmp_path))
    main(["run", "--methods", "ard", "--dry-run", "--executor", "local", "--jobs", "1"])
    main(["paper", "cifar10-resnet18", "--scale", "smoke", "--protocol", "official", "--methods", "rslad,igdm",
          "--executor", "local", "--jobs", "1", "--dry-run"])
    main(["paper", "cifar100-resnet18", "--protocol", "official", "--methods", "fair-ard", "--dry-run",
          "--executor", "local", "--jobs", "1"])
    capsys.readouterr()
    assert [c.config.preset for c in calls] == ["digits", "cifar10-resnet18-smoke", "cifar100-resnet18"]
    assert calls[1].methods == ("rslad:scale=0.1", "igdm") and calls[1].config.protocol == "official"
    assert calls[2].methods == ("fair-ard:scale=0.01:clean_pass=True",)
    assert calls[2].config.eval.corruptions_dir == str(tmp_path / "CIFAR-100-C")
    # the layer check holds for paper as for run: a recipe key set by a flag under official is refused
    with pytest.raises(BenchError, match="each method's recipe sets"):
        real("cifar10-resnet18", flags=resolver.Flags(protocol="official", epochs=3))
