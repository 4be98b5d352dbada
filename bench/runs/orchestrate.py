"""Orchestration of a (methods x seeds) grid: config -> data, models, teacher -> train -> evaluate ->
record, for each run the grid holds, with locks so that any number of processes can share a run-set.
No method names in here."""
from __future__ import annotations

import json
import shutil
import statistics
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from bench.common import distributed
from bench.common.device import resolve_device, seed_everything
from bench.common.errors import BenchError
from bench.common.io import atomic_save, atomic_write_json, lock_for
from bench.common.log import log
from bench.common.precision import step_facts
from bench.common.provenance import (
    changed_files,
    eval_digest,
    git_commit,
    now,
    package_versions,
    train_digest,
)
from bench.config.files import write_run_config
from bench.config.protocol import method_config, recipe_notes
from bench.config.schema import RunConfig, TrainedTeacher
from bench.data.images import ImageData
from bench.data.sources import load_dataset
from bench.data.splits import carve_validation
from bench.eval.corruption_eval import corruption_record, fetch_published
from bench.eval.per_image import PER_IMAGE, class_record
from bench.eval.protocol import evaluate
from bench.eval.state import evaluate_and_keep
from bench.eval.structure import structure_metrics
from bench.eval.transfer import transfer_metrics
from bench.models import build_model
from bench.runs.identity import eval_key, per_seed_teacher, plan, role_teachers, student_run_id
from bench.records.record import RECORD, RunRecord
from bench.records.runset import Entry, merge_manifest
from bench.runs.status import mark_failed, mark_running
from bench.train.loop import FLOPS_KEY, LAST, train_model
from bench.train.selection import Selection, also_key
from bench.train.teacher import (
    TEACHERS_DIR,
    Teacher,
    get_teacher,
    prepare_model,
    teacher_id,
)
from bench.train.tracking import Tracking, tracking_for
from bench.methods import MethodSpec, parse_method
from bench.methods.base import Context


def load_targets(cfg: RunConfig, source: ImageData, device: torch.device) -> dict[str, ImageData]:
    """Transfer targets at the source's input size; their channels must match the source's."""
    targets = {}
    for name in cfg.probe.targets:
        target = load_dataset(name, cfg.data.data_dir, cfg.data.download, source.image_size, cfg.data.stand_in,
                              cfg.data.train_limit)
        if target.in_channels != source.in_channels:
            raise BenchError(f"transfer target {name} has {target.in_channels} channels, "
                             f"{source.name} has {source.in_channels}")
        targets[name] = target.to(device)
    return targets


def evaluate_all(model, data: ImageData, targets: dict[str, ImageData], teacher, cfg: RunConfig,
                 state_dir: Path | None = None, desc: str = "") -> dict:
    """The protocol, transfer to each target, and (for students) structure against the teacher.
    Per-batch results go to ``state_dir`` as they are computed, so a killed evaluation resumes."""
    ev = evaluate(model, data.x_test, data.y_test, cfg.eval, data.num_classes, cfg.seed, state_dir, desc)
    n = ev["settings"]["n"]
    ev["transfer"] = {}
    for name, target in targets.items():
        t0 = time.perf_counter()
        sub = state_dir / f"transfer-{name}" if state_dir is not None else None
        ev["transfer"][name] = transfer_metrics(model, target, cfg.probe, cfg.eval, cfg.seed, sub,
                                                f"{desc}{name} ")
        ev["timings"][f"transfer_{name}"] = round(time.perf_counter() - t0, 3)
    ev["structure"] = {}
    if teacher is not None and cfg.structure:
        t0 = time.perf_counter()
        ev["structure"] = structure_metrics(model, teacher, data.x_test[:n], data.y_test[:n], cfg.eval.eps,
                                            cfg.eval.batch_size, cfg.seed, cfg.eval.norm)
        ev["structure"]["classes"] = list(data.classes)  # the heatmaps' axis labels
        ev["timings"]["structure"] = round(time.perf_counter() - t0, 3)
    return ev


