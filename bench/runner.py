"""config -> data, models, teacher -> train -> evaluate -> results. No method names in here."""
from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from bench.config import RunConfig, config_hash
from bench.data import ImageData, load_dataset
from bench.errors import BenchError
from bench.evaluate import evaluate
from bench.io import atomic_save, atomic_write_json, load_weights
from bench.models import build_model
from bench.results import RECORD, RunRecord, git_commit, now, package_versions
from bench.train import train_model
from methods import MethodSpec, parse_method
from methods.base import Context

TEACHERS_DIR = "teachers"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BenchError(f"device {name!r} asked for, but CUDA is not available here")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)


def _hashable(cfg: RunConfig) -> dict:
    """The parts of a config that change the numbers (not where it ran)."""
    d = asdict(cfg)
    d.pop("device")
    d["data"].pop("data_dir")
    d["data"].pop("download")
    return d


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def prepare_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """On the device, channels_last (faster convolutions with oneDNN on CPU and cuDNN on GPU)."""
    return model.to(device).to(memory_format=torch.channels_last)


def _record(run_id, role, spec: MethodSpec, cfg: RunConfig, data: ImageData, arch, teacher_id,
            ev: dict, history, train_s, extra=None) -> RunRecord:
    return RunRecord(
        run_id=run_id, role=role, method=spec.label, method_name=spec.name,
        options=asdict(spec.options), note=getattr(spec.cls, "note", ""), dataset=data.name, arch=arch,
        teacher_id=teacher_id, seed=cfg.seed, config=asdict(cfg), metrics=ev["metrics"],
        curve=ev["curve"], attack_settings=ev["settings"],
        timings={"train_s": round(train_s, 2), "eval_s": round(sum(ev["timings"].values()), 2),
                 **{f"eval_{k}_s": v for k, v in ev["timings"].items()}},
        history=history, extra=extra or {}, versions=package_versions(), git_commit=git_commit(),
        created=now())


def _context(data: ImageData, student_dim: int, teacher_dim, device, cfg: RunConfig, epochs: int) -> Context:
    return Context(num_classes=data.num_classes, n_train=len(data.y_train), train_labels=data.y_train,
                   student_dim=student_dim, teacher_dim=teacher_dim, device=device, epochs=epochs,
                   seed=cfg.seed)


def get_teacher(cfg: RunConfig, data: ImageData, results: Path, device: torch.device, force: bool):
    """Train (and cache) or load the teacher; returns (model, teacher_id, training seconds)."""
    tc = cfg.teacher
    arch = tc.arch
    if tc.source == "train":
        spec = parse_method(tc.method)
        if spec.cls.needs_teacher:
            raise BenchError(f"teacher method {spec.name!r} itself needs a teacher; use e.g. pgd-at or trades")
        train_cfg = replace(cfg.train, epochs=tc.epochs or cfg.train.epochs)
        key = {"kind": "trained", "data": _hashable(cfg)["data"], "arch": arch, "method": spec.label,
               "train": asdict(train_cfg), "attack": asdict(cfg.attack), "seed": cfg.seed,
               "mean": list(data.mean), "std": list(data.std)}
        teacher_id = f"{spec.name}-{arch}-{config_hash(key)}"
        tdir = results / TEACHERS_DIR / teacher_id
        weights = tdir / "model.pt"
        model = prepare_model(build_model(arch, data.num_classes, data.in_channels, data.mean, data.std), device)
        if force and tdir.exists():
            shutil.rmtree(tdir)
        if weights.exists():
            meta = json.loads((tdir / "meta.json").read_text())
            load_weights(model, weights, arch)
            return model.eval(), teacher_id, float(meta["train_s"]), spec
        _log(f"training teacher {teacher_id} ({spec.label}, {arch}, {train_cfg.epochs} epochs)")
        seed_everything(cfg.seed)
        model = prepare_model(build_model(arch, data.num_classes, data.in_channels, data.mean, data.std), device)
        method = spec.build(_context(data, model.feature_dim, None, device, cfg, train_cfg.epochs))
        t0 = time.perf_counter()
        train_model(model, method, data, train_cfg, cfg.attack, None, tdir, device, cfg.bf16, desc="teacher")
        train_s = time.perf_counter() - t0
        atomic_save(model.state_dict(), weights)
        atomic_write_json(tdir / "meta.json", {"train_s": train_s, "teacher_id": teacher_id, "key": key})
        (tdir / "checkpoint.pt").unlink(missing_ok=True)
        return model.eval(), teacher_id, train_s, spec
    path = Path(tc.source)
    model = build_model(arch, data.num_classes, data.in_channels, tc.mean, tc.std)
    load_weights(model, path, arch)
    digest = config_hash({"path": str(path.resolve()), "size": path.stat().st_size,
                          "mtime": path.stat().st_mtime_ns, "arch": arch})
    return prepare_model(model, device).eval(), f"file-{arch}-{digest}", 0.0, parse_method("natural")


