"""The one resolver: what a run is, from its layers, lowest first:

    preset < --config file < explicit flags < dotted overrides

``resolve`` is called by ``python -m bench run`` and ``regress`` (their flags become a :class:`Flags`),
and by ``bench.run(...)`` (its ``overrides`` and keyword overrides are dotted overrides). It returns a
:class:`Resolved`: the preset, the typed config and the (methods x seeds) grid. Checking a resolved
run against the registries (methods, architectures, attacks, teachers, device) is the running
stage's business, done once per run (``bench.runs.job.plan``).
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Iterable, Mapping

from bench.common.errors import BenchError
from bench.config import files, protocol
from bench.config.presets import Preset
from bench.config.schema import RunConfig, override, parse_teacher
from bench.config.threat import default_eps
from bench.data.sources import corruptions_folder


@dataclass(frozen=True)
class Flags:
    """The explicit flags of a command (None: not given). ``python -m bench run`` sets any of them,
    ``regress`` a few; ``bench.run(methods=..., seeds=...)`` only the grid."""
    methods: tuple[str, ...] | None = None
    seeds: tuple[int, ...] | None = None
    n_seeds: int | None = None
    seed: int | None = None                      # one seed, as seeds=(N,)
    dataset: str | None = None
    data_dir: str | None = None
    download: bool | None = None
    image_size: int | None = None
    data_on_device: str | None = None
    student_arch: str | None = None
    teacher: str | None = None                   # train | robustbench:NAME | PATH
    teacher_arch: str | None = None
    teacher_method: str | None = None
    teacher_epochs: int | None = None
    teacher_mean: tuple[float, ...] | None = None
    teacher_std: tuple[float, ...] | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    schedule: str | None = None
    checkpoint: str | None = None
    train_eps: float | None = None
    train_steps: int | None = None
    eps: float | None = None
    norm: str | None = None
    attacks: tuple[str, ...] | None = None
    n: int | None = None
    aa_n: int | None = None
    aa_version: str | None = None
    eval_precision: str | None = None
    no_sanity: bool = False
    transfer: str | None = None                  # comma list, or "none"
    no_structure: bool = False
    device: str | None = None
    precision: str | None = None
    compile: bool | None = None
    sync_bn: bool | None = None
    protocol: str | None = None                  # common | official (bench.config.protocol)

    @classmethod
    def from_namespace(cls, args) -> "Flags":
        """The flags an argparse namespace holds (a command that lacks a flag leaves it unset)."""
        values = {f.name: getattr(args, f.name, None) for f in fields(cls)}
        for name in ("no_sanity", "no_structure"):
            values[name] = bool(values[name])
        for name in ("methods", "seeds", "attacks"):
            if values[name] is not None:
                values[name] = tuple(values[name])
        values["sync_bn"] = values["sync_bn"] or None   # a store_true flag left off says nothing
        return cls(**values)


@dataclass(frozen=True)
class Resolved:
    """A resolved run: the preset it started from, the typed config and the grid."""
    preset: Preset
    config: RunConfig
    methods: tuple[str, ...]
    seeds: tuple[int, ...]


def _seeds(flags: Flags) -> tuple[int, ...] | None:
    if flags.seeds is not None and flags.n_seeds is not None:
        raise BenchError("give --seeds or --n-seeds, not both")
    if flags.seed is not None and (flags.seeds is not None or flags.n_seeds is not None):
        raise BenchError("give --seed or --seeds/--n-seeds, not both")
    if flags.seed is not None:
        return (flags.seed,)
    if flags.n_seeds is not None:
        return tuple(range(flags.n_seeds))
    return flags.seeds


def _names(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def apply_flags(cfg: RunConfig, flags: Flags) -> RunConfig:
    """``cfg`` with the explicit flags over it. A new data set or norm without ``--eps`` brings its own
    threat model's radius (bench.config.threat), the training attack follows ``--eps`` unless
    ``--train-eps`` says otherwise, and the eps-curve keeps its shape around a new radius."""
    teacher = parse_teacher(flags.teacher, cfg.teacher, arch=flags.teacher_arch, method=flags.teacher_method,
                            epochs=flags.teacher_epochs, mean=flags.teacher_mean, std=flags.teacher_std)
    targets = None
    if flags.transfer is not None:
        targets = () if flags.transfer.strip() == "none" else _names(flags.transfer)
        if not targets and flags.transfer.strip() != "none":
            raise BenchError("--transfer: empty list (give targets, or none)")
    data = override(cfg.data, name=flags.dataset, data_dir=flags.data_dir, download=flags.download,
                    image_size=flags.image_size, on_device=flags.data_on_device)
    eps, norm = flags.eps, flags.norm or cfg.eval.norm
    if eps is None and (flags.dataset or norm != cfg.eval.norm) and default_eps(data.name, norm) != cfg.eval.eps:
        eps = default_eps(data.name, norm)  # another data set's or another norm's threat model
    train_eps = flags.train_eps or eps
    ev = cfg.eval
    if eps is not None and eps != ev.eps:  # the eps-curve keeps its shape around the new threat model
        ev = replace(ev, curve_eps=tuple(round(e * eps / ev.eps, 6) for e in ev.curve_eps))
    ev = override(ev, attacks=flags.attacks, eps=eps, n=flags.n, aa_n=flags.aa_n, aa_version=flags.aa_version,
                  norm=flags.norm, precision=flags.eval_precision)
    if flags.no_sanity:
        ev = replace(ev, sanity=replace(ev.sanity, enabled=False))
    return override(cfg, protocol=flags.protocol, data=data, student_arch=flags.student_arch, teacher=teacher,
                    device=flags.device,
                    precision=flags.precision, compile=flags.compile, sync_bn=flags.sync_bn, eval=ev,
                    probe=override(cfg.probe, targets=targets), structure=False if flags.no_structure else None,
                    train=override(cfg.train, epochs=flags.epochs, batch_size=flags.batch_size, lr=flags.lr,
                                   schedule=flags.schedule, checkpoint=flags.checkpoint),
                    attack=override(cfg.attack, eps=train_eps, steps=flags.train_steps, norm=flags.norm))


def place_corruptions(cfg: RunConfig) -> RunConfig:
    """Published corruptions are read from the data set's folder unless ``eval.corruptions_dir`` names one."""
    ev = cfg.eval
    if ev.corruptions_from != "published" or ev.corruptions_dir or "corruptions" not in ev.attacks:
        return cfg
    folder = corruptions_folder(cfg.data.name, cfg.data.data_dir)
    return replace(cfg, eval=replace(ev, corruptions_dir=str(folder)))


