"""The two protocols of the paper tables, never mixed up:

* ``common`` (compare): the run's config for every method, one schedule, selection (if any) on a
  validation split carved from the training data;
* ``official`` (reproduce): each method with its official script's recipe (``bench.methods.base.Recipe``)
  over the run's config: schedule, batch size, weight decay, training attack, checkpoint policy, fp32,
  the script's input pipeline, and the options only the script turns on.

A run's config (``RunConfig.protocol``) names its protocol; ``method_config`` gives the config one method
trains under, ``method_label`` its variant. Both are pure functions of the config and the method's class,
so a job file needs nothing beyond the config to say what each method runs. The recipe's keys cannot be set
by flags under ``official`` (a run that changes them reproduces nothing): ``check_layers`` refuses that.
"""
from __future__ import annotations

from dataclasses import asdict, replace

from bench.common.errors import BenchError
from bench.config.files import _flat
from bench.config.schema import Limit, RunConfig, ZooTeacher
from bench.models import published_arch
from bench.methods import METHODS, parse_method

# what a recipe decides under the official protocol (dotted config keys)
RECIPE_KEYS = ("train.epochs", "train.batch_size", "train.lr", "train.momentum", "train.weight_decay",
               "train.nesterov", "train.schedule", "train.milestones", "train.gamma", "train.checkpoint",
               "train.swa_start", "train.select_every", "train.select_dense_from", "train.select_step",
               "train.also_keep", "attack.eps", "attack.step_ratio", "attack.steps", "precision", "input_norm")
OFFICIAL_DATA = ("cifar10", "cifar100")   # the data sets the official scripts' recipes are for
_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}


def dataset_of(cfg: RunConfig) -> str:
    return cfg.data.name.partition("@")[0]


def _recipe(cls):
    """The recipe the official protocol applies (None: none, or no code: the common config stands)."""
    r = cls.official
    return r if r is not None and r.code else None


def official_options(cls, cfg: RunConfig) -> list[str]:
    """The options ``cls``'s recipe turns on under ``cfg`` (official only): those of every run, then
    those of ``cfg``'s student architecture (a smoke twin counts as the network it stands in for)."""
    r = _recipe(cls)
    if cfg.protocol != "official" or r is None:
        return []
    per_student = r.by_student_options.get(published_arch(cfg.student_arch), "")
    return [p for p in (r.official_options + ":" + per_student).split(":") if p]


def method_label(label: str, cfg: RunConfig) -> str:
    """``label`` with the options its recipe turns on under ``cfg``'s protocol (``official_options``); an
    option the label already sets keeps the label's value."""
    spec = parse_method(label)
    options = official_options(spec.cls, cfg)
    if not options:
        return label
    given = label.split(":")[1:]
    keys = {p.partition("=")[0].replace("-", "_") for p in given}
    extra = [p for p in options if p.partition("=")[0] not in keys]
    return parse_method(":".join([spec.name, *extra, *given])).label


def teacher_text(teacher) -> str:
    """A teacher config in words ('RobustBench Zhang2019Theoretically (wrn-34-10)')."""
    if teacher.kind == "robustbench":
        return f"RobustBench {teacher.name} ({teacher.arch})"
    if teacher.kind == "file":
        return f"{teacher.method} {teacher.arch} from {teacher.path}"
    return f"{teacher.method} {teacher.arch} trained here"


def recipe_notes(cls, cfg: RunConfig) -> list[str]:
    """What an ``official`` row must say beside its number: another data set's recipe applied where the
    script has none for ``cfg``'s, and the teacher that ran where the published number had another."""
    r = _recipe(cls)
    if cfg.protocol != "official" or r is None:
        return []
    dataset, notes = dataset_of(cfg), []
    if dataset not in r.datasets:
        why = r.sources.get("datasets", f"the script has no {_NAMES.get(dataset, dataset)} recipe")
        notes.append(f"{_NAMES.get(r.datasets[0], r.datasets[0])} recipe applied ({why})")
    paper, ran = r.teachers.get(dataset), recipe_teacher(cls, cfg)
    if paper is not None and cls.needs_teacher and not (
            paper.zoo and ran.kind == "robustbench" and ran.name == paper.name):
        notes.append(f"published with {paper.text()}, not this row's teacher")
    return notes


