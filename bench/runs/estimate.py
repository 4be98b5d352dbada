"""The plan of a preset and its cost, from a throughput measured on this device (`paper --dry-run`,
`run --dry-run`), and the files it needs, checked before anyone books GPUs.

Cost model:
  training, per epoch:  N_train x the FLOPs of one training step per image, counted as the run counts its
                        first step (bench.train.cost.StepFlops over the attack, the loss terms and the
                        backward; the log's train_flops_per_image) but on the meta device: shapes only, at
                        the run's own batch and architectures, in milliseconds. N_train is the data set's
                        share that the run trains on (a class subset such as digits@0-4 keeps its share of
                        each split). FLOPs become seconds at the rates measured here: the teacher's clean
                        forward at the teacher's forward rate, a further teacher's at its own, the attack's
                        teacher passes (an attack that differentiates through the teacher:
                        InnerMax.through_teacher) at the teacher's forward-backward rate, the rest at the
                        student's forward-backward rate (a rate = counted FLOPs of the timed pass / its time);
  evaluation, per model: eval_passes: each configured attack's forward-backward passes (steps x restarts),
                        about AA_PASSES per AutoAttack image (APGD-CE 100, APGD-T 9 x 100 and FAB-T on the
                        points still robust, Square's 5,000 queries forward-only; a rough figure for a robust
                        model), PGD-20 per curve eps, per transfer target and for a student's structure
                        section, the sanity checks at their most, a forward per corrupted image, and the
                        host's time to generate the corrupted images (timed here on two images).
  Not modelled: memory-bound work (CRD's memory bank: its FLOPs are counted, its gathers are not), the
  data loader and the optimiser; a model that breaks early is cheaper to attack than a robust one.

The measurement is bounded so that a dry run answers in seconds on a CPU: each network is timed for
about MEASURE_BUDGET_S per mode (at least one step; a warm-up step first on a GPU), once per process, at
the training batch on a GPU; on a CPU at the batch whose forward-backward pass is about CPU_STEP_FLOPS
(counted; at least CPU_BATCH, at most the training batch): a small network timed at 2 images runs ten
times below its rate at the training batch, and a large one at the training batch takes seconds a step. A method that needs real data to
build or step (CRD's memory bank sorts its labels and fixes its normaliser from a first batch) is
counted on the CPU instead, at batch COUNT_CPU_BATCH, and the plan says so.
"""
from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bench.attacks.ascent import AA_NAME, ATTACKS
from bench.common.device import resolve_device
from bench.common.errors import BenchError
from bench.config.presets import Preset
from bench.config.protocol import method_config, recipe_notes, teacher_text
from bench.config.schema import TEACHER_ROLES, DataConfig, EvalConfig, FileTeacher, RunConfig, ZooTeacher
from bench.data.sources import DATASETS, default_data_dir
from bench.data.splits import parse_classes
from bench.eval.corruption_eval import NAME as CORRUPTIONS
from bench.eval.corruption_eval import SEVERITIES, chosen, how_to_get, published_missing
from bench.eval.corruptions import CORRUPTIONS as ALL_CORRUPTIONS
from bench.eval.corruptions import corrupt
from bench.models import build_model
from bench.models.zoo import (
    default_model_dir,
    locate_robustbench_model,
    robustbench_checkpoint_path,
)
from bench.runs.executors import command
from bench.train.cost import StepFlops
from bench.train.loop import adversarial_examples
from bench.methods import parse_method
from bench.methods.base import Batch, Context

AA_PASSES = 1500
MEASURE_BUDGET_S = 0.5
CPU_BATCH = 2
CPU_STEP_FLOPS = 1e9
COUNT_CPU_BATCH = 2
META = torch.device("meta")


@dataclass(frozen=True)
class Throughput:
    """One network on one device: images per second timed here and FLOPs per image counted (StepFlops)
    of the same two passes; their product is the FLOP rate the device reaches on that network."""
    fwd_bwd: float            # img/s, forward and the input's gradient (an attack step)
    fwd: float                # img/s, forward only
    fwd_bwd_flops: float      # per image
    fwd_flops: float
    batch: int                # the batch it was timed at

    def seconds_fwd_bwd(self, flops: float) -> float:
        return flops / (self.fwd_bwd * self.fwd_bwd_flops)

    def seconds_fwd(self, flops: float) -> float:
        return flops / (self.fwd * self.fwd_flops)


