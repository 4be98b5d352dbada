"""Typed configuration with presets. Everything a number depends on lives here and is stored
with the number."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Literal, Union

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
class SanityConfig:
    """Checks that flag an unreliable robustness number (AutoAttack's checks.py; Carlini et al. 2019,
    "On Evaluating Adversarial Robustness"). Thresholds are accuracy fractions; bench/sanity.py
    documents each check."""
    enabled: bool = True
    n: int | None = 500               # first N evaluated images for the extra attacks (None: all)
    iterative_margin: float = 0.01    # flag PGD-20 accuracy > FGSM accuracy + this
    blackbox_margin: float = 0.01     # flag Square breaking more than this fraction after the white-box attacks
    large_eps_factor: float = 4.0     # PGD-20 at min(factor x eps, 0.5) ...
    large_eps_max_acc: float = 0.10   # ... must leave at most this accuracy
    strong_steps: int = 100           # PGD-100 with restarts, on top of PGD-20 ...
    strong_restarts: int = 3
    convergence_margin: float = 0.03  # ... flag when it lowers accuracy by more than this
    zero_grad_max: float = 0.01       # flag when more than this fraction of inputs has a zero input gradient
    determinism_tol: float = 1e-4     # largest |logit difference| allowed between two eval-mode passes


@dataclass(frozen=True)
class EvalConfig:
    eps: float = 0.2
    attacks: tuple[str, ...] = ("clean", "fgsm", "pgd20", "cw", "aa")
    n: int | None = None              # first N test images for clean/FGSM/PGD/CW (None: all)
    aa_n: int | None = None           # first N test images for AutoAttack (None: as n)
    aa_version: str = "standard"
    aa_seed: int = 0
    curve_eps: tuple[float, ...] = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3)  # PGD-20 robustness curve
    batch_size: int = 500             # also the unit of resumable progress: one state entry per batch
    sanity: SanityConfig = field(default_factory=SanityConfig)


@dataclass(frozen=True)
class TrainedTeacher:
    """A teacher the suite trains (and caches) itself, with its own schedule, recorded in its id."""
    arch: str = "cnn-wide"
    method: str = "pgd-at"
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=60))
    seed: int | None = 0              # None: one teacher per student seed (the teacher row gets a spread)
    kind: Literal["trained"] = "trained"


@dataclass(frozen=True)
class ZooTeacher:
    """A RobustBench model-zoo entry, read offline from RobustBench's own folder layout."""
    name: str = "Zhang2019Theoretically"
    arch: str = "wrn-34-10"           # bench's name for its architecture (records, smoke twin)
    threat_model: str = "Linf"
    kind: Literal["robustbench"] = "robustbench"


@dataclass(frozen=True)
class FileTeacher:
    """A state_dict file; ``method`` says how it was trained (labels and published numbers)."""
    path: str = ""
    arch: str = "cnn-wide"
    method: str = "unknown"
    mean: tuple[float, ...] | None = None  # its input normalisation (None: none)
    std: tuple[float, ...] | None = None
    kind: Literal["file"] = "file"


TeacherConfig = Union[TrainedTeacher, ZooTeacher, FileTeacher]
TEACHER_KINDS: dict[str, type] = {"trained": TrainedTeacher, "robustbench": ZooTeacher, "file": FileTeacher}


def parse_teacher(text: str | None, base: TeacherConfig, arch: str | None = None, method: str | None = None,
                  epochs: int | None = None, mean=None, std=None) -> TeacherConfig:
    """``--teacher train|robustbench:NAME|PATH`` and its companion flags as a typed teacher; the
    string is parsed here, once. ``None`` keeps the preset's teacher kind."""
    if text == "train" or (text is None and isinstance(base, TrainedTeacher)):
        t = base if isinstance(base, TrainedTeacher) else TrainedTeacher()
        return override(t, arch=arch, method=method, train=override(t.train, epochs=epochs))
    if text is not None and text.startswith("robustbench:"):
        name = text.split(":", 1)[1]
        if not name:
            raise BenchError("--teacher robustbench:NAME needs a model name")
        arch = arch or (base.arch if isinstance(base, ZooTeacher) else "wrn-34-10")
        return ZooTeacher(name=name, arch=arch)
    if text is None:
        return override(base, arch=arch, **({} if isinstance(base, ZooTeacher) else
                                           {"method": method, "mean": mean, "std": std}))
    return FileTeacher(path=text, arch=arch or base.arch, method=method or "unknown", mean=mean, std=std)


