"""The method contract.

A method says three things:
  * ``inner``: what its inner maximisation ascends (``inner_objective``), where it starts, and the
    student's batch-norm mode during the attack -- or ``None`` for no attack. The objective is evaluated
    once at each iterate x_0 .. x_{K-1}, in order, so a method may keep statistics of the attack there
    (in ``batch.cache``; Fair-ARD counts the iterates the student still classifies correctly);
  * ``losses``: its loss terms, already weighted, as a dict of named tensors (the trainer sums them);
  * ``modules``: extra trainable modules or buffers (projection heads, memory banks), optimised with
    the student.
and, only where it needs them:
  * ``teachers``: teachers besides the run's (robust) one, by role (MTARD's natural teacher), handed in
    as ``batch.teachers[role]`` -- or ``needs_teacher = False`` for none at all;
  * ``networks``: further trainable networks, each with its own optimiser and schedule (PeerAiD's peer,
    built with ``ctx.build_student``); one backward of the summed terms, then every optimiser steps;
  * state across steps and epochs in ``self.state`` (checkpointed with the run, restored on resume):
    updated inside ``losses`` per step (``batch.lr_scale`` follows the lr schedule; ``batch.global_mean``
    makes a per-rank mean the global batch's under torchrun) and in ``end_epoch`` (``EpochEnd.reduce``
    sums a per-rank statistic over ranks); ``batch.epoch`` is the epoch inside the loss;
  * its gradient routing by name (``gradient_sites``): each detach of the official code through
    ``self.stop`` or ``self.no_grad``, each tensor it differentiates through where a detach would
    be a plausible slip through ``self.flow``, so that a mutation test can turn each the other way.
    A site is one where turning it changes a gradient of training (of a trained parameter, or the
    attack's input gradient); a frozen teacher's no_grad, or a statistic kept in ``state`` from
    detached logits or counts, is not one.
Stochastic weight averaging with batch-norm re-estimation is the harness's (``TrainConfig.swa_start``),
for any method. The harness never branches on a method's name.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, ClassVar, Literal, get_args, get_origin, get_type_hints

import torch
import torch.nn.functional as F
from torch import nn

from bench.common import distributed
from bench.common.errors import BenchError


@dataclass(frozen=True)
class InnerMax:
    """Declaration of a method's inner maximisation (the attack it trains against)."""
    ascends: str                                      # the objective, in words and symbols
    start: Literal["uniform", "normal", "none"] = "uniform"
    student_mode: Literal["train", "eval"] = "train"  # student's batch-norm mode during the attack
    teacher_at: str = "-"                             # where the teacher is evaluated
    # the attack differentiates through the teacher (AdaAD's): a teacher forward-backward per attack step,
    # which the dry run's cost model charges at the teacher's rate
    through_teacher: bool = False


@dataclass(frozen=True)
class Context:
    """What a method may need to know about the run when it is built."""
    num_classes: int
    n_train: int
    train_labels: torch.Tensor        # (n_train,) on the device, for class-aware negatives
    student_dim: int
    teacher_dim: int | None
    device: torch.device
    epochs: int
    seed: int = 0
    build_student: Callable[[], nn.Module] | None = None  # a fresh network of the student's architecture


