"""The preset catalogue: named run configurations (the schema they instantiate is bench.config.schema)."""
from __future__ import annotations

from dataclasses import dataclass, replace

from bench.common.errors import BenchError
from bench.config.schema import (
    AttackConfig,
    DataConfig,
    EvalConfig,
    Limit,
    ProbeConfig,
    RunConfig,
    TrainConfig,
    TrainedTeacher,
    ZooTeacher,
)
from bench.models import smoke_arch
from bench.methods import METHODS


@dataclass(frozen=True)
class Preset:
    """A run configuration with the methods and seeds it is meant for."""
    config: RunConfig
    methods: tuple[str, ...] = ("gacd", "ard", "crd")
    seeds: tuple[int, ...] = (0,)
    compare_to: str | None = None     # a row the report gives differences against (ablations)
    baseline_seeds: tuple[int, ...] | None = None   # `bench regress --update` runs these (default: seeds)
    description: str = ""


def official_train(method: str, dataset: str = "cifar10", form: str = "code") -> TrainConfig | None:
    """A method's schedule as its official script runs it (``form="code"``) or as its paper states
    it (``"paper"``), for ``dataset``; None when the method states none."""

    schedule = METHODS.get(method).official_schedule(dataset, form)
    return TrainConfig(**schedule) if schedule else None


def official_variant(method: str, dataset: str = "cifar10") -> str:
    """``method`` with the options that give its official code's loss magnitude on ``dataset``."""

    options = METHODS.get(method).magnitude_options(dataset)
    return f"{method}:{options}" if options else method


# The AutoAttack subset's share was measured with benchmarks/default_run.py (76 of 198 s on one 2-core machine,
# about 75 % on another); the reason below is printed in every report of the preset.
_DIGITS = RunConfig(eval=EvalConfig(aa_n=100, aa_subset_why=(
    "on 2-core CPUs AutoAttack standard on all 226 images took 40 to 75 % of this run's wall time (Square "
    "queries each robust image 5,000 times), so it runs on the first 100; the other attacks and the sanity "
    "checks cover every test image")))
# A CIFAR teacher trained here: TRADES WRN-34-10 with TRADES' own schedule and attack as
# train_trades_cifar10.py runs them (76 epochs, lr 0.1 then 0.01 for the last two; wd 2e-4; batch 128;
# eps 0.031, step 0.007, 10 steps). The teacher keeps this recipe whatever the students' are, so every
# CIFAR-10 preset shares one teacher.
_TRADES_TEACHER = TrainedTeacher(arch="wrn-34-10", method="trades", train=TrainConfig(
    epochs=76, batch_size=128, lr=0.1, weight_decay=2e-4, schedule="step", milestones=(74,)),
    attack=AttackConfig(eps=0.031, step_ratio=0.007 / 0.031, steps=10))
# Students: ARD's schedule as its main.py runs it (the second decay at 150 never takes effect).
_ARD_SCHEDULE = TrainConfig(epochs=200, batch_size=128, lr=0.1, weight_decay=2e-4, schedule="step",
                            milestones=(100,))
# The natural teacher of methods that learn from one too (MTARD's, at the clean x). CIFAR-10: RobustBench's
# Standard WRN-28-10 (MTARD's own is a ResNet-56 checkpoint no committed code loads); CIFAR-100: a ResNet-18
# trained here with the usual natural schedule (MTARD's CIFAR-100 clean teacher is not in its code).
_NATURAL_C10 = ZooTeacher("Standard", "wrn-28-10")
_NATURAL_C100 = TrainedTeacher(arch="resnet18", method="natural", train=TrainConfig(
    epochs=200, batch_size=128, lr=0.1, weight_decay=5e-4, schedule="step", milestones=(100, 150)))
_CIFAR10 = RunConfig(
    preset="cifar10", data=DataConfig("cifar10"), student_arch="resnet18", teacher=_TRADES_TEACHER,
    natural_teacher=_NATURAL_C10, train=_ARD_SCHEDULE, attack=AttackConfig(eps=8 / 255),
    # corruptions as RobustBench's leaderboard reads them: the released CIFAR-10-C, all 10,000 images
    eval=EvalConfig(eps=8 / 255, n=10000, aa_n=10000, curve_eps=(2 / 255, 4 / 255, 8 / 255, 12 / 255, 16 / 255),
                    corruptions_from="published", corruptions_n=None),
    probe=ProbeConfig(targets=("cifar100", "stl10"), epochs=30, lr=0.1, batch_size=256))
