"""The GPU measurements of issue 12, prepared to run in one go on one GPU (``benchmarks/gpu.sh``):

* ``train``: images/s of an ARD epoch (CIFAR-10 shapes, ResNet-18 student, WRN-34-10 teacher, PGD-10,
  batch 128) for bench in fp32, bf16 and bf16 + torch.compile, and for an official-style loop (DataLoader
  over PIL images, fp32, NCHW, as ARD's main.py) -- benchmarks/train_step.py, each variant in its own
  process under its own time limit (100 s, 200 s with torch.compile), on 5,000 images after a warm-up epoch;
* ``eval``: PGD-20 evaluation images/s on 5,000 images and AutoAttack standard images/s on 500 (fp32), on
  a ResNet-18 adversarially trained for one epoch on the same data (its clean and robust accuracy are
  printed: AutoAttack's cost grows with the images that stay robust);
* ``jobs``: the digits default grid's 9 trainings as local jobs, 1 against 4 per GPU (``--jobs-per-gpu``);
* ``table``: one table of everything, saved under benchmarks/results/ with ``--save``.

Real CIFAR-10 files are used where present ($BENCH_DATA_DIR); otherwise synthetic images of its shape
(speed does not depend on the pixels). ``--smoke`` shrinks every size so that the whole path runs on a CPU
in a minute (CI runs it so): its numbers mean nothing.

    python benchmarks/gpu.py train --out DIR [--smoke]
    python benchmarks/gpu.py eval --out DIR [--smoke]
    python benchmarks/gpu.py jobs --out DIR [--smoke]
    python benchmarks/gpu.py table --out DIR [--save]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent
RESULTS = HERE.parent / "results"
ARD_EPOCH_IMAGES = 50_000                      # one CIFAR-10 epoch
TRAIN_VARIANTS = "reference,bench-fp32,bench-bf16,bench-bf16-compile"


def sizes(smoke: bool) -> dict:
    if smoke:
        return {"train_images": 32, "student": "resnet18-tiny", "teacher": "wrn-10-1", "batch": 16, "limit_s": 120,
                "variants": "reference,bench-fp32", "workers": 0, "eval_images": 16, "aa_images": 2,
                "jobs_per_gpu": 2, "grid": ["--methods", "kd", "--seeds", "0,1", "--epochs", "1",
                                            "--teacher-epochs", "1"]}
    # 5,000 images per epoch: a warm-up epoch, then a timed one (39 batches of 128) per variant
    return {"train_images": 5_000, "student": "resnet18", "teacher": "wrn-34-10", "batch": 128, "limit_s": 100,
            "variants": TRAIN_VARIANTS, "workers": 4, "eval_images": 5_000, "aa_images": 500, "jobs_per_gpu": 4,
            "grid": ["--methods", "gacd,ard,crd"]}


def _device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def train(out: Path, smoke: bool) -> dict:
    """Each variant in its own train_step.py call under its own time limit (the official-style loop first),
    so that one slow variant (a long compile) costs its row, not the table."""
    s = sizes(smoke)
    results = {}
    for variant in s["variants"].split(","):
        cmd = [sys.executable, str(HERE.parent / "train_step.py"), "--dataset", "cifar10", "--synthetic",
               str(s["train_images"]), "--student", s["student"], "--teacher", s["teacher"], "--batch-size",
               str(s["batch"]), "--epochs", "1", "--rounds", "1", "--workers", str(s["workers"]), "--variants",
               variant, "--json", str(out / f"train-{variant}.json")]
        limit = s["limit_s"] * (2 if "compile" in variant else 1)
        if os.environ.get("BENCH_DEADLINE"):  # benchmarks/device/run.sh: leave time for the steps after this one
            limit = min(limit, int(os.environ["BENCH_DEADLINE"]) - time.time() - 230)
            if limit < 20:
                (out / f"train-{variant}.json").write_text(json.dumps({"timed_out_s": 0}))
                print(f"{variant}: no time left before the deadline, left out", file=sys.stderr)
                continue
        try:
            subprocess.run(cmd, cwd=ROOT, check=True, timeout=limit)
            results[variant] = json.loads((out / f"train-{variant}.json").read_text())
        except subprocess.TimeoutExpired:
            (out / f"train-{variant}.json").write_text(json.dumps({"timed_out_s": limit}))
            print(f"{variant}: over its {limit} s limit, left out", file=sys.stderr)
    return results


def evaluation(out: Path, smoke: bool) -> dict:
    """PGD-20 on ``eval_images`` and AutoAttack standard on ``aa_images``: images/s and peak memory."""
    import torch

    sys.path.insert(0, str(HERE.parent))
    from train_step import load_data

    import bench
    from bench.config.schema import AttackConfig, TrainConfig
    from bench.models import build_model
    from bench.train.loop import train_model
    from bench.train.teacher import prepare_model
    from bench.methods import parse_method
    from bench.methods.base import Context

    s = sizes(smoke)
    device = _device()
    data = load_data("cifar10", None, s["eval_images"]).to(device)
    torch.manual_seed(0)
    model = prepare_model(build_model(s["student"], data.num_classes, 3, data.mean, data.std), device)
    ctx = Context(data.num_classes, len(data.y_train), data.y_train, model.feature_dim, None, device, 1)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        train_model(model, parse_method("pgd-at").build(ctx), data, TrainConfig(epochs=1, batch_size=s["batch"]),
                    AttackConfig(eps=8 / 255), None, Path(tmp), device, "auto")
    trained_s = time.perf_counter() - t0
    model.eval()
    rows = {}
    for name, attacks, n in (("pgd20", ["clean", "pgd20"], s["eval_images"]), ("aa", ["clean", "aa"], s["aa_images"])):
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        result = bench.evaluate(model, data, attacks=attacks, n=n, sanity=False, device=device)
        seconds = time.perf_counter() - t0
        rows[name] = {"images": n, "seconds": seconds, "images_per_s": n / seconds, "metrics": result.metrics,
                      "peak_gib": torch.cuda.max_memory_allocated() / 2 ** 30 if device.type == "cuda" else None}
    out_json = {"device": _device_name(), "model": s["student"], "pgd_at_epoch_s": trained_s, **rows}
    (out / "eval.json").write_text(json.dumps(out_json, indent=1))
    return out_json


def jobs(out: Path, smoke: bool) -> dict:
    """The default grid's 9 trainings (evaluation cut to clean accuracy) as local jobs on one GPU: one job,
    then K jobs sharing it; the teacher is trained once beforehand and copied into both results folders.
    Without a GPU (--smoke on a CPU), --jobs 1 against --jobs K."""
    import torch

    s = sizes(smoke)
    gpu = torch.cuda.is_available()
    work = Path(tempfile.mkdtemp(prefix="bench-jobs-"))
    fast = ["--attacks", "clean", "--no-sanity", "--transfer", "none", "--no-structure", "--name", "default",
            *s["grid"]]

    def bench(*argv: str) -> float:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "bench", *argv], cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        return time.perf_counter() - t0
    try:
        bench("run", *fast, "--only-teacher", "--no-report", "--results", str(work / "teacher"))
        walls, runs = {}, None
        for k in (1, s["jobs_per_gpu"]):
            shutil.copytree(work / "teacher" / "teachers", work / f"k{k}" / "teachers")
            per = ["--gpus", "1", "--jobs-per-gpu", str(k)] if gpu else ["--jobs", str(k)]
            walls[k] = bench("run", *fast, "--executor", "local", *per, "--results", str(work / f"k{k}"),
                             "--reports", str(work / f"k{k}-reports"))
            runs = len(list((work / f"k{k}" / "default").glob("*/record.json"))) - 1  # less the teacher row
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {"device": _device_name(), "runs": runs, "per_gpu": gpu, "walls": walls}
    (out / "jobs.json").write_text(json.dumps(result, indent=1))
    return result


def _device_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def table(out: Path) -> str:
    lines = [f"# GPU measurements ({datetime.date.today().isoformat()})", ""]
    runs = {p.stem[len("train-"):]: json.loads(p.read_text()) for p in sorted(out.glob("train-*.json"))}
    done = {v: r for v, r in runs.items() if "medians" in r}
    if runs:
        first = next(iter(done.values()), None)
        args = first["args"] if first else {}
        device = first["rounds"][next(iter(first["rounds"]))][0]["device"] if first else "?"
        ref = done.get("reference", {}).get("medians", {}).get("reference")
        lines += [f"ARD epoch on {device}: CIFAR-10 shapes ({args.get('synthetic')} images timed), {args.get('student')} "
                  f"student, {args.get('teacher')} teacher, PGD-10, batch {args.get('batch_size')}; each variant in "
                  "its own process after a warm-up epoch", "",
                  "| variant | images/s | epoch of 50,000 (s) | vs official-style loop | peak GiB |", "|---|---|---|---|---|"]
        for v in ["reference", *[v for v in runs if v != "reference"]]:
            if v not in runs:
                continue
            if v not in done:
                lines.append(f"| {v} | over its {runs[v]['timed_out_s']} s limit | | | |")
                continue
            ips, peak = done[v]["medians"][v], done[v]["rounds"][v][0].get("peak_gib")
            lines.append(f"| {v} | {ips:.0f} | {ARD_EPOCH_IMAGES / ips:.1f} | "
                         f"{'' if ref is None else f'{ips / ref:.2f}x'} | {'' if peak is None else f'{peak:.1f}'} |")
        lines.append("")
    ev = json.loads((out / "eval.json").read_text()) if (out / "eval.json").exists() else None
    if ev:
        lines += [f"Evaluation on {ev['device']} ({ev['model']} after one epoch of PGD-AT; fp32 attacks):", "",
                  "| attack | images | images/s | accuracy | peak GiB |", "|---|---|---|---|---|"]
        for name in ("pgd20", "aa"):
            r = ev[name]
            acc = ", ".join(f"{k} {100 * v:.1f} %" for k, v in r["metrics"].items())
            peak = "" if r["peak_gib"] is None else f"{r['peak_gib']:.1f}"
            label = "PGD-20" if name == "pgd20" else "AutoAttack standard"
            lines.append(f"| {label} | {r['images']} | {r['images_per_s']:.0f} | {acc} | {peak} |")
        lines.append("")
    jb = json.loads((out / "jobs.json").read_text()) if (out / "jobs.json").exists() else None
    if jb:
        (k1, w1), (kk, wk) = sorted((int(k), v) for k, v in jb["walls"].items())
        unit = "--jobs-per-gpu" if jb["per_gpu"] else "--jobs (CPU)"
        lines += [f"Digits default grid, {jb['runs']} trainings as local jobs on {jb['device']}: {unit} {k1}: "
                  f"{w1:.0f} s; {unit} {kk}: {wk:.0f} s; throughput gain {w1 / wk:.2f}x", ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=["train", "eval", "jobs", "table"])
    ap.add_argument("--out", required=True, help="folder for the steps' JSON")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, any device: checks the path only")
    ap.add_argument("--save", action="store_true", help="table: also write it to benchmarks/results/")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.step == "train":
        train(out, args.smoke)
    elif args.step == "eval":
        evaluation(out, args.smoke)
    elif args.step == "jobs":
        jobs(out, args.smoke)
    else:
        text = table(out)
        print(text)
        if args.save:
            RESULTS.mkdir(exist_ok=True)
            name = _device_name().replace(" ", "-")
            path = RESULTS / f"gpu-{datetime.date.today().isoformat()}-{name}.md"
            path.write_text(text + "\n")
            print(f"saved {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
