"""Run-sets to the leaderboard's data: every run checked against its per-image store, runs merged
across run-sets without duplicates, grouped into rows, each row with its numbers and intervals, its
tie-aware rank, its model card and its per-image flags.

A row is one (data set, threat model, ε, teacher, student architecture, method, protocol, checkpoint);
its seeds are its records. A run found in two run-sets (the same run id and evaluation key) counts once.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bench.common.errors import BenchError
from bench.config.schema import loss_terms
from bench.eval.per_image import PER_IMAGE, load as load_flags
from bench.methods import METHODS
from bench.records.record import RECORD, RunRecord, load_records
from bench.records.runset import read_manifest
from bench.report.aggregate import (Column, main_accuracy_columns, method_difference, row_name, step_flops,
                                    strongest_class_column, teacher_label)
from bench.report.export import leaderboard_entry
from bench.report.figures import METHOD_COLOURS, SPARE_COLOURS, TEACHER_COLOUR, train_gflop
from bench.models import published_arch
from bench.report.references import published
from bench.report.stats import interval

FORMAT = 1              # the site data's layout (data.js)
REQUIRED = ("clean", "pgd20")   # what every run must have been evaluated on to join a leaderboard
AGREE = 1e-6            # a record's accuracy is k/n in float32: its per-image flags give it within this
NORM_TEXT = {"Linf": "L∞", "L2": "L2", "L1": "L1"}
WEIGHTS = ("model.pt", "last.pt")
WEIGHTS_DIGEST = "weights.json"   # a submission's stand-in for its weights
COMPARED = ("clean", "pgd20", "aa")   # the metrics a comparison tests
MOST_COMPARED = 40      # rows of a group beyond which pairs are not precomputed (n^2 tests)


@dataclass(frozen=True)
class Run:
    """One checked run: its record, the run-set it came from and its per-image store."""
    record: RunRecord
    runset: str
    folder: Path
    per_image: dict          # for the page: labels, and per attack a string of 0/1 flags
    per_image_raw: dict      # the store as written (bench.eval.per_image), for the tests


def _refuse(where: str, why: str) -> BenchError:
    return BenchError(f"site: {where}: {why}; not added to the leaderboard")


def check_run(folder: Path, rec: RunRecord, runset: str) -> Run:
    """A run the leaderboard can show: evaluated under the suite's protocol (clean and PGD-20 with 20
    steps at least), with its per-image store, whose flags give every accuracy the record states."""
    where = f"{runset}/{rec.run_id}"
    missing = [k for k in REQUIRED if k not in (rec.metrics or {})]
    if missing:
        raise _refuse(where, f"not evaluated on {', '.join(missing)}")
    steps = ((rec.attack_settings or {}).get("pgd20") or {}).get("steps")
    if steps is not None and steps != 20:
        raise _refuse(where, f"its PGD-20 ran {steps} steps, not the protocol's 20")
    if rec.config.get("protocol") not in ("common", "official"):
        raise _refuse(where, f"protocol {rec.config.get('protocol')!r} is neither common nor official")
    path = folder / PER_IMAGE
    if not path.is_file():
        raise _refuse(where, f"no {PER_IMAGE} (the per-image results every comparison and the explorer need)")
    try:
        stored = json.loads(path.read_text())
        flags, labels, _ = load_flags(stored)
    except (ValueError, BenchError) as err:
        raise _refuse(where, f"{PER_IMAGE} is damaged ({str(err)[:120]})") from None
    for name, value in rec.metrics.items():
        f = flags.get(name)
        if f is not None and len(f) and abs(float(np.mean(f)) - float(value)) > AGREE:
            raise _refuse(where, f"its {name} accuracy {float(value):.4f} disagrees with its per-image store "
                                 f"({float(np.mean(f)):.4f})")
    return Run(rec, runset, folder, {"labels": labels.tolist(),
                                     "correct": {k: "".join("1" if b else "0" for b in v) for k, v in flags.items()}},
               stored)


def load_runs(results: Path, runsets: list[str]) -> list[Run]:
    """Every finished run of ``runsets``, checked, a run present in several once (the first)."""
    runs, seen = [], set()
    for name in runsets:
        folder = Path(results) / name
        if not (folder / "runset.json").is_file() and not any(folder.glob(f"*/{RECORD}")):
            raise BenchError(f"site: no run-set {name!r} in {results}")
        meta = read_manifest(folder)
        for rec in load_records(folder, meta.get("runs")):
            key = (rec.run_id, rec.eval_key)
            if key not in seen:
                seen.add(key)
                runs.append(check_run(folder / rec.run_id, rec, name))
    if not runs:
        raise BenchError(f"site: no finished runs in {', '.join(runsets)}")
    return runs


def row_key(rec: RunRecord) -> tuple:
    ev, train = rec.config["eval"], rec.config.get("train", {})
    checkpoint = (rec.checkpoints or {}).get("reported") or train.get("checkpoint", "last")
    return (rec.dataset, ev.get("norm", "Linf"), round(float(ev["eps"]), 6), rec.teacher_id or "",
            rec.arch, row_name(rec), rec.config.get("protocol", "common"), checkpoint, rec.role)


def _iv(values: list[float], scale: float = 100.0, bounds: tuple[float, float] | None = None) -> dict:
    iv = interval([v for v in values if v is not None and not math.isnan(v)], bounds)
    out = {"n": iv.n}
    for k in ("mean", "low", "high"):
        v = getattr(iv, k)
        out[k] = None if math.isnan(v) else round(scale * v, 4)
    return out


def _columns(records: list[RunRecord]) -> dict[str, Column]:
    """The leaderboard's number columns: clean, PGD-20, AutoAttack, the worst class, corruptions."""
    cols = {c.path[1] if c.path[0] == "metrics" else "worst_class": c
            for c in main_accuracy_columns(records) + strongest_class_column(records)}
    return {k: cols[k] for k in ("clean", "pgd20", "aa", "corruptions", "worst_class") if k in cols}


