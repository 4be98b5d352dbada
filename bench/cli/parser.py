"""The command-line grammar: every subcommand's flags, with their defaults in the help, and the
parsers that turn a flag's text into a typed value or one clear error line."""
from __future__ import annotations

import argparse

from bench.common.errors import BenchError

DEFAULT_METHODS = "gacd,ard,crd"
MISSING_FILES_STATUS = 3  # paper --dry-run: the plan is valid, but files it needs are missing
MAX_EPS = 0.5  # beyond this an L-inf ball on [0,1] pixels covers most of the image (L2: bench.attacks.threat.eps_cap)


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
    from bench.attacks.threat import (
        check_eps,  # here, not at the top: `bench --help` loads no torch
    )
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


def _renamed(old: str, new: str):
    def parse(text: str):
        raise BenchError(f"{old} is now {new}")
    return parse


def _device(text: str) -> str:
    """--device is checked when parsed: every command fails on one line before any work."""
    from bench.common.device import (
        resolve_device,  # here: `bench --help` loads no torch
    )

    resolve_device(text)
    return text


DEVICE_HELP = "auto (default: cuda when available, else cpu), cpu, cuda or cuda:i"


def _add_eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--attacks", type=_names, help="comma list of clean,fgsm,pgd20,cw,aa,corruptions (default: all six); "
                                                    "eval also takes curve (the PGD-20 eps-curve)")
    p.add_argument("--eps", type=parse_eps, help="the threat model's radius on [0,1] pixels, e.g. 0.2 or 8/255 "
                                                 "(default per data set and norm: digits 0.2 L-inf / 1.0 L2, CIFAR "
                                                 "8/255 / 0.5)")
    p.add_argument("--norm", choices=["Linf", "L2"], help="threat model of the training attack and of every "
                                                          "evaluation attack (default Linf)")
    p.add_argument("--n", "--n-images", dest="n", type=_int_range(1, 10**7, "--n"),
                   help="evaluate on the first N test images (default: all; --n-images under torchrun, whose "
                        "parser reads --n as its own)")
    p.add_argument("--aa-n", type=_int_range(1, 10**7, "--aa-n"),
                   help="AutoAttack on the first N test images (default: as --n)")
    p.add_argument("--aa-version", choices=["standard", "plus", "rand"], help="AutoAttack version (default standard)")
    p.add_argument("--data-dir", help="where torchvision datasets are (default $BENCH_DATA_DIR or ~/.cache/bench/data)")
    p.add_argument("--download", action="store_true", default=None,
                   help="download torchvision datasets (default: never download)")
    p.add_argument("--image-size", type=_int_range(4, 1024, "--image-size"),
                   help="resize images once at load (default: native size)")
    p.add_argument("--data-on-device", choices=["auto", "yes", "no"],
                   help="images on the device (yes), in host memory with batches copied over (no), or on the "
                        "device when they fit (auto, the default)")
    p.add_argument("--device", type=_device, help=DEVICE_HELP)
    p.add_argument("--seed", type=_int_range(0, 2**31 - 1, "--seed"),
                   help="run: this one seed, as --seeds N (default: the preset's seeds); eval: the attacks' random "
                        "starts (default 0)")
    p.add_argument("--no-sanity", action="store_true",
                   help="skip the sanity checks (bench/eval/sanity.py; default: run them)")
    p.add_argument("--eval-precision", choices=["fp32", "bf16"],
                   help="the evaluation attacks' arithmetic: bf16 autocast only when asked (default fp32)")


def _add_step_args(p: argparse.ArgumentParser) -> None:
    """How the training step computes: its precision and torch.compile."""
    prec = p.add_mutually_exclusive_group()
    prec.add_argument("--bf16", dest="precision", action="store_const", const="bf16",
                      help="train under bf16 autocast, also on CPU (default: auto, bf16 on CUDA and fp32 elsewhere)")
    prec.add_argument("--fp32", dest="precision", action="store_const", const="fp32",
                      help="train in fp32, also on CUDA (default: auto, bf16 on CUDA and fp32 elsewhere)")
    p.add_argument("--compile", action="store_true", default=None,
                   help="torch.compile the student's and the teacher's forward while training (default off)")