def apply_limit(cfg: RunConfig) -> RunConfig:
    lim = cfg.limit
    train, attack = cfg.train, cfg.attack
    if lim.epochs is not None and train.epochs > lim.epochs:
        # an average from a later epoch than the cap: from the last epoch, so the path still runs
        swa = None if train.swa_start is None else min(train.swa_start, lim.epochs - 1)
        # every epoch scored: a sparse selection schedule might score none of the capped ones
        train = replace(train, epochs=lim.epochs, milestones=tuple(m for m in train.milestones if m < lim.epochs),
                        swa_start=swa, select_every=None, select_dense_from=None)
    if lim.attack_steps is not None and attack.steps > lim.attack_steps:
        attack = replace(attack, steps=lim.attack_steps)
    return replace(cfg, train=train, attack=attack)


def method_config(cfg: RunConfig, cls) -> RunConfig:
    """The config ``cls`` (a method class) trains under: ``cfg`` itself under ``common``; under
    ``official`` its recipe on ``cfg``'s data set over ``cfg``. Then ``cfg.limit``'s caps."""
    r = _recipe(cls)
    if cfg.protocol == "official" and r is not None:
        # the student's own changes win over the data set's (RepDistiller: lr 0.01 for MobileNetV2)
        schedule = {**cls.official_schedule(dataset_of(cfg)), **r.by_student.get(published_arch(cfg.student_arch), {})}
        train = replace(cfg.train, **schedule, checkpoint=r.checkpoint)
        cfg = replace(cfg, train=train, attack=replace(cfg.attack, **r.attack), precision=r.precision,
                      input_norm=r.input_norm, teacher=recipe_teacher(cls, cfg))
    return apply_limit(cfg)


def recipe_teacher(cls, cfg: RunConfig):
    """The teacher ``cls`` learns from under ``official``: its published number's, where that is a
    RobustBench zoo entry and the run's teacher is one too (a preset that trains its own teacher, such
    as a smoke run, keeps it; the row then names the published one); else the run's."""
    r = _recipe(cls)
    paper = r.teachers.get(dataset_of(cfg)) if r is not None else None
    if paper is None or not paper.zoo or not cls.needs_teacher or cfg.teacher.kind != "robustbench":
        return cfg.teacher
    return ZooTeacher(paper.name, paper.arch.lower(), cfg.teacher.threat_model)


def check_protocol(cfg: RunConfig) -> None:
    if cfg.protocol == "official" and dataset_of(cfg) not in OFFICIAL_DATA:
        raise BenchError(f"--protocol official reproduces the official scripts' recipes, which are for "
                         f"{' and '.join(OFFICIAL_DATA)}; {cfg.data.name} has none (use --protocol common)")


def check_layers(base: RunConfig, cfg: RunConfig) -> None:
    """Under ``official``, refuse layers (config file, flags, overrides) that set what the recipes set."""
    if cfg.protocol != "official":
        return
    old, new = _flat(asdict(base)), _flat(asdict(cfg))
    changed = [k for k in RECIPE_KEYS if old.get(k) != new.get(k) and (k, new.get(k)) != ("precision", "fp32")]
    if changed:
        raise BenchError(f"under --protocol official each method's recipe sets {', '.join(changed)}; to change "
                         "them, use --protocol common")


def recipe_rows(name: str, cfg: RunConfig) -> list[dict]:
    """Per field where method ``name``'s official config differs from the common one on ``cfg``'s data:
    the two values and the file and line the official value comes from."""
    cls = METHODS.get(name)
    cfg = replace(cfg, limit=Limit())  # the recipes themselves, not a smoke run's caps
    common = _flat(asdict(method_config(replace(cfg, protocol="common"), cls)))
    official = _flat(asdict(method_config(replace(cfg, protocol="official"), cls)))
    r = cls.official
    def source(key: str) -> str:
        line = r.sources.get(key) or r.sources.get(key.split(".")[-1])
        return f"{r.repo} {line}" if line else f"{r.repo} (no line recorded)"
    rows = [{"method": name, "field": k, "common": common[k], "official": official[k], "source": source(k)}
            for k in RECIPE_KEYS if common.get(k) != official.get(k)]
    magnitude = r.options.get(dataset_of(cfg), "") if r is not None else ""
    if magnitude:   # both protocols run it: the loss as the script computes it on this data set
        rows.append({"method": name, "field": "magnitude", "common": magnitude, "official": magnitude,
                     "source": source("magnitude")})
    official_cfg = replace(cfg, protocol="official")
    options = ":".join(official_options(cls, official_cfg))
    if options:
        rows.append({"method": name, "field": "options", "common": "", "official": options,
                     "source": source("options")})
    for note in recipe_notes(cls, official_cfg):
        rows.append({"method": name, "field": "note", "common": "", "official": note, "source": r.repo})
    return rows
