"""Typed configuration with presets. Everything a number depends on lives here and is stored
with the number."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Literal, Union

from bench.common.errors import BenchError


@dataclass(frozen=True)
class DataConfig:
    # Digits 0-4 train the students; 5-9 are the transfer task's label space they never see.
    name: str = "digits@0-4"
    data_dir: str | None = None       # None: $BENCH_DATA_DIR or ~/.cache/bench/data
    download: bool = False
    image_size: int | None = None     # resize once at load time (None: native)
    stand_in: bool = False            # smoke scale only: synthetic data where the real files are missing
    train_limit: int | None = None    # keep the first N training images (smoke scale)
    # images on the device (yes), in host memory with batches copied over (no), or yes when they fit (auto);
    # where they live changes no number
    on_device: Literal["auto", "yes", "no"] = "auto"


# checkpoint policies (TrainConfig.checkpoint; bench.train.selection scores them): (split, attack)
POLICIES = {"best-val": ("val", "pgd20"), "best-test-pgd10": ("test", "pgd10"), "best-test-pgd20": ("test", "pgd20")}


def selection_key(policy: str) -> str | None:
    """The log column a policy selects on (None for ``last``)."""
    return "_".join(POLICIES[policy]) if policy in POLICIES else None


# A training log row (RunRecord.history) holds these columns, the policies' scores (selection_key) and one
# column per loss term the method returned; "loss" is their sum.
FLOPS_KEY = "train_flops_per_image"  # the first epoch's row: one step's FLOPs / its images
LOG_COLUMNS = ("epoch", "lr", "seconds", "images_per_s", "loss", FLOPS_KEY, "swa_snapshots")


def loss_terms(row: dict) -> list[str]:
    """The loss terms' columns of a training log row."""
    skip = set(LOG_COLUMNS) | {selection_key(p) for p in POLICIES}
    return [k for k, v in row.items() if k not in skip and isinstance(v, (int, float))]


# further checkpoints (TrainConfig.also_keep): what each scores, with its source
ALSO = {"plain-best": "the policy's accuracy of the plain student, every scored epoch from the first, where the "
                      "run's model is an SWA average (PeerAiD main.py:680-709 beside :786-815)",
        "fair-best": "the policy's mean accuracy plus its worst class's (ABSLD resnet18_absld_cifar10.py:155-160)"}


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False            # SGD with Nesterov momentum (the Fair-ARD scripts')
    schedule: Literal["cosine", "step"] = "cosine"
    milestones: tuple[int, ...] = ()  # epochs where a step schedule multiplies lr by gamma
    gamma: float = 0.1
    # Which weights the headline numbers are of (bench.train.selection): the last epoch's; the epoch with
    # the best PGD-20 accuracy on a validation split carved from the training data (best-val, the common
    # protocol's); or, to reproduce an official script that selects on the test set, the epoch with the
    # best test PGD-10 / PGD-20 accuracy under that explicit name. With a best-* policy the last epoch's
    # weights are kept and evaluated too (report: best and last).
    checkpoint: Literal["last", "best-val", "best-test-pgd10", "best-test-pgd20"] = "last"
    val_fraction: float = 0.1
    # Stochastic weight averaging (Izmailov et al. 2018) for any method: from the end of this 0-based epoch
    # on, the equal-weight mean of the end-of-epoch weights, its batch-norm statistics re-estimated on the
    # training images after each snapshot, is the run's model (what the policy selects among and the
    # evaluation sees). None: off.
    swa_start: int | None = None
    # Which epochs a best-* policy scores, as an official script does: every `select_every`-th epoch
    # (1-based) before `select_dense_from`, every epoch from there (None: every epoch); the scoring
    # attack's absolute step (None: the attack's own, eps/4). RSLAD, MTARD, ABSLD: 20 / 10, 215, 0.003.
    select_every: int | None = None
    select_dense_from: int | None = None
    select_step: float | None = None
    # Further checkpoints a script keeps beside the selected one, each evaluated and reported under its
    # name (ALSO above): plain-best (PeerAiD's plain student beside its SWA average),
    # fair-best (ABSLD's mean + worst-class accuracy).
    also_keep: tuple[str, ...] = ()


@dataclass(frozen=True)
class AttackConfig:
    """The training-time inner maximisation (its objective is the method's)."""
    eps: float = 0.2
    step_ratio: float = 0.25          # step = step_ratio * eps
    steps: int = 10
    norm: Literal["Linf", "L2"] = "Linf"  # the threat model's ball (bench/attacks/ascent.py)


@dataclass(frozen=True)
class SanityConfig:
    """Checks that flag an unreliable robustness number (AutoAttack's checks.py; Carlini et al. 2019,
    "On Evaluating Adversarial Robustness"). Thresholds are accuracy fractions; bench/eval/sanity.py
    documents each check."""
    enabled: bool = True
    n: int | None = 500               # first N evaluated images for the extra attacks (None: all)
    iterative_margin: float = 0.01    # flag PGD-20 accuracy > FGSM accuracy + this
    blackbox_margin: float = 0.002    # flag Square breaking more than this fraction after the white-box attacks
    #                                   (AutoAttack's check_square_sr: acc_square < acc_white - 0.002)
    large_eps_factor: float = 4.0     # PGD-20 at min(factor x eps, 0.5) ...
    large_eps_max_acc: float = 0.10   # ... must leave at most this accuracy
    strong_steps: int = 100           # PGD-100 with restarts, on top of PGD-20 ...
    strong_restarts: int = 3
    convergence_margin: float = 0.03  # ... flag when it lowers accuracy by more than this
    zero_grad_max: float = 0.0        # flag when more than this fraction of inputs has a zero input gradient
    #                                   (AutoAttack's check_zero_gradients: any)
    determinism_tol: float = 1e-4     # largest |logit difference| allowed between two eval-mode passes
    decided_at: float = 0.01          # the strongest attack already leaves at most this accuracy: the large-eps
    #                                   check is skipped (its answer is decided); the more-steps check is skipped
    #                                   where what survived every attack is within its margin (it cannot fire)