@dataclass(frozen=True)
class Subject:
    """What a record is about: the run and the model that was trained and evaluated."""
    run_id: str
    role: str                  # student | teacher
    method: str                # the variant's label
    method_name: str
    arch: str
    note: str = ""
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Training:
    """How the evaluated weights came about: the per-epoch log, seconds, code digest, method facts."""
    history: list
    seconds: float
    code: str
    extra: dict = field(default_factory=dict)


def _record(subject: Subject, cfg: RunConfig, data: ImageData, teacher: Teacher, training: Training,
            ev: dict) -> RunRecord:
    return RunRecord(
        **asdict(subject), dataset=data.name, teacher_id=teacher.teacher_id, seed=cfg.seed, config=asdict(cfg),
        eval_key=eval_key(cfg), data_info=data.info, metrics=ev["metrics"], curve=ev["curve"],
        attack_settings=ev["settings"], transfer=ev["transfer"], structure=ev["structure"], sanity=ev["sanity"],
        teacher=asdict(teacher.info), git_commit=git_commit(),
        code={"train": training.code, "eval": eval_digest(), "commit": git_commit(), "changed": changed_files()},
        timings={"train_s": round(training.seconds, 2), "eval_s": round(sum(ev["timings"].values()), 2),
                 **{f"eval_{k}_s": v for k, v in ev["timings"].items()}},
        history=training.history, extra=training.extra, versions=package_versions(), created=now(),
        per_class=(class_record(ev["per_class"], data.classes, ev.get("class_n"))
                   if "per_class" in ev else {}),
        corruptions=corruption_record(ev.get("corruptions", {})),
        checkpoints=_checkpoints(cfg, training.extra.get("checkpoint"), ev) if subject.role == "student" else {})


def _checkpoints(cfg: RunConfig, chosen: dict | None, ev: dict) -> dict:
    """Which weights the metrics are of, and the other checkpoint's numbers: under a best-* policy the
    best epoch's are reported and the last epoch's (clean, PGD-20, AutoAttack) stand beside them."""
    policy = cfg.train.checkpoint
    if chosen is None:
        return {"policy": policy, "reported": "last"}
    same = "last" not in ev  # the best epoch was the last one: one set of weights, evaluated once
    last = {k: v for k, v in ev["metrics"].items() if k in LAST_ATTACKS} if same else ev["last"]["metrics"]
    best = {k: v for k, v in ev["metrics"].items() if k in LAST_ATTACKS}
    out = {"policy": policy, "reported": "best", "best": {"epoch": chosen["epoch"], "metrics": best},
           "last": {"epoch": chosen["last_epoch"], "metrics": last, "same_weights": same}}
    for name, kept in (chosen.get("also") or {}).items():   # a script's further checkpoints, by name
        out[name] = {"epoch": kept["epoch"], "metrics": ev[name]["metrics"]}
    return out


def _reusable(path: Path, key: str, force: bool) -> RunRecord | None:
    """The finished record at ``path`` when its evaluation matches ``key``. A damaged record is derived
    again: the run's weights are evaluated anew (training resumes from its last checkpoint: nothing is
    retrained that finished)."""
    if force or not path.exists():
        return None
    try:
        rec = RunRecord.load(path)
    except BenchError:
        log(f"{path} is damaged: evaluating the run's weights again (finished training is not redone)")
        path.unlink(missing_ok=True)
        return None
    return rec if rec.eval_key == key else None


LAST_ATTACKS = ("clean", "pgd20", "aa")   # what the last epoch's weights get beside a selected checkpoint


def last_eval(cfg: RunConfig):
    """The evaluation of the last epoch's weights beside a best-* checkpoint: clean, PGD-20 and AutoAttack
    (those of them the run evaluates), no curve, no sanity checks."""
    return replace(cfg.eval, attacks=tuple(a for a in cfg.eval.attacks if a in LAST_ATTACKS), curve_eps=(),
                   sanity=replace(cfg.eval.sanity, enabled=False))