_CIFAR100 = replace(_CIFAR10, preset="cifar100", data=DataConfig("cifar100"), natural_teacher=_NATURAL_C100,
                    train=replace(_ARD_SCHEDULE, batch_size=256),  # ARD's main.py: batch 256 on CIFAR-100
                    probe=replace(_CIFAR10.probe, targets=("cifar10", "stl10")))

GACD_ABLATION = (
    "gacd", "gacd:reweight=none", "gacd:reweight=teacher-correct", "gacd:reweight=teacher-prob-pow",
    "gacd:estimator=nce", "gacd:anchor=symmetric", "gacd:attack=ce", "gacd:alpha=0", "ard", "crd")

PRESETS: dict[str, Preset] = {
    "digits": Preset(_DIGITS, seeds=(0, 1, 2),
                     description="embedded default: digits 0-4, eps 0.2, transfer to digits 5-9"),
    "gacd-ablation": Preset(replace(_DIGITS, preset="gacd-ablation"), methods=GACD_ABLATION, seeds=(0, 1, 2),
                            compare_to="gacd", description="each reconstructed GACD choice switched alone, 3 seeds"),
    # CI regression (python -m bench regress; README "Regression check"): the default data at eps 0.15,
    # 40-epoch students and one 40-epoch teacher per seed (so the teacher row has a spread too), PGD-20
    # and AutoAttack's white-box half on every test image, sanity attacks on the first 100, no eps-curve;
    # chosen with benchmarks/regress_presets.py for the smallest seed sd per CI minute (20 epochs at
    # eps 0.2 gave sds of 4-6 points on PGD-20, this gives about 2). The baseline is made once with 16
    # seeds (4-19); CI re-runs 4 others (0-3), an independent test. Compared with
    # results/baselines/regress.json.
    "regress": Preset(replace(_DIGITS, preset="regress", train=replace(_DIGITS.train, epochs=40),
                              attack=replace(_DIGITS.attack, eps=0.15),
                              teacher=replace(_DIGITS.teacher, train=TrainConfig(epochs=40), seed=None),
                              # the same arithmetic on every device: one baseline (fp32 on CUDA turns TF32
                              # off, bench.common.precision)
                              precision="fp32",
                              # the attacks the baseline was made with: corruptions are no regression number
                              eval=replace(_DIGITS.eval, attacks=("clean", "fgsm", "pgd20", "cw", "aa"), eps=0.15,
                                           aa_n=None, aa_attacks=("apgd-ce", "apgd-t"),
                                           curve_eps=(), aa_subset_why="",
                                           sanity=replace(_DIGITS.eval.sanity, n=100))),
                      methods=("gacd", "ard", "pgd-at", "crd"), seeds=(0, 1, 2, 3), baseline_seeds=tuple(range(4, 20)),
                      description="CI regression preset (python -m bench regress): eps 0.15, 40 epochs, "
                                  "4 seeds against a 16-seed baseline of other seeds"),
    "cifar10": Preset(_CIFAR10, description="CIFAR-10, ResNet-18 student, eps 8/255, ARD's schedule as its code "
                                            "runs it, TRADES WRN-34-10 teacher trained here (GPU)"),
    "cifar100": Preset(_CIFAR100, description="CIFAR-100, ResNet-18 student, eps 8/255, ARD's CIFAR-100 schedule "
                                              "(batch 256) (GPU)"),
}


# Paper tables (GPU), in two protocols (bench.config.protocol). common: one schedule for every method --
# ARD's as its code runs it, PGD-10 training attack, eps 8/255 -- with the checkpoint selected on a
# validation split (the last epoch evaluated beside it); official (--protocol official): each method's
# own script's recipe. Both: evaluation on the 10,000 test images, transfer by linear probe to the other
# CIFAR and to STL-10 resized to 32x32, each method at its official loss magnitude.
PAPER_METHODS = ("natural", "pgd-at", "trades", "kd", "ard", "crd", "rslad", "iad", "adaad", "adaiad", "dgad",
                 "igdm", "mtard", "absld", "fair-ard", "fair-rslad", "fair-iad", "peeraid", "gacd")


def _paper(name: str, base: RunConfig, description: str, **changes) -> Preset:
    cfg = replace(base, preset=name, train=replace(base.train, checkpoint="best-val"), **changes)
    dataset = cfg.data.name
    return Preset(cfg, methods=tuple(official_variant(m, dataset) for m in PAPER_METHODS), seeds=(0, 1, 2),
                  description=description)


