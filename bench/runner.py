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
from bench.data import ImageData, carve_validation, load_dataset
from bench.errors import BenchError
from bench.evaluate import evaluate
from bench.io import atomic_save, atomic_write_json, load_weights
from bench.models import build_model
from bench.results import RECORD, RunRecord, git_commit, now, package_versions
from bench.structure import structure_metrics
from bench.train import train_model
from bench.transfer import transfer_metrics
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
    """The parts of a config that change the trained weights (not where it ran, not evaluation)."""
    d = asdict(cfg)
    for key in ("device", "eval", "probe", "structure", "preset"):
        d.pop(key)
    d["data"].pop("data_dir")
    d["data"].pop("download")
    return d


def eval_key(cfg: RunConfig) -> str:
    """Id of the evaluation settings: a finished run is re-evaluated when they change."""
    return config_hash({"eval": asdict(cfg.eval), "probe": asdict(cfg.probe), "structure": cfg.structure,
                        "seed": cfg.seed})


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def prepare_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """On the device, channels_last (faster convolutions with oneDNN on CPU and cuDNN on GPU)."""
    return model.to(device).to(memory_format=torch.channels_last)


def _context(data: ImageData, student_dim: int, teacher_dim, device, epochs: int, seed: int) -> Context:
    return Context(num_classes=data.num_classes, n_train=len(data.y_train), train_labels=data.y_train,
                   student_dim=student_dim, teacher_dim=teacher_dim, device=device, epochs=epochs, seed=seed)


def get_teacher(cfg: RunConfig, data: ImageData, results: Path, device: torch.device, force: bool):
    """Train (and cache) or load the teacher; returns (model, teacher_id, training seconds, spec)."""
    tc = cfg.teacher
    arch = tc.arch
    if tc.source == "train":
        spec = parse_method(tc.method)
        if spec.cls.needs_teacher:
            raise BenchError(f"teacher method {spec.name!r} itself needs a teacher; use e.g. pgd-at or trades")
        train_cfg = replace(cfg.train, epochs=tc.epochs or cfg.train.epochs)
        key = {"kind": "trained", "data": _hashable(cfg)["data"], "arch": arch, "method": spec.label,
               "train": asdict(train_cfg), "attack": asdict(cfg.attack), "seed": tc.seed,
               "mean": list(data.mean), "std": list(data.std)}
        teacher_id = f"{spec.name}-{arch}-{config_hash(key)}"
        tdir = results / TEACHERS_DIR / teacher_id
        weights = tdir / "model.pt"
        if force and tdir.exists():
            shutil.rmtree(tdir)
        seed_everything(tc.seed)
        model = prepare_model(build_model(arch, data.num_classes, data.in_channels, data.mean, data.std), device)
        if weights.exists():
            meta = json.loads((tdir / "meta.json").read_text())
            load_weights(model, weights, arch)
            return model.eval(), teacher_id, float(meta["train_s"]), spec
        _log(f"training teacher {teacher_id} ({spec.label}, {arch}, {train_cfg.epochs} epochs)")
        method = spec.build(_context(data, model.feature_dim, None, device, train_cfg.epochs, tc.seed))
        history = train_model(model, method, data, train_cfg, cfg.attack, None, tdir, device, cfg.bf16,
                              desc="teacher")
        train_s = sum(row["seconds"] for row in history)
        atomic_save(model.state_dict(), weights)
        atomic_write_json(tdir / "meta.json", {"train_s": train_s, "teacher_id": teacher_id, "key": key,
                                               "history": history})
        (tdir / "checkpoint.pt").unlink(missing_ok=True)
        return model.eval(), teacher_id, train_s, spec
    if tc.source.startswith("robustbench:"):  # a RobustBench zoo model, from its local model dir
        from bench.zoo import load_robustbench_model

        name = tc.source.split(":", 1)[1]
        model = load_robustbench_model(name, data.name.partition("@")[0], "Linf")
        if model.num_classes != data.num_classes:
            raise BenchError(f"RobustBench model {name} has {model.num_classes} classes, {data.name} has "
                             f"{data.num_classes}")
        return prepare_model(model, device).eval(), f"robustbench-{name}", 0.0, parse_method("natural")
    path = Path(tc.source)
    model = build_model(arch, data.num_classes, data.in_channels, tc.mean, tc.std)
    load_weights(model, path, arch)
    digest = config_hash({"path": str(path.resolve()), "size": path.stat().st_size,
                          "mtime": path.stat().st_mtime_ns, "arch": arch})
    return prepare_model(model, device).eval(), f"file-{arch}-{digest}", 0.0, parse_method("natural")


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


def evaluate_all(model, data: ImageData, targets: dict[str, ImageData], teacher, cfg: RunConfig) -> dict:
    """The protocol, transfer to each target, and (for students) structure against the teacher."""
    ev = evaluate(model, data.x_test, data.y_test, cfg.eval, data.num_classes, cfg.seed)
    n = ev["settings"]["n"]
    ev["transfer"] = {}
    for name, target in targets.items():
        t0 = time.perf_counter()
        ev["transfer"][name] = transfer_metrics(model, target, cfg.probe, cfg.eval, cfg.seed)
        ev["timings"][f"transfer_{name}"] = round(time.perf_counter() - t0, 3)
    ev["structure"] = {}
    if teacher is not None and cfg.structure:
        t0 = time.perf_counter()
        ev["structure"] = structure_metrics(model, teacher, data.x_test[:n], data.y_test[:n], cfg.eval.eps,
                                            cfg.eval.batch_size, cfg.seed)
        ev["timings"]["structure"] = round(time.perf_counter() - t0, 3)
    return ev