def run_methods(cfg: RunConfig, methods: list[str], runset: str, results: Path,
                force: bool = False) -> list[RunRecord]:
    """Train and evaluate each method variant (and the teacher as a reference row)."""
    specs = [parse_method(m) for m in methods]
    device = resolve_device(cfg.device)
    data = load_dataset(cfg.data.name, cfg.data.data_dir, cfg.data.download, cfg.data.image_size).to(device)
    runset_dir = results / runset
    records: list[RunRecord] = []

    teacher = teacher_id = None
    if any(s.cls.needs_teacher for s in specs):
        teacher, teacher_id, teacher_train_s, teacher_spec = get_teacher(cfg, data, results, device, force)
        for p in teacher.parameters():
            p.requires_grad_(False)
        eval_id = f"teacher-{config_hash({'teacher': teacher_id, 'eval': asdict(cfg.eval), 'seed': cfg.seed})}"
        rec_path = runset_dir / eval_id / RECORD
        if rec_path.exists() and not force:
            records.append(RunRecord.load(rec_path))
        else:
            _log(f"evaluating teacher {teacher_id}")
            ev = evaluate(teacher, data.x_test, data.y_test, cfg.eval, data.num_classes, cfg.seed)
            rec = _record(eval_id, "teacher", teacher_spec, cfg, data, cfg.teacher.arch, teacher_id, ev, [],
                          teacher_train_s, {"source": cfg.teacher.source})
            rec.save(runset_dir / eval_id)
            records.append(rec)

    for spec in specs:
        key = {"method": spec.label, "config": _hashable(cfg),
               "teacher": teacher_id if spec.cls.needs_teacher else None}
        run_id = f"{spec.name}-{config_hash(key)}"
        run_dir = runset_dir / run_id
        if force and run_dir.exists():
            shutil.rmtree(run_dir)
        if (run_dir / RECORD).exists():
            _log(f"{spec.label}: reusing finished run {run_id} (--force to redo)")
            records.append(RunRecord.load(run_dir / RECORD))
            continue
        _log(f"{spec.label}: training {cfg.student_arch} on {data.name} ({run_id})")
        seed_everything(cfg.seed)
        student = prepare_model(build_model(cfg.student_arch, data.num_classes, data.in_channels, data.mean,
                                       data.std), device)
        t_model = teacher if spec.cls.needs_teacher else None
        method = spec.build(_context(data, student.feature_dim, t_model.feature_dim if t_model else None,
                                     device, cfg, cfg.train.epochs))
        t0 = time.perf_counter()
        history = train_model(student, method, data, cfg.train, cfg.attack, t_model, run_dir, device,
                              cfg.bf16, desc=spec.label)
        train_s = time.perf_counter() - t0
        if history and len(history) == cfg.train.epochs and "seconds" in history[0]:
            train_s = sum(r["seconds"] for r in history)  # resumed runs: the sum over all epochs
        ev = evaluate(student, data.x_test, data.y_test, cfg.eval, data.num_classes, cfg.seed)
        rec = _record(run_id, "student", spec, cfg, data, cfg.student_arch, teacher_id if t_model else None,
                      ev, history, train_s, method.facts())
        rec.save(run_dir)
        records.append(rec)
        _log(f"{spec.label}: " + ", ".join(f"{k} {100 * v:.1f}" for k, v in ev["metrics"].items()))
    return records