def _add_grid_args(p: argparse.ArgumentParser) -> None:
    """How a (methods x seeds) grid runs: in this process (default), as local jobs, or on Slurm."""
    g = p.add_argument_group("scaling out (submitit; see README 'Scaling out')")
    g.add_argument("--executor", choices=["inline", "local", "slurm"], default="inline",
                   help="inline: one run after another in this process (default); local: submitit jobs on this "
                        "machine, one per GPU (or --jobs N on CPU); slurm: a job array on a Slurm cluster")
    g.add_argument("--gpus", type=_int_range(1, 1024, "--gpus"), help="local: GPUs to use, one job each "
                                                                         "(default: every visible GPU)")
    g.add_argument("--jobs", type=_int_range(1, 1024, "--jobs"),
                   help="local on a CPU-only machine: jobs side by side (default 1)")
    g.add_argument("--jobs-per-gpu", type=_int_range(1, 64, "--jobs-per-gpu"),
                   help="local: jobs that share each GPU (small networks leave a large GPU mostly idle; default 1)")
    g.add_argument("--partition", help="slurm partition (default: the cluster's)")
    g.add_argument("--time", help="slurm time limit per job (minutes, HH:MM:SS or D-HH:MM:SS; default 24:00:00); "
                                  "a job that reaches it is requeued and resumes")
    g.add_argument("--gpus-per-job", type=_int_range(0, 64, "--gpus-per-job"), default=1,
                   help="slurm: GPUs per job (default 1)")
    g.add_argument("--cpus-per-job", type=_int_range(1, 1024, "--cpus-per-job"),
                   help="slurm: CPUs per job (default: the cluster's)")
    g.add_argument("--mem", type=_int_range(1, 100000, "--mem"),
                   help="slurm memory per job, GB (default: the cluster's)")
    g.add_argument("--account", help="slurm account (default: yours)")
    g.add_argument("--qos", help="slurm QOS (default: the cluster's)")
    g.add_argument("--sbatch", action="append", help="an extra #SBATCH line as key=value (repeatable; default "
                                                      "none), e.g. --sbatch constraint=a100")
    g.add_argument("--array-parallelism", type=_int_range(1, 100000, "--array-parallelism"), default=256,
                   help="slurm: at most this many array tasks at once (default 256)")
    g.add_argument("--no-report", action="store_true", help="write results only (jobs of a grid; "
                                                            "`bench report RUNSET` builds it later; default: "
                                                            "write the report)")
    g.add_argument("--only-teacher", action="store_true", help="train (or load) and evaluate the teacher(s), "
                                                               "then stop (the teacher job of a grid; default off)")
    g.add_argument("--sync-bn", action="store_true", help="under torchrun: batch-norm statistics over the whole "
                                                          "global batch (SyncBatchNorm, CUDA only; default off)")


def _add_output_args(p: argparse.ArgumentParser, results: bool = True, reports: bool = True,
                     tensorboard: bool = False) -> None:
    """Where a command reads and writes: --results, --reports, --tensorboard and --wandb (one definition
    for all)."""
    if results:
        p.add_argument("--results", default="results", help="results directory (default results)")
    if reports:
        p.add_argument("--reports", default="reports", help="reports directory (default reports)")
    if tensorboard:
        p.add_argument("--tensorboard", metavar="DIR", help="TensorBoard event files in DIR/RUNSET/RUN_ID (loss "
                       "terms, lr, images/s, validation accuracy per epoch; final metrics as hparams); default: off")
        p.add_argument("--wandb", metavar="PROJECT", help="Weights & Biases: one run per run in PROJECT, grouped "
                       "by run-set, with the fields --tensorboard writes (needs the wandb extra); default: off")


CONFIG_PRECEDENCE = "preset < --config file < explicit flags < dotted overrides"


