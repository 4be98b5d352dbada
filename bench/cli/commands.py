"""The body of each `python -m bench` command: flags in, a resolved config or a request to a stage, lines
out. Each command imports the stages it uses inside its body, so that `bench --help` and a bad flag
answer without loading torch."""
from __future__ import annotations

import sys
import time
from dataclasses import asdict
from pathlib import Path

from bench.cli.parser import MISSING_FILES_STATUS
from bench.common.errors import BenchError


def _resolve_run(args):
    """The Resolved run that `run`'s arguments ask for (bench.config.resolve; CONFIG_PRECEDENCE)."""
    from bench.config.resolve import Flags, resolve

    return resolve(args.preset, args.config, Flags.from_namespace(args), args.overrides)


def _method_files(args) -> list[str]:
    return list(getattr(args, "methods_from", None) or [])


def cmd_run(args) -> int:
    from bench.config import files
    from bench.runs.job import plan

    resolved = _resolve_run(args)
    if args.print_config:
        from bench.methods import parse_method

        for m in resolved.methods:
            parse_method(m)
        print(files.to_yaml(resolved.config, resolved.methods, resolved.seeds), end="")
        return 0
    # everything is checked here, once, before any data or training work
    job = plan(resolved, args.name, _command(args), _method_files(args))
    return _launch(job, args)


def _command(args) -> str:
    import shlex

    return "python -m bench " + shlex.join(args.argv)


def _grid_options(args):
    from bench.runs.executors import GridOptions, SlurmOptions, parse_sbatch, parse_time

    slurm = SlurmOptions(partition=args.partition, time_min=parse_time(args.time) if args.time else 24 * 60,
                         gpus_per_job=args.gpus_per_job, cpus_per_job=args.cpus_per_job, mem_gb=args.mem,
                         account=args.account, qos=args.qos, sbatch=parse_sbatch(args.sbatch),
                         array_parallelism=args.array_parallelism)
    return GridOptions(executor=args.executor, results=Path(args.results), reports=Path(args.reports),
                       force=args.force, no_report=args.no_report, only_teacher=args.only_teacher, gpus=args.gpus,
                       jobs=args.jobs, jobs_per_gpu=args.jobs_per_gpu, slurm=slurm, tensorboard=args.tensorboard,
                       wandb=args.wandb)


def _print_plan(lines: list[str], missing) -> int:
    from bench.runs.estimate import missing_lines

    print("\n".join(lines))
    for line in missing_lines(missing):
        print(f"bench: {line}", file=sys.stderr)
    if missing:
        print(f"bench: {len(missing)} file(s) missing (above): exit status {MISSING_FILES_STATUS}", file=sys.stderr)
    return MISSING_FILES_STATUS if missing else 0


def _launch(job, args) -> int:
    """Run a checked job in this process or through an executor (``--dry-run``: print its jobs)."""
    from bench.api import RunResult, launch
    from bench.common import distributed
    from bench.runs.executors import check_options, make_grid

    opts = _grid_options(args)
    if getattr(args, "dry_run", False):
        from bench.runs.estimate import grid_dry_run

        check_options(job.config, opts, dry_run=True)
        grid = make_grid(job.folder(opts.results) / f"{job.id()}.yaml", job, opts.results, opts.reports,
                         opts.tensorboard, opts.wandb)
        return _print_plan(*grid_dry_run(opts.executor, grid, job.config, list(job.methods), job.seeds))
    out = launch(job, opts)
    if isinstance(out, RunResult):
        if not distributed.is_main():  # rank 0 speaks for the run
            return 0
        if out.report is None:
            print(f"{len(out.records)} run(s) finished in {out.results} ({out.seconds:.0f} s); "
                  f"`python -m bench report {job.runset}` builds the report")
        else:
            print(out.ranked())
            print(f"report: {out.report}  (wall time {out.seconds:.0f} s)")
        return 0
    for line in out.lines:
        print(line)
    for line in out.errors:
        print(line, file=sys.stderr)
    return out.code


def cmd_job(args) -> int:
    from bench.api import run_part

    parts = [args.teacher, args.method is not None, args.report]
    if sum(parts) != 1 or (args.method is None) != (args.seed is None):
        raise BenchError("job FILE takes one of --teacher, --method M --seed S, --report")
    out = run_part(args.file, teacher=args.teacher, method=args.method, seed=args.seed, report=args.report,
                   reports=args.reports, tensorboard=args.tensorboard, wandb=args.wandb)
    if args.report:
        print(f"report: {out}/README.md")
    return 0


def _paper_slice(preset, methods, seeds) -> tuple[tuple[str, ...] | None, tuple[int, ...] | None]:
    """The preset's methods (each at its official variant) and seeds that ``--methods``/``--seeds`` name
    (None: all of them)."""
    from bench.methods import parse_method

    chosen = None
    if methods:
        chosen = []
        for m in methods:
            match = [p for p in preset.methods if p == m or (":" not in m and parse_method(p).name == m)]
            if not match:
                raise BenchError(f"method {m!r} is not in this paper preset; its methods: {', '.join(preset.methods)}")
            chosen += [p for p in match if p not in chosen]
        chosen = tuple(chosen)
    return chosen, tuple(seeds) if seeds else None