def _passes(model, x, y):
    def fwd_bwd():
        xa = x.clone().requires_grad_(True)
        torch.autograd.grad(F.cross_entropy(model(xa), y), xa)

    def fwd():
        with torch.no_grad():
            model(x)
    return fwd_bwd, fwd


def _counted(step, batch: int) -> float:
    with StepFlops() as counter:
        step()
    return counter.get_total_flops() / batch


@lru_cache(maxsize=None)
def measure(arch: str, channels: int, size: int, classes: int, device: torch.device, batch: int,
            budget_s: float = MEASURE_BUDGET_S) -> Throughput:
    """``arch`` on ``device``: each pass counted on the meta device and timed for about ``budget_s`` (at
    least one step) at ``batch`` (the training batch) on a GPU, at a batch of about CPU_STEP_FLOPS on a CPU."""
    with torch.device(META):
        meta = build_model(arch, classes, channels)
        m_fwd_bwd, m_fwd = _passes(meta, torch.rand(1, channels, size, size), torch.zeros(1, dtype=torch.long))
    fwd_bwd_flops, fwd_flops = _counted(m_fwd_bwd, 1), _counted(m_fwd, 1)
    if device.type != "cuda":
        batch = max(CPU_BATCH, min(batch, int(CPU_STEP_FLOPS // fwd_bwd_flops)))
    model = build_model(arch, classes, channels).to(device).to(memory_format=torch.channels_last)
    x = torch.rand(batch, channels, size, size, device=device)
    y = torch.randint(0, classes, (batch,), device=device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def timed(step) -> float:
        if device.type == "cuda":  # CUDA's lazy initialisation and cuDNN's autotuning: not the steady state
            step()
            sync()
        times: list[float] = []
        while not times or sum(times) < budget_s:
            t0 = time.perf_counter()
            step()
            sync()
            times.append(time.perf_counter() - t0)
        # the median step: the first few CPU steps are slower (oneDNN builds its kernels for a new shape),
        # by enough to halve a mean over half a second
        return batch / statistics.median(times)

    fwd_bwd, fwd = _passes(model, x, y)
    return Throughput(timed(fwd_bwd), timed(fwd), fwd_bwd_flops, fwd_flops, batch)


def count_step(spec, mcfg: RunConfig, channels: int, size: int, classes: int, n_train: int,
               device: torch.device = META, batch: int | None = None) -> float:
    """FLOPs per image of the first training step of ``spec`` under ``mcfg`` (its method config), as the
    run counts it (bench.train.loop: StepFlops over the attack, the loss terms and the backward), on
    ``device`` (meta: shapes only) at ``batch`` (the run's by default), on random images.

    Every attack step costs the same (bench.attacks.ascent.pgd_ascent: no early stop), so a step with k
    attack steps is counted with 1 and with 2 and extrapolated, which is exact and saves most of the
    meta device's per-operation cost (about a millisecond each)."""
    steps = mcfg.attack.steps
    if spec.cls.inner is None or steps <= 2:
        return _count_step(spec, mcfg, channels, size, classes, n_train, device, batch)
    one, two = (_count_step(spec, replace(mcfg, attack=replace(mcfg.attack, steps=k)), channels, size, classes,
                            n_train, device, batch) for k in (1, 2))
    return one + (steps - 1) * (two - one)


def _count_step(spec, mcfg: RunConfig, channels: int, size: int, classes: int, n_train: int,
                device: torch.device, batch: int | None) -> float:
    batch = batch or mcfg.train.batch_size
    with torch.device(device):  # every network built where it is counted
        student = build_model(mcfg.student_arch, classes, channels)
        teacher = build_model(mcfg.teacher.arch, classes, channels).eval()
        roles = {role: build_model(getattr(mcfg, TEACHER_ROLES[role]).arch, classes, channels).eval()
                 for role in spec.cls.teachers}
        ctx = Context(num_classes=classes, n_train=n_train, train_labels=torch.arange(n_train) % classes,
                      student_dim=student.feature_dim, teacher_dim=teacher.feature_dim, device=device,
                      epochs=mcfg.train.epochs, seed=mcfg.seed,
                      build_student=lambda: build_model(mcfg.student_arch, classes, channels).to(device))
        method = spec.build(ctx)
        for module in (method.modules(), *(n.module for n in method.networks().values())):
            if module is not None:
                module.to(device)
    b = Batch(torch.rand(batch, channels, size, size, device=device), torch.arange(batch, device=device) % classes,
              torch.arange(batch, device=device) % n_train, student, teacher if spec.cls.needs_teacher else None, 0,
              generator=torch.Generator(), teachers=roles)

    def step():  # the loop's step (bench.train.loop._Loop.epoch), without the optimiser
        x_adv = adversarial_examples(method, b, mcfg.attack) if method.inner else None
        sum(method.losses(b, x_adv).values()).backward()
    return _counted(step, batch)


@lru_cache(maxsize=None)
def step_flops(label: str, mcfg: RunConfig, channels: int, size: int, classes: int, n_train: int) -> tuple[float, str]:
    """(FLOPs per image of one training step, where it was counted): on the meta device at the run's batch;
    where the method needs real numbers, on the CPU at COUNT_CPU_BATCH."""
    spec = parse_method(label)
    try:
        return count_step(spec, mcfg, channels, size, classes, n_train), f"meta, batch {mcfg.train.batch_size}"
    except (NotImplementedError, RuntimeError):  # "Cannot copy out of meta tensor", ".item() on meta tensors"
        batch = min(COUNT_CPU_BATCH, mcfg.train.batch_size)
        return count_step(spec, mcfg, channels, size, classes, n_train, torch.device("cpu"), batch), f"cpu, batch {batch}"


def eval_passes(ev: EvalConfig, n: int, probes: int, student: bool,
                shape: tuple[int, int, int]) -> tuple[float, float]:
    """(forward-backward, forward-only) passes of one model's evaluation on ``n`` images of ``shape``, as
    bench.eval.protocol runs it: each gradient attack its steps x restarts (bench.attacks.ascent.ATTACKS),
    AutoAttack about AA_PASSES per image, PGD-20 per curve eps and per transfer probe, a student's
    structure section (PGD-20 on it), the sanity checks at their most (PGD-20 at the large eps, PGD-100 x 3
    restarts, a gradient; a check the numbers decide is skipped) and one forward per corrupted image."""
    fwd_bwd, fwd = 0.0, 0.0
    for name in ev.attacks:
        if name == "clean":
            fwd += n
        elif name == AA_NAME:
            fwd_bwd += min(ev.aa_n or n, n) * AA_PASSES
        elif name == CORRUPTIONS:
            fwd += min(ev.corruptions_n or n, n) * len(chosen(ev, shape)[0]) * len(SEVERITIES)
        else:
            spec = ATTACKS.get(name)
            fwd_bwd += n * spec.steps * spec.restarts
    fwd_bwd += n * 20 * (len(ev.curve_eps) + probes + (1 if student else 0))
    if ev.sanity.enabled:
        m = min(ev.sanity.n or n, n)
        fwd_bwd += m * (20 + ev.sanity.strong_steps * ev.sanity.strong_restarts + 1)
        fwd += 2 * min(ev.batch_size, m)
    return fwd_bwd, fwd


@lru_cache(maxsize=None)
def _corrupt_seconds(names: tuple[str, ...], shape: tuple[int, int, int]) -> float:
    """Seconds this host takes to corrupt one image of ``shape`` at every one of ``names`` and severity."""
    x = np.random.default_rng(0).integers(0, 256, (2, *shape), dtype=np.uint8)
    t0 = time.perf_counter()
    for name in names:
        for severity in SEVERITIES:
            corrupt(x, name, severity, np.random.default_rng(severity))
    return (time.perf_counter() - t0) / len(x)


def corruption_seconds(ev: EvalConfig, shape: tuple[int, int, int], n: int) -> float:
    """The host's time to generate one model's corrupted images (each model's evaluation generates its
    own; none where they are read from the published .npy files or corruptions are not evaluated)."""
    if CORRUPTIONS not in ev.attacks or ev.corruptions_dir:
        return 0.0
    return min(ev.corruptions_n or n, n) * _corrupt_seconds(chosen(ev, shape)[0], shape)


def data_shape(data: DataConfig) -> tuple[int, int, int, int, int]:
    """(train images, test images, channels, size, classes) of a config's data, without loading it. A class
    subset (``digits@0-4``) keeps its share of each split and its number of classes: CIFAR's and STL-10's
    classes are balanced, the digits' split is stratified."""
    base, _, subset = data.name.partition("@")
    # each data set's entry holds its shape (bench.data.sources.DataSet); a folder is costed as CIFAR-10
    n_train, n_test, channels, size, classes = DATASETS.get(base if base in DATASETS else "cifar10").shape
    n_train = min(n_train, data.train_limit or n_train)  # the limit applies before the subset (load_dataset)
    if subset:
        k = len(parse_classes(subset, classes, base))
        n_train, n_test, classes = round(n_train * k / classes), round(n_test * k / classes), k
    return n_train, n_test, channels, data.image_size or size, classes


def train_step_seconds(spec, mcfg: RunConfig, flops: float, shape: tuple[int, int, int],
                       device: torch.device, batch: int) -> float:
    """Seconds per image of a step of ``flops`` FLOPs: each part at the rate of the network that runs it."""
    channels, size, classes = shape
    s = measure(mcfg.student_arch, channels, size, classes, device, batch)
    t = measure(mcfg.teacher.arch, channels, size, classes, device, batch)
    seconds, rest = 0.0, flops
    if spec.cls.needs_teacher:  # the clean teacher outputs, once a step (bench.methods.base.Batch)
        seconds, rest = seconds + t.seconds_fwd(t.fwd_flops), rest - t.fwd_flops
    for role in spec.cls.teachers:  # a further teacher (MTARD's natural one): one forward
        r = measure(getattr(mcfg, TEACHER_ROLES[role]).arch, channels, size, classes, device, batch)
        seconds, rest = seconds + r.seconds_fwd(r.fwd_flops), rest - r.fwd_flops
    inner = spec.cls.inner
    if inner and inner.through_teacher:  # the attack takes the teacher's input gradient every step
        attack = mcfg.attack.steps * t.fwd_bwd_flops
        seconds, rest = seconds + t.seconds_fwd_bwd(attack), rest - attack
    return seconds + s.seconds_fwd_bwd(max(rest, 0.0))


def estimate(preset: Preset, methods: list, device: torch.device) -> tuple[list[dict], dict]:
    """Rows of (method, FLOPs, hours) and the measured throughputs; each method under its protocol's
    config (bench.config.protocol), with its checkpoint policy's per-epoch scoring and, for a best-*
    policy, the evaluation of the last epoch beside the best."""
    cfg = preset.config
    n_train_all, n_test, channels, size, classes = data_shape(cfg.data)
    batch = cfg.train.batch_size
    s = measure(cfg.student_arch, channels, size, classes, device, batch)
    t = measure(cfg.teacher.arch, channels, size, classes, device, batch)
    n = min(cfg.eval.n or n_test, n_test)
    aa_n = min(cfg.eval.aa_n or n, n) if AA_NAME in cfg.eval.attacks else 0
    targets = len(cfg.probe.targets)
    generate_s = corruption_seconds(cfg.eval, (channels, size, size), n)
    rows = []
    for spec in methods:
        mcfg = method_config(cfg, spec.cls)
        policy = mcfg.train.checkpoint
        n_train = n_train_all - (round(n_train_all * mcfg.train.val_fraction) if policy == "best-val" else 0)
        flops, counted_on = step_flops(spec.label, mcfg, channels, size, classes, n_train)
        step_s = train_step_seconds(spec, mcfg, flops, (channels, size, classes), device, batch)
        # a best-* policy attacks its images every epoch (PGD-10 or PGD-20 forward-backward passes)
        select = {"best-val": n_train_all - n_train, "best-test-pgd10": n, "best-test-pgd20": n}.get(policy, 0)
        select_steps = 10 if policy.endswith("pgd10") else 20
        # SWA: the average's batch-norm statistics re-estimated on the training images after each snapshot
        swa_epochs = 0 if mcfg.train.swa_start is None else mcfg.train.epochs - mcfg.train.swa_start
        train_s = (mcfg.train.epochs * (n_train * step_s + select * select_steps / s.fwd_bwd)
                   + swa_epochs * n_train / s.fwd)
        # the last epoch beside a best-* checkpoint: clean, PGD-20, AutoAttack
        last = (n * (1 + 20) + aa_n * AA_PASSES) if policy != "last" else 0
        fb, fw = eval_passes(cfg.eval, n, targets, True, (channels, size, size))
        eval_s = (fb + last) / s.fwd_bwd + fw / s.fwd + generate_s
        rows.append({"method": spec.label, "protocol": mcfg.protocol, "epochs": mcfg.train.epochs,
                     "checkpoint": policy, "train_mflop_per_image": flops / 1e6, "counted_on": counted_on,
                     "train_h": train_s / 3600, "eval_h": eval_s / 3600,
                     "seeds": len(preset.seeds), "total_h": len(preset.seeds) * (train_s + eval_s) / 3600})
    fb, fw = eval_passes(cfg.eval, n, targets, False, (channels, size, size))
    teacher_eval_h = (fb / t.fwd_bwd + fw / t.fwd + generate_s) / 3600
    rows.append({"method": f"teacher ({cfg.teacher.kind} {cfg.teacher.arch}) evaluation", "train_h": 0.0, "eval_h": teacher_eval_h,
                 "seeds": 1, "total_h": teacher_eval_h})
    info = {"device": str(device), "batch": s.batch, "teacher_batch": t.batch, "student_fwd_bwd": s.fwd_bwd, "student_fwd": s.fwd,
            "teacher_fwd_bwd": t.fwd_bwd, "teacher_fwd": t.fwd, "n_train": n_train_all, "n_eval": n, "aa_n": aa_n,
            "student_gflop_s": s.fwd_bwd * s.fwd_bwd_flops / 1e9, "teacher_gflop_s": t.fwd_bwd * t.fwd_bwd_flops / 1e9}
    return rows, info


# --- the files a plan needs -----------------------------------------------------------------------

@dataclass(frozen=True)
class MissingFile:
    what: str        # what needs it, e.g. "data cifar10" or "teacher robustbench:NAME"
    path: str        # where it was looked for
    fix: str         # what to do


def _data_file(name: str, data_dir: str | None) -> MissingFile | None:
    if name.startswith("folder:"):
        path = Path(name[len("folder:"):])
        return None if path.is_dir() else MissingFile(f"data {name}", str(path), "give an existing ImageFolder "
                                                                                "directory (one sub-folder per class)")
    base = name.partition("@")[0]
    files = DATASETS.get(base).files if base in DATASETS else None
    if files is None:  # embedded (digits), or read and checked by its loader (tiny-imagenet)
        return None
    root = Path(data_dir) if data_dir else default_data_dir()
    folder, source = files
    path = root / folder
    if path.is_dir():
        return None
    return MissingFile(f"data {base}", str(path), f"put the extracted {source} in {root} (or set BENCH_DATA_DIR / "
                                                  f"--data-dir), or run once with --download where there is internet")


def missing_files(cfg: RunConfig, methods=()) -> list[MissingFile]:
    """Every data file and teacher checkpoint ``cfg`` needs that is not on disk (data that a smoke
    run replaces by a stand-in is not needed); ``methods``: their own teachers too (an official recipe's)."""
    out = []
    if not cfg.data.stand_in:
        for name in dict.fromkeys((cfg.data.name, *cfg.probe.targets)):
            missing = _data_file(name, cfg.data.data_dir)
            if missing:
                out.append(missing)
    ev = cfg.eval
    if ev.corruptions_from == "published" and ev.corruptions_dir and CORRUPTIONS in ev.attacks \
            and not cfg.data.download:
        folder = Path(ev.corruptions_dir)
        if published_missing(folder, ev.corruptions or ALL_CORRUPTIONS):
            out.append(MissingFile(f"corruptions {folder.name}", ev.corruptions_dir,
                                   how_to_get(folder).removeprefix("put ")))
    teachers = [cfg.teacher, *(method_config(cfg, parse_method(m).cls).teacher for m in methods)]
    for tc in dict.fromkeys(teachers):
        out += _missing_teacher(cfg, tc)
    return out


def _missing_teacher(cfg: RunConfig, tc) -> list[MissingFile]:
    out = []
    if isinstance(tc, ZooTeacher):

        base = cfg.data.name.partition("@")[0]
        # robustbench_checkpoint_path's layout without importing robustbench and timm (seconds) when the
        # file is there; where it is not, robustbench names the file to fetch
        present = (default_model_dir() / base / tc.threat_model / f"{tc.name}.pt").is_file()
        try:
            if not present:
                locate_robustbench_model(tc.name, base, tc.threat_model)
        except BenchError as err:
            try:
                path = str(robustbench_checkpoint_path(tc.name, base, tc.threat_model))
            except BenchError:
                path = "(no RobustBench layout for this data set)"
            out.append(MissingFile(f"teacher robustbench:{tc.name}", path, str(err)))
    elif isinstance(tc, FileTeacher) and not Path(tc.path).is_file():
        out.append(MissingFile("teacher file", tc.path, "give an existing state_dict file with --teacher"))
    return out


def missing_lines(missing: list[MissingFile]) -> list[str]:
    return [f"missing: {m.what}: looked for {m.path}; {m.fix}" for m in missing]


# --- what a dry run prints ------------------------------------------------------------------------

def paper_list_lines(presets: dict[str, Preset]) -> list[str]:
    lines = []
    for name, preset in presets.items():
        c = preset.config
        lines.append(f"{name:20s} {preset.description}")
        lines.append(f"{'':20s} methods {','.join(preset.methods)}; seeds {list(preset.seeds)}; {c.train.epochs} "
                     f"epochs, lr {c.train.lr}, decay at {list(c.train.milestones)}, wd {c.train.weight_decay}, "
                     f"batch {c.train.batch_size}; eps {c.eval.eps:.4g}; first {c.eval.n} test images; transfer "
                     f"{', '.join(c.probe.targets)}")
    return lines


def _mflop(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.0f}" if value >= 1000 else f"{value:.4g}"


def _unit(device: torch.device) -> str:
    if device.type == "cuda":
        return "GPU-hours"
    return f"hours on {device.type} (no GPU here: rerun on the GPU host)"


def _duration(hours: float) -> str:
    """Hours as a person reads them: 23 s, 4.2 min, 1.3 h (two decimals of an hour hide a whole small run)."""
    seconds = hours * 3600
    if seconds < 1:
        return "<1 s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.2g} min" if seconds < 600 else f"{seconds / 60:.0f} min"
    return f"{hours:.1f} h"


def paper_plan_lines(name: str, scale: str, preset: Preset, rows: list[dict], info: dict,
                     device: torch.device) -> list[str]:
    """Every hyper-parameter of a paper preset, the measured throughputs and the cost per method."""
    cfg = preset.config
    lines = [f"plan {name} ({scale}), protocol {cfg.protocol}: {preset.description}",
             f"methods at their official loss magnitude: {', '.join(preset.methods)}",
             json.dumps(asdict(cfg), indent=1, default=list),
             *recipe_plan_lines(preset),
             f"measured on {info['device']} (about {MEASURE_BUDGET_S:g} s each): student "
             f"{cfg.student_arch} at batch {info['batch']} {info['student_fwd_bwd']:.0f} img/s forward-backward "
             f"({info['student_gflop_s']:.3g} GFLOP/s); teacher {cfg.teacher.arch} at batch {info['teacher_batch']} "
             f"{info['teacher_fwd_bwd']:.0f} img/s "
             f"forward-backward ({info['teacher_gflop_s']:.3g} GFLOP/s), {info['teacher_fwd']:.0f} forward",
             "train MFLOP/img/epoch: one training step counted as the run counts it (StepFlops), on the device named "
             "(meta: shapes only, at the run's batch); the report's column of the same name is the run's own count",
             f"{'method':34s} {'epochs':>6s} {'checkpoint':>16s} {'MFLOP/img/ep':>13s} {'counted':>14s} {'train h':>9s} "
             f"{'eval h':>8s} {'seeds':>5s} {'total h':>9s}"]
    lines += [f"{r['method']:34s} {r.get('epochs', ''):>6} {r.get('checkpoint', ''):>16s} "
              f"{_mflop(r.get('train_mflop_per_image')):>13s} {r.get('counted_on', ''):>14s} {r['train_h']:9.2f} "
              f"{r['eval_h']:8.2f} {r['seeds']:5d} {r['total_h']:9.2f}" for r in rows]
    lines.append(f"estimate: {sum(r['total_h'] for r in rows):.1f} {_unit(device)} (cost model in bench/runs/estimate.py)")
    return lines


def recipe_plan_lines(preset: Preset) -> list[str]:
    """Each method's config under the preset's protocol where it differs from the preset's own: the
    recipe (official) or nothing (common)."""
    cfg = preset.config
    lines = [f"protocol {cfg.protocol}: " + ("each method with its official script's recipe (fields that differ "
                                             "from the common config below; `bench list --recipes` for sources)"
                                             if cfg.protocol == "official" else
                                             f"every method under the config above (checkpoint {cfg.train.checkpoint})")]
    if cfg.protocol != "official":
        return lines
    for label in preset.methods:
        cls = parse_method(label).cls
        m = method_config(cfg, cls)
        t, a = m.train, m.attack
        stated = cls.official is not None and cls.official.code
        attack = f"attack eps {a.eps:.4g} step {a.eps * a.step_ratio:.4g} x {a.steps}" if cls.inner else "no attack"
        lines.append(f"  {label}: " + (f"{t.epochs} epochs, lr {t.lr}, {t.schedule} {list(t.milestones)}, wd "
                                       f"{t.weight_decay}, batch {t.batch_size}; {attack}; {m.precision}; input_norm "
                                       f"{m.input_norm}; checkpoint {t.checkpoint}" if stated else
                                       "no official recipe: the common config")
                      + (f"; teacher {teacher_text(m.teacher)}" if cls.needs_teacher else ""))
        lines += [f"      {note}" for note in recipe_notes(cls, cfg)]
    return lines


def grid_plan_lines(executor: str, grid, methods: list[str], seeds, rows: list[dict], device: torch.device) -> list[str]:
    """The jobs of a grid (bench.runs.executors.Grid), each a command, with its estimated hours."""

    hours = {r["method"]: r["train_h"] + r["eval_h"] for r in rows}
    unit = "GPU" if device.type == "cuda" else f"on this {device.type}"
    lines = [f"{executor}: {len(grid.runs) + 2} jobs for run-set {grid.runset} ({len(methods)} methods x {len(seeds)} "
             f"seeds, the teacher first, the report last); hours from bench/runs/estimate.py, measured on {device}",
             f"  teacher  {command(grid.teacher)}"]
    total = rows[-1]["eval_h"]
    for method, _seed, argv in grid.runs:
        h = hours[parse_method(method).label]
        total += h
        lines.append(f"  {_duration(h):>8s} {unit}  {command(argv)}")
    lines.append(f"  report   {command(grid.report)}")
    lines.append(f"estimate: {_duration(total)} {unit} in all (the teacher's training not included)")
    return lines


def _measured(preset: Preset) -> tuple[list[dict], dict, torch.device]:

    device = resolve_device(preset.config.device)
    rows, info = estimate(preset, [parse_method(m) for m in preset.methods], device)
    return rows, info, device


def paper_dry_run(name: str, scale: str, preset: Preset) -> tuple[list[str], list[MissingFile]]:
    """``paper NAME --dry-run``: the plan's lines and the files it needs that are missing."""
    missing = missing_files(preset.config, preset.methods)  # first: the cheap check that saves a booking
    rows, info, device = _measured(preset)
    return paper_plan_lines(name, scale, preset, rows, info, device), missing


def grid_dry_run(executor: str, grid, cfg: RunConfig, methods: list[str], seeds) -> tuple[list[str], list[MissingFile]]:
    """``--executor X --dry-run``: the grid's jobs with their hours and the files it needs that are missing."""
    missing = missing_files(cfg, methods)
    rows, _, device = _measured(Preset(cfg, tuple(methods), tuple(seeds)))
    return grid_plan_lines(executor, grid, methods, seeds, rows, device), missing
