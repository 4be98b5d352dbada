"""`python -m bench {run,eval,report,list}`. Bad input: one line on stderr, exit status 2."""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path

from bench.errors import BenchError

DEFAULT_METHODS = "gacd,ard,crd"
MAX_EPS = 0.5  # beyond this an L-inf ball on [0,1] pixels covers most of the image (L2: bench.attacks.eps_cap)


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of usage + message
        raise BenchError(f"{self.prog}: {message}")


def parse_eps(text: str) -> float:
    try:
        num, _, den = text.partition("/")
        value = float(num) / float(den) if den else float(num)
    except (ValueError, ZeroDivisionError):
        raise BenchError(f"eps {text!r} is not a number (write 0.1 or 8/255)") from None
    if not 0 < value < float("inf"):  # the cap depends on --norm: checked by check_eps_flags once it is known
        raise BenchError(f"eps {text} = {value:.4g} is outside (0, {MAX_EPS}] (L-inf) or (0, 0.5·√d] (L2, d pixel "
                         "values) for pixels in [0, 1]")
    return value


def check_eps_flags(args) -> None:
    """Every eps flag against its --norm's cap (L2's needs the image size: checked again with the data)."""
    from bench.attacks import check_eps

    for flag in ("eps", "train_eps"):
        if getattr(args, flag, None) is not None:
            check_eps(getattr(args, flag), getattr(args, "norm", None) or "Linf")