def _add_methods_from(p: argparse.ArgumentParser) -> None:
    p.add_argument("--methods-from", action="append", metavar="FILE",
                   help="import a Python file whose @bench.register_method classes become methods (repeatable; "
                        "default: none, only the built-in methods and the bench.methods entry points)")


def _add_config_args(p: argparse.ArgumentParser) -> None:
    """--config FILE, trailing KEY=VALUE overrides and --print-config (bench/config/files.py)."""
    p.add_argument("--config", metavar="FILE", help="a YAML run configuration typed against bench/config/schema.py "
                                                    "(any field of RunConfig, plus methods: and seeds:; default: none, "
                                                    "the preset alone); precedence: " + CONFIG_PRECEDENCE)
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="dotted overrides of any config field, applied last, e.g. train.weight_decay=2e-4 "
                        "eval.aa_n=1000 teacher.kind=robustbench teacher.name=Zhang2019Theoretically")
    _add_methods_from(p)


def build_parser() -> Parser:
    """The command line: one function per command below."""
    parser = Parser(prog="bench", description="Adversarially robust knowledge distillation, one protocol.")
    sub = parser.add_subparsers(dest="command", parser_class=Parser)
    _add_run(sub)
    _add_eval(sub)
    _add_site(sub)
    _add_report(sub)
    _add_regress(sub)
    _add_export(sub)
    _add_paper(sub)
    _add_job(sub)
    _add_status(sub)
    _add_list(sub)
    return parser


def _add_run(sub) -> None:
    """``bench run``."""
    run = sub.add_parser("run", help="train and evaluate students (and a teacher), write results and a report",
                         allow_abbrev=False)
    run.add_argument("--methods", type=_names,
                     help="comma list; options as gacd:reweight=none:estimator=infonce (default: the preset's, "
                          f"{DEFAULT_METHODS} for digits)")
    run.add_argument("--preset", help="the base configuration: digits (default; else the --config file's preset:), "
                                      "gacd-ablation, cifar10, cifar100 (see `bench list`)")
    _add_config_args(run)
    run.add_argument("--seeds", type=_seeds, help="comma list of seeds, e.g. 0,1,2 (default: the preset's)")
    run.add_argument("--n-seeds", type=_int_range(1, 100, "--n-seeds"), help="seeds 0..N-1 (default: the preset's)")
    run.add_argument("--transfer", help="comma list of transfer targets (linear probe on the frozen student), "
                                        "or 'none'; default: the preset's")
    run.add_argument("--no-structure", action="store_true",
                     help="skip teacher-student structure metrics (default: compute them)")
    run.add_argument("--name", help="run-set name under results/ and reports/ (default: the preset)")
    run.add_argument("--dataset", help="digits, cifar10, cifar100, stl10 or folder:PATH (default: the preset's, "
                                       "digits@0-4 for digits)")
    run.add_argument("--student-arch", help="student architecture (see `bench list`; default: the preset's)")
    run.add_argument("--teacher", help="'train' (default), a path to a teacher state_dict, or robustbench:NAME "
                                       "(a RobustBench zoo model from $BENCH_ROBUSTBENCH_DIR, offline)")
    run.add_argument("--teacher-arch", help="teacher architecture (default: the preset's)")
    run.add_argument("--teacher-method", help="method that trains the teacher (default pgd-at); for a teacher "
                                              "file, the method it was trained with (labels, published numbers)")
    run.add_argument("--teacher-epochs", type=_int_range(1, 10000, "--teacher-epochs"),
                     help="epochs of a teacher trained here (default: the preset's, 60 for digits)")
    run.add_argument("--teacher-mean", type=_floats, help="input mean of an external teacher (default none)")
    run.add_argument("--teacher-std", type=_floats, help="input std of an external teacher (default none)")
    run.add_argument("--epochs", type=_int_range(1, 10000, "--epochs"),
                     help="student epochs (default: the preset's, 30 for digits)")
    run.add_argument("--batch-size", type=_int_range(1, 65536, "--batch-size"),
                     help="training batch (default: the preset's, 64 for digits)")
    run.add_argument("--lr", type=_positive_float("--lr"), help="learning rate (default: the preset's, 0.05 for digits)")
    run.add_argument("--schedule", choices=["cosine", "step"], help="learning-rate schedule (default: the preset's, "
                                                                    "cosine for digits)")
    run.add_argument("--checkpoint", choices=["last", "best-val", "best-test-pgd10", "best-test-pgd20"],
                     help="the headline weights: the last epoch (default), the best epoch by PGD-20 on a validation "
                          "split of the training data (best-val), or -- to reproduce a script that selects on the "
                          "test set -- by test PGD-10/PGD-20, under that name; with best-* the last epoch is "
                          "evaluated too")
    run.add_argument("--protocol", choices=["common", "official"],
                     help="common (default): this config for every method; official: each method with its official "
                          "script's recipe (CIFAR data; `bench list --recipes`)")
    run.add_argument("--train-eps", type=parse_eps, help="training-attack eps (default: --eps)")
    run.add_argument("--train-steps", type=_int_range(1, 1000, "--train-steps"),
                     help="training-attack steps (default: the preset's, 10 for digits)")
    _add_step_args(run)
    _add_output_args(run, tensorboard=True)
    run.add_argument("--force", action="store_true", help="redo finished runs (and the teacher; default: reuse)")
    run.add_argument("--dry-run", action="store_true", help="print the jobs a grid would run (count, each job's "
                                                            "command, estimated hours) and stop (default off)")
    run.add_argument("--print-config", action="store_true", help="write the resolved configuration as YAML (a "
                                                                 "--config file) to stdout and stop (default off)")
    _add_eval_args(run)
    _add_grid_args(run)