def _evaluate_and_save(run_dir: Path, model, data, targets, teacher_model, cfg: RunConfig, desc: str,
                       make_record, others=None) -> RunRecord:
    """Evaluate (resumably, sharded over the ranks under torchrun) and write the record and the resolved
    config beside it. ``others``: further weights by name, evaluated with ``last_eval`` (``ev[name]``): the
    last epoch's where a best-* policy selected another epoch, and the checkpoints a script keeps besides."""
    def passes(state, shard):
        if shard is not None:
            ev = evaluate(model, data.x_test, data.y_test, cfg.eval, data.num_classes, cfg.seed, state, desc,
                          shard=shard)
        else:
            ev = evaluate_all(model, data, targets, teacher_model, cfg, state, desc)
        for name, weights in (others or {}).items():
            ev[name] = evaluate(weights, data.x_test, data.y_test, last_eval(cfg), data.num_classes, cfg.seed,
                                state / name if state is not None else None, f"{desc}{name} ", shard=shard)
        return ev

    def keep(ev):
        rec = make_record(ev)
        if "per_image" in ev:  # which images each attack left correct, beside the record
            atomic_write_json(run_dir / PER_IMAGE, ev["per_image"])
        rec.save(run_dir)
        write_run_config(run_dir, cfg)  # the resolved config as YAML beside the record (--config reads it)
        return rec

    return evaluate_and_keep(run_dir, eval_key(cfg), passes, keep)


@contextmanager
def _owned(path: Path):
    """Own ``path`` (a run or teacher-row folder) against other processes: its lock, taken by rank 0
    alone under torchrun (the other ranks follow rank 0's decisions)."""
    with (lock_for(path) if distributed.is_main() else nullcontext()):
        yield


def cost_facts(history: list[dict]) -> dict:
    """What training cost, from its log: the counted first step's FLOPs per image, epochs, images/s."""
    if not history:
        return {}
    return {"train_flops_per_image_step": next((row[FLOPS_KEY] for row in history if FLOPS_KEY in row), None),
            "epochs": len(history),
            "train_images_per_s_median": statistics.median(row["images_per_s"] for row in history),
            "counted": "matmul and convolution FLOPs (torch.utils.flop_counter) of the first training step "
                       "(attack, every network's forward and backward) per image"}


def _teacher_history(results: Path, teacher: Teacher) -> list[dict]:
    """A trained teacher's per-epoch log (its cache's meta.json); none for a zoo or file teacher."""
    meta = results / TEACHERS_DIR / teacher.teacher_id / "meta.json"
    return json.loads(meta.read_text()).get("history", []) if meta.exists() else []


def _teacher_record(teacher: Teacher, cfg: RunConfig, data, targets, runset_dir: Path, force: bool,
                    tracking: Tracking) -> RunRecord:
    teacher_cfg = replace(cfg, seed=teacher.seed)
    tdir = runset_dir / f"teacher-{teacher.teacher_id}"
    with _owned(tdir):  # another job may be evaluating this teacher: wait, then reuse its record
        rec = distributed.broadcast_object(_reusable(tdir / RECORD, eval_key(teacher_cfg), force)
                                           if distributed.is_main() else None)
        if rec is not None:
            tracking.backfill(rec, _teacher_history(runset_dir.parent, teacher))
            return rec
        log(f"evaluating teacher {teacher.teacher_id}")
        info = teacher.info
        if distributed.is_main():
            mark_running(tdir, "teacher evaluation")
        try:
            rec = _evaluate_and_save(
                tdir, teacher.model, data, targets, None, teacher_cfg, "teacher ",
                lambda ev: _record(Subject(tdir.name, "teacher", info.method, info.method.split(":")[0], info.arch),
                                   teacher_cfg, data, teacher,
                                   Training([], teacher.train_s, teacher.code,
                                            {"source": info.source, "reported": info.reported,
                                             "cost": cost_facts(_teacher_history(runset_dir.parent, teacher)),
                                             **tracking.facts(tdir.name)}), ev))
            # teacher training (bench/train/teacher.py) is not tracked live: its logged epochs go in now
            tracking.log_finished(rec, _teacher_history(runset_dir.parent, teacher))
            return rec
        except Exception as err:
            mark_failed(tdir, err)
            raise


