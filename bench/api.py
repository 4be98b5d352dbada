"""The Python API of ``bench run``: ``bench.run(...)`` trains and evaluates a (methods x seeds) grid and
returns its records and table. ``python -m bench run`` resolves its flags with the same resolver
(bench.config.resolve), checks the run once (bench.runs.job.plan) and calls ``launch`` here, so both run
the same code; an executor's job runs ``run_part`` of the job file written at submission."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable

import pandas as pd

from bench.common import distributed
from bench.common.errors import BenchError
from bench.common.provenance import ROOT, method_file
from bench.config import files
from bench.config.resolve import Flags, resolve
from bench.config.schema import RunConfig
from bench.report.aggregate import accuracy_columns, group_records, table
from bench.report.build import build_report, glance_table
from bench.runs.executors import (
    GridOptions,
    Outcome,
    SlurmOptions,
    check_options,
    submit,
)
from bench.runs.job import Job, plan, read
from bench.runs.orchestrate import run_methods
from bench.records.record import RunRecord, load_records
from bench.runs.status import format_status, runset_status
from bench.methods import parse_method


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

    def ranked(self) -> str:
        """The run's result at a glance: the report's ranked main table (bench.report.build.glance_table)
        cut to method, clean, PGD-20, AutoAttack (those the run has) and n, for a terminal."""
        view, _ = glance_table(self.table, self.summary)
        return view[[c for c in ("Method", "Clean", "PGD-20", "AutoAttack", "n") if c in view]].to_string(index=False)

    def __repr__(self) -> str:
        where = f"; report {self.report}" if self.report else ""
        return (f"RunResult(run-set {self.runset!r}: {len(self.students)} student run(s), "
                f"{len(self.records) - len(self.students)} teacher row(s){where})\n{self.table.to_string(index=False)}")


def tables(records: list[RunRecord], methods: Iterable[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(shown, numeric) main table of ``records``, rows as the report orders them (bench.report)."""

    return table(group_records(records, [parse_method(m).label for m in methods]), accuracy_columns(records), main=True)


def execute(job: Job, *, results: str | Path = "results", reports: str | Path = "reports", force: bool = False,
            report: bool = True, only_teacher: bool = False, tensorboard: str | Path | None = None,
            wandb: str | None = None) -> RunResult:
    """Run a checked job's grid in this process (bench.runs.orchestrate.run_methods), write the report,
    return the result. ``tensorboard``: a folder for TensorBoard event files, one per run; ``wandb``: a
    Weights & Biases project, one W&B run per run; None: off."""

    results, reports = Path(results), Path(reports)
    t0 = time.perf_counter()
    meta = {"command": job.command, "methods": list(job.methods), "compare_to": job.compare_to}
    records = run_methods(job.config, list(job.methods), job.runset, results, seeds=job.seeds, force=force, meta=meta,
                          only_teacher=only_teacher, tensorboard=tensorboard, wandb=wandb)
    out = None
    if report and distributed.is_main():  # rank 0 writes the report
        out = build_report(results, job.runset, reports) / "README.md"
    shown, numeric = tables(records, job.methods)
    return RunResult(records, shown, numeric, job.config, job.methods, job.seeds, job.runset, results / job.runset,
                     out, time.perf_counter() - t0, job.command)


def launch(job: Job, opts: GridOptions) -> RunResult | Outcome:
    """Run a checked job as ``opts`` says: in this process (a RunResult), or as submitit jobs (the
    executor's Outcome; after a local grid, the report is built here)."""
    check_options(job.config, opts)  # before anything is written
    if opts.executor == "inline":
        return execute(job, results=opts.results, reports=opts.reports, force=opts.force, report=not opts.no_report,
                       only_teacher=opts.only_teacher, tensorboard=opts.tensorboard, wandb=opts.wandb)
    t0 = time.perf_counter()
    outcome, _ = submit(job, opts)
    if opts.executor != "local":
        return outcome
    lines = [*outcome.lines, format_status(runset_status(opts.results, job.runset))]
    if not opts.no_report:
        out = build_report(opts.results, job.runset, opts.reports)
        lines.append(f"report: {out}/README.md  (wall time {time.perf_counter() - t0:.0f} s)")
    return Outcome(outcome.code, tuple(lines), outcome.errors)