def _add_eval(sub) -> None:
    """``bench eval``."""
    ev = sub.add_parser("eval", help="evaluate any checkpoint under the suite's protocol")
    ev.add_argument("--weights", required=True, metavar="FILE|robustbench:NAME",
                    help="a state_dict file (loaded with weights_only=True), or robustbench:NAME (a RobustBench zoo "
                         "model, offline); required, no default")
    ev.add_argument("--checkpoint", type=_renamed("eval --checkpoint", "--weights FILE|robustbench:NAME "
                                                  "(--checkpoint is run's selection policy, last|best-val)"),
                    help=argparse.SUPPRESS)
    ev.add_argument("--arch", help="its architecture (see `bench list`); required for a file, not for "
                                   "robustbench:NAME (default none)")
    ev.add_argument("--dataset", required=True, help="digits, cifar10, cifar100, stl10 or folder:PATH; required, "
                                                     "no default")
    ev.add_argument("--mean", type=_floats, help="the checkpoint's input mean (default: none, raw [0,1])")
    ev.add_argument("--std", type=_floats, help="the checkpoint's input std (default: none)")
    ev.add_argument("--curve", action="store_true",
                    help="also the PGD-20 eps-curve at 0.25, 0.5, ... 1.5 x eps (as naming curve in --attacks; "
                         "default off)")
    ev.add_argument("--out", help="output directory (default reports/eval/<file stem>-<digest of its bytes>); an "
                                  "interrupted evaluation resumes from its per-batch state there")
    ev.add_argument("--batch-size", type=_int_range(1, 65536, "--batch-size"),
                    help="evaluation batch (default 500), also the unit of resumable progress")
    ev.add_argument("--shard", type=_shard, help="i/k: attack only the i-th of k round-robin shares of the batches "
                                                 "into --out (jobs side by side); the same command without --shard "
                                                 "then merges them (identical to an unsharded run). Default: no "
                                                 "shard (automatic under torchrun)")
    ev.add_argument("--save-adv", type=_int_range(1, 65536, "--save-adv"), metavar="N",
                    help="also keep the first N adversarial examples of each white-box attack (at most one batch), "
                         "as evaluated: --out/adversarial.pt and a PNG grid per attack (default: none)")
    _add_eval_args(ev)