def _load(cfg: RunConfig, device: torch.device) -> ImageData:
    data = load_dataset(cfg.data.name, cfg.data.data_dir, cfg.data.download, cfg.data.image_size,
                        cfg.data.stand_in, cfg.data.train_limit).to(device, cfg.data.on_device)
    if "stand_in" in data.info:
        log(f"{data.name}: files not found, using a synthetic stand-in (smoke scale; numbers are meaningless)")
    ev = cfg.eval
    if cfg.data.download and ev.corruptions_from == "published" and ev.corruptions_dir and distributed.is_main():
        fetch_published(Path(ev.corruptions_dir))   # the user opted in: the released files, once
    return data


def prepare_runset(cfg: RunConfig, methods: list[str], runset: str, results: Path, seeds, meta: dict,
                   force: bool = False) -> list[Entry]:
    """Plan a grid and merge it into the run-set's manifest before any job starts (so `bench status`
    knows every run from the first minute); with ``force``, remove the grid's finished runs and
    trained teachers first, so that the jobs redo them exactly once."""
    specs = [parse_method(m) for m in methods]
    data = _load(cfg, torch.device("cpu"))
    planned = plan(cfg, specs, seeds, data)
    runset_dir = results / runset
    if force:
        trained = isinstance(cfg.teacher, TrainedTeacher)
        for path in [runset_dir / e.run_id for e in planned] + \
                    ([results / TEACHERS_DIR / e.teacher_id for e in planned if e.role == "teacher"] if trained else []):
            with lock_for(path):
                shutil.rmtree(path, ignore_errors=True)
    merge_manifest(runset_dir, planned, {"methods": [s.label for s in specs], "config": asdict(cfg), **meta})
    return planned


def run_methods(cfg: RunConfig, methods: list[str], runset: str, results: Path, seeds: tuple[int, ...] = (0,),
                force: bool = False, meta: dict | None = None, only_teacher: bool = False,
                tensorboard: Path | str | None = None, wandb: str | None = None) -> list[RunRecord]:
    """Train and evaluate each method variant for each seed, and the teacher(s) as reference rows.

    The grid is planned first and merged into the run-set's manifest (``bench.records.runset``), so any number
    of processes can share one run-set: each run folder, each teacher and each teacher row is owned by
    one process at a time (a file lock); a process that finds one taken waits, then reuses the result.

    A finished run is reused only when its config, its training code and its evaluation settings and
    code all match; when only the evaluation side changed, the trained weights are re-evaluated
    without training again. Changed training code (the harness, the models or the method's file)
    gives a new run id, so the old run stays on disk untouched and is not reported.

    ``tensorboard``: a folder for TensorBoard event files, one sub-folder per run; ``wandb``: a Weights &
    Biases project, one W&B run per run (``bench.train.tracking``); neither is part of any run id.
    """
    specs = [parse_method(m) for m in methods]
    device = distributed.init(resolve_device(cfg.device))
    data = _load(cfg, device)
    runset_dir = results / runset
    tracking = tracking_for(tensorboard, runset, wandb)
    if distributed.is_main():
        merge_manifest(runset_dir, plan(cfg, specs, seeds, data),
                       {"methods": [s.label for s in specs], "config": asdict(cfg), **(meta or {})})
    targets = load_targets(cfg, data, device)
    records: list[RunRecord] = []
    teachers: dict[int | str | None, Teacher] = {}   # by seed (or None: one), and recipes' by id
    splits: dict[tuple, tuple[ImageData, Selection | None]] = {}

    for seed in seeds:
        seed_cfg = replace(cfg, seed=seed)
        tkey = seed if per_seed_teacher(cfg) else None
        if tkey not in teachers:
            teachers[tkey] = get_teacher(cfg, seed, data, results, device, force)
            records.append(_teacher_record(teachers[tkey], cfg, data, targets, runset_dir, force, tracking))
        if only_teacher:
            continue
        for spec in specs:  # each method under its protocol's config (bench.config.protocol)
            mcfg = method_config(seed_cfg, spec.cls)
            teacher = teachers[tkey]
            if mcfg.teacher != cfg.teacher:   # its recipe's own (a zoo entry): loaded and evaluated once
                key = teacher_id(mcfg, seed, data)
                if key not in teachers:
                    teachers[key] = get_teacher(mcfg, seed, data, results, device, force)
                    records.append(_teacher_record(teachers[key], replace(cfg, teacher=mcfg.teacher), data, targets,
                                                   runset_dir, force, tracking))
                teacher = teachers[key]
            t = mcfg.train
            key = (t.checkpoint, t.val_fraction, mcfg.eval.n, t.select_every, t.select_dense_from, t.select_step,
                   t.also_keep)
            if key not in splits:  # one validation split per policy, not one copy per run
                splits[key] = split_for(mcfg, data)
            train_data, selection = splits[key]
            roles = {role: get_teacher(mcfg, seed, data, results, device, force, tc)
                     for role, tc in role_teachers(spec.cls, mcfg).items()}
            records.append(_student(spec, mcfg, data, train_data, selection, targets, teacher, roles, runset_dir,
                                    device, force, tracking))
    return records


