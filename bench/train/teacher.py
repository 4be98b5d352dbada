"""Teachers: trained here (and cached by config and code), a RobustBench zoo entry, or a file.

The config says which (``bench.config.schema.TeacherConfig``, parsed once at the command line); this module
turns it into a model in eval mode and a :class:`TeacherInfo` that says what the teacher really is --
its training method, architecture, where it came from and, for zoo models, the numbers the zoo
reports -- so reports and published-number lookups never guess.
"""
from __future__ import annotations

import json
import shutil
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from bench.common import distributed
from bench.common.errors import BenchError
from bench.common.io import atomic_save, atomic_write_json, load_weights, lock_for
from bench.common.log import log
from bench.common.precision import step_facts
from bench.common.provenance import train_digest
from bench.config.schema import (
    RunConfig,
    TeacherConfig,
    TrainedTeacher,
    ZooTeacher,
    config_hash,
    data_key,
)
from bench.data.images import ImageData
from bench.models import ARCHS, build_model
from bench.models.zoo import load_robustbench_model, locate_robustbench_model, zoo_metadata
from bench.train.loop import train_model
from bench.methods import parse_method
from bench.methods.base import Context

TEACHERS_DIR = "teachers"


@dataclass(frozen=True)
class TeacherInfo:
    kind: str                 # trained | robustbench | file
    method: str               # how it was trained (a method label, or "unknown")
    arch: str
    source: str               # "trained here", "RobustBench <name>", or the file's path
    reported: dict = field(default_factory=dict)  # zoo-reported accuracies (%) and their source

    @property
    def label(self) -> str:
        where = "" if self.kind == "trained" else f"; {self.source}"
        return f"{self.method}, {self.arch}{where}"


@dataclass
class Teacher:
    model: torch.nn.Module
    teacher_id: str
    train_s: float
    info: TeacherInfo
    seed: int
    code: str = ""            # train-code digest (trained teachers)


def describe(tc: TeacherConfig, dataset: str) -> TeacherInfo:
    base = dataset.partition("@")[0]
    if isinstance(tc, TrainedTeacher):
        return TeacherInfo("trained", parse_method(tc.method).label, tc.arch, "trained here")
    if isinstance(tc, ZooTeacher):
        meta = zoo_metadata(tc.name, base, tc.threat_model)
        reported = ({"clean": float(meta["clean"]), "aa": float(meta["aa"]), "eps": meta["eps"],
                     "source": meta["source"]} if meta else {})
        return TeacherInfo("robustbench", meta["method"] if meta else "unknown", tc.arch,
                           f"RobustBench {tc.name}", reported)
    return TeacherInfo("file", tc.method, tc.arch, tc.path)


def check_teacher(tc: TeacherConfig, dataset: str) -> None:
    """Fail with one line before any work: unknown architecture or method, missing files."""
    ARCHS.get(tc.arch)
    if isinstance(tc, TrainedTeacher):
        spec = parse_method(tc.method)
        if spec.cls.needs_teacher:
            raise BenchError(f"teacher method {spec.name!r} itself needs a teacher; use e.g. pgd-at or trades")
    elif isinstance(tc, ZooTeacher):
        locate_robustbench_model(tc.name, dataset.partition("@")[0], tc.threat_model)
    elif not Path(tc.path).is_file():
        raise BenchError(f"teacher checkpoint {tc.path} does not exist")


def prepare_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """On the device, channels_last (faster convolutions with oneDNN on CPU and cuDNN on GPU)."""
    return model.to(device).to(memory_format=torch.channels_last)


def get_teacher(cfg: RunConfig, seed: int, data: ImageData, results: Path, device: torch.device,
                force: bool = False, tc: TeacherConfig | None = None) -> Teacher:
    """Train (and cache under results/teachers/) or load the run's teacher (``tc``: another of its
    teachers, e.g. ``cfg.natural_teacher``), in eval mode, frozen.

    ``seed`` is the student seed; a trained teacher uses its own seed unless that is None (one
    teacher per student seed)."""
    tc = cfg.teacher if tc is None else tc
    info = describe(tc, data.name)
    if isinstance(tc, TrainedTeacher):
        teacher = _trained(cfg, tc, seed if tc.seed is None else tc.seed, data, results, device, force, info)
    elif isinstance(tc, ZooTeacher):

        model = load_robustbench_model(tc.name, data.name.partition("@")[0], tc.threat_model)
        if model.num_classes != data.num_classes:
            raise BenchError(f"RobustBench model {tc.name} has {model.num_classes} classes, {data.name} has "
                             f"{data.num_classes}")
        teacher = Teacher(prepare_model(model, device), f"robustbench-{tc.name}", 0.0, info, 0)
    else:
        path = Path(tc.path)
        model = build_model(tc.arch, data.num_classes, data.in_channels, tc.mean, tc.std)
        load_weights(model, path, tc.arch)
        teacher = Teacher(prepare_model(model, device), teacher_id(cfg, seed, data, tc), 0.0, info, 0)
    teacher.model.eval().requires_grad_(False)
    return teacher