@dataclass
class Batch:
    """One training batch; teacher outputs on the clean input are computed once, lazily."""
    x: torch.Tensor          # clean, augmented, in [0, 1]
    y: torch.Tensor
    idx: torch.Tensor        # indices into the training set (memory banks)
    student: nn.Module
    teacher: nn.Module | None
    epoch: int               # 0-based
    cache: dict = field(default_factory=dict)  # per-batch values a method computes once
    shard: Any = None        # bench.common.distributed.Shard under torchrun: the global batch this is a part of
    generator: torch.Generator | None = None  # the run's seeded stream on the device (attack starts, negatives)
    teachers: dict[str, nn.Module] = field(default_factory=dict)  # the method's further teachers, by role
    lr_scale: float = 1.0    # this epoch's learning rate over the base rate (state whose step follows the lr)

    def global_mean(self, value: torch.Tensor) -> torch.Tensor:
        """The global batch's mean of a mean over this process's rows (``value`` itself outside torchrun),
        detached: for state a method updates from a batch statistic."""
        value = value.detach()
        if self.shard is None:
            return value
        rows = self.shard.part.stop - self.shard.part.start
        return distributed.all_reduce_sum(value * rows) / sum(self.shard.sizes)

    @cached_property
    def teacher_features(self) -> torch.Tensor:
        with torch.no_grad():
            return self.teacher.features(self.x)

    @cached_property
    def teacher_logits(self) -> torch.Tensor:
        with torch.no_grad():
            return self.teacher.head(self.teacher_features)


@dataclass
class Network:
    """A further trainable network of a method (``Method.networks``): trained on the method's loss terms
    with its own optimiser and schedule, the run's TrainConfig with ``train``'s fields changed."""
    module: nn.Module
    train: dict = field(default_factory=dict)


@dataclass(frozen=True)
class EpochEnd:
    """What ``Method.end_epoch`` is told after each epoch."""
    epoch: int                                          # the 0-based epoch just trained
    lr_scale: float                                     # the next epoch's lr over the base rate
    reduce: Callable[[torch.Tensor], torch.Tensor] = lambda t: t  # sum over ranks under torchrun


@dataclass(frozen=True)
class PaperTeacher:
    """The teacher a recipe's published numbers came from, as its script or README states it."""
    name: str           # RobustBench zoo name (Linf), or a description where the zoo lacks it
    arch: str           # its architecture, e.g. "WRN-34-20"
    zoo: bool           # in RobustBench's zoo under ``name``
    source: str         # the file and line that state it

    def text(self) -> str:
        return f"RobustBench {self.name} ({self.arch})" if self.zoo else self.name


@dataclass(frozen=True)
class Recipe:
    """How the official script trains: what protocol ``official`` runs (bench.config.protocol), and what
    the recipe table lists, each field with the file and line it comes from (``sources``).

    ``train`` and ``attack`` are TrainConfig / AttackConfig fields on CIFAR-10, ``by_dataset`` the
    script's changes per data set; ``options`` the method options that give the official loss magnitude
    per data set (both protocols use them), ``official_options`` those only the official protocol turns
    on (e.g. a clean forward kept for its batch-norm statistics); ``checkpoint`` the selection policy of
    the published number (bench.config.schema.TrainConfig.checkpoint). ``code=False``: there is no
    official code and the recipe is the suite's own default, stated as such. ``datasets``: where the
    script has a recipe; ``by_student_options``: options per student architecture (official only);
    ``teachers``: the published number's teacher per data set."""
    repo: str                                   # owner/name@commit the lines were read at
    train: dict = field(default_factory=dict)
    by_dataset: dict[str, dict] = field(default_factory=dict)
    by_student: dict[str, dict] = field(default_factory=dict)   # per student architecture (TrainConfig fields)
    attack: dict = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    official_options: str = ""
    checkpoint: str = "last"
    precision: str = "fp32"                     # every official script trains in fp32
    input_norm: str = "none"                    # ToTensor() pixels, no Normalize in the model
    sources: dict[str, str] = field(default_factory=dict)   # field -> "file:line (what it says)"
    code: bool = True
    # the data sets the script has a recipe for; on another one the official protocol applies the first
    # one's recipe and says so on the row (bench.config.protocol.recipe_notes)
    datasets: tuple[str, ...] = ("cifar10", "cifar100")
    # method options the official protocol adds per student architecture (a script's per-network loss)
    by_student_options: dict[str, str] = field(default_factory=dict)
    # per data set, the teacher behind the published number (shown beside the teacher that ran)
    teachers: dict[str, PaperTeacher] = field(default_factory=dict)