def split_for(cfg: RunConfig, data: ImageData) -> tuple[ImageData, Selection | None]:
    """The training images and the checkpoint policy's selection (bench.train.selection): best-val carves
    its validation split from the training data; best-test-* scores on the evaluation's test images."""
    t = cfg.train
    policy = t.checkpoint
    if policy == "last":
        return data, None
    how = {"every": t.select_every, "dense_from": t.select_dense_from, "step": t.select_step, "also": t.also_keep}
    if policy == "best-val":
        train_data, (xv, yv) = carve_validation(data, t.val_fraction)
        return train_data, Selection(policy, xv, yv, **how)
    n = cfg.eval.n or len(data.y_test)
    return data, Selection(policy, data.x_test[:n], data.y_test[:n], **how)


def _student(spec: MethodSpec, cfg: RunConfig, data, train_data, selection, targets, teacher: Teacher,
             roles: dict[str, Teacher],
             runset_dir: Path, device, force: bool, tracking: Tracking) -> RunRecord:
    run_dir = runset_dir / student_run_id(spec, cfg, teacher.teacher_id, {r: t.teacher_id for r, t in roles.items()})
    main = distributed.is_main()
    with _owned(run_dir):  # one process trains a run; another that wants it waits, then reuses it
        if force and run_dir.exists() and main:
            shutil.rmtree(run_dir)
        rec = distributed.broadcast_object(_reusable(run_dir / RECORD, eval_key(cfg), force) if main else None)
        if rec is not None:
            log(f"{spec.label} seed {cfg.seed}: reusing finished run {run_dir.name} (same config and code; "
                 "--force to redo)")
            tracking.backfill(rec)
            return rec
        if main:
            mark_running(run_dir, f"{spec.label} seed {cfg.seed}")
        distributed.barrier()  # rank 0 has cleared (--force) and claimed the folder
        try:
            return _train_and_evaluate(spec, cfg, data, train_data, selection, targets, teacher, roles, run_dir, device,
                                       tracking)
        except Exception as err:
            mark_failed(run_dir, err)
            raise


def _also_epochs(selection: Selection, history: list[dict]) -> dict[str, dict]:
    """Each further checkpoint's first best epoch and score, from the training log."""
    out = {}
    for name in selection.also:
        col = also_key(name, selection.key)
        scored = [row for row in history if col in row]
        if scored:
            best = max(scored, key=lambda row: row[col])
            out[name] = {"epoch": best["epoch"], col: best[col]}
    return out


def _weights(cfg: RunConfig, data: ImageData, device, path: Path) -> torch.nn.Module:
    model = build_student(cfg, data, device)
    model.load_state_dict(torch.load(path, map_location=device, weights_only=True))
    return model.eval()


def row_note(cls, cfg: RunConfig) -> str:
    """The note a row carries: the method's own, then what its official recipe must say on ``cfg``
    (another data set's recipe applied, the published number's teacher)."""
    return "; ".join(n for n in (getattr(cls, "note", ""), *recipe_notes(cls, cfg)) if n)


def build_student(cfg: RunConfig, data: ImageData, device) -> torch.nn.Module:
    """The student network of ``cfg``, with the data set's input normalisation inside or none
    (``cfg.input_norm``), on the device."""
    mean, std = (data.mean, data.std) if cfg.input_norm == "dataset" else (None, None)
    return prepare_model(build_model(cfg.student_arch, data.num_classes, data.in_channels, mean, std), device)


