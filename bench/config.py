"""Typed configuration with presets. Everything a number depends on lives here and is stored
with the number."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

from bench.errors import BenchError


@dataclass(frozen=True)
class DataConfig:
    name: str = "digits"
    data_dir: str | None = None       # None: $BENCH_DATA_DIR or ~/.cache/bench/data
    download: bool = False
    image_size: int | None = None     # resize once at load time (None: native)


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


@dataclass(frozen=True)
class RunConfig:
    preset: str = "digits"
    data: DataConfig = field(default_factory=DataConfig)
    student_arch: str = "cnn-narrow"
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    seed: int = 0
    device: str = "auto"              # auto: cuda when available, else cpu
    bf16: bool = False                # bf16 autocast on CUDA

    def to_dict(self) -> dict:
        return asdict(self)


def config_hash(obj) -> str:
    """Stable short id of a JSON-serialisable description."""
    blob = json.dumps(obj if isinstance(obj, dict) else asdict(obj), sort_keys=True, default=list)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


PRESETS: dict[str, RunConfig] = {
    # Embedded default: runs anywhere in a few minutes. eps = 0.2 on [0,1] digits separates the
    # methods (at 0.1 a tiny PGD-AT student matches the teacher; see shared calibration).
    "digits": RunConfig(),
    # Full-scale CIFAR-10 protocol for GPUs: eps 8/255, step 2/255, ResNet-18 student.
    "cifar10": RunConfig(
        preset="cifar10", data=DataConfig("cifar10"), student_arch="resnet18",
        teacher=TeacherConfig(arch="wrn-34-10", method="trades", epochs=100),
        train=TrainConfig(epochs=200, batch_size=128, lr=0.1, weight_decay=2e-4, schedule="step",
                          milestones=(100, 150)),
        attack=AttackConfig(eps=8 / 255), eval=EvalConfig(eps=8 / 255, aa_n=10000,
                                                         curve_eps=(2 / 255, 4 / 255, 8 / 255, 12 / 255, 16 / 255))),
}
PRESETS["cifar100"] = replace(PRESETS["cifar10"], preset="cifar100", data=DataConfig("cifar100"))


def get_preset(name: str) -> RunConfig:
    if name not in PRESETS:
        raise BenchError(f"unknown preset {name!r}; known: {', '.join(sorted(PRESETS))}")
    return PRESETS[name]


def override(cfg, **changes):
    """dataclasses.replace that ignores None values (unset command-line flags)."""
    return replace(cfg, **{k: v for k, v in changes.items() if v is not None})


def from_dict(cls, data: dict):
    """Rebuild a (nested) config dataclass from its asdict() form."""
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        if dataclasses.is_dataclass(f.default_factory if f.default_factory is not dataclasses.MISSING else None):
            value = from_dict(f.default_factory, value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[f.name] = value
    return cls(**kwargs)