def _int_range(lo: int, hi: int, what: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise BenchError(f"{what} {text!r} is not an integer") from None
        if not lo <= value <= hi:
            raise BenchError(f"{what} {value} is outside [{lo}, {hi}]")
        return value
    return parse


def _positive_float(what: str):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise BenchError(f"{what} {text!r} is not a number") from None
        if not value > 0 or value != value or value == float("inf"):
            raise BenchError(f"{what} must be positive, got {text}")
        return value
    return parse


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise BenchError(f"{text!r} is not a comma-separated list of numbers") from None


def _names(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise BenchError("empty list")
    return names


def _seeds(text: str) -> tuple[int, ...]:
    parse = _int_range(0, 2**31 - 1, "seed")
    seeds = tuple(parse(t) for t in _names(text))
    if len(set(seeds)) != len(seeds):
        raise BenchError(f"seeds {text!r} repeat a seed")
    return seeds


def _shard(text: str) -> tuple[int, int]:
    i, sep, k = text.partition("/")
    try:
        index, count = int(i), int(k)
    except ValueError:
        raise BenchError(f"--shard {text!r}: write i/k, e.g. 0/4") from None
    if not sep or not 0 <= index < count:
        raise BenchError(f"--shard {text!r}: need 0 <= i < k")
    return index, count


def _add_eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--attacks", type=_names, help="comma list of clean,fgsm,pgd20,cw,aa")
    p.add_argument("--eps", type=parse_eps, help="the threat model's radius on [0,1] pixels, e.g. 0.2 or 8/255 "
                                                 "(default per data set and norm: digits 0.2 L-inf / 1.0 L2, CIFAR "
                                                 "8/255 / 0.5)")
    p.add_argument("--norm", choices=["Linf", "L2"], help="threat model of the training attack and of every "
                                                          "evaluation attack (default Linf)")
    p.add_argument("--n", "--n-images", dest="n", type=_int_range(1, 10**7, "--n"),
                   help="evaluate on the first N test images (--n-images under torchrun, whose parser reads --n "
                        "as its own)")
    p.add_argument("--aa-n", type=_int_range(1, 10**7, "--aa-n"), help="AutoAttack on the first N test images")
    p.add_argument("--aa-version", choices=["standard", "plus", "rand"], help="AutoAttack version")
    p.add_argument("--data-dir", help="where torchvision datasets are (default $BENCH_DATA_DIR or ~/.cache/bench/data)")
    p.add_argument("--download", action="store_true", default=None, help="download torchvision datasets")
    p.add_argument("--image-size", type=_int_range(4, 1024, "--image-size"), help="resize images once at load")
    p.add_argument("--device", help="auto (default), cpu or cuda[:i]")
    p.add_argument("--seed", type=_int_range(0, 2**31 - 1, "--seed"))
    p.add_argument("--no-sanity", action="store_true", help="skip the sanity checks (bench/sanity.py)")


def _add_grid_args(p: argparse.ArgumentParser) -> None:
    """How a (methods x seeds) grid runs: in this process (default), as local jobs, or on Slurm."""
    g = p.add_argument_group("scaling out (submitit; see README 'Scaling out')")
    g.add_argument("--executor", choices=["inline", "local", "slurm"], default="inline",
                   help="inline: one run after another in this process (default); local: submitit jobs on this "
                        "machine, one per GPU (or --jobs N on CPU); slurm: a job array on a Slurm cluster")
    g.add_argument("--gpus", type=_int_range(1, 1024, "--gpus"), help="local: GPUs to use, one job each "
                                                                         "(default: every visible GPU)")
    g.add_argument("--jobs", type=_int_range(1, 1024, "--jobs"), help="local on a CPU-only machine: jobs side by side")
    g.add_argument("--partition", help="slurm partition")
    g.add_argument("--time", help="slurm time limit per job (minutes, HH:MM:SS or D-HH:MM:SS; default 24:00:00); "
                                  "a job that reaches it is requeued and resumes")
    g.add_argument("--gpus-per-job", type=_int_range(0, 64, "--gpus-per-job"), default=1)
    g.add_argument("--cpus-per-job", type=_int_range(1, 1024, "--cpus-per-job"))
    g.add_argument("--mem", type=_int_range(1, 100000, "--mem"), help="slurm memory per job, GB")
    g.add_argument("--account", help="slurm account")
    g.add_argument("--qos", help="slurm QOS")
    g.add_argument("--sbatch", action="append", help="an extra #SBATCH line as key=value (repeatable), "
                                                      "e.g. --sbatch constraint=a100")
    g.add_argument("--array-parallelism", type=_int_range(1, 100000, "--array-parallelism"), default=256,
                   help="slurm: at most this many array tasks at once")
    g.add_argument("--no-report", action="store_true", help="write results only (jobs of a grid; "
                                                            "`bench report RUNSET` builds it later)")
    g.add_argument("--only-teacher", action="store_true", help="train (or load) and evaluate the teacher(s), "
                                                               "then stop (the teacher job of a grid)")
    g.add_argument("--sync-bn", action="store_true", help="under torchrun: batch-norm statistics over the whole "
                                                          "global batch (SyncBatchNorm, CUDA only)")


def build_parser() -> Parser:
    parser = Parser(prog="bench", description="Adversarially robust knowledge distillation, one protocol.")
    sub = parser.add_subparsers(dest="command", parser_class=Parser)

    run = sub.add_parser("run", help="train and evaluate students (and a teacher), write results and a report",
                         allow_abbrev=False)
    run.add_argument("--methods", type=_names,
                     help="comma list; options as gacd:reweight=none:estimator=infonce (default: the preset's, "
                          f"{DEFAULT_METHODS} for digits)")
    run.add_argument("--preset", default="digits", help="digits (embedded default), gacd-ablation, cifar10, cifar100")
    run.add_argument("--seeds", type=_seeds, help="comma list of seeds, e.g. 0,1,2 (default: the preset's)")
    run.add_argument("--n-seeds", type=_int_range(1, 100, "--n-seeds"), help="seeds 0..N-1")
    run.add_argument("--transfer", help="comma list of transfer targets (linear probe on the frozen student), "
                                        "or 'none'; default: the preset's")
    run.add_argument("--no-structure", action="store_true", help="skip teacher-student structure metrics")
    run.add_argument("--name", help="run-set name under results/ and reports/ (default: the preset)")
    run.add_argument("--dataset", help="digits, cifar10, cifar100, stl10 or folder:PATH")
    run.add_argument("--student-arch", help="student architecture (see `bench list`)")
    run.add_argument("--teacher", help="'train' (default), a path to a teacher state_dict, or robustbench:NAME "
                                       "(a RobustBench zoo model from $BENCH_ROBUSTBENCH_DIR, offline)")
    run.add_argument("--teacher-arch", help="teacher architecture")
    run.add_argument("--teacher-method", help="method that trains the teacher (default pgd-at); for a teacher "
                                              "file, the method it was trained with (labels, published numbers)")
    run.add_argument("--teacher-epochs", type=_int_range(1, 10000, "--teacher-epochs"))
    run.add_argument("--teacher-mean", type=_floats, help="input mean of an external teacher (default none)")
    run.add_argument("--teacher-std", type=_floats, help="input std of an external teacher")
    run.add_argument("--epochs", type=_int_range(1, 10000, "--epochs"))
    run.add_argument("--batch-size", type=_int_range(1, 65536, "--batch-size"))
    run.add_argument("--lr", type=_positive_float("--lr"))
    run.add_argument("--schedule", choices=["cosine", "step"])
    run.add_argument("--checkpoint", choices=["last", "best-val"],
                     help="evaluate the last epoch (default) or the best epoch on a validation split of the "
                          "training data (never the test set)")
    run.add_argument("--train-eps", type=parse_eps, help="training-attack eps (default: --eps)")
    run.add_argument("--train-steps", type=_int_range(1, 1000, "--train-steps"))
    run.add_argument("--bf16", action="store_true", default=None, help="bf16 autocast on CUDA")
    run.add_argument("--results", default="results", help="results directory")
    run.add_argument("--reports", default="reports", help="reports directory")
    run.add_argument("--force", action="store_true", help="redo finished runs (and the teacher)")
    run.add_argument("--dry-run", action="store_true", help="print the jobs a grid would run (count, each job's "
                                                            "command, estimated hours) and stop")
    _add_eval_args(run)
    _add_grid_args(run)

    ev = sub.add_parser("eval", help="evaluate any checkpoint under the suite's protocol")
    ev.add_argument("--checkpoint", required=True, help="a state_dict file (loaded with weights_only=True), or "
                                                        "robustbench:NAME (a RobustBench zoo model, offline)")
    ev.add_argument("--arch", help="its architecture (see `bench list`); not needed for robustbench:NAME")
    ev.add_argument("--dataset", required=True, help="digits, cifar10, cifar100, stl10 or folder:PATH")
    ev.add_argument("--mean", type=_floats, help="the checkpoint's input mean (default: none, raw [0,1])")
    ev.add_argument("--std", type=_floats, help="the checkpoint's input std")
    ev.add_argument("--out", help="output directory (default reports/eval/<checkpoint name>); an interrupted "
                                  "evaluation resumes from its per-batch state there")
    ev.add_argument("--batch-size", type=_int_range(1, 65536, "--batch-size"),
                    help="evaluation batch (default 500), also the unit of resumable progress")
    ev.add_argument("--shard", type=_shard, help="i/k: attack only the i-th of k round-robin shares of the batches "
                                                 "into --out (jobs side by side); the same command without --shard "
                                                 "then merges them (identical to an unsharded run). Automatic under "
                                                 "torchrun")
    _add_eval_args(ev)

    rep = sub.add_parser("report", help="rebuild reports/RUNSET from results/RUNSET")
    rep.add_argument("runset")
    rep.add_argument("--results", default="results")
    rep.add_argument("--reports", default="reports")

    reg = sub.add_parser("regress", help="re-run the CI preset and compare every metric with the stored baseline")
    reg.add_argument("--preset", default="regress")
    reg.add_argument("--baseline", help="baseline file (default results/baselines/<preset>.json)")
    reg.add_argument("--update", action="store_true", help="rewrite the baseline from this run")
    reg.add_argument("--reason", help="why the baseline changes (required with --update)")
    reg.add_argument("--substitute", type=_names, help="method=variant pairs scored against the method's "
                                                       "baseline, e.g. ard=ard:alpha=0 (checks the check)")
    reg.add_argument("--seeds", type=_seeds)
    reg.add_argument("--epochs", type=_int_range(1, 10000, "--epochs"))
    reg.add_argument("--teacher-epochs", type=_int_range(1, 10000, "--teacher-epochs"))
    reg.add_argument("--n", type=_int_range(1, 10**7, "--n"))
    reg.add_argument("--eps", type=parse_eps, help="train and evaluation eps")
    reg.add_argument("--norm", choices=["Linf", "L2"], help="train and evaluation threat model (default: the "
                                                            "preset's, Linf)")
    reg.add_argument("--aa-n", type=_int_range(1, 10**7, "--aa-n"))
    reg.add_argument("--methods", type=_names)

    exp = sub.add_parser("export", help="export a student in RobustBench's format (model_info JSON + checkpoint)")
    exp.add_argument("run", help="a run folder (results/RUNSET/RUN_ID) or RUNSET/RUN_ID")
    exp.add_argument("--robustbench", action="store_true", required=True, help="RobustBench format (the only one)")
    exp.add_argument("--results", default="results")
    exp.add_argument("--out", default="exports", help="output folder (default exports/)")
    exp.add_argument("--name", help="model name (default: bench_<method>_<run id>)")

    pap = sub.add_parser("paper", help="paper-table presets (full CIFAR protocol on GPUs), with published numbers",
                         allow_abbrev=False)
    pap.add_argument("name", nargs="?", help="cifar10-resnet18, cifar10-mobilenetv2, cifar100-resnet18")
    pap.add_argument("--list", action="store_true", help="list the presets and their hyper-parameters")
    pap.add_argument("--dry-run", action="store_true", help="print the plan and a cost estimate from a "
                                                            "throughput measured on this device")
    pap.add_argument("--scale", choices=["full", "smoke"], default="full",
                     help="smoke: tiny widths, 256 images, 1 epoch, stand-in data where files are missing")
    pap.add_argument("--device", help="auto (default), cpu or cuda[:i]")
    pap.add_argument("--results", default="results")
    pap.add_argument("--reports", default="reports")
    pap.add_argument("--force", action="store_true")
    pap.add_argument("--methods", type=_names, help="run a slice: these of the preset's methods (default: all)")
    pap.add_argument("--seeds", type=_seeds, help="run a slice: these seeds (default: the preset's, 0,1,2)")
    _add_grid_args(pap)

    st = sub.add_parser("status", help="where each run of a run-set stands: done, running, failed, missing")
    st.add_argument("runset")
    st.add_argument("--results", default="results")

    sub.add_parser("list", help="methods, datasets, architectures and attacks")
    return parser


def _eval_config(base, args):
    from dataclasses import replace

    from bench.config import override
    from bench.evaluation import check_attacks

    cfg = override(base, attacks=tuple(args.attacks) if args.attacks else None, eps=args.eps, n=args.n,
                   aa_n=args.aa_n, aa_version=args.aa_version, norm=args.norm)
    if args.no_sanity:
        cfg = replace(cfg, sanity=replace(cfg.sanity, enabled=False))
    check_attacks(cfg.attacks)
    return cfg


def _data_config(base, args, dataset=None):
    from bench.config import override
    return override(base, name=dataset, data_dir=args.data_dir, download=args.download,
                    image_size=args.image_size)


def cmd_run(args) -> int:
    from bench.config import override, parse_teacher
    from bench.presets import get_preset
    from bench.data import default_eps
    from bench.models import ARCHS
    from bench.runner import resolve_device
    from bench.teacher import check_teacher
    from methods import parse_method

    preset = get_preset(args.preset)
    methods = args.methods or list(preset.methods)
    for m in methods:  # validate everything before any work
        parse_method(m)
    if args.seeds and args.n_seeds:
        raise BenchError("give --seeds or --n-seeds, not both")
    if args.seed is not None:  # one seed: the same as --seeds N
        if args.seeds or args.n_seeds:
            raise BenchError("give --seed or --seeds/--n-seeds, not both")
        args.seeds = (args.seed,)
    seeds = args.seeds or (tuple(range(args.n_seeds)) if args.n_seeds else preset.seeds)
    cfg = preset.config
    teacher = parse_teacher(args.teacher, cfg.teacher, arch=args.teacher_arch, method=args.teacher_method,
                            epochs=args.teacher_epochs, mean=args.teacher_mean, std=args.teacher_std)
    targets = None
    if args.transfer is not None:
        targets = () if args.transfer.strip() == "none" else tuple(_names(args.transfer))
    data = _data_config(cfg.data, args, args.dataset)
    eps, norm = args.eps, args.norm or cfg.eval.norm
    if eps is None and (args.dataset or norm != cfg.eval.norm) and default_eps(data.name, norm) != cfg.eval.eps:
        eps = default_eps(data.name, norm)  # another data set's or another norm's threat model
    train_eps = args.train_eps or eps
    args.eps = eps
    if eps is not None and eps != cfg.eval.eps:  # the eps-curve keeps its shape around the new threat model
        cfg = override(cfg, eval=override(cfg.eval, curve_eps=tuple(round(e * eps / cfg.eval.eps, 6)
                                                                     for e in cfg.eval.curve_eps)))
    cfg = override(cfg, data=data, student_arch=args.student_arch,
                   teacher=teacher, device=args.device, bf16=args.bf16, eval=_eval_config(cfg.eval, args),
                   probe=override(cfg.probe, targets=targets), structure=False if args.no_structure else None,
                   train=override(cfg.train, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                  schedule=args.schedule, checkpoint=args.checkpoint),
                   attack=override(cfg.attack, eps=train_eps, steps=args.train_steps, norm=args.norm))
    ARCHS.get(cfg.student_arch)
    check_teacher(cfg.teacher, cfg.data.name)  # fail before any data or training work
    resolve_device(cfg.device)
    return _run_and_report(cfg, methods, seeds, args.name or args.preset, preset.compare_to, args)


def _run_and_report(cfg, methods: list[str], seeds, runset: str, compare_to, args) -> int:
    from dataclasses import replace

    from bench.report import build_report
    from bench.runner import run_methods
    from methods import parse_method

    from bench import distributed

    if args.executor != "inline" or getattr(args, "dry_run", False):
        if distributed.world_size() > 1:
            raise BenchError("under torchrun a command is one run over its ranks: use --executor inline (default)")
        return _run_grid(cfg, methods, seeds, runset, compare_to, args)
    if args.sync_bn:
        import torch

        if distributed.world_size() == 1:
            raise BenchError("--sync-bn is for one run over several GPUs: start it with torchrun --nproc-per-node N")
        if not torch.cuda.is_available():
            raise BenchError("--sync-bn needs CUDA (PyTorch's SyncBatchNorm does not run on CPU)")
        cfg = replace(cfg, sync_bn=True)
    results = Path(args.results)
    t0 = time.perf_counter()
    meta = {"command": "python -m bench " + shlex.join(args.argv), "methods": [parse_method(m).label for m in methods],
            "compare_to": compare_to}
    records = run_methods(cfg, methods, runset, results, seeds=seeds, force=args.force, meta=meta,
                          only_teacher=args.only_teacher)
    if not distributed.is_main():  # rank 0 writes the report
        return 0
    if args.no_report:
        print(f"{len(records)} run(s) finished in {results / runset} ({time.perf_counter() - t0:.0f} s); "
              f"`python -m bench report {runset}` builds the report")
        return 0
    out = build_report(results, runset, Path(args.reports))
    print((out / "README.md").read_text())
    print(f"report: {out}/README.md  (wall time {time.perf_counter() - t0:.0f} s)")
    return 0


def _run_grid(cfg, methods: list[str], seeds, runset: str, compare_to, args) -> int:
    """The grid as submitit jobs (bench.executors): print them (--dry-run), run them here, or submit."""
    from bench.presets import Preset
    from bench.executors import SlurmOptions, check_slurm, command, make_grid, parse_sbatch, parse_time, run_local, submit_slurm
    from bench.runner import prepare_runset, resolve_device
    from bench.status import format_status, runset_status
    from methods import parse_method

    results, reports = Path(args.results), Path(args.reports)
    grid = make_grid(args.argv, methods, seeds, runset, results, reports)
    if args.dry_run:
        from bench.plan import estimate

        device = resolve_device(cfg.device)
        rows, _ = estimate(Preset(cfg, tuple(methods), tuple(seeds)), [parse_method(m) for m in methods], device)
        hours = {r["method"]: r["train_h"] + r["eval_h"] for r in rows}
        unit = "GPU-h" if device.type == "cuda" else f"h on this {device.type}"
        print(f"{args.executor}: {len(grid.runs) + 2} jobs for run-set {runset} ({len(methods)} methods x "
              f"{len(seeds)} seeds, the teacher first, the report last); hours from bench/plan.py, measured on {device}")
        print(f"  teacher  {command(grid.teacher)}")
        total = rows[-1]["eval_h"]
        for method, _seed, argv in grid.runs:
            h = hours[parse_method(method).label]
            total += h
            print(f"  {h:7.2f} {unit}  {command(argv)}")
        print(f"  report   {command(grid.report)}")
        print(f"estimate: {total:.1f} {unit} in all (the teacher's training not included)")
        return 0
    meta = {"command": "python -m bench " + shlex.join(args.argv), "methods": [parse_method(m).label for m in methods],
            "compare_to": compare_to}
    if args.executor == "slurm":
        check_slurm()
    prepare_runset(cfg, methods, runset, results, seeds, meta, force=args.force)
    if args.executor == "slurm":
        opts = SlurmOptions(partition=args.partition, time_min=parse_time(args.time) if args.time else 24 * 60,
                            gpus_per_job=args.gpus_per_job, cpus_per_job=args.cpus_per_job, mem_gb=args.mem,
                            account=args.account, qos=args.qos, sbatch=parse_sbatch(args.sbatch),
                            array_parallelism=args.array_parallelism)
        ids = submit_slurm(grid, opts)
        print(f"submitted: teacher job {ids['teacher']}; array {ids['array']} ({len(ids['runs'])} runs, after the "
              f"teacher); report job {ids['report']} (after the array); submitit logs in {ids['folder']}")
        print(f"follow it with `python -m bench status {runset}`; the report lands in {reports / runset}/README.md")
        return 0
    import torch

    gpus = torch.cuda.device_count() if cfg.device in ("auto", "cuda") else 0
    if args.gpus:
        if args.gpus > gpus:
            raise BenchError(f"--gpus {args.gpus}: only {gpus} GPU(s) visible here")
        gpus = args.gpus
    workers = gpus or args.jobs or 1
    t0 = time.perf_counter()
    failures = run_local(grid, workers, gpus=bool(gpus))
    print(format_status(runset_status(results, runset)))
    for f in failures:
        print(f"bench: job failed: {f}", file=sys.stderr)
    if not args.no_report:
        from bench.report import build_report

        out = build_report(results, runset, reports)
        print(f"report: {out}/README.md  (wall time {time.perf_counter() - t0:.0f} s, {workers} jobs)")
    return 1 if failures else 0


def _paper_slice(preset, methods, seeds):
    """The preset's methods (each at its official variant) and seeds that ``--methods``/``--seeds`` name."""
    from dataclasses import replace

    from methods import parse_method

    chosen = list(preset.methods)
    if methods:
        chosen = []
        for m in methods:
            match = [p for p in preset.methods if p == m or (":" not in m and parse_method(p).name == m)]
            if not match:
                raise BenchError(f"method {m!r} is not in this paper preset; its methods: {', '.join(preset.methods)}")
            chosen += [p for p in match if p not in chosen]
    return replace(preset, methods=tuple(chosen), seeds=tuple(seeds) if seeds else preset.seeds)


def cmd_paper(args) -> int:
    import json

    from bench.config import override
    from bench.presets import PAPER_PRESETS, smoke
    from methods import parse_method

    if args.list or not args.name:
        for name, preset in PAPER_PRESETS.items():
            c = preset.config
            print(f"{name:20s} {preset.description}")
            print(f"{'':20s} methods {','.join(preset.methods)}; seeds {list(preset.seeds)}; {c.train.epochs} epochs, "
                  f"lr {c.train.lr}, decay at {list(c.train.milestones)}, wd {c.train.weight_decay}, batch "
                  f"{c.train.batch_size}; eps {c.eval.eps:.4g}; first {c.eval.n} test images; transfer "
                  f"{', '.join(c.probe.targets)}")
        return 0
    if args.name not in PAPER_PRESETS:
        raise BenchError(f"unknown paper preset {args.name!r}; known: {', '.join(PAPER_PRESETS)}")
    preset = PAPER_PRESETS[args.name]
    if args.scale == "smoke":
        preset = smoke(preset)
    preset = _paper_slice(preset, args.methods, args.seeds)
    cfg = override(preset.config, device=args.device)
    specs = [parse_method(m) for m in preset.methods]
    if args.dry_run and args.executor == "inline":
        from bench.plan import estimate
        from bench.runner import resolve_device

        device = resolve_device(cfg.device)
        rows, info = estimate(preset, specs, device)
        unit = "GPU-hours" if device.type == "cuda" else f"hours on {device.type} (no GPU here: rerun on the GPU host)"
        print(f"plan {args.name} ({args.scale}): {preset.description}")
        print(f"methods at their official loss magnitude: {', '.join(preset.methods)}")
        print(json.dumps(asdict(cfg), indent=1, default=list))
        print(f"measured on {info['device']} at batch {info['batch']}: student {cfg.student_arch} "
              f"{info['student_fwd_bwd']:.0f} img/s forward-backward; teacher {cfg.teacher.arch} "
              f"{info['teacher_fwd_bwd']:.0f} img/s forward-backward, {info['teacher_fwd']:.0f} forward")
        print(f"{'method':34s} {'train h':>9s} {'eval h':>8s} {'seeds':>5s} {'total h':>9s}")
        for r in rows:
            print(f"{r['method']:34s} {r['train_h']:9.2f} {r['eval_h']:8.2f} {r['seeds']:5d} {r['total_h']:9.2f}")
        print(f"estimate: {sum(r['total_h'] for r in rows):.1f} {unit} (cost model in bench/plan.py)")
        return 0
    runset = cfg.preset
    return _run_and_report(cfg, list(preset.methods), preset.seeds, runset, None, args)


def cmd_eval(args) -> int:
    import shutil

    import pandas as pd
    import torch

    from bench import distributed
    from bench.config import DataConfig, EvalConfig
    from bench.data import default_eps, load_dataset
    from bench.evaluation import evaluate
    from bench.io import atomic_write_json, atomic_write_text, load_weights
    from bench.models import ARCHS, build_model
    from bench.report import COLUMNS, markdown_table
    from bench.results import git_commit, now, package_versions
    from bench.runner import resolve_device

    dc = _data_config(DataConfig(), args, args.dataset)
    eps_source = "--eps" if args.eps is not None else f"the default for {dc.name}"
    args.eps = args.eps if args.eps is not None else default_eps(dc.name, args.norm or "Linf")
    base = EvalConfig()
    base = EvalConfig(batch_size=args.batch_size or base.batch_size,  # the curve keeps its shape around eps
                      curve_eps=tuple(round(e * args.eps / base.eps, 6) for e in base.curve_eps))
    cfg = _eval_config(base, args)
    zoo = args.checkpoint.startswith("robustbench:")
    if not zoo:
        if not args.arch:
            raise BenchError("--arch is required for a checkpoint file (see `bench list`)")
        ARCHS.get(args.arch)
        if not Path(args.checkpoint).is_file():
            raise BenchError(f"checkpoint {args.checkpoint} does not exist")
    if (args.mean is None) != (args.std is None):
        raise BenchError("give both --mean and --std, or neither")
    device = distributed.init(resolve_device(args.device or "auto"))
    if zoo:
        from bench.zoo import load_robustbench_model, locate_robustbench_model

        name = args.checkpoint.split(":", 1)[1]
        locate_robustbench_model(name, dc.name.partition("@")[0])
    data = load_dataset(dc.name, dc.data_dir, dc.download, dc.image_size)
    if cfg.n is not None and cfg.n > len(data.y_test):
        raise BenchError(f"--n {cfg.n} exceeds the {len(data.y_test)} test images of {data.name}")
    for stats in (args.mean, args.std):
        if stats is not None and len(stats) != data.in_channels:
            raise BenchError(f"--mean/--std need {data.in_channels} values for {data.name}")
    if zoo:
        model = load_robustbench_model(name, data.name.partition("@")[0])
        label, stem = f"RobustBench {name}", f"robustbench-{name}"
    else:
        ckpt = Path(args.checkpoint)
        model = load_weights(build_model(args.arch, data.num_classes, data.in_channels, args.mean, args.std), ckpt,
                             args.arch)
        label, stem = f"{ckpt.name} ({args.arch})", ckpt.stem
    model = model.to(device).eval()
    data = data.to(device)
    print(f"evaluating {label} on {data.name}: {cfg.norm} eps {cfg.eps:.6g} ({eps_source}), "
          f"{cfg.n or len(data.y_test)} test images", file=sys.stderr)
    out = Path(args.out) if args.out else Path("reports") / "eval" / stem
    torch.manual_seed(args.seed or 0)
    # per-batch results land in out/eval-state as they are computed: a killed evaluation resumes there,
    # and shards (--shard, or torchrun's ranks) fill it side by side
    state = out / "eval-state"
    shard = args.shard or distributed.eval_shard()
    if shard is not None:
        part = evaluate(model, data.x_test, data.y_test, cfg, data.num_classes, args.seed or 0, state, shard=shard)
        print(f"shard {shard[0]}/{shard[1]}: {part['batches']} batch(es) written to {state}", file=sys.stderr)
        distributed.barrier()
        if args.shard is not None or not distributed.is_main():
            if args.shard is not None:
                print(f"run the command again without --shard (same --out) to merge the shards into {out}/record.json")
            return 0
    ev = evaluate(model, data.x_test, data.y_test, cfg, data.num_classes, args.seed or 0, state)
    row = {"Model": label, **{COLUMNS[k]: f"{100 * v:.2f}" for k, v in ev["metrics"].items()},
           "eps": f"{cfg.eps:.6g}", "norm": cfg.norm, "images": ev["settings"]["n"]}
    if ev["sanity"]:
        row["Sanity"] = ", ".join(ev["sanity"]["flags"]) or "ok"
    table = markdown_table(pd.DataFrame([row]))
    record = {"checkpoint": args.checkpoint, "arch": args.arch, "dataset": data.name, "mean": args.mean,
              "std": args.std, "config": asdict(cfg), **ev, "versions": package_versions(),
              "git_commit": git_commit(), "created": now()}
    atomic_write_json(out / "record.json", record)
    atomic_write_text(out / "table.md", table + "\n")
    shutil.rmtree(out / "eval-state", ignore_errors=True)  # the record now holds every number
    print(table)
    print(f"written: {out}/record.json, {out}/table.md")
    return 0


def cmd_report(args) -> int:
    from bench.report import build_report
    from bench.status import runset_status

    out = build_report(Path(args.results), args.runset, Path(args.reports))
    missing = [r for r in runset_status(Path(args.results), args.runset) if r["state"] != "done"]
    if missing:
        print(f"{len(missing)} planned run(s) not finished (not in the report): "
              + ", ".join(f"{r['method']} seed {r['seed']} ({r['state']})" for r in missing))
    print(f"report: {out}/README.md")
    return 0


def cmd_status(args) -> int:
    from bench.runset import RUNSET_FILE
    from bench.status import format_status, runset_status

    if not (Path(args.results) / args.runset / RUNSET_FILE).exists():
        raise BenchError(f"no run-set {args.runset!r} under {args.results}/ (no {RUNSET_FILE})")
    print(format_status(runset_status(Path(args.results), args.runset)))
    return 0


def cmd_list(args) -> int:
    from bench.attacks import ATTACKS
    from bench.presets import all_presets
    from bench.data import DATASETS
    from bench.models import ARCHS
    from methods import METHODS

    print("methods:")
    for name, cls in METHODS.items():
        print(f"  {name:10s} {cls.summary}")
        print(f"  {'':10s} cite: {cls.citation}")
        if cls.inner:
            i = cls.inner
            print(f"  {'':10s} attack ascends: {i.ascends}; start {i.start}; student BN {i.student_mode}; "
                  f"teacher at {i.teacher_at}")
        else:
            print(f"  {'':10s} attack: none")
        print(f"  {'':10s} official schedule: {cls.schedule}")
        if cls.official_options:
            print(f"  {'':10s} official loss magnitude: " + "; ".join(f"{d}: {o}" for d, o in cls.official_options.items()))
        opts = ", ".join(f"{k}={v}" for k, v in asdict(cls.Options()).items())
        if opts:
            print(f"  {'':10s} options: {opts}")
    print("datasets: " + ", ".join(DATASETS.names()) + ", folder:PATH")
    print("architectures: " + ", ".join(ARCHS.names()))
    print("attacks: clean, " + ", ".join(ATTACKS.names()) + ", aa (AutoAttack via pyautoattack)")
    print("presets:")
    for name, preset in sorted(all_presets().items()):
        print(f"  {name:14s} {preset.description}; methods {','.join(preset.methods)}; seeds {list(preset.seeds)}")
    return 0


def cmd_regress(args) -> int:
    import json

    from bench.config import RunConfig, override
    from bench.presets import get_preset
    from bench.regress import BASELINE_DIR, compare, config_changes, format_table, run_regression, write_baseline

    preset = get_preset(args.preset)
    cfg = preset.config
    if args.norm and args.eps is None and args.norm != cfg.eval.norm:  # that norm's threat model for the data
        from bench.data import default_eps
        args.eps = default_eps(cfg.data.name, args.norm)
    cfg = override(cfg, train=override(cfg.train, epochs=args.epochs),
                   teacher=override(cfg.teacher, train=override(cfg.teacher.train, epochs=args.teacher_epochs)),
                   attack=override(cfg.attack, eps=args.eps, norm=args.norm),
                   eval=override(cfg.eval, n=args.n, aa_n=args.aa_n, eps=args.eps, norm=args.norm))
    methods = list(args.methods or preset.methods)
    seeds = args.seeds or preset.seeds
    path = Path(args.baseline) if args.baseline else BASELINE_DIR / f"{args.preset}.json"
    substitute = dict(pair.split("=", 1) for pair in args.substitute or [] if "=" in pair)
    if args.substitute and len(substitute) != len(args.substitute):
        raise BenchError("--substitute takes method=variant pairs")
    previous = json.loads(path.read_text()) if path.exists() else None
    t0 = time.perf_counter()
    if args.update:
        if not args.reason:
            raise BenchError("--update needs --reason \"why the numbers change\"")
        values = run_regression(cfg, methods, seeds)
        write_baseline(path, cfg, methods, seeds, values, args.reason, previous)
        print(f"baseline written: {path} ({time.perf_counter() - t0:.0f} s)")
        return 0
    if previous is None:
        raise BenchError(f"no baseline at {path}; create one with --update --reason \"...\"")
    changed = config_changes(previous["config"], asdict(cfg), asdict(RunConfig()))
    changed += [k for k, a, b in (("methods", previous["methods"], methods),
                                  ("seeds", tuple(previous["seeds"]), tuple(seeds))) if a != b]
    if changed:
        raise BenchError(f"baseline {path} was made with another config ({', '.join(changed[:6])}); "
                         f"rerun with --update --reason \"...\" if the change is intended")
    rows = compare(previous, run_regression(cfg, methods, seeds, substitute))
    print(format_table(rows))
    drops = [f"{r['row']} {r['metric']}" for r in rows if r["verdict"] != "ok"]
    last = previous["history"][-1]
    print(f"baseline {path}: {last['when']} by {last['who']} ({last['why']}); wall {time.perf_counter() - t0:.0f} s")
    if drops:
        print(f"REGRESSION: {len(drops)} metric(s) below their band: {', '.join(drops)}")
        return 1
    print(f"no regression: {len(rows)} metrics within their bands")
    return 0


def cmd_export(args) -> int:
    import re
    from dataclasses import asdict as as_dict

    from bench.io import extract_state_dict, load_checkpoint
    from bench.results import RECORD, RunRecord
    from bench.zoo import export_robustbench

    run_dir = Path(args.run)
    if not (run_dir / RECORD).exists():
        run_dir = Path(args.results) / args.run
    if not (run_dir / RECORD).exists():
        raise BenchError(f"no finished run at {args.run} (looked for {RECORD} there and under {args.results}/)")
    rec = RunRecord.load(run_dir / RECORD)
    if rec.role != "student":
        raise BenchError(f"{run_dir} is a {rec.role} record; export takes a trained student")
    state = extract_state_dict(load_checkpoint(run_dir / "model.pt"))
    name = args.name or re.sub(r"[^A-Za-z0-9_]+", "_", f"bench_{rec.method}_{rec.run_id}")
    info, ckpt = export_robustbench(as_dict(rec), state, Path(args.out), name)
    print(f"written: {info}\nwritten: {ckpt}")
    return 0


COMMANDS = {"run": cmd_run, "eval": cmd_eval, "report": cmd_report, "regress": cmd_regress, "export": cmd_export,
            "paper": cmd_paper, "list": cmd_list, "status": cmd_status}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        argv = sys.argv[1:] if argv is None else list(argv)
        args = parser.parse_args(argv)
        args.argv = argv
        check_eps_flags(args)
        if not args.command:
            raise BenchError(f"choose a command: {', '.join(COMMANDS)} (see python -m bench --help)")
        return COMMANDS[args.command](args)
    except BenchError as err:
        print(f"bench: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted; finished epochs are checkpointed, run again to resume", file=sys.stderr)
        return 130