def teacher_id(cfg: RunConfig, seed: int, data: ImageData, tc: TeacherConfig | None = None) -> str:
    """The id of the teacher a student with ``seed`` is trained against (``tc``: another of the run's
    teachers), without loading or training it."""
    tc = cfg.teacher if tc is None else tc
    if isinstance(tc, TrainedTeacher):
        return _trained_key(cfg, tc, seed if tc.seed is None else tc.seed, data)[0]
    if isinstance(tc, ZooTeacher):
        return f"robustbench-{tc.name}"
    path = Path(tc.path)
    digest = config_hash({"path": str(path.resolve()), "size": path.stat().st_size,
                          "mtime": path.stat().st_mtime_ns, "arch": tc.arch})
    return f"file-{tc.arch}-{digest}"


def _trained_key(cfg: RunConfig, tc: TrainedTeacher, seed: int, data: ImageData) -> tuple[str, dict, str]:
    spec = parse_method(tc.method)
    code = train_digest(spec.cls)
    key = {"kind": "trained", "data": data_key(cfg.data), "arch": tc.arch, "method": spec.label,
           "train": asdict(tc.train), "attack": asdict(tc.attack or cfg.attack), "seed": seed,
           "mean": list(data.mean), "std": list(data.std), "precision": cfg.precision, "compile": cfg.compile,
           "code": code}
    if distributed.world_size() > 1:  # trained over several ranks: per-rank batch-norm statistics
        key["ranks"] = {"world_size": distributed.world_size(), "sync_bn": cfg.sync_bn}
    return f"{spec.name}-{tc.arch}-{config_hash(key)}", key, code


def _trained(cfg: RunConfig, tc: TrainedTeacher, seed: int, data: ImageData, results: Path,
             device: torch.device, force: bool, info: TeacherInfo) -> Teacher:
    """Load the cached teacher, or train it. A file lock makes exactly one process train a given
    teacher; every other process that needs it waits here, then loads what that one saved. Under
    torchrun rank 0 holds the lock and all ranks train the teacher together."""
    spec = parse_method(tc.method)
    teacher_id, key, code = _trained_key(cfg, tc, seed, data)
    tdir = results / TEACHERS_DIR / teacher_id
    weights = tdir / "model.pt"
    torch.manual_seed(seed)
    model = prepare_model(build_model(tc.arch, data.num_classes, data.in_channels, data.mean, data.std), device)
    main = distributed.is_main()
    with (lock_for(tdir) if main else nullcontext()):
        if force and tdir.exists() and main:
            shutil.rmtree(tdir)
        if distributed.broadcast_object(weights.exists() if main else None):
            try:
                meta = json.loads((tdir / "meta.json").read_text())
                load_weights(model, weights, tc.arch)
                return Teacher(model, teacher_id, float(meta["train_s"]), info, seed, code)
            except (BenchError, OSError, ValueError, KeyError, TypeError):
                # a trained teacher is derived from its config: train it again rather than stop
                log(f"teacher {teacher_id}: its cached weights or meta.json in {tdir} are damaged; training it "
                     "again from its config")
                if main:
                    shutil.rmtree(tdir, ignore_errors=True)
                distributed.barrier()
        log(f"training teacher {teacher_id} ({spec.label}, {tc.arch}, {tc.train.epochs} epochs, seed {seed})")
        ctx = Context(num_classes=data.num_classes, n_train=len(data.y_train), train_labels=data.y_train,
                      student_dim=model.feature_dim, teacher_dim=None, device=device, epochs=tc.train.epochs,
                      seed=seed)
        # with --sync-bn the teacher trains as the students do (its cache key says so), as a SyncBatchNorm
        # copy whose trained values the plain model takes back
        trained = distributed.sync_batchnorm(model, cfg.sync_bn)
        history = train_model(trained, spec.build(ctx), data, replace(tc.train, checkpoint="last"),
                              tc.attack or cfg.attack, None, tdir, device, cfg.precision, desc=f"teacher s{seed}",
                              seed=seed, compile=cfg.compile)
        if trained is not model:
            model.load_state_dict(trained.state_dict())
        model.eval()
        train_s = sum(row["seconds"] for row in history)
        if main:
            atomic_save(model.state_dict(), weights)
            atomic_write_json(tdir / "meta.json", {"train_s": train_s, "teacher_id": teacher_id, "key": key,
                                                   "step": step_facts(cfg.precision, cfg.compile, device),
                                                   "history": history})
            (tdir / "checkpoint.pt").unlink(missing_ok=True)
        distributed.barrier()
        return Teacher(model, teacher_id, train_s, info, seed, code)

