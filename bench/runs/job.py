"""A resolved grid as the unit of work: checked once, written once, run as written.

:func:`plan` checks a resolved run (bench.config.resolve) against everything it names (methods,
architectures, attacks, the teacher, the device) before any data or training work, and returns a
:class:`Job`. An executor that hands work to other processes writes the job to a file first
(:meth:`Job.write`: the whole resolved config, the grid, and a sha256 of every ``--methods-from``
file); each process then runs a part of that file (:func:`run_part`) and never re-reads the command
line or the user's ``--config`` file. A Slurm job that waits in the queue while the user edits that
file runs what was planned; a method file edited in the meantime is refused in one line.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import yaml

from bench.attacks.threat import check_eps
from bench.common import distributed
from bench.common.device import resolve_device
from bench.common.errors import BenchError
from bench.common.io import atomic_write_text
from bench.config import files
from bench.config.presets import get_preset
from bench.config.protocol import method_config
from bench.config.resolve import Resolved
from bench.config.schema import ALSO, TEACHER_ROLES, RunConfig
from bench.records.runset import check_name
from bench.eval.corruption_eval import check_published
from bench.eval.corruptions import CORRUPTIONS
from bench.eval.protocol import check_attacks
from bench.models import ARCHS
from bench.train.teacher import check_teacher
from bench.methods import load_file, parse_method

JOBS_DIR = ".jobs"   # results/<runset>/.jobs/<job id>.yaml


def validate(cfg: RunConfig, methods) -> None:
    """Everything a run needs, checked before any data or training work (one-line errors)."""
    specs = [parse_method(m) for m in methods]
    files.check_ranges(cfg)
    for part in (cfg.attack, cfg.eval):  # L2's cap needs the image size: checked again with the data
        check_eps(part.eps, part.norm)
    ARCHS.get(cfg.student_arch)
    check_attacks(cfg.eval.attacks, cfg.eval.aa_attacks)
    check_teacher(cfg.teacher, cfg.data.name)
    for spec in specs:   # an official recipe's own teacher
        own = method_config(cfg, spec.cls).teacher
        if own != cfg.teacher:
            check_teacher(own, cfg.data.name)
    for role in sorted({role for spec in specs for role in spec.cls.teachers}):  # further teachers a method uses
        check_teacher(getattr(cfg, TEACHER_ROLES[role]), cfg.data.name)
    resolve_device(cfg.device)
    unknown = sorted(set(cfg.train.also_keep) - set(ALSO))
    if unknown:
        raise BenchError(f"train.also_keep: unknown {', '.join(unknown)}; known: {', '.join(ALSO)}")
    if cfg.train.also_keep and cfg.train.checkpoint == "last":
        raise BenchError("train.also_keep keeps checkpoints beside a selected one: give train.checkpoint a best-* "
                         "policy")
    ev = cfg.eval
    if ev.corruptions_from == "published" and ev.corruptions_dir and "corruptions" in ev.attacks \
            and not cfg.data.download:   # one line before any training, not after hours of it
        check_published(Path(ev.corruptions_dir), ev.corruptions or CORRUPTIONS)
    if cfg.sync_bn:
        if distributed.world_size() == 1:
            raise BenchError("--sync-bn is for one run over several GPUs: start it with torchrun --nproc-per-node N")
        if not torch.cuda.is_available():
            raise BenchError("--sync-bn needs CUDA (PyTorch's SyncBatchNorm does not run on CPU)")


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass(frozen=True)
class Job:
    """A checked (methods x seeds) grid and where it goes."""
    config: RunConfig
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    runset: str
    compare_to: str | None = None
    command: str = ""                                  # the command as typed (the manifest records it)
    methods_from: tuple[tuple[str, str], ...] = ()     # (absolute path, sha256) of each --methods-from file
    meta: dict = field(default_factory=dict, compare=False)

    def folder(self, results: Path) -> Path:
        return Path(results) / self.runset / JOBS_DIR

    def text(self) -> str:
        head = {"runset": self.runset, "compare_to": self.compare_to, "command": self.command,
                "methods_from": [{"path": p, "sha256": h} for p, h in self.methods_from]}
        return (files.HEADER + "# a bench job: python -m bench job THIS_FILE --teacher | --method M --seed S | "
                "--report\n" + files.dump({"job": head, **files.to_dict(self.config, self.methods, self.seeds)}))

    def id(self) -> str:
        return hashlib.sha256(self.text().encode()).hexdigest()[:12]

    def write(self, results: Path) -> Path:
        """Write the job to results/<runset>/.jobs/<id>.yaml (atomic; the same job, the same file)."""
        path = self.folder(results) / f"{self.id()}.yaml"
        if not path.exists():
            atomic_write_text(path, self.text())
        return path


def plan(resolved: Resolved, runset: str | None = None, command: str = "", methods_from=()) -> Job:
    """The checked job of a resolved run; ``methods_from``: the user method files it needs (their bytes
    are pinned by sha256)."""
    validate(resolved.config, resolved.methods)
    check_name(runset or resolved.config.preset)
    pinned = tuple((str(Path(p).expanduser().resolve()), sha256(Path(p).expanduser())) for p in methods_from)
    return Job(resolved.config, tuple(resolved.methods), tuple(resolved.seeds), runset or resolved.config.preset,
               resolved.preset.compare_to, command, pinned)


def read(path: str | Path) -> Job:
    """The job a file holds; its method files are checked against their digests and loaded. The file's
    name is the digest of its text, so a file cut short or edited is refused, not half-read."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"no job file {path}")
    damaged = f"job file {path} is damaged or was edited; submit the grid again"
    try:
        text = path.read_text()
        if hashlib.sha256(text.encode()).hexdigest()[:12] != path.stem:
            raise BenchError(damaged)
        data = yaml.safe_load(text)
        head = data.pop("job")
        methods_from = tuple((d["path"], d["sha256"]) for d in head.get("methods_from") or [])
        preset, runset = data.pop("preset"), check_name(head["runset"])
        methods, seeds = tuple(data.pop("methods")), tuple(data.pop("seeds"))
        typed = [(preset, str), *((m, str) for m in methods), *((x, int) for x in seeds),
                 *((v, str) for pair in methods_from for v in pair), (head.get("command", ""), str),
                 (head.get("compare_to") or "", str)]
        if not all(isinstance(v, t) and not isinstance(v, bool) for v, t in typed):
            raise TypeError("a field of the wrong type")
    except (yaml.YAMLError, UnicodeDecodeError, AttributeError, KeyError, TypeError, ValueError) as err:
        raise BenchError(f"{damaged} ({type(err).__name__})") from None
    for file, digest in methods_from:
        if not Path(file).is_file() or sha256(file) != digest:
            raise BenchError(f"job file {path}: --methods-from {file} changed (or went) since the grid was "
                             "submitted; the job will not run other code than was planned: submit the grid again")
        load_file(file)
    cfg, _ = files.apply(get_preset(preset).config, data, f"job file {path}")
    return Job(replace(cfg, preset=preset), methods, seeds, runset, head.get("compare_to"),
               head.get("command", ""), methods_from)