@dataclass(frozen=True)
class EvalConfig:
    eps: float = 0.2
    norm: Literal["Linf", "L2"] = "Linf"  # every attack's ball: FGSM, PGD, CW, AutoAttack, the curve, sanity
    attacks: tuple[str, ...] = ("clean", "fgsm", "pgd20", "cw", "aa", "corruptions")
    n: int | None = None              # first N test images for clean/FGSM/PGD/CW (None: all)
    aa_n: int | None = None           # first N test images for AutoAttack (None: as n)
    aa_subset_why: str = ""           # why AutoAttack runs on fewer images than the other attacks (the report says)
    aa_version: str = "standard"
    aa_attacks: tuple[str, ...] = ()  # a subset of the version's attacks, run in its order (empty: all of them)
    aa_seed: int = 0
    curve_eps: tuple[float, ...] = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3)  # PGD-20 robustness curve
    batch_size: int = 500             # also the unit of resumable progress: one state entry per batch
    precision: Literal["fp32", "bf16"] = "fp32"  # the attacks' arithmetic (bf16 autocast only when asked)
    sanity: SanityConfig = field(default_factory=SanityConfig)
    # common corruptions (bench/eval/corruptions.py): the first corruptions_n evaluated images, every
    # corruption at severities 1-5, generated with this seed, or read from corruptions_dir (the published
    # CIFAR-10-C / CIFAR-100-C .npy files) when given; () = every corruption that suits the images
    corruptions: tuple[str, ...] = ()
    corruptions_n: int | None = 1000
    corruptions_seed: int = 0
    corruptions_dir: str | None = None
    # generated: the generator above (any data set); published: CIFAR-10-C / CIFAR-100-C as released
    # (read through robustbench's loader from <data dir>/CIFAR-10-C unless corruptions_dir says where;
    # fetched only with --download)
    corruptions_from: Literal["generated", "published"] = "generated"


@dataclass(frozen=True)
class TrainedTeacher:
    """A teacher the suite trains (and caches) itself, with its own schedule, recorded in its id."""
    arch: str = "cnn-wide"
    method: str = "pgd-at"
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=60))
    seed: int | None = 0              # None: one teacher per student seed (the teacher row gets a spread)
    attack: AttackConfig | None = None  # its training attack (None: the run's); e.g. TRADES' own 0.031 / 0.007
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
# a method's further teachers (bench.methods.base.Method.teachers): role -> the RunConfig field that says which
TEACHER_ROLES: dict[str, str] = {"natural": "natural_teacher"}


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
        d["train"] = TrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d["train"].items()})
    if isinstance(d.get("attack"), dict):
        d["attack"] = AttackConfig(**d["attack"])
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
class Limit:
    """Caps over whatever a protocol's recipes say (smoke scale: every path in seconds on a CPU)."""
    epochs: int | None = None
    attack_steps: int | None = None


@dataclass(frozen=True)
class RunConfig:
    preset: str = "digits"
    # common: this config for every method (compare); official: each method with its official script's
    # recipe over it (reproduce; bench.methods.base.Recipe, bench.config.protocol)
    protocol: Literal["common", "official"] = "common"
    data: DataConfig = field(default_factory=DataConfig)
    student_arch: str = "cnn-narrow"
    teacher: TeacherConfig = field(default_factory=TrainedTeacher)
    # the naturally trained teacher of methods that use one (MTARD), only read by those
    natural_teacher: TeacherConfig = field(default_factory=lambda: TrainedTeacher(method="natural"))
    train: TrainConfig = field(default_factory=TrainConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    structure: bool = True            # teacher-student structure metrics for every student
    seed: int = 0
    device: str = "auto"              # auto: cuda when available, else cpu
    # training precision: auto = bf16 autocast on CUDA, fp32 elsewhere (each record stores the resolved one)
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    compile: bool = False             # torch.compile the student's and the teacher's forward while training
    sync_bn: bool = False             # under torchrun: batch-norm statistics over the global batch (CUDA)
    # the student's input normalisation: the data set's mean/std inside the network, or none (the pixels
    # ToTensor() gives, as the official CIFAR scripts feed them)
    input_norm: Literal["dataset", "none"] = "dataset"
    limit: Limit = field(default_factory=Limit)


def config_hash(obj) -> str:
    """Stable short id of a JSON-serialisable description."""
    blob = json.dumps(obj if isinstance(obj, dict) else asdict(obj), sort_keys=True, default=list)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def override(cfg, **changes):
    """dataclasses.replace that ignores None values (unset command-line flags)."""
    return replace(cfg, **{k: v for k, v in changes.items() if v is not None})


def data_key(data: DataConfig) -> dict:
    """The parts of a data config that change the data (not where the files are)."""
    d = asdict(data)
    d.pop("data_dir")
    d.pop("download")
    d.pop("on_device")
    return d
