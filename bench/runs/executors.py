"""Run a checked grid (bench.runs.job.Job) as jobs on submitit: every GPU of this machine, N CPU jobs, or
Slurm. In this process (``inline``) a grid needs no executor: ``bench.api.execute`` runs it.

The grid is written to a job file first (``Job.write``: the resolved config, the grid, the digests of the
user's method files), and every job is a `python -m bench job FILE ...` command a user could type
(``--dry-run`` prints them): the teacher (``--teacher``), one (method, seed) (``--method M --seed S``),
the report (``--report``). A job never re-reads the command line or the ``--config`` file it came from.
The run-set's manifest, per-run locks and the teacher lock (``bench.records.runset``, ``bench.train.teacher``)
make the jobs safe to run side by side on one results folder.

* ``local``: one worker job per GPU (pinned with ``CUDA_VISIBLE_DEVICES`` by submitit's local
  executor), or ``--jobs N`` workers on a CPU-only machine. Each worker walks the grid in order and
  takes every (method, seed) no other worker holds (a non-blocking claim lock), so the GPUs stay busy
  until the grid is done.
* ``slurm``: the teacher as one job, the grid as a job array that depends on it (``afterok``) and the
  report as a job that depends on the array (``afterany``). Jobs are ``Checkpointable``: a preempted or
  timed-out job is requeued by submitit and resumes from its last finished epoch.
"""
from __future__ import annotations

import hashlib
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import submitit

from bench.common import distributed
from bench.common.errors import BenchError
from bench.runs.orchestrate import prepare_runset

FOREVER_MIN = 60 * 24 * 30   # submitit's local executor kills a job after timeout_min (default 2)


@dataclass(frozen=True)
class SlurmOptions:
    partition: str | None = None
    time_min: int = 24 * 60
    gpus_per_job: int = 1
    cpus_per_job: int | None = None
    mem_gb: int | None = None
    account: str | None = None
    qos: str | None = None
    sbatch: dict = field(default_factory=dict)   # extra "#SBATCH --key=value" lines
    array_parallelism: int = 256


@dataclass(frozen=True)
class Grid:
    """The jobs of one grid: each a `python -m bench job FILE ...` argument list."""
    teacher: list[str]
    runs: list[tuple[str, int, list[str]]]     # (method, seed, argv)
    report: list[str]
    runset: str
    results: Path