PAPER_PRESETS: dict[str, Preset] = {
    "cifar10-resnet18": _paper(
        "cifar10-resnet18", _CIFAR10, teacher=ZooTeacher("Zhang2019Theoretically", "wrn-34-10"),
        description="CIFAR-10, ResNet-18 student, RobustBench Zhang2019Theoretically (TRADES WRN-34-10) teacher"),
    "cifar10-mobilenetv2": _paper(
        "cifar10-mobilenetv2", _CIFAR10, student_arch="mobilenetv2",
        teacher=ZooTeacher("Zhang2019Theoretically", "wrn-34-10"),
        description="CIFAR-10, MobileNetV2 student, RobustBench Zhang2019Theoretically teacher"),
    "cifar100-resnet18": _paper(
        "cifar100-resnet18", _CIFAR100, teacher=ZooTeacher("Chen2021LTD_WRN34_10", "wrn-34-10"),
        description="CIFAR-100, ResNet-18 student, RobustBench Chen2021LTD_WRN34_10 teacher (as AdaAD used)"),
}


def all_presets() -> dict[str, Preset]:
    """PRESETS, the paper presets and their smoke twins (``NAME-smoke``) plus, for every method whose
    official script states a schedule, ``cifar10-<method>``
    (the schedule as the script runs it) and ``cifar10-<method>-paper`` where the paper states
    another; each at the official loss magnitude, all with the same TRADES teacher (GPU runs)."""

    presets = {**PRESETS, **PAPER_PRESETS, **{f"{n}-smoke": smoke(p) for n, p in PAPER_PRESETS.items()}}
    for name, cls in METHODS.items():
        for form, suffix in (("code", ""), ("paper", "-paper")):
            train = official_train(name, "cifar10", form)
            if train is None or (form == "paper" and train == official_train(name, "cifar10", "code")):
                continue
            preset = f"cifar10-{name}{suffix}"
            presets[preset] = Preset(
                replace(_CIFAR10, preset=preset, train=train), methods=(official_variant(name, "cifar10"),),
                description=f"CIFAR-10 with {name}'s schedule as its {'paper states' if suffix else 'code runs'} "
                            f"it ({train.epochs} epochs, milestones {list(train.milestones)}, wd "
                            f"{train.weight_decay}, batch {train.batch_size}) (GPU)")
    return presets


def smoke(preset: Preset) -> Preset:
    """Any preset shrunk so its whole path runs on a CPU in seconds: 256 training and 32 test images (8 corrupted),
    two epochs, PGD-2 training attack, 1/8-width networks, a teacher trained here for one epoch instead
    of a downloaded one, synthetic stand-ins for data files that are missing. Numbers are meaningless."""

    c = preset.config
    tiny = smoke_arch(c.student_arch)
    return replace(preset, seeds=preset.seeds[:1], description=f"{preset.description} [smoke scale]", config=replace(
        c, preset=f"{c.preset}-smoke", student_arch=tiny,
        data=replace(c.data, stand_in=True, train_limit=256),
        teacher=TrainedTeacher(arch=smoke_arch(c.teacher.arch), method="pgd-at",
                               train=TrainConfig(epochs=1, batch_size=64)),
        natural_teacher=TrainedTeacher(arch=smoke_arch(c.natural_teacher.arch), method="natural",
                                       train=TrainConfig(epochs=1, batch_size=64)),
        # two epochs: a best-* policy has a choice to make, so best and last both get evaluated
        train=replace(c.train, epochs=2, batch_size=64, milestones=()),
        attack=replace(c.attack, steps=2), limit=Limit(epochs=2, attack_steps=2),  # caps over any recipe
        # evaluation is most of a smoke run's time: few images, every attack and corruption still runs
        # generated corruptions of the stand-in images (the released files are of the real test set)
        eval=replace(c.eval, n=32, aa_n=8, curve_eps=c.eval.curve_eps[:2], corruptions_n=8, corruptions_from="generated",
                     sanity=replace(c.eval.sanity, n=16, strong_steps=10, strong_restarts=1)),
        probe=replace(c.probe, epochs=2)))


def get_preset(name: str) -> Preset:
    presets = all_presets()
    if name not in presets:
        raise BenchError(f"unknown preset {name!r}; known: {', '.join(sorted(presets))}")
    return presets[name]