def _published(rec: RunRecord) -> dict:
    best, _ = published(rec.method_name, rec.role, rec.dataset, rec.arch)
    comparable = (rec.config.get("protocol") == "official" and published_arch(rec.arch) == rec.arch)
    return {m: {"value": float(r["value"]), "source": r["source"], "status": r["status"], "comparable": comparable}
            for m, r in best.items() if m in ("clean", "pgd20", "aa")}


def weights_digest(folder: Path) -> dict[str, str]:
    """{file: sha256} of the run's kept weights (model.pt: the reported checkpoint; last.pt: the last
    epoch's, where a best-* policy kept both), or what a submission's weights.json says, or {}."""
    out = {}
    for name in WEIGHTS:
        if (folder / name).is_file():
            h = hashlib.sha256()
            with open(folder / name, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            out[name] = h.hexdigest()
    if out:
        return out
    try:
        sent = json.loads((folder / WEIGHTS_DIGEST).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(sent, dict):
        return {}
    return {k: v for k, v in sent.items() if k in WEIGHTS and isinstance(v, str) and len(v) == 64
            and all(c in "0123456789abcdef" for c in v)}


def _card(runs: list[Run], commands: dict[str, str]) -> dict:
    rec = runs[0].record
    recs = [r.record for r in runs]
    per_class = [((r.per_class or {}).get("accuracy") or {}) for r in recs]
    classes = (rec.per_class or {}).get("classes") or (rec.data_info or {}).get("classes") or []
    class_means = {att: [_mean([pc[att][c] for pc in per_class if att in pc and pc[att][c] is not None])
                         for c in range(len(classes))] for att in (per_class[0] if per_class else {})}
    curve = sorted({float(e) for r in recs for e in (r.curve or {})})
    corr = [((r.corruptions or {}).get("accuracy") or {}) for r in recs]
    try:
        export = asdict(leaderboard_entry(rec)) if rec.role == "student" else None
    except (BenchError, KeyError, TypeError, ValueError):
        export = None
    return {
        "config": rec.config,
        "code": {"train": sorted({(r.code or {}).get("train", "") for r in recs}),
                 "eval": sorted({(r.code or {}).get("eval", "") for r in recs}),
                 "commit": sorted({str((r.code or {}).get("commit") or r.git_commit) for r in recs}),
                 "versions": rec.versions},
        "teacher": rec.teacher, "options": rec.options, "note": rec.note,
        "checkpoints": rec.checkpoints,
        "seeds": [{"seed": r.record.seed, "run_id": r.record.run_id, "runset": r.runset,
                   "metrics": {k: round(100 * float(v), 4) for k, v in r.record.metrics.items()},
                   "weights": weights_digest(r.folder)} for r in runs],
        "classes": [str(c) for c in classes], "per_class": class_means,
        "curve": [[e, _mean([(r.curve or {}).get(f"{e:g}") for r in recs])] for e in curve],
        "history": [r.history for r in recs],
        "terms": next((loss_terms(r.history[0]) for r in recs if r.history), []),
        "corruptions": {name: [_mean([c[name][s] for c in corr if name in c]) for s in range(len(v))]
                        for name, v in (corr[0] if corr else {}).items()},
        "sanity": {name: {"flagged": sum(bool(((r.sanity or {}).get("checks") or {}).get(name, {}).get("flagged"))
                                         for r in recs),
                          **{k: c.get(k) for k in ("what", "threshold")},
                          "values": [((r.sanity or {}).get("checks") or {}).get(name, {}).get("value") for r in recs]}
                   for name, c in ((rec.sanity or {}).get("checks") or {}).items()},
        "reproduce": commands.get(runs[0].runset, ""),
        "recipe": _recipe(rec),
        "robustbench": export,
    }


def _recipe(rec: RunRecord) -> dict | None:
    """The method's citation and its official script's recipe with the source of each field."""
    if rec.role != "student" or rec.method_name not in METHODS:
        return None
    cls = METHODS.get(rec.method_name)
    official = getattr(cls, "official", None)
    return {"cite": getattr(cls, "cite", ""), "repo": getattr(official, "repo", ""),
            "code": bool(getattr(official, "code", False)), "sources": dict(getattr(official, "sources", {}) or {})}


def _mean(values) -> float | None:
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return round(100 * sum(vals) / len(vals), 4) if vals else None


def _flags(runs: list[Run]) -> list[str]:
    out = set()
    for r in runs:
        for name, c in ((r.record.sanity or {}).get("checks") or {}).items():
            if c.get("flagged"):
                out.add(name)
    return sorted(out)


def rows(runs: list[Run], commands: dict[str, str]) -> list[dict]:
    """The leaderboard's rows (students and teachers), each with its numbers, card and per-image flags."""
    groups: dict[tuple, list[Run]] = {}
    for run in runs:
        groups.setdefault(row_key(run.record), []).append(run)
    cols = _columns([r.record for r in runs])
    out = []
    for key, members in groups.items():
        members.sort(key=lambda r: r.record.seed)
        rec = members[0].record
        recs = [m.record for m in members]
        metrics = {name: _iv([col.value(r) for r in recs], bounds=col.bounds) for name, col in cols.items()}
        metrics["cost"] = _iv([train_gflop(r) for r in recs], scale=1.0)
        if all(math.isnan(step_flops(r)) for r in recs):
            metrics["cost"] = {"n": 0, "mean": None, "low": None, "high": None}
        out.append({
            "id": hashlib.sha256(json.dumps(key).encode()).hexdigest()[:12], "key": key,
            "label": rec.method if rec.role == "student" else "teacher",
            "colour": colour(rec),
            "dataset": rec.dataset, "norm": NORM_TEXT.get(key[1], key[1]), "eps": key[2],
            "threat": f"{NORM_TEXT.get(key[1], key[1])} ε={key[2]:g}",
            "teacher": teacher_label_of(rec), "arch": rec.arch, "method": key[5], "role": rec.role,
            "protocol": key[6], "checkpoint": key[7], "n": len(members),
            "metrics": metrics, "published": _published(rec), "flags": _flags(members),
            "card": _card(members, commands),
            "images": [{"seed": m.record.seed, **m.per_image} for m in members],
        })
    rank(out)
    return sorted(out, key=lambda r: (r["group"], r["rank"], -(r["metrics"][r["rank_by"]]["mean"] or 0.0), r["id"]))


def colour(rec: RunRecord) -> str:
    """The method's colour in every report (bench.report.figures); a user's method one of the spares."""
    if rec.role == "teacher":
        return TEACHER_COLOUR
    if rec.method_name in METHOD_COLOURS:
        return METHOD_COLOURS[rec.method_name]
    return SPARE_COLOURS[int(hashlib.sha256(rec.method_name.encode()).hexdigest(), 16) % len(SPARE_COLOURS)]


def teacher_label_of(rec: RunRecord) -> str:
    """The teacher a row distilled from (a teacher row names itself)."""
    info = rec.teacher or {}
    if rec.role == "teacher":
        return teacher_label(rec)
    return f"{info.get('method', '?')}, {info.get('arch', '?')}" + (
        f"; {info['source']}" if info.get("kind", "trained") != "trained" and info.get("source") else "")


def rank(rows_: list[dict]) -> None:
    """Within each comparable group (data set, threat model, ε): a row's rank is 1 + the number of rows
    whose interval on the strongest attack lies wholly above its own; rows sharing a rank are tied
    (their intervals overlap), shown as "=k", not as ranks apart."""
    for r in rows_:
        r["group"] = f"{r['dataset']} · {r['threat']}"
    for group in {r["group"] for r in rows_}:
        members = [r for r in rows_ if r["group"] == group]
        key = "aa" if all(r["metrics"].get("aa", {}).get("mean") is not None for r in members) else "pgd20"
        for r in members:
            m = r["metrics"][key]
            hi = m["high"] if m["high"] is not None else m["mean"]
            r["rank"] = 1 + sum(1 for o in members if o is not r and _low(o["metrics"][key]) > hi)
            r["rank_by"] = key
        for r in members:
            r["tied"] = sum(1 for o in members if o["rank"] == r["rank"]) > 1


def _low(m: dict) -> float:
    return m["low"] if m["low"] is not None else m["mean"]


def comparisons(rows_: list[dict], runs: list[Run]) -> dict[str, dict]:
    """"A|B" -> {metric: difference A - B in points, its interval, p and test}, for every ordered pair of
    rows in one comparable group (at most MOST_COMPARED rows): the seeds x images test where both kept
    per-image flags on the same seeds, else the test over seeds, as the report's ablation computes it."""
    by_id = {}
    for run in runs:
        by_id.setdefault(row_key(run.record), []).append(run)
    stores = {run.record.run_id: run.per_image_raw for run in runs}
    cols = {k: c for k, c in _columns([r.record for r in runs]).items() if k in COMPARED}
    out = {}
    for group in sorted({r["group"] for r in rows_}):
        members = [r for r in rows_ if r["group"] == group]
        if len(members) > MOST_COMPARED:
            continue
        for a in members:
            for b in members:
                if a is b:
                    continue
                ra, rb = [m.record for m in by_id[a["key"]]], [m.record for m in by_id[b["key"]]]
                cell = {}
                for name, col in cols.items():
                    d = method_difference(ra, rb, col, per_image=lambda rec: stores.get(rec.run_id))
                    cell[name] = {"diff": _num(100 * d.diff), "low": _num(100 * d.low), "high": _num(100 * d.high),
                                  "p": _num(d.p, 6), "test": d.test, "n": d.n, "note": d.note}
                out[f"{a['id']}|{b['id']}"] = cell
    return out


def _num(v: float, digits: int = 4) -> float | None:
    return None if v is None or math.isnan(v) else round(float(v), digits)


def site_data(results: Path, runsets: list[str]) -> dict:
    runs = load_runs(results, runsets)
    commands = {}
    for name in runsets:
        meta = read_manifest(Path(results) / name)
        commands[name] = meta.get("command") or ""
    rows_ = rows(runs, commands)
    pairs = comparisons(rows_, runs)
    for r in rows_:
        del r["key"]
    return {"format": FORMAT, "runsets": list(runsets), "rows": rows_, "compare": pairs,
            "most_compared": MOST_COMPARED}