def _add_site(sub) -> None:
    """``bench site``."""
    site = sub.add_parser("site", help="a static leaderboard website of run-sets (sortable, model cards, "
                          "comparisons, per-image explorer), from their records")
    site.add_argument("runsets", nargs="+", metavar="RUNSET", help="run-sets to show (folders under --results); "
                      "a run in several counts once")
    _add_output_args(site, reports=False)
    site.add_argument("--out", default="site-leaderboard", help="output folder (default site-leaderboard)")
    site.add_argument("--serve", action="store_true", help="then preview it at http://127.0.0.1:PORT/ (default: off)")
    site.add_argument("--port", type=_int_range(1024, 65535, "--port"), default=8000, help="--serve's port (default 8000)")


def _add_report(sub) -> None:
    """``bench report``."""
    rep = sub.add_parser("report", help="rebuild reports/RUNSET from results/RUNSET")
    rep.add_argument("runset", help="the run-set's name (a folder under --results)")
    _add_output_args(rep)


def _add_regress(sub) -> None:
    """``bench regress``."""
    reg = sub.add_parser("regress", help="re-run the CI preset and compare every metric with the stored baseline")
    reg.add_argument("--preset", default="regress", help="the preset to re-run (default regress)")
    reg.add_argument("--baseline", help="baseline file (default results/baselines/<preset>.json)")
    reg.add_argument("--update", action="store_true", help="rewrite the baseline from this run (default: compare)")
    reg.add_argument("--reason", help="why the baseline changes (required with --update; default none)")
    reg.add_argument("--accept-moves", action="store_true",
                     help="with --update: write the new baseline even where a mean moved outside the old "
                          "one's band (default: refuse, keeping the run for the accepted update)")
    reg.add_argument("--all", action="store_true",
                     help="print every comparison (default: the focus ones and every failure)")
    reg.add_argument("--substitute", type=_names, help="method=variant pairs scored against the method's "
                                                       "baseline, e.g. ard=ard:alpha=0 (checks the check; default none)")
    reg.add_argument("--seeds", type=_seeds, help="comma list of the seeds a check runs (default: the preset's)")
    reg.add_argument("--baseline-seeds", type=_seeds, help="comma list of the seeds --update runs besides the "
                                                          "check's, none of them a check seed (default: the "
                                                          "preset's baseline seeds)")
    reg.add_argument("--epochs", type=_int_range(1, 10000, "--epochs"), help="student epochs (default: the preset's)")
    reg.add_argument("--teacher-epochs", type=_int_range(1, 10000, "--teacher-epochs"),
                     help="teacher epochs (default: the preset's)")
    reg.add_argument("--n", type=_int_range(1, 10**7, "--n"), help="first N test images (default: the preset's)")
    reg.add_argument("--eps", type=parse_eps, help="train and evaluation eps (default: the preset's)")
    reg.add_argument("--norm", choices=["Linf", "L2"], help="train and evaluation threat model (default: the "
                                                            "preset's, Linf)")
    reg.add_argument("--aa-n", type=_int_range(1, 10**7, "--aa-n"),
                     help="AutoAttack on the first N test images (default: the preset's)")
    reg.add_argument("--methods", type=_names, help="comma list (default: the preset's)")
    reg.add_argument("--jobs", type=_int_range(1, 64, "--jobs"), default=1,
                     help="processes side by side, each with whole seeds and its share of the CPU threads "
                          "(default 1; CI runs 2 on its 2 cores)")
    _add_config_args(reg)