def _record(run_id, role, spec: MethodSpec, cfg: RunConfig, data: ImageData, arch, teacher_id,
            ev: dict, history, train_s, extra=None) -> RunRecord:
    return RunRecord(
        run_id=run_id, role=role, method=spec.label, method_name=spec.name,
        options=asdict(spec.options), note=getattr(spec.cls, "note", ""), dataset=data.name, arch=arch,
        teacher_id=teacher_id, seed=cfg.seed, config=asdict(cfg), eval_key=eval_key(cfg), data_info=data.info,
        metrics=ev["metrics"], curve=ev["curve"], attack_settings=ev["settings"],
        transfer=ev["transfer"], structure=ev["structure"],
        timings={"train_s": round(train_s, 2), "eval_s": round(sum(ev["timings"].values()), 2),
                 **{f"eval_{k}_s": v for k, v in ev["timings"].items()}},
        history=history, extra=extra or {}, versions=package_versions(), git_commit=git_commit(),
        created=now())


def _reusable(path: Path, key: str, force: bool) -> RunRecord | None:
    if force or not path.exists():
        return None
    rec = RunRecord.load(path)
    return rec if rec.eval_key == key else None


def run_methods(cfg: RunConfig, methods: list[str], runset: str, results: Path, seeds: tuple[int, ...] = (0,),
                force: bool = False) -> list[RunRecord]:
    """Train and evaluate each method variant for each seed, and the teacher as a reference row.

    A finished run is reused when its evaluation settings match; when only those changed, the
    trained weights are re-evaluated without training again.
    """
    specs = [parse_method(m) for m in methods]
    device = resolve_device(cfg.device)
    data = load_dataset(cfg.data.name, cfg.data.data_dir, cfg.data.download, cfg.data.image_size,
                        cfg.data.stand_in, cfg.data.train_limit).to(device)
    if "stand_in" in data.info:
        _log(f"{data.name}: files not found, using a synthetic stand-in (smoke scale; numbers are meaningless)")
    targets = load_targets(cfg, data, device)
    train_data, val = data, None
    if cfg.train.checkpoint == "best-val":
        train_data, val = carve_validation(data, cfg.train.val_fraction)
    runset_dir = results / runset
    records: list[RunRecord] = []

    teacher, teacher_id, teacher_train_s, teacher_spec = get_teacher(cfg, data, results, device, force)
    teacher.requires_grad_(False)
    teacher_cfg = replace(cfg, seed=cfg.teacher.seed)
    tdir = runset_dir / f"teacher-{teacher_id}"
    rec = _reusable(tdir / RECORD, eval_key(teacher_cfg), force)
    if rec is None:
        _log(f"evaluating teacher {teacher_id}")
        ev = evaluate_all(teacher, data, targets, None, teacher_cfg)
        rec = _record(tdir.name, "teacher", teacher_spec, teacher_cfg, data, cfg.teacher.arch, teacher_id, ev,
                      [], teacher_train_s, {"source": cfg.teacher.source})
        rec.save(tdir)
    records.append(rec)

    for seed in seeds:
        seed_cfg = replace(cfg, seed=seed)
        for spec in specs:
            key = {"method": spec.label, "config": _hashable(seed_cfg), "teacher": teacher_id}
            run_dir = runset_dir / f"{spec.name}-{config_hash(key)}"
            if force and run_dir.exists():
                shutil.rmtree(run_dir)
            rec = _reusable(run_dir / RECORD, eval_key(seed_cfg), force)
            if rec is not None:
                _log(f"{spec.label} seed {seed}: reusing finished run {run_dir.name} (--force to redo)")
                records.append(rec)
                continue
            _log(f"{spec.label} seed {seed}: {seed_cfg.student_arch} on {data.name} ({run_dir.name})")
            seed_everything(seed)
            student = prepare_model(build_model(seed_cfg.student_arch, data.num_classes, data.in_channels,
                                                data.mean, data.std), device)
            t_model = teacher if spec.cls.needs_teacher else None
            method = spec.build(_context(train_data, student.feature_dim, teacher.feature_dim, device,
                                         cfg.train.epochs, seed))
            history = train_model(student, method, train_data, cfg.train, cfg.attack, t_model, run_dir, device,
                                  cfg.bf16, desc=f"{spec.label} s{seed}", val=val)
            train_s = sum(row["seconds"] for row in history)  # all epochs, across resumptions
            atomic_save(student.state_dict(), run_dir / "model.pt")  # the evaluated weights (export, eval)
            ev = evaluate_all(student, data, targets, teacher, seed_cfg)
            facts = method.facts()
            if val is not None:
                best = max(history, key=lambda row: row["val_pgd20"])  # first best, as training kept it
                facts["checkpoint"] = {"policy": "best-val", "epoch": best["epoch"], "val_pgd20": best["val_pgd20"],
                                       "val_n": len(val[1])}
            rec = _record(run_dir.name, "student", spec, seed_cfg, data, cfg.student_arch, teacher_id, ev, history,
                          train_s, facts)
            rec.save(run_dir)
            records.append(rec)
            _log(f"{spec.label} seed {seed}: " + ", ".join(f"{k} {100 * v:.1f}" for k, v in ev["metrics"].items()))
    return records
