"""Typed, JSON-serialisable run records, written atomically."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from bench.common.errors import BenchError
from bench.common.io import atomic_write_json

RECORD = "record.json"


@dataclass
class RunRecord:
    run_id: str
    role: str                      # "student" or "teacher"
    method: str                    # variant label, e.g. "gacd:reweight=none"
    method_name: str
    options: dict
    note: str                      # e.g. "re-implemented from the paper's description"
    dataset: str
    arch: str
    teacher_id: str | None
    seed: int
    config: dict
    metrics: dict                  # accuracy fractions per attack
    curve: dict                    # eps -> PGD-20 accuracy
    attack_settings: dict
    timings: dict                  # seconds: train, eval, per attack
    transfer: dict = field(default_factory=dict)    # target -> probe metrics and settings
    structure: dict = field(default_factory=dict)   # teacher-student structure (students only)
    history: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)   # method-specific facts (effective K, ...)
    versions: dict = field(default_factory=dict)
    git_commit: str | None = None
    created: str = ""
    eval_key: str = ""             # id of the evaluation settings the metrics come from
    data_info: dict = field(default_factory=dict)   # split, class subset, stand-in data
    sanity: dict = field(default_factory=dict)      # bench.eval.sanity checks: values, thresholds, flags
    teacher: dict = field(default_factory=dict)     # what the teacher is (bench.train.teacher.TeacherInfo)
    code: dict = field(default_factory=dict)        # digests of the training and evaluation code, commit
    # students: the checkpoint policy, which weights ``metrics`` are of, and best and last epochs' numbers
    checkpoints: dict = field(default_factory=dict)
    per_class: dict = field(default_factory=dict)   # per_image.class_record (per_image.json: per image)
    corruptions: dict = field(default_factory=dict)  # corruption_eval.corruption_record (settings: the source)

    def save(self, run_dir: Path) -> Path:
        path = Path(run_dir) / RECORD
        atomic_write_json(path, asdict(self))
        return path

    @classmethod
    def load(cls, path: Path) -> "RunRecord":
        try:
            data = json.loads(Path(path).read_text())
            names = {f.name for f in fields(cls)}
            return cls(**{k: v for k, v in data.items() if k in names})
        except (OSError, ValueError, TypeError, AttributeError) as err:
            raise BenchError(f"run record {path} is unreadable ({type(err).__name__}); run the command again to "
                             "evaluate the run anew, or delete its folder to redo it") from None


def load_records(runset_dir: Path, run_ids: list[str] | None = None) -> list[RunRecord]:
    """The run-set's records: those ``run_ids`` name (the last `run`), else every one in the folder."""
    paths = ([Path(runset_dir) / rid / RECORD for rid in run_ids] if run_ids is not None
             else sorted(Path(runset_dir).glob(f"*/{RECORD}")))
    return [RunRecord.load(p) for p in paths if p.exists()]