def _train_and_evaluate(spec: MethodSpec, cfg: RunConfig, data, train_data, selection, targets, teacher: Teacher,
                        roles: dict[str, Teacher],
                        run_dir: Path, device, tracking: Tracking) -> RunRecord:
    seed = cfg.seed
    code = train_digest(spec.cls)
    log(f"{spec.label} seed {seed}: {cfg.student_arch} on {data.name} ({run_dir.name}, code {code}, protocol "
        f"{cfg.protocol}, checkpoint {cfg.train.checkpoint})")
    seed_everything(seed)
    student = distributed.sync_batchnorm(build_student(cfg, data, device), cfg.sync_bn)
    t_model = teacher.model if spec.cls.needs_teacher else None
    ctx = Context(num_classes=train_data.num_classes, n_train=len(train_data.y_train),
                  train_labels=train_data.y_train, student_dim=student.feature_dim,
                  teacher_dim=teacher.model.feature_dim, device=device, epochs=cfg.train.epochs, seed=seed,
                  build_student=lambda: distributed.sync_batchnorm(build_student(cfg, data, device), cfg.sync_bn))
    method = spec.build(ctx)
    tracker = tracking.open(run_dir.name)
    history = train_model(student, method, train_data, cfg.train, cfg.attack, t_model, run_dir, device,
                          cfg.precision, desc=f"{spec.label} s{seed}", selection=selection, tracker=tracker, seed=seed,
                          compile=cfg.compile, teachers={role: t.model for role, t in roles.items()})
    train_s = sum(row["seconds"] for row in history)  # all epochs, across resumptions
    if distributed.is_main():
        atomic_save(student.state_dict(), run_dir / "model.pt")  # the evaluated weights (export, eval)
    facts = method.facts() | tracking.facts(run_dir.name) | {"step": step_facts(cfg.precision, cfg.compile, device)}
    facts["cost"] = cost_facts(history)
    if roles:  # the further teachers it learnt from (MTARD's natural one)
        facts["teachers"] = {role: {"teacher_id": t.teacher_id, "label": t.info.label} for role, t in roles.items()}
    if distributed.active():  # one run over several processes: what each step really was
        facts["distributed"] = {"world_size": distributed.world_size(), "backend": torch.distributed.get_backend(),
                                "global_batch": cfg.train.batch_size,
                                "per_rank_batch": -(-cfg.train.batch_size // distributed.world_size()),
                                "lr": cfg.train.lr, "sync_bn": cfg.sync_bn,
                                "note": "each rank trains on its rows of every global batch; gradients averaged"}
    others = {}
    if selection is not None and any(selection.key in row for row in history):
        # first best, as training kept it (under SWA only the averages are scored)
        best = max(history, key=lambda row: row.get(selection.key, -1.0))
        facts["checkpoint"] = {"policy": selection.policy, "epoch": best["epoch"], selection.key: best[selection.key],
                               f"{selection.split}_n": len(selection.y), "last_epoch": len(history),
                               "also": _also_epochs(selection, history)}
        distributed.barrier()  # rank 0 has written them
        if best["epoch"] != len(history):  # the last epoch's weights, evaluated beside the selected ones
            others["last"] = _weights(cfg, data, device, run_dir / LAST)
        for name in facts["checkpoint"]["also"]:   # further checkpoints its script keeps
            others[name] = _weights(cfg, data, device, run_dir / f"{name}.pt")
    rec = _evaluate_and_save(
        run_dir, student, data, targets, teacher.model, cfg, f"{spec.label} s{seed} ",
        lambda ev: _record(Subject(run_dir.name, "student", spec.label, spec.name, cfg.student_arch,
                                   row_note(spec.cls, cfg), asdict(spec.options)),
                           cfg, data, teacher, Training(history, train_s, code, facts), ev), others=others)
    tracker.final(rec)
    log(f"{spec.label} seed {seed}: " + ", ".join(f"{k} {100 * v:.1f}" for k, v in rec.metrics.items())
         + (f"; sanity flags: {', '.join(rec.sanity['flags'])}" if rec.sanity.get("flags") else ""))
    return rec