def run_part(job_file: str | Path, *, teacher: bool = False, method: str | None = None, seed: int | None = None,
             report: bool = False, reports: str | Path = "reports", tensorboard: str | Path | None = None,
             wandb: str | None = None):
    """One part of a written job (what an executor's job runs): the teacher, one (method, seed), or the
    report. The results folder is the job file's: results/<runset>/.jobs/<id>.yaml."""

    path = Path(job_file)
    job = read(path)
    results = path.resolve().parents[2]
    if report:
        return build_report(results, job.runset, Path(reports))
    if teacher:
        part = replace(job, methods=job.methods[:1])
    else:
        if method not in job.methods or seed not in job.seeds:
            raise BenchError(f"{method} seed {seed} is not in the grid of {path} (methods {', '.join(job.methods)}; "
                             f"seeds {', '.join(map(str, job.seeds))})")
        part = replace(job, methods=(method,), seeds=(seed,))
    return execute(part, results=results, reports=reports, report=False, only_teacher=teacher,
                   tensorboard=tensorboard, wandb=wandb)


def run(methods=None, preset: str | None = None, seeds=None, overrides: dict | None = None,
        results: str | Path = "results", reports: str | Path = "reports", name: str | None = None,
        force: bool = False, report: bool = True, config: str | Path | None = None,
        tensorboard: str | Path | None = None, wandb: str | None = None, executor: str = "inline",
        jobs: int | None = None,
        gpus: int | None = None, jobs_per_gpu: int | None = None, slurm: SlurmOptions | None = None,
        **dotted) -> RunResult:
    """Train and evaluate ``methods`` (names with options, ``"gacd:reweight=none"``) for ``seeds`` with a
    teacher, exactly as ``python -m bench run`` does, and return the records and the table.

    The configuration is the preset (default: the config file's ``preset:``, else ``digits``), then the
    ``config`` YAML file, then ``overrides`` (``{"train.epochs": 2}``), then keyword overrides
    (``train__epochs=2``). ``methods``/``seeds`` default to the file's, else the preset's. Results go
    to ``results/<name>`` (``name`` defaults to the preset), the report to ``reports/<name>``;
    ``tensorboard=DIR`` writes TensorBoard event files per run under it, ``wandb=PROJECT`` one Weights &
    Biases run per run (the same fields). ``executor="local"`` (with
    ``jobs=N`` on CPUs, ``gpus``/``jobs_per_gpu`` on GPUs) runs the grid as submitit jobs on this machine,
    each from the job file written at submission, and returns the same result read from the records;
    ``executor="slurm"`` submits the grid (``partition`` and the other Slurm choices through ``slurm``, a
    ``bench.runs.executors.SlurmOptions``) and returns at once with no records."""

    if isinstance(methods, str):
        methods = [m for m in methods.split(",") if m.strip()]
    if isinstance(seeds, int):
        seeds = [seeds]
    layer = {**(overrides or {}), **{k.replace("__", "."): v for k, v in dotted.items()}}
    resolved = resolve(preset, config, Flags(methods=tuple(methods) if methods is not None else None,
                                             seeds=tuple(seeds) if seeds is not None else None), layer)
    user_files = sorted({f for f in (method_file(parse_method(m).cls) for m in resolved.methods)
                         if f and not Path(f).resolve().is_relative_to(ROOT)})  # for the report's Reproduce line
    command = files.command(resolved.preset.config, resolved.config, resolved.methods, resolved.seeds, name,
                            user_files)
    job = plan(resolved, name, command, user_files)
    t0 = time.perf_counter()
    opts = GridOptions(executor=executor, results=Path(results), reports=Path(reports), force=force,
                       no_report=not report, jobs=jobs, gpus=gpus, jobs_per_gpu=jobs_per_gpu, tensorboard=tensorboard, wandb=wandb,
                       slurm=slurm or SlurmOptions())
    out = launch(job, opts)
    if isinstance(out, RunResult):
        return out
    if out.code != 0:
        raise BenchError("; ".join(out.errors) or f"executor {executor} failed")
    if executor == "slurm":  # submitted, nothing finished yet: the lines say how to follow it
        print("\n".join(out.lines), file=sys.stderr)
        empty = pd.DataFrame()
        return RunResult([], empty, empty, job.config, job.methods, job.seeds, job.runset, Path(results) / job.runset,
                         None, time.perf_counter() - t0, command)
    runset_dir = Path(results) / job.runset
    records = load_records(runset_dir)
    shown, numeric = tables(records, job.methods)
    report_path = Path(reports) / job.runset / "README.md"
    return RunResult(records, shown, numeric, job.config, job.methods, job.seeds, job.runset, runset_dir,
                     report_path if report and report_path.exists() else None, time.perf_counter() - t0, command)


def site(runsets, *, results: str | Path = "results", out: str | Path = "site-leaderboard") -> Path:
    """What ``python -m bench site RUNSET... --out DIR`` builds: the static leaderboard website of the
    run-sets' checked runs (a run in several counts once); returns the path of its ``index.html``."""
    from bench.leaderboard.build import build_site

    if isinstance(runsets, str):
        runsets = [runsets]
    return build_site(Path(results), list(runsets), Path(out))
