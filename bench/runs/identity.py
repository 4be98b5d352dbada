"""A run's identity: the folder names of student runs and teacher rows, and the key of an evaluation.

A student run's id holds its method, the parts of its config that change the trained weights, its
teacher and a digest of the training code (bench.common.provenance); a finished run is reused only when
all of them match. The evaluation key holds the evaluation settings, the seed and the evaluation code:
when only it changes, the trained weights are evaluated again without training.
"""
from __future__ import annotations

from dataclasses import asdict, replace

from bench.common import distributed
from bench.common.provenance import eval_digest, train_digest
from bench.config.protocol import method_config
from bench.config.schema import TEACHER_ROLES, RunConfig, TrainedTeacher, config_hash, data_key
from bench.data.images import ImageData
from bench.records.runset import Entry
from bench.train.teacher import describe, teacher_id
from bench.methods import MethodSpec


def weights_key(cfg: RunConfig) -> dict:
    """The parts of a config that change the trained weights (not where it ran, not evaluation)."""
    d = asdict(cfg)
    for key in ("device", "eval", "probe", "structure", "preset", "sync_bn"):
        d.pop(key)
    d["data"] = data_key(cfg.data)
    if distributed.world_size() > 1:  # batch-norm statistics per rank (or synced) change the weights
        d["ranks"] = {"world_size": distributed.world_size(), "sync_bn": cfg.sync_bn}
    return d


def eval_key(cfg: RunConfig) -> str:
    """Id of the evaluation settings and code: a finished run is re-evaluated when either changes."""
    return config_hash({"eval": asdict(cfg.eval), "probe": asdict(cfg.probe), "structure": cfg.structure,
                        "seed": cfg.seed, "code": eval_digest()})


def student_run_id(spec: MethodSpec, cfg: RunConfig, teacher_id: str, roles: dict[str, str] | None = None) -> str:
    """A student run's folder name: its method, config, seed, teacher(s) and training code. ``roles``: the
    ids of the further teachers the method uses (``role_teacher_ids``); the config's teacher fields of
    roles it does not use are no part of it."""
    config = weights_key(cfg)
    for role, name in TEACHER_ROLES.items():
        if role not in spec.cls.teachers:
            config.pop(name)
    key = {"method": spec.label, "config": config, "teacher": teacher_id, "code": train_digest(spec.cls)}
    if roles:
        key["teachers"] = roles
    return f"{spec.name}-{config_hash(key)}"


def role_teachers(cls, cfg: RunConfig) -> dict:
    """The method's further teachers as configs, by role."""
    return {role: getattr(cfg, TEACHER_ROLES[role]) for role in cls.teachers}


def role_teacher_ids(spec: MethodSpec, cfg: RunConfig, seed: int, data: ImageData) -> dict[str, str]:
    return {role: teacher_id(cfg, seed, data, tc) for role, tc in role_teachers(spec.cls, cfg).items()}


def per_seed_teacher(cfg: RunConfig) -> bool:
    return isinstance(cfg.teacher, TrainedTeacher) and cfg.teacher.seed is None


def plan(cfg: RunConfig, specs: list[MethodSpec], seeds, data: ImageData) -> list[Entry]:
    """Every run a (methods x seeds) grid consists of, teacher rows included, without running any."""
    out, teachers = [], set()
    label = describe(cfg.teacher, data.name).method
    for seed in seeds:
        tid = teacher_id(cfg, seed, data)
        tkey = seed if per_seed_teacher(cfg) else None
        if tkey not in teachers:
            teachers.add(tkey)
            out.append(Entry("teacher", label, tkey, f"teacher-{tid}", tid))
        for spec in specs:
            mcfg = method_config(replace(cfg, seed=seed), spec.cls)
            # an official recipe's own teacher (a zoo entry), else the run's
            own = teacher_id(mcfg, seed, data) if mcfg.teacher != cfg.teacher else tid
            if own not in teachers and own != tid:
                teachers.add(own)
                out.append(Entry("teacher", describe(mcfg.teacher, data.name).method, None, f"teacher-{own}", own,
                                 own=True))
            out.append(Entry("student", spec.label, seed,
                             student_run_id(spec, mcfg, own, role_teacher_ids(spec, mcfg, seed, data)), own))
    return out