def teacher_from_dict(d: dict) -> TeacherConfig:
    """The typed teacher of a stored config (inverse of ``asdict``)."""
    cls = TEACHER_KINDS[d.get("kind", "trained")]
    names = {f.name for f in fields(cls)}
    d = {k: v for k, v in d.items() if k in names}
    if isinstance(d.get("train"), dict):
        d["train"] = TrainConfig(**{**d["train"], "milestones": tuple(d["train"]["milestones"])})
    for k in ("mean", "std"):
        if d.get(k) is not None:
            d[k] = tuple(d[k])
    return cls(**d)


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
    teacher: TeacherConfig = field(default_factory=TrainedTeacher)
    train: TrainConfig = field(default_factory=TrainConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    structure: bool = True            # teacher-student structure metrics for every student
    seed: int = 0
    device: str = "auto"              # auto: cuda when available, else cpu
    bf16: bool = False                # bf16 autocast on CUDA
    sync_bn: bool = False             # under torchrun: batch-norm statistics over the global batch (CUDA)


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


def official_train(method: str, dataset: str = "cifar10", form: str = "code") -> TrainConfig | None:
    """A method's schedule as its official script runs it (``form="code"``) or as its paper states
    it (``"paper"``), for ``dataset``; None when the method states none."""
    from methods import METHODS

    schedule = METHODS.get(method).official_schedule(dataset, form)
    return TrainConfig(**schedule) if schedule else None


def official_variant(method: str, dataset: str = "cifar10") -> str:
    """``method`` with the options that give its official code's loss magnitude on ``dataset``."""
    from methods import METHODS

    options = METHODS.get(method).official_options.get(dataset, "")
    return f"{method}:{options}" if options else method


_DIGITS = RunConfig()
# A CIFAR teacher trained here: TRADES WRN-34-10 with TRADES' own schedule as train_trades_cifar10.py
# runs it (76 epochs, lr 0.1 then 0.01 for the last two; wd 2e-4; batch 128). The teacher keeps this
# schedule whatever the students' schedule is, so every CIFAR-10 preset shares one teacher.
_TRADES_TEACHER = TrainedTeacher(arch="wrn-34-10", method="trades", train=TrainConfig(
    epochs=76, batch_size=128, lr=0.1, weight_decay=2e-4, schedule="step", milestones=(74,)))
# Students: ARD's schedule as its main.py runs it (the second decay at 150 never takes effect).
_ARD_SCHEDULE = TrainConfig(epochs=200, batch_size=128, lr=0.1, weight_decay=2e-4, schedule="step",
                            milestones=(100,))
_CIFAR10 = RunConfig(
    preset="cifar10", data=DataConfig("cifar10"), student_arch="resnet18", teacher=_TRADES_TEACHER,
    train=_ARD_SCHEDULE, attack=AttackConfig(eps=8 / 255),
    eval=EvalConfig(eps=8 / 255, n=10000, aa_n=10000, curve_eps=(2 / 255, 4 / 255, 8 / 255, 12 / 255, 16 / 255)),
    probe=ProbeConfig(targets=("cifar100", "stl10"), epochs=30, lr=0.1, batch_size=256))
_CIFAR100 = replace(_CIFAR10, preset="cifar100", data=DataConfig("cifar100"),
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
    # CI regression: the default data and threat model, shorter schedules, one teacher per seed (so
    # the teacher row has a seed spread too), AutoAttack and the sanity attacks on the first 50 and
    # 100 test images, no eps-curve; compared with results/baselines/regress.json.
    "regress": Preset(replace(_DIGITS, preset="regress", train=replace(_DIGITS.train, epochs=20),
                              teacher=replace(_DIGITS.teacher, train=TrainConfig(epochs=20), seed=None),
                              eval=replace(_DIGITS.eval, aa_n=50, curve_eps=(),
                                           sanity=replace(_DIGITS.eval.sanity, n=100))),
                      methods=("gacd", "ard", "pgd-at", "crd"), seeds=(0, 1, 2),
                      description="CI regression preset (python -m bench regress)"),
    "cifar10": Preset(_CIFAR10, description="CIFAR-10, ResNet-18 student, eps 8/255, ARD's schedule as its code "
                                            "runs it, TRADES WRN-34-10 teacher trained here (GPU)"),
    "cifar100": Preset(_CIFAR100, description="CIFAR-100, ResNet-18 student, eps 8/255, ARD's CIFAR-100 schedule "
                                              "(batch 256) (GPU)"),
}


# Paper tables (GPU): one protocol for every method -- ARD's schedule as its code runs it, PGD-10
# training attack, eps 8/255, evaluation on the first 10,000 test images, transfer by linear probe to
# the other CIFAR and to STL-10 resized to 32x32 -- and each method at its official loss magnitude.
PAPER_METHODS = ("natural", "pgd-at", "trades", "kd", "ard", "crd", "rslad", "iad", "adaad", "gacd")


def _paper(name: str, base: RunConfig, description: str, **changes) -> Preset:
    cfg = replace(base, preset=name, **changes)
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
    """PRESETS plus, for every method whose official script states a schedule, ``cifar10-<method>``
    (the schedule as the script runs it) and ``cifar10-<method>-paper`` where the paper states
    another; each at the official loss magnitude, all with the same TRADES teacher (GPU runs)."""
    from methods import METHODS

    presets = {**PRESETS, **PAPER_PRESETS}
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
        teacher=TrainedTeacher(arch=SMOKE_ARCHS.get(c.teacher.arch, c.teacher.arch), method="pgd-at",
                               train=TrainConfig(epochs=1, batch_size=64)),
        train=replace(c.train, epochs=1, batch_size=64, milestones=()),
        attack=replace(c.attack, steps=2),
        eval=replace(c.eval, n=64, aa_n=8, curve_eps=c.eval.curve_eps[:2],
                     sanity=replace(c.eval.sanity, n=32, strong_steps=10, strong_restarts=1)),
        probe=replace(c.probe, epochs=2)))


def get_preset(name: str) -> Preset:
    presets = all_presets()
    if name not in presets:
        raise BenchError(f"unknown preset {name!r}; known: {', '.join(sorted(presets))}")
    return presets[name]


def override(cfg, **changes):
    """dataclasses.replace that ignores None values (unset command-line flags)."""
    return replace(cfg, **{k: v for k, v in changes.items() if v is not None})


def data_key(data: DataConfig) -> dict:
    """The parts of a data config that change the data (not where the files are)."""
    d = asdict(data)
    d.pop("data_dir")
    d.pop("download")
    return d