class Method:
    """Base class. Subclasses set the class attributes and override ``losses``."""
    name: ClassVar[str]
    citation: ClassVar[str]
    summary: ClassVar[str]
    needs_teacher: ClassVar[bool] = False
    # further teachers by role (bench.config.schema.TEACHER_ROLES) -> what the method uses them for
    teachers: ClassVar[dict[str, str]] = {}
    inner: ClassVar[InnerMax | None] = None
    schedule: ClassVar[str] = "-"                     # the official training schedule, for `list`
    # The official script's recipe (protocol ``official``); None: no official recipe is known here.
    official: ClassVar[Recipe | None] = None
    # The paper's stated schedule where it differs from what the code runs (TrainConfig fields).
    paper_train: ClassVar[dict | None] = None
    note: ClassVar[str] = ""                          # shown next to the method's name in reports
    # Where the gradient is stopped or must flow, by name: "stop: ..." a detach or no_grad of the
    # official code, "flow: ..." a tensor it differentiates through. The code marks each with
    # ``self.stop``, ``self.no_grad`` or ``self.flow``; a mutation test (mutation_sweep.py in
    # benchmarks/) turns one the other way through ``flipped``: empty in a run, a set lookup.
    gradient_sites: ClassVar[dict[str, str]] = {}
    flipped: frozenset[str] = frozenset()

    @classmethod
    def official_schedule(cls, dataset: str = "cifar10", form: str = "code") -> dict | None:
        """TrainConfig fields of the official schedule on ``dataset``: as the code runs it, or as the
        paper states it (``form="paper"``; the code's where the paper states nothing else)."""
        if cls.official is None or not cls.official.train:
            return None
        base = cls.paper_train if form == "paper" and cls.paper_train else cls.official.train
        return {**base, **cls.official.by_dataset.get(dataset, {})}

    @classmethod
    def magnitude_options(cls, dataset: str) -> str:
        """The options that give the official code's loss magnitude on ``dataset`` ("scale=0.1")."""
        return cls.official.options.get(dataset, "") if cls.official else ""

    @dataclass(frozen=True)
    class Options:
        pass

    def __init__(self, options: "Method.Options", ctx: Context):
        self.options = options
        self.ctx = ctx
        self.state: dict[str, Any] = {}   # tensors and numbers carried across steps and epochs

    def stop(self, t: torch.Tensor, site: str) -> torch.Tensor:
        """``t`` detached: a gradient the official code stops (``site`` flipped: not stopped)."""
        return t if site in self.flipped else t.detach()

    def flow(self, t: torch.Tensor, site: str) -> torch.Tensor:
        """``t`` itself: a gradient the official code lets through (``site`` flipped: detached)."""
        return t.detach() if site in self.flipped else t

    def no_grad(self, site: str) -> contextlib.AbstractContextManager:
        """``torch.no_grad()``: a block the official code runs without a graph (flipped: none)."""
        return contextlib.nullcontext() if site in self.flipped else torch.no_grad()

    def modules(self) -> nn.Module | None:
        """Extra trainable modules and buffers (moved to the device, optimised with the student)."""
        return None

    def networks(self) -> dict[str, Network]:
        """Further trainable networks, each with its own optimiser (the same objects on every call)."""
        return {}

    def end_epoch(self, end: EpochEnd) -> None:
        """Update ``self.state`` after an epoch (per-class statistics gathered during it)."""

    def state_dict(self) -> dict[str, Any]:
        return {k: v.detach().clone() if isinstance(v, torch.Tensor) else v for k, v in self.state.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.state = {k: v.to(self.ctx.device) if isinstance(v, torch.Tensor) else v for k, v in state.items()}

    def attack_radius(self, eps: float, step: float) -> tuple[float, float]:
        """The training attack's (eps, step) from the run's: the same, unless a method's documented
        author-code variant runs another (IGDM's swapped pair)."""
        return eps, step

    def inner_objective(self, batch: Batch, x_adv: torch.Tensor) -> torch.Tensor:
        """The scalar the attack ascends (summed over the batch)."""
        raise BenchError(f"method {self.name} has no inner maximisation")

    def losses(self, batch: Batch, x_adv: torch.Tensor | None) -> dict[str, torch.Tensor]:
        raise BenchError(f"method {self.name} defines no losses")

    def facts(self) -> dict:
        """Method-specific facts worth recording with the run (e.g. the effective K)."""
        return {}


# --- loss helpers shared by methods (pure functions) ---------------------------------------------

def kl_div(student_logits: torch.Tensor, target_logits: torch.Tensor, t: float = 1.0,
           reduction: str = "batchmean") -> torch.Tensor:
    """KL(softmax(target/t) || softmax(student/t)), summed over classes, mean over the batch.

    ``reduction='sum'`` sums over the batch (for inner maximisations), ``'none'`` gives per-sample.
    """
    log_p = F.log_softmax(student_logits / t, dim=1)
    log_q = F.log_softmax(target_logits / t, dim=1)
    per_sample = (log_q.exp() * (log_q - log_p)).sum(1)
    if reduction == "none":
        return per_sample
    return per_sample.sum() if reduction == "sum" else per_sample.mean()


def check_warmup(fraction: float) -> None:
    """An ``Options.warmup`` is a fraction of the run's epochs (ValueError: parse_options makes it one line)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"warmup={fraction} must be a fraction of the epochs in [0, 1]")


class Warmup:
    """For a method whose ``Options.warmup`` is the fraction of the epochs before a term switches on (IAD's
    60 of 200 is 0.3): the first 0-based epoch with it, rounded half up, recorded with the run."""

    @property
    def begin_epoch(self) -> int:
        return int(math.floor(self.options.warmup * self.ctx.epochs + 0.5))

    def facts(self):
        return {"introspection_from_epoch": self.begin_epoch}


# --- options: "name:key=value:key=value" -------------------------------------------------------

def option_fields(options_cls: type) -> dict[str, Any]:
    hints = get_type_hints(options_cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(options_cls)}


def _coerce(method: str, key: str, raw: str, hint: Any) -> Any:
    if get_origin(hint) is Literal:
        choices = get_args(hint)
        if raw not in choices:
            raise BenchError(f"{method}: option {key}={raw!r} is not one of {', '.join(map(str, choices))}")
        return raw
    try:
        if hint is bool:
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(raw)
            return raw.lower() in ("true", "1", "yes")
        if hint is int:
            return int(raw)
        if hint is float:
            return float(raw)
    except ValueError:
        raise BenchError(f"{method}: option {key}={raw!r} is not a valid {hint.__name__}") from None
    return raw


def parse_options(method: str, options_cls: type, pairs: list[str]) -> Any:
    fields = option_fields(options_cls)
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise BenchError(f"{method}: option {pair!r} is not key=value")
        key = key.replace("-", "_")
        if key not in fields:
            known = ", ".join(fields) or "(none)"
            raise BenchError(f"{method}: unknown option {key!r}; known: {known}")
        values[key] = _coerce(method, key, raw, fields[key])
    try:
        return options_cls(**values)
    except ValueError as err:  # an Options __post_init__ check
        raise BenchError(f"{method}: {err}") from None


def variant_label(name: str, options: Any) -> str:
    """Canonical name of a method variant: its name plus every option that differs from the default."""
    default = type(options)()
    diffs = [f"{f.name}={getattr(options, f.name)}" for f in dataclasses.fields(options)
             if getattr(options, f.name) != getattr(default, f.name)]
    return ":".join([name, *diffs])


@dataclass(frozen=True)
class MethodSpec:
    """A method with its options, as parsed from ``name:key=value:...``."""
    name: str
    options: Any
    cls: type = field(compare=False, repr=False)

    @property
    def label(self) -> str:
        return variant_label(self.name, self.options)

    def build(self, ctx: Context) -> Method:
        return self.cls(self.options, ctx)