def cmd_paper(args) -> int:
    from dataclasses import replace

    from bench.config.presets import PAPER_PRESETS, get_preset
    from bench.config.resolve import Flags, resolve
    from bench.runs.estimate import paper_dry_run, paper_list_lines
    from bench.runs.job import plan

    if args.list or not args.name:
        print("\n".join(paper_list_lines(PAPER_PRESETS)))
        return 0
    if args.name not in PAPER_PRESETS:
        raise BenchError(f"unknown paper preset {args.name!r}; known: {', '.join(PAPER_PRESETS)}")
    if args.protocol == "official" and args.precision not in (None, "fp32"):
        raise BenchError(f"--{args.precision}: under --protocol official every method trains in fp32, as its script "
                         "does")
    name = f"{args.name}-smoke" if args.scale == "smoke" else args.name   # the catalogue holds both
    methods, seeds = _paper_slice(get_preset(name), args.methods, args.seeds)
    # the one resolver, as `bench run`: protocol and layer checks, method labels, corruption files
    resolved = resolve(name, flags=Flags(
        methods=methods, seeds=seeds, device=args.device, precision=args.precision, compile=args.compile,
        sync_bn=args.sync_bn or None, protocol=args.protocol, data_dir=args.data_dir, download=args.download))
    if args.dry_run and args.executor == "inline":
        return _print_plan(*paper_dry_run(args.name, args.scale, replace(
            resolved.preset, config=resolved.config, methods=resolved.methods, seeds=resolved.seeds)))
    job = plan(resolved, resolved.config.preset, _command(args), _method_files(args))
    return _launch(replace(job, compare_to=None), args)


def cmd_eval(args) -> int:
    from bench.common import distributed
    from bench.eval.model import (
        DEFAULT_ATTACKS,
        evaluate_model,
        evaluate_shard,
        load_model,
        load_test_data,
        resolve_weights,
    )

    source = resolve_weights(args.weights, args.arch, args.dataset, args.mean, args.std)
    data = load_test_data(args.dataset, args.data_dir, args.download, args.image_size)
    model = load_model(source, data)
    out = Path(args.out) if args.out else source.default_out(data.name)
    request = dict(attacks=args.attacks or DEFAULT_ATTACKS, eps=args.eps, n=args.n, curve=args.curve, out=out,
                   seed=args.seed or 0, device=args.device or "auto", aa_n=args.aa_n, aa_version=args.aa_version,
                   batch_size=args.batch_size, sanity=False if args.no_sanity else None, norm=args.norm or "Linf",
                   on_device=args.data_on_device or "auto", precision=args.eval_precision or "fp32")
    if args.shard is not None:
        batches = evaluate_shard(model, data, shard=args.shard, **request)
        print(f"shard {args.shard[0]}/{args.shard[1]}: {batches} batch(es) written to {out}; run the command again "
              f"without --shard (same --out) to merge the shards into {out}/record.json")
        return 0
    result = evaluate_model(model, data, source=source, **request)
    if distributed.is_main():
        print(result.table())
        print(result.summary())
        print(f"written: {out}/record.json, {out}/table.md, {out}/per_image.json")
        if getattr(args, "save_adv", None):
            _save_adv(model, data, result, args.save_adv, args.seed or 0, out)
    return 0


def _save_adv(model, data, result, keep: int, seed: int, out: Path) -> None:
    from dataclasses import replace

    from bench.config.schema import EvalConfig
    from bench.eval.save_adv import first_examples, save

    c = result.config
    cfg = replace(EvalConfig(), attacks=tuple(c["attacks"]), eps=result.eps, norm=c["norm"], n=c["n"],
                  batch_size=c["batch_size"], precision=c["precision"])
    device = next(model.parameters()).device
    m = min(cfg.batch_size, len(data.y_test))
    examples = first_examples(model, data.x_test[:m].to(device), data.y_test[:m].to(device), cfg, seed, keep,
                              result.per_image)
    paths = save(examples, out)
    off = [k for k, ok in examples["consistent"].items() if not ok]
    print(f"written: {', '.join(str(p) for p in paths)}"
          + (f"; {', '.join(off)}: the re-crafted examples' predictions differ from the evaluation's flags "
             "(a nondeterministic model or kernel)" if off else "; each example's prediction matches the "
             "evaluation's per-image result"))


def cmd_report(args) -> int:
    from bench.records.runset import check_name
    from bench.report.build import build_report
    from bench.runs.status import runset_status

    check_name(args.runset)
    out = build_report(Path(args.results), args.runset, Path(args.reports))
    missing = [r for r in runset_status(Path(args.results), args.runset) if r["state"] != "done"]
    if missing:
        print(f"{len(missing)} planned run(s) not finished (not in the report): "
              + ", ".join(f"{r['method']} seed {r['seed']} ({r['state']})" for r in missing))
    print(f"report: {out}/README.md")
    return 0


