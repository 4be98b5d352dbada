"""Typed configuration with presets. Everything a number depends on lives here and is stored
with the number."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

from bench.errors import BenchError


@dataclass(frozen=True)
class DataConfig:
    # Digits 0-4 train the students; 5-9 are the transfer task's label space they never see.
    name: str = "digits@0-4"
    data_dir: str | None = None       # None: $BENCH_DATA_DIR or ~/.cache/bench/data
    download: bool = False
    image_size: int | None = None     # resize once at load time (None: native)
    stand_in: bool = False            # smoke scale only: synthetic data where the real files are missing
    train_limit: int | None = None    # keep the first N training images (smoke scale)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: Literal["cosine", "step"] = "cosine"
    milestones: tuple[int, ...] = ()  # epochs where a step schedule multiplies lr by gamma
    gamma: float = 0.1
    # Which weights are evaluated: the last epoch's, or the epoch with the best PGD-20 accuracy on a
    # validation split carved from the training data (never the test set).
    checkpoint: Literal["last", "best-val"] = "last"
    val_fraction: float = 0.1


@dataclass(frozen=True)
class AttackConfig:
    """The training-time inner maximisation (its objective is the method's)."""
    eps: float = 0.2
    step_ratio: float = 0.25          # step = step_ratio * eps
    steps: int = 10


@dataclass(frozen=True)
class EvalConfig:
    eps: float = 0.2
    attacks: tuple[str, ...] = ("clean", "fgsm", "pgd20", "cw", "aa")
    n: int | None = None              # first N test images for clean/FGSM/PGD/CW (None: all)
    aa_n: int | None = None           # first N test images for AutoAttack (None: as n)
    aa_version: str = "standard"
    aa_seed: int = 0
    curve_eps: tuple[float, ...] = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3)  # PGD-20 robustness curve
    batch_size: int = 500


@dataclass(frozen=True)
class TeacherConfig:
    source: str = "train"             # "train" or a path to a state_dict
    arch: str = "cnn-wide"
    method: str = "pgd-at"
    epochs: int | None = 60           # None: the run's epochs
    mean: tuple[float, ...] | None = None  # normalisation of an external checkpoint (None: none)
    std: tuple[float, ...] | None = None
    seed: int = 0                     # one teacher for all student seeds


@dataclass(frozen=True)
class ProbeConfig:
    """Transfer: a linear head on the frozen student, trained on each target's training split."""
    targets: tuple[str, ...] = ("digits@5-9",)
    epochs: int = 30
    lr: float = 0.05
    batch_size: int = 128
    weight_decay: float = 5e-4
    attacks: tuple[str, ...] = ("pgd20",)   # add "aa" for AutoAttack on the probed network


@dataclass(frozen=True)
class RunConfig:
    preset: str = "digits"
    data: DataConfig = field(default_factory=DataConfig)
    student_arch: str = "cnn-narrow"
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    structure: bool = True            # teacher-student structure metrics for every student
    seed: int = 0
    device: str = "auto"              # auto: cuda when available, else cpu
    bf16: bool = False                # bf16 autocast on CUDA



def config_hash(obj) -> str:
    """Stable short id of a JSON-serialisable description."""
    blob = json.dumps(obj if isinstance(obj, dict) else asdict(obj), sort_keys=True, default=list)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Preset:
    """A run configuration with the methods and seeds it is meant for."""
    config: RunConfig
    methods: tuple[str, ...] = ("gacd", "ard", "crd")
    seeds: tuple[int, ...] = (0,)
    compare_to: str | None = None     # a row the report gives differences against (ablations)
    description: str = ""


_DIGITS = RunConfig()
_CIFAR10 = RunConfig(
    preset="cifar10", data=DataConfig("cifar10"), student_arch="resnet18",
    teacher=TeacherConfig(arch="wrn-34-10", method="trades", epochs=100),
    train=TrainConfig(epochs=200, batch_size=128, lr=0.1, weight_decay=2e-4, schedule="step", milestones=(100, 150)),
    attack=AttackConfig(eps=8 / 255),
    eval=EvalConfig(eps=8 / 255, n=10000, aa_n=10000, curve_eps=(2 / 255, 4 / 255, 8 / 255, 12 / 255, 16 / 255)),
    probe=ProbeConfig(targets=("cifar100", "stl10"), epochs=30, lr=0.1, batch_size=256))

GACD_ABLATION = (
    "gacd", "gacd:reweight=none", "gacd:reweight=teacher-correct", "gacd:reweight=teacher-prob-pow",
    "gacd:estimator=nce", "gacd:anchor=symmetric", "gacd:attack=ce", "gacd:alpha=0", "ard", "crd")