def parse_time(text: str) -> int:
    """Slurm's time formats (MM, HH:MM:SS, D-HH:MM[:SS]) to minutes."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not m:
        raise BenchError(f"--time {text!r} is not a Slurm time (minutes, HH:MM:SS or D-HH:MM:SS)")
    days, a, b, c = (int(g) if g else None for g in m.groups())
    if b is None and days is None:
        return a                                  # minutes
    hours, minutes, seconds = (a, b or 0, c or 0) if c is not None or days is not None else (0, a, b)
    return max(1, (days or 0) * 1440 + hours * 60 + minutes + (1 if seconds else 0))


def parse_sbatch(lines: list[str] | None) -> dict:
    out = {}
    for line in lines or []:
        key, sep, value = line.strip().lstrip("-").partition("=")
        if not key:
            raise BenchError(f"--sbatch {line!r}: write key=value, e.g. --sbatch constraint=a100")
        out[key] = value if sep else ""
    return out


def make_grid(job_file: Path, job, results: Path, reports: Path, tensorboard=None, wandb=None) -> Grid:
    """The commands of a grid whose job is (or will be) written at ``job_file``."""
    base = (["job", str(job_file)] + (["--tensorboard", str(tensorboard)] if tensorboard else [])
            + (["--wandb", str(wandb)] if wandb else []))
    runs = [(m, s, [*base, "--method", m, "--seed", str(s)]) for s in job.seeds for m in job.methods]
    return Grid([*base, "--teacher"], runs, [*base, "--report", "--reports", str(reports)], job.runset,
                Path(results))


def command(argv: list[str]) -> str:
    return "python -m bench " + shlex.join(argv)


class BenchJob(submitit.helpers.Checkpointable):
    """One `python -m bench` command as a submitit job, in a process of its own (``threads``: its
    OMP_NUM_THREADS). ``Checkpointable``: when Slurm preempts it or its time runs out, submitit requeues
    the same command, which resumes from the last finished epoch."""

    def __call__(self, argv: list[str], workdir: str, threads: int | None = None) -> int:
        env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
        print(command(argv), file=sys.stderr, flush=True)
        code = subprocess.run([sys.executable, "-m", "bench", *argv], cwd=workdir, env=env).returncode
        if code != 0:
            raise RuntimeError(f"`{command(argv)}` exited with status {code}")
        return code


class LocalWorker(BenchJob):
    """Takes, in grid order, every run no other worker holds, until none is left."""

    def __call__(self, items: list[list[str]], claims: str, workdir: str, threads: int | None = None) -> list[str]:
        from filelock import FileLock, Timeout

        failed = []
        for argv in items:
            claim = FileLock(str(Path(claims) / hashlib.sha256(command(argv).encode()).hexdigest()[:16]) + ".lock",
                             timeout=0)
            try:
                claim.acquire()
            except Timeout:
                continue                       # another worker has it
            try:
                super().__call__(argv, workdir, threads)
            except Exception as err:       # the run's status.json holds the traceback; go on with the grid
                print(f"failed: {err}", file=sys.stderr, flush=True)
                failed.append(command(argv))
            finally:
                claim.release()
        if failed:
            raise RuntimeError(f"{len(failed)} run(s) failed: " + "; ".join(failed))
        return failed


def _folder(grid: Grid) -> Path:
    return grid.results / grid.runset / ".submitit"


def run_local(grid: Grid, workers: int, gpus: bool, per_gpu: int = 1) -> list[str]:
    """Start ``workers`` jobs (``per_gpu`` on each GPU when ``gpus``: worker w on GPU w // per_gpu) and wait
    for them; returns failures."""
    folder = _folder(grid)
    claims = folder / "claims"
    claims.mkdir(parents=True, exist_ok=True)
    threads = max(1, (os.cpu_count() or 1) // workers)
    executor = submitit.LocalExecutor(folder=folder)
    items = [argv for _, _, argv in grid.runs]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    # submitit pins a job with CUDA_VISIBLE_DEVICES=<id>: keep a restriction this process already has
    ids = [int(v) for v in visible.split(",")] if re.fullmatch(r"\d+(,\d+)*", visible) else list(range(workers))
    jobs = []
    for w in range(workers):
        gpu = ids[w // per_gpu] if gpus else None
        executor.update_parameters(timeout_min=FOREVER_MIN, gpus_per_node=1 if gpus else 0,
                                   visible_gpus=(gpu,) if gpus else ())
        jobs.append(executor.submit(LocalWorker(), items, str(claims), os.getcwd(), threads))
        print(f"worker {w} ({f'GPU {gpu}' if gpus else f'{threads} CPU threads'}): job {jobs[-1].job_id}, "
              f"log {jobs[-1].paths.stderr}", file=sys.stderr, flush=True)
    failures = []
    for w, job in enumerate(jobs):
        try:
            job.result()
        except Exception as err:  # submitit re-raises the job's error with its traceback
            lines = [ln for ln in str(err).strip().splitlines() if ln.strip()]
            failures.append(f"worker {w}: {lines[-1] if lines else err} (log {job.paths.stderr})")
    return failures


def check_slurm() -> None:
    """Fail before any work where there is no Slurm to submit to."""
    import shutil

    if shutil.which("sbatch") is None or shutil.which("srun") is None:
        raise BenchError("--executor slurm: sbatch/srun not found, this is not a Slurm login node "
                         "(use --executor local here, or --dry-run to see the jobs)")


def _slurm_executor(grid: Grid, opts: SlurmOptions, name: str, gpus: int, dependency: str | None):
    try:
        executor = submitit.AutoExecutor(folder=_folder(grid), cluster="slurm")
    except RuntimeError as err:  # submitit: srun not found
        raise BenchError(f"--executor slurm: {err} (use --executor local here, or --dry-run to see the jobs)") from None
    extra = dict(opts.sbatch)
    if dependency:  # a job whose dependency failed is cancelled rather than left pending forever
        extra.update({"dependency": dependency, "kill-on-invalid-dep": "yes"})
    params = {"timeout_min": opts.time_min, "slurm_partition": opts.partition, "slurm_account": opts.account,
              "slurm_qos": opts.qos, "cpus_per_task": opts.cpus_per_job, "mem_gb": opts.mem_gb,
              "gpus_per_node": gpus or None, "slurm_array_parallelism": opts.array_parallelism,
              "slurm_signal_delay_s": 120, "name": name, "slurm_additional_parameters": extra}
    executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
    return executor


def submit_slurm(grid: Grid, opts: SlurmOptions) -> dict:
    """Submit teacher -> array -> report with dependencies; returns the job ids."""
    cwd = os.getcwd()
    teacher = _slurm_executor(grid, opts, f"bench-{grid.runset}-teacher", opts.gpus_per_job, None).submit(
        BenchJob(), grid.teacher, cwd)
    executor = _slurm_executor(grid, opts, f"bench-{grid.runset}", opts.gpus_per_job, f"afterok:{teacher.job_id}")
    with executor.batch():
        runs = [executor.submit(BenchJob(), argv, cwd) for _, _, argv in grid.runs]
    array_id = runs[0].job_id.split("_")[0]
    report = _slurm_executor(grid, opts, f"bench-{grid.runset}-report", 0, f"afterany:{array_id}").submit(
        BenchJob(), grid.report, cwd)
    return {"teacher": teacher.job_id, "array": array_id, "runs": [j.job_id for j in runs], "report": report.job_id,
            "folder": str(_folder(grid))}


@dataclass(frozen=True)
class GridOptions:
    """How and where a grid runs: the executor's choices."""
    executor: str = "inline"              # inline | local | slurm
    results: Path = Path("results")
    reports: Path = Path("reports")
    force: bool = False
    no_report: bool = False
    only_teacher: bool = False
    gpus: int | None = None               # local: GPUs to use (None: every visible one)
    jobs: int | None = None               # local on CPU: jobs side by side
    jobs_per_gpu: int | None = None       # local on GPUs: jobs sharing each GPU (None: 1)
    slurm: SlurmOptions = field(default_factory=SlurmOptions)
    tensorboard: Path | str | None = None  # TensorBoard event files per run (bench.train.tracking)
    wandb: str | None = None               # a Weights & Biases project: one W&B run per run


@dataclass(frozen=True)
class Outcome:
    code: int                             # the exit status
    lines: tuple[str, ...] = ()           # what to print on stdout
    errors: tuple[str, ...] = ()          # what to print on stderr


def check_options(cfg, opts: GridOptions, dry_run: bool = False) -> None:
    """Executor choices this machine or this process cannot meet: one line, before anything is written
    (``dry_run``: Slurm need not be here, the jobs are only printed)."""

    if opts.jobs_per_gpu and opts.executor != "local":
        raise BenchError("--jobs-per-gpu is for --executor local (a Slurm job's GPUs are its own: --gpus-per-job)")
    if opts.executor != "inline" and distributed.world_size() > 1:
        raise BenchError("under torchrun a command is one run over its ranks: use --executor inline (default)")
    if opts.executor == "slurm" and not dry_run:
        check_slurm()
    elif opts.executor == "local":
        local_workers(cfg, opts)


def submit(job, opts: GridOptions) -> tuple[Outcome, Grid]:
    """Write ``job`` to its file, plan its runs into the run-set's manifest and hand them to the executor
    (local: wait for the workers; slurm: submit and return). The caller has checked ``opts``
    (``check_options``, before anything is written) and builds the report."""
    path = job.write(opts.results)
    grid = make_grid(path, job, opts.results, opts.reports, opts.tensorboard, opts.wandb)
    prepare_runset(job.config, list(job.methods), job.runset, opts.results, job.seeds,
                   {"command": job.command, "methods": list(job.methods), "compare_to": job.compare_to,
                    "job": str(path)}, force=opts.force)
    if opts.executor == "slurm":
        ids = submit_slurm(grid, opts.slurm)
        return Outcome(0, (f"submitted: teacher job {ids['teacher']}; array {ids['array']} ({len(ids['runs'])} runs, "
                           f"after the teacher); report job {ids['report']} (after the array); submitit logs in "
                           f"{ids['folder']}; the job file is {path}",
                           f"follow it with `python -m bench status {job.runset}`; the report lands in "
                           f"{opts.reports / job.runset}/README.md")), grid
    workers, gpus, per_gpu = local_workers(job.config, opts)
    failures = run_local(grid, workers, gpus=bool(gpus), per_gpu=per_gpu)
    return Outcome(1 if failures else 0, (f"{workers} local job(s) ran the grid of {path}",),
                   tuple(f"bench: job failed: {f}" for f in failures)), grid


def local_workers(cfg, opts: GridOptions) -> tuple[int, int, int]:
    """(workers, GPUs, jobs per GPU) of a local grid; one line for a request this machine cannot meet."""
    import torch

    gpus = torch.cuda.device_count() if cfg.device in ("auto", "cuda") else 0
    if opts.gpus:
        if opts.gpus > gpus:
            raise BenchError(f"--gpus {opts.gpus}: only {gpus} GPU(s) visible here")
        gpus = opts.gpus
    if opts.jobs_per_gpu and not gpus:
        raise BenchError(f"--jobs-per-gpu {opts.jobs_per_gpu}: no GPU is used here (on CPUs, --jobs N)")
    per_gpu = opts.jobs_per_gpu or 1
    return gpus * per_gpu or opts.jobs or 1, gpus, per_gpu