def resolve(preset: str | None = None, config: str | Path | None = None, flags: Flags | None = None,
            overrides: Iterable[str] | Mapping[str, Any] | None = None, default: str = "digits") -> Resolved:
    """The run the layers ask for: ``preset`` (else the file's ``preset:``, else ``default``), the
    ``config`` YAML file, the explicit ``flags``, then ``overrides`` (``["train.lr=0.1"]`` as the command
    line gives them, or a mapping ``{"train.lr": 0.1}``). Methods and seeds come from the highest layer
    that names them."""
    flags = flags or Flags()
    base, cfg, grid = files.load(preset, config, default)
    cfg = apply_flags(cfg, flags)
    if overrides is None:
        layer = {}
    elif isinstance(overrides, Mapping):
        layer = files.nested(overrides)
    else:
        layer = files.parse_dotted(overrides)
    cfg, last = files.apply(cfg, layer, "overrides")
    methods = last.methods or flags.methods or grid.methods
    seeds = last.seeds or _seeds(flags) or grid.seeds
    if not methods or not seeds:
        raise BenchError("a run needs at least one method and one seed")
    protocol.check_protocol(cfg)
    protocol.check_layers(replace(base.config, protocol=cfg.protocol), cfg)
    cfg = place_corruptions(cfg)
    methods = tuple(dict.fromkeys(protocol.method_label(m, cfg) for m in methods))
    if len(set(seeds)) != len(seeds):
        raise BenchError(f"seeds {list(seeds)} repeat a seed")
    return Resolved(base, cfg, tuple(methods), tuple(seeds))