def _add_export(sub) -> None:
    """``bench export``."""
    exp = sub.add_parser("export", help="export a student in RobustBench's format (model_info JSON + checkpoint; "
                         "the L-p and the corruptions leaderboards)")
    exp.add_argument("run", help="a run folder (results/RUNSET/RUN_ID) or RUNSET/RUN_ID; with --site a run-set")
    kind = exp.add_mutually_exclusive_group(required=True)
    kind.add_argument("--robustbench", action="store_true",
                      help="RobustBench format: model_info JSON + checkpoint of one student (default: off; "
                           "one of --robustbench and --site is required)")
    kind.add_argument("--site", action="store_true",
                      help="a leaderboard submission of a run-set: records, per-image stores, configs and the "
                           "weights' digests (not the weights), which `bench site` checks before it shows them (default: off)")
    _add_output_args(exp, reports=False)
    exp.add_argument("--out", default="exports", help="output folder (default exports)")
    exp.add_argument("--name", help="model name (default: bench_<method>_<run id>)")


def _add_paper(sub) -> None:
    """``bench paper``."""
    pap = sub.add_parser("paper", help="paper-table presets (full CIFAR protocol on GPUs), with published numbers",
                         allow_abbrev=False)
    pap.add_argument("name", nargs="?", help="cifar10-resnet18, cifar10-mobilenetv2, cifar100-resnet18 "
                                             "(default: none, list them)")
    pap.add_argument("--list", action="store_true", help="list the presets and their hyper-parameters (default off)")
    pap.add_argument("--dry-run", action="store_true",
                     help="print the plan and a cost estimate (a short throughput measurement on this device) and "
                          "check that the data files and the teacher checkpoint are present; exit status "
                          f"{MISSING_FILES_STATUS} when one is missing (default off)")
    pap.add_argument("--scale", choices=["full", "smoke"], default="full",
                     help="full (default); smoke: tiny widths, 256 images, 2 epochs, stand-in data where files are "
                          "missing")
    pap.add_argument("--protocol", choices=["common", "official"], default="common",
                     help="common (default): one schedule for every method, checkpoint selected on a validation "
                          "split; official: each method's own script's recipe, to reproduce its published number "
                          "(`bench list --recipes`)")
    pap.add_argument("--device", type=_device, help=DEVICE_HELP)
    pap.add_argument("--data-dir", help="where the data sets and CIFAR-10-C / CIFAR-100-C are (default $BENCH_DATA_DIR "
                                        "or ~/.cache/bench/data)")
    pap.add_argument("--download", action="store_true", default=None,
                     help="download the data sets and the published corruptions where missing (default: never)")
    _add_step_args(pap)
    _add_output_args(pap, tensorboard=True)
    pap.add_argument("--force", action="store_true", help="redo finished runs (default: reuse)")
    pap.add_argument("--methods", type=_names, help="run a slice: these of the preset's methods (default: all)")
    pap.add_argument("--seeds", type=_seeds, help="run a slice: these seeds (default: the preset's, 0,1,2)")
    _add_methods_from(pap)
    _add_grid_args(pap)


def _add_job(sub) -> None:
    """``bench job``."""
    job = sub.add_parser("job", help="run one part of a job file written by an executor (what its jobs run)")
    job.add_argument("file", help="the job file: results/RUNSET/.jobs/ID.yaml (the resolved config and the grid)")
    job.add_argument("--teacher", action="store_true", help="train (or load) and evaluate the teacher(s) (default off)")
    job.add_argument("--method", help="one method of the grid, with --seed (default: none)")
    job.add_argument("--seed", type=_int_range(0, 2**31 - 1, "--seed"),
                     help="one seed of the grid, with --method (default: none)")
    job.add_argument("--report", action="store_true", help="build the run-set's report (default off)")
    _add_output_args(job, results=False, tensorboard=True)


def _add_status(sub) -> None:
    """``bench status``."""
    st = sub.add_parser("status", help="where each run of a run-set stands: done, running, failed, missing")
    st.add_argument("runset", help="the run-set's name (a folder under --results)")
    _add_output_args(st, reports=False)


def _add_list(sub) -> None:
    """``bench list``."""
    lst = sub.add_parser("list", help="methods, datasets, architectures and attacks")
    lst.add_argument("--recipes", action="store_true",
                     help="only the official recipes: per method, every field that differs from the common protocol "
                          "(CIFAR-10 and CIFAR-100 paper presets), with the official file and line (default off)")
    _add_methods_from(lst)