def cmd_status(args) -> int:
    from bench.records.runset import RUNSET_FILE, check_name
    from bench.runs.status import format_status, runset_status

    check_name(args.runset)
    if not (Path(args.results) / args.runset / RUNSET_FILE).exists():
        raise BenchError(f"no run-set {args.runset!r} under {args.results}/ (no {RUNSET_FILE})")
    print(format_status(runset_status(Path(args.results), args.runset)))
    return 0


def cmd_list(args) -> int:
    from bench.attacks.ascent import ATTACKS
    from bench.config.presets import all_presets
    from bench.config.schema import TEACHER_ROLES
    from bench.data.sources import DATASETS
    from bench.models import describe_archs
    from bench.report.recipes import recipe_lines
    from bench.methods import METHODS

    if args.recipes:
        print("\n".join(recipe_lines()))
        return 0
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
        if not cls.needs_teacher or cls.teachers:
            roles = "; ".join(f"{role} ({what}; config {TEACHER_ROLES[role]})" for role, what in cls.teachers.items())
            print(f"  {'':10s} teachers: {'the run teacher' if cls.needs_teacher else 'none'}"
                  + (f", and {roles}" if roles else ""))
        print(f"  {'':10s} official schedule: {cls.schedule}")
        if cls.official is not None and cls.official.options:
            magnitude = "; ".join(f"{d}: {o}" for d, o in cls.official.options.items())
            print(f"  {'':10s} official loss magnitude: {magnitude}")
        opts = ", ".join(f"{k}={v}" for k, v in asdict(cls.Options()).items())
        if opts:
            print(f"  {'':10s} options: {opts}")
    print("datasets: " + ", ".join(DATASETS.names()) + ", folder:PATH")
    print("architectures:\n" + "\n".join(describe_archs()))
    print("attacks: clean, " + ", ".join(ATTACKS.names()) + ", aa (AutoAttack via pyautoattack); eval also takes "
          "curve (the PGD-20 eps-curve, 0.25 ... 1.5 x eps)")
    print("presets:")
    for name, preset in sorted(all_presets().items()):
        print(f"  {name:14s} {preset.description}; methods {','.join(preset.methods)}; seeds {list(preset.seeds)}")
    return 0


def cmd_regress(args) -> int:
    from bench.config.resolve import Flags, resolve
    from bench.regress import check as regress
    from bench.runs.job import validate

    resolved = resolve(args.preset, args.config, Flags.from_namespace(args), args.overrides)
    cfg, methods, seeds = resolved.config, list(resolved.methods), resolved.seeds
    validate(cfg, methods)
    path = Path(args.baseline) if args.baseline else regress.BASELINE_DIR / f"{args.preset}.json"
    substitute = regress.parse_substitute(args.substitute)
    if args.update:
        baseline_seeds = args.baseline_seeds or resolved.preset.baseline_seeds
        if not baseline_seeds:
            raise BenchError("--update needs --baseline-seeds (the preset names none)")
        done = regress.update(cfg, methods, seeds, path, args.reason, tuple(baseline_seeds), args.jobs,
                              tuple(_method_files(args)), args.accept_moves)
        print("\n".join(done.lines))
        return 0 if done.written else 1
    verdict = regress.check(cfg, methods, seeds, path, substitute, args.jobs, tuple(_method_files(args)),
                            args.all)
    print("\n".join(verdict.lines()))
    return 0 if verdict.passed else 1


def cmd_site(args) -> int:
    from bench.records.runset import check_name
    from bench.leaderboard.build import build_site, serve

    for name in args.runsets:
        check_name(name)
    index = build_site(Path(args.results), args.runsets, Path(args.out))
    print(f"site: {index}  (open it in a browser, or: python -m bench site ... --serve)")
    if args.serve:
        serve(index.parent, args.port)
    return 0


def cmd_export(args) -> int:
    import re
    from dataclasses import asdict as as_dict

    if args.site:
        from bench.records.runset import check_name
        from bench.leaderboard.submission import export_runset

        check_name(args.run)
        out = export_runset(Path(args.results), args.run, Path(args.out))
        print(f"written: {out}  (send this folder; `bench site {args.run} --results {out.parent}` checks it)")
        return 0

    from bench.common.io import extract_state_dict, load_checkpoint
    from bench.report.export import export_submissions
    from bench.records.record import RECORD, RunRecord

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
    for path in export_submissions(as_dict(rec), state, Path(args.out), name):
        print(f"written: {path}")
    return 0


COMMANDS = {"run": cmd_run, "eval": cmd_eval, "report": cmd_report, "regress": cmd_regress, "export": cmd_export,
            "paper": cmd_paper, "list": cmd_list, "status": cmd_status, "job": cmd_job, "site": cmd_site}
