"""Generated hostile input (Hypothesis) for the command line and every file format bench reads.

Each format is a function that takes one generated case and returns "ok" (accepted, the right result)
or "refused" (one line on stderr, exit status 2, or a BenchError from a loader); anything else -- a
traceback, another exit status, a second stderr line, a file written outside the case's folder -- is a
failure. ``run_format(name, n)`` tries ``n`` cases and returns (tried, outcomes, failures);
tests/fuzz/test_hostile_inputs.py runs a bounded number in CI and benchmarks/fuzz_inputs.py a larger one.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
from collections import Counter
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.cli.main import main
from bench.common.errors import BenchError

ROOT = Path(__file__).resolve().parents[2]
TRICKY = ["../../etc/passwd", "/dev/null", "a/../../b", "nan", "inf", "-inf", "-1", "0", "1e308", "8/255", "",
          "digits@0-4", "cifar10", "ard,crd", "gacd:reweight=none", "1,2,3", "--help", "é", "\x00", "a" * 300]
TEXT = st.one_of(st.text(st.characters(blacklist_categories=("Cs",)), max_size=24), st.sampled_from(TRICKY))
ATOMS = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70), st.floats(), TEXT)
VALUES = st.recursive(ATOMS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                    st.dictionaries(TEXT, inner, max_size=4)), max_leaves=10)


def _stderr_lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.strip()]


def _cli(argv: list[str], cwd: Path) -> str:
    """main(argv) in ``cwd``: exit 0, or 2 with exactly one line on stderr; nothing written in ``cwd``."""
    before = sorted(p.relative_to(cwd) for p in cwd.rglob("*"))
    err, out = io.StringIO(), io.StringIO()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                code = main(argv)
            except SystemExit as exc:     # argparse's own exit (--help)
                code = exc.code
    finally:
        os.chdir(old)
    lines = _stderr_lines(err.getvalue())
    assert sorted(p.relative_to(cwd) for p in cwd.rglob("*")) == before, f"{argv} wrote into {cwd}"
    if code == 0:
        return "ok"
    assert code == 2, f"{argv}: exit {code}: {err.getvalue()[-500:]}"
    assert len(lines) == 1 and lines[0].startswith("bench"), f"{argv}: stderr {lines[:5]}"
    return "refused"


def _loader(call) -> str:
    try:
        call()
    except BenchError as err:
        assert "\n" not in str(err).strip(), str(err)
        return "refused"
    return "ok"


# --- the command line: `run` with generated flags, resolved and printed (no training) ----------------

def _run_flags():
    from bench.cli.parser import build_parser
    run = build_parser()._subparsers._group_actions[0].choices["run"]
    return sorted(o for a in run._actions for o in a.option_strings
                  if o.startswith("--") and o not in ("--help", "--print-config", "--dry-run"))


FLAG = st.sampled_from(_run_flags())
ARGV = st.lists(st.tuples(FLAG, st.one_of(st.none(), TEXT)), max_size=5)


def cli_case(pairs, folder: Path) -> str:
    argv = ["run"]
    for flag, value in pairs:
        argv += [flag] if value is None else [flag, value]
    return _cli([*argv, "--print-config"], folder)


# --- a config file (--config FILE): generated YAML, or bytes that are not UTF-8 -----------------------

def _config_keys() -> list[str]:
    from bench.config.files import _flat
    from bench.config.presets import get_preset
    from dataclasses import asdict
    return sorted(_flat(asdict(get_preset("digits").config)))


KEY = st.one_of(st.sampled_from(_config_keys()), TEXT)
CONFIG = st.one_of(st.dictionaries(KEY, VALUES, max_size=6), VALUES, st.binary(max_size=64))


def config_case(doc, folder: Path) -> str:
    path = folder / "c.yaml"
    path.write_bytes(doc if isinstance(doc, bytes) else yaml.safe_dump(_nested(doc), allow_unicode=True).encode())
    return _cli(["run", "--config", str(path), "--print-config"], folder)


def _nested(doc):
    """Dotted keys as nested mappings (what a config file writes), other documents as they are."""
    if not isinstance(doc, dict):
        return doc
    out: dict = {}
    for key, value in doc.items():
        parts, node = str(key).split("."), out
        for p in parts[:-1]:
            node = node.setdefault(p, {}) if isinstance(node.get(p, {}), dict) else {}
        node[parts[-1]] = value
    return out


# --- a run record, a run-set manifest, a job file, a regression baseline, a per-image store ----------

def edits(valid: dict):
    """Edits of a valid document: a key dropped or given a generated value, at the top or one level down."""
    paths = [(k,) for k in valid] + [(k, j) for k, v in valid.items() if isinstance(v, dict) for j in list(v)[:8]]
    return st.lists(st.tuples(st.sampled_from(sorted(paths)), st.one_of(st.just("<drop>"), VALUES)),
                    min_size=1, max_size=4)


def edited(valid: dict, changes) -> dict:
    doc = json.loads(json.dumps(valid))
    for path, value in changes:
        node = doc
        for k in path[:-1]:
            node = node.get(k) if isinstance(node, dict) else None
        if isinstance(node, dict):
            if value == "<drop>":
                node.pop(path[-1], None)
            else:
                node[path[-1]] = value
    return doc


def _valid_record() -> dict:
    path = next(p for p in sorted((ROOT / "results" / "baselines").glob("*/record.json")))   # committed
    return json.loads(path.read_text())


RECORD = _valid_record()
EDIT = st.tuples(st.sampled_from(sorted(RECORD)), st.one_of(st.just("<drop>"), VALUES))
RECORD_CASE = st.one_of(st.lists(EDIT, min_size=1, max_size=4), st.binary(max_size=64),
                        st.integers(0, 2000))   # an int: the valid record cut at that byte


def _damaged(case) -> bytes:
    text = json.dumps(RECORD)
    if isinstance(case, bytes):
        return case
    if isinstance(case, int):
        return text.encode()[:case]
    rec = dict(RECORD)
    for key, value in case:
        if value == "<drop>":
            rec.pop(key, None)
        else:
            rec[key] = value
    return json.dumps(rec, default=str).encode()


def record_case(case, folder: Path) -> str:
    from bench.records.record import RunRecord
    run = folder / "rs" / "run-1"
    run.mkdir(parents=True, exist_ok=True)
    (run / "record.json").write_bytes(_damaged(case))
    first = _loader(lambda: RunRecord.load(run / "record.json"))
    # the commands that read it: status and report over the run-set
    (folder / "rs" / "runset.json").write_text(json.dumps({"entries": [
        {"role": "student", "method": "ard", "seed": 0, "run_id": "run-1", "teacher_id": "t"}], "runs": ["run-1"]}))
    _cli(["status", "rs", "--results", str(folder)], folder)
    return first


MANIFEST = st.one_of(st.dictionaries(st.sampled_from(["entries", "runs", "methods", "commands", "config"]), VALUES,
                                     max_size=5), VALUES, st.binary(max_size=64))


def manifest_case(doc, folder: Path) -> str:
    from bench.records.runset import read_manifest
    (folder / "rs").mkdir(exist_ok=True)
    (folder / "rs" / "runset.json").write_bytes(doc if isinstance(doc, bytes) else json.dumps(doc, default=str).encode())
    first = _loader(lambda: read_manifest(folder / "rs"))
    _cli(["status", "rs", "--results", str(folder)], folder)
    return first


def _valid_job() -> dict:
    from bench.config.resolve import resolve
    from bench.runs.job import plan
    return yaml.safe_load(plan(resolve("digits"), "fuzz").text())


VALID_JOB = _valid_job()
JOB = st.one_of(edits(VALID_JOB).map(lambda c: edited(VALID_JOB, c)), st.dictionaries(st.sampled_from(["job", "preset", "methods", "seeds", "train", "data", "eval"]),
                                VALUES, max_size=6), VALUES)


def job_case(doc, folder: Path) -> str:
    """A job file named by its digest (so it gets past the name check) whose content is generated."""
    from bench.runs.job import read
    text = "# a bench job\n" + yaml.safe_dump(doc, allow_unicode=True)
    path = folder / f"{hashlib.sha256(text.encode()).hexdigest()[:12]}.yaml"
    path.write_text(text)
    return _loader(lambda: read(path))


VALID_BASELINE = json.loads((ROOT / "results" / "baselines" / "regress.json").read_text())
VALID_PER_IMAGE = json.loads(next(iter(sorted((ROOT / "results" / "baselines").glob("*/per_image.json")))).read_text())
BASELINE = st.one_of(edits(VALID_BASELINE).map(lambda c: edited(VALID_BASELINE, c)), st.dictionaries(st.sampled_from(["format", "values", "check_values", "calibration", "config",
                                                      "history", "seeds", "check_seeds", "machine"]), VALUES,
                                     max_size=6), VALUES, st.binary(max_size=64))


def baseline_case(doc, folder: Path) -> str:
    from bench.regress.check import _usable, read_baseline
    path = folder / "b.json"
    path.write_bytes(doc if isinstance(doc, bytes) else json.dumps(doc, default=str).encode())
    return _loader(lambda: _usable(read_baseline(path), path))   # what `bench regress` does before training


PER_IMAGE = st.one_of(edits(VALID_PER_IMAGE).map(lambda c: edited(VALID_PER_IMAGE, c)), st.dictionaries(st.sampled_from(["version", "n", "labels", "flags", "classes", "attacks"]),
                                      VALUES, max_size=6), VALUES)


def per_image_case(doc, folder: Path) -> str:
    from bench.eval.per_image import load
    return _loader(lambda: load(doc))


FORMATS = {"command line (run)": (ARGV, cli_case), "config file": (CONFIG, config_case),
           "run record": (RECORD_CASE, record_case), "run-set manifest": (MANIFEST, manifest_case),
           "job file": (JOB, job_case), "regression baseline": (BASELINE, baseline_case),
           "per-image store": (PER_IMAGE, per_image_case)}


def run_format(name: str, n: int, seed: int = 0) -> tuple[int, Counter, list[str]]:
    """(cases tried, outcomes, failures) of ``n`` generated cases of format ``name``."""
    strategy, case = FORMATS[name]
    tried, outcomes, failures = 0, Counter(), []

    @settings(max_examples=n, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def one(doc):
        nonlocal tried
        tried += 1
        with tempfile.TemporaryDirectory() as tmp:
            outcomes[case(doc, Path(tmp))] += 1

    try:
        one()
    except Exception as err:   # noqa: BLE001  (each shrunk failing case, reported)
        for sub in getattr(err, "exceptions", [err]):
            failures.append(f"{type(sub).__name__}: {str(sub)[:300]}")
    return tried, outcomes, failures