PRESETS: dict[str, Preset] = {
    "digits": Preset(_DIGITS, seeds=(0, 1, 2),
                     description="embedded default: digits 0-4, eps 0.2, transfer to digits 5-9"),
    "gacd-ablation": Preset(replace(_DIGITS, preset="gacd-ablation"), methods=GACD_ABLATION, seeds=(0, 1, 2),
                            compare_to="gacd", description="each reconstructed GACD choice switched alone, 3 seeds"),
    # CI regression: the default data and threat model, shorter schedules, AutoAttack on the first
    # 100 test images, no eps-curve; compared with results/baselines/regress.json.
    "regress": Preset(replace(_DIGITS, preset="regress", train=replace(_DIGITS.train, epochs=20),
                              teacher=replace(_DIGITS.teacher, epochs=40),
                              eval=replace(_DIGITS.eval, aa_n=100, curve_eps=())),
                      methods=("gacd", "ard", "pgd-at", "crd"), seeds=(0, 1, 2),
                      description="CI regression preset (python -m bench regress)"),
    "cifar10": Preset(_CIFAR10, description="CIFAR-10, ResNet-18 student, eps 8/255 (GPU)"),
    "cifar100": Preset(replace(_CIFAR10, preset="cifar100", data=DataConfig("cifar100"),
                               probe=replace(_CIFAR10.probe, targets=("cifar10", "stl10"))),
                       description="CIFAR-100, ResNet-18 student, eps 8/255 (GPU)"),
}



# Paper tables (GPU): one protocol for every method -- ARD's schedule (200 epochs, decay at 100/150,
# wd 2e-4, batch 128), PGD-10 training attack, eps 8/255, evaluation on the first 10,000 test images,
# transfer by linear probe to the other CIFAR and to STL-10 resized to 32x32.
PAPER_METHODS = ("natural", "pgd-at", "trades", "kd", "ard", "crd", "rslad", "iad", "adaad", "gacd")
_PAPER = replace(_CIFAR10, teacher=TeacherConfig(source="robustbench:Zhang2019Theoretically", arch="wrn-34-10"))
PAPER_PRESETS: dict[str, Preset] = {
    "cifar10-resnet18": Preset(
        replace(_PAPER, preset="cifar10-resnet18"), methods=PAPER_METHODS,
        description="CIFAR-10, ResNet-18 student, RobustBench Zhang2019Theoretically (TRADES WRN-34-10) teacher"),
    "cifar10-mobilenetv2": Preset(
        replace(_PAPER, preset="cifar10-mobilenetv2", student_arch="mobilenetv2"), methods=PAPER_METHODS,
        description="CIFAR-10, MobileNetV2 student, RobustBench Zhang2019Theoretically teacher"),
    "cifar100-resnet18": Preset(
        replace(_PAPER, preset="cifar100-resnet18", data=DataConfig("cifar100"),
                teacher=TeacherConfig(source="robustbench:Chen2021LTD_WRN34_10", arch="wrn-34-10"),
                probe=replace(_PAPER.probe, targets=("cifar10", "stl10"))), methods=PAPER_METHODS,
        description="CIFAR-100, ResNet-18 student, RobustBench Chen2021LTD_WRN34_10 teacher (as AdaAD used)"),
}


def all_presets() -> dict[str, Preset]:
    """PRESETS plus cifar10-<method> for every method that states its paper's schedule (GPU runs)."""
    from methods import METHODS

    presets = {**PRESETS, **PAPER_PRESETS}
    for name, cls in METHODS.items():
        schedule = cls.paper_train
        if schedule:
            train = replace(_CIFAR10.train, **schedule)
            variant = f"{name}:{cls.paper_options}" if cls.paper_options else name
            presets[f"cifar10-{name}"] = Preset(
                replace(_CIFAR10, preset=f"cifar10-{name}", train=train), methods=(variant,),
                description=f"CIFAR-10 with {name}'s paper schedule ({schedule['epochs']} epochs, "
                            f"milestones {list(schedule['milestones'])}, wd {schedule['weight_decay']}, "
                            f"batch {schedule['batch_size']}) (GPU)")
    return presets


SMOKE_ARCHS = {"resnet18": "resnet18-tiny", "preact-resnet18": "resnet18-tiny", "mobilenetv2": "mobilenetv2-tiny",
               "wrn-34-10": "wrn-10-1", "wrn-28-10": "wrn-10-1"}


def smoke(preset: Preset) -> Preset:
    """Any preset shrunk so its whole path runs on a CPU in seconds: 256 training and 64 test images,
    one epoch, PGD-2 training attack, 1/8-width networks, a teacher trained here for one epoch instead
    of a downloaded one, synthetic stand-ins for data files that are missing. Numbers are meaningless."""
    c = preset.config
    tiny = SMOKE_ARCHS.get(c.student_arch, c.student_arch)
    return replace(preset, seeds=preset.seeds[:1], description=f"{preset.description} [smoke scale]", config=replace(
        c, preset=f"{c.preset}-smoke", student_arch=tiny,
        data=replace(c.data, stand_in=True, train_limit=256),
        teacher=replace(c.teacher, source="train", method="pgd-at", epochs=1,
                        arch=SMOKE_ARCHS.get(c.teacher.arch, c.teacher.arch), mean=None, std=None),
        train=replace(c.train, epochs=1, batch_size=64, milestones=()),
        attack=replace(c.attack, steps=2),
        eval=replace(c.eval, n=64, aa_n=8, curve_eps=c.eval.curve_eps[:2]),
        probe=replace(c.probe, epochs=2)))


def get_preset(name: str) -> Preset:
    presets = all_presets()
    if name not in presets:
        raise BenchError(f"unknown preset {name!r}; known: {', '.join(sorted(presets))}")
    return presets[name]


def override(cfg, **changes):
    """dataclasses.replace that ignores None values (unset command-line flags)."""
    return replace(cfg, **{k: v for k, v in changes.items() if v is not None})
