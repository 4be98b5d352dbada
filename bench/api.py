"""The Python API of ``bench run``: ``bench.run(...)`` trains and evaluates a (methods x seeds) grid and
returns its records and table. ``python -m bench run`` parses its flags into the same typed config and
calls ``execute`` here, so both run the same code."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from bench.config import RunConfig
from bench.errors import BenchError
from bench.results import RunRecord


@dataclass(frozen=True)
class RunResult:
    """What a run returns: its records (teacher rows included), the report's main table over them,
    and where the report is."""
    records: list[RunRecord]
    table: pd.DataFrame                 # as the report shows it: "mean [95 % interval]" per cell, n, sanity
    summary: pd.DataFrame               # the same rows as numbers: "<column> mean|low|high" (fractions), n
    config: RunConfig
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    runset: str
    results: Path                       # the run-set's folder: results/<runset>
    report: Path | None                 # reports/<runset>/README.md; None with report=False
    seconds: float = 0.0
    command: str = field(default="", repr=False)  # the equivalent `python -m bench run ...`

    @property
    def students(self) -> list[RunRecord]:
        return [r for r in self.records if r.role == "student"]

    def __repr__(self) -> str:
        where = f"; report {self.report}" if self.report else ""
        return (f"RunResult(run-set {self.runset!r}: {len(self.students)} student run(s), "
                f"{len(self.records) - len(self.students)} teacher row(s){where})\n{self.table.to_string(index=False)}")


def validate(cfg: RunConfig, methods: Iterable[str]) -> None:
    """Everything a run needs, checked before any data or training work (one-line errors)."""
    from bench import configfile, distributed
    from bench.attacks import check_eps
    from bench.evaluation import check_attacks
    from bench.models import ARCHS
    from bench.runner import resolve_device
    from bench.teacher import check_teacher
    from methods import parse_method

    for m in methods:
        parse_method(m)
    configfile.check_ranges(cfg)
    for part in (cfg.attack, cfg.eval):  # L2's cap needs the image size: checked again with the data
        check_eps(part.eps, part.norm)
    ARCHS.get(cfg.student_arch)
    check_attacks(cfg.eval.attacks)
    check_teacher(cfg.teacher, cfg.data.name)
    resolve_device(cfg.device)
    if cfg.sync_bn:
        import torch

        if distributed.world_size() == 1:
            raise BenchError("--sync-bn is for one run over several GPUs: start it with torchrun --nproc-per-node N")
        if not torch.cuda.is_available():
            raise BenchError("--sync-bn needs CUDA (PyTorch's SyncBatchNorm does not run on CPU)")


def tables(records: list[RunRecord], methods: Iterable[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(shown, numeric) main table of ``records``, rows as the report orders them (bench.report)."""
    from bench.report import _groups, accuracy_columns, table
    from methods import parse_method

    return table(_groups(records, [parse_method(m).label for m in methods]), accuracy_columns(records), main=True)


def execute(cfg: RunConfig, methods: list[str], seeds, runset: str, *, compare_to: str | None = None,
            results: str | Path = "results", reports: str | Path = "reports", force: bool = False,
            report: bool = True, command: str = "", only_teacher: bool = False,
            tensorboard: str | Path | None = None) -> RunResult:
    """Run the grid in this process (bench.runner.run_methods), write the report, return the result.
    ``tensorboard``: a folder for TensorBoard event files, one per run (bench.tracking); None: off."""
    from bench import distributed
    from bench.report import build_report
    from bench.runner import run_methods
    from methods import parse_method

    validate(cfg, methods)
    results, reports = Path(results), Path(reports)
    t0 = time.perf_counter()
    meta = {"command": command, "methods": [parse_method(m).label for m in methods], "compare_to": compare_to}
    records = run_methods(cfg, list(methods), runset, results, seeds=tuple(seeds), force=force, meta=meta,
                          only_teacher=only_teacher, tensorboard=tensorboard)
    out = None
    if report and distributed.is_main():  # rank 0 writes the report
        out = build_report(results, runset, reports) / "README.md"
    shown, numeric = tables(records, methods)
    return RunResult(records, shown, numeric, cfg, tuple(methods), tuple(seeds), runset, results / runset, out,
                     time.perf_counter() - t0, command)


def _nested(overrides: dict[str, Any]) -> dict:
    """``{"train.epochs": 2}`` or ``{"train": {"epochs": 2}}`` -> a nested layer."""
    out: dict = {}
    for key, value in overrides.items():
        *parents, leaf = str(key).split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise BenchError(f"override {key!r} sets inside {p!r}, which another override sets to a value")
        if isinstance(value, dict) and isinstance(node.get(leaf), dict):
            node[leaf] = {**node[leaf], **_nested(value)}
        else:
            node[leaf] = value
    return out


def resolve(methods=None, preset: str | None = None, seeds=None, overrides: dict | None = None,
            config: str | Path | None = None, **dotted) -> tuple[Any, RunConfig, list[str], tuple[int, ...]]:
    """(preset, config, methods, seeds) from the layers: preset < ``config`` file < ``overrides`` <
    keyword overrides (``train__epochs=2``: ``__`` for the dots)."""
    from bench import configfile

    base, cfg, grid = configfile.load(preset, config)
    cfg, g1 = configfile.apply(cfg, _nested(overrides or {}), "overrides")
    cfg, g2 = configfile.apply(cfg, _nested({k.replace("__", "."): v for k, v in dotted.items()}), "keyword overrides")
    grid = g2.over(g1.over(grid))
    if isinstance(methods, str):
        methods = [m for m in methods.split(",") if m.strip()]
    if isinstance(seeds, int):
        seeds = [seeds]
    methods = list(methods) if methods is not None else list(grid.methods)
    seeds = tuple(seeds) if seeds is not None else tuple(grid.seeds)
    if not methods or not seeds:
        raise BenchError("bench.run needs at least one method and one seed")
    if len(set(seeds)) != len(seeds):
        raise BenchError(f"seeds {list(seeds)} repeat a seed")
    return base, cfg, methods, seeds


def run(methods=None, preset: str | None = None, seeds=None, overrides: dict | None = None,
        results: str | Path = "results", reports: str | Path = "reports", name: str | None = None,
        force: bool = False, report: bool = True, config: str | Path | None = None,
        tensorboard: str | Path | None = None, **dotted) -> RunResult:
    """Train and evaluate ``methods`` (names with options, ``"gacd:reweight=none"``) for ``seeds`` with a
    teacher, exactly as ``python -m bench run`` does, and return the records and the table.

    The configuration is the preset (default: the config file's ``preset:``, else ``digits``), then the
    ``config`` YAML file, then ``overrides`` (``{"train.epochs": 2}``), then keyword overrides
    (``train__epochs=2``). ``methods``/``seeds`` default to the file's, else the preset's. Results go
    to ``results/<name>`` (``name`` defaults to the preset), the report to ``reports/<name>``;
    ``tensorboard=DIR`` writes TensorBoard event files per run under it."""
    from bench import configfile

    from bench.provenance import ROOT, method_file
    from methods import parse_method

    base, cfg, methods, seeds = resolve(methods, preset, seeds, overrides, config, **dotted)
    user_files = sorted({f for f in (method_file(parse_method(m).cls) for m in methods)
                         if f and not Path(f).resolve().is_relative_to(ROOT)})  # for the report's Reproduce line
    command = configfile.command(base.config, cfg, methods, seeds, name, user_files)
    return execute(cfg, methods, seeds, name or cfg.preset, compare_to=base.compare_to, results=results,
                   reports=reports, force=force, report=report, command=command, tensorboard=tensorboard)
