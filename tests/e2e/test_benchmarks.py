"""Issue 12 item 4: the prepared GPU benchmark runs its path at toy sizes on any device (the train and
evaluation steps and the table; its jobs step is the local executor's, tested in test_distributed)."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def gpu(*argv):
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), *argv], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def test_gpu_benchmark_smoke_path_and_table(tmp_path):
    for step in ("train", "eval"):
        done = gpu(step, "--out", str(tmp_path), "--smoke")
        assert done.returncode == 0, done.stderr[-3000:]
    (tmp_path / "train-bench-bf16-compile.json").write_text('{"timed_out_s": 200}')  # a variant over its limit
    table = gpu("table", "--out", str(tmp_path))
    assert table.returncode == 0, table.stderr[-3000:]
    lines = table.stdout.splitlines()
    rows = {line.split("|")[1].strip(): line for line in lines if line.startswith("| ") and "---" not in line}
    assert {"reference", "bench-fp32", "PGD-20", "AutoAttack standard"} <= set(rows)
    assert rows["bench-fp32"].split("|")[4].strip().endswith("x")        # the ratio to the official-style loop
    assert "over its 200 s limit" in rows["bench-bf16-compile"]
    assert float(rows["PGD-20"].split("|")[3]) > 0                       # images/s
    assert not list((ROOT / "benchmarks" / "results").glob("gpu-*cpu*"))  # nothing saved without --save


def test_device_preparation_fails_loudly_without_the_project(tmp_path):
    """benchmarks/device/prepare.sh with an interpreter that lacks the project's dependencies stops with a
    non-zero status and one line saying what is missing, before it touches the last prepared carry."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True)
    root = Path(__file__).resolve().parents[2]
    carry = root / ".whl"
    before = sorted(p.name for p in carry.iterdir()) if carry.is_dir() else None
    out = subprocess.run(["bash", "benchmarks/device/prepare.sh"], cwd=root, capture_output=True, text=True,
                         env={**os.environ, "PYTHON": str(tmp_path / "bare" / "bin" / "python")}, timeout=120)
    assert out.returncode != 0
    assert "is not installed here" in out.stderr and "device call" not in out.stdout
    assert (sorted(p.name for p in carry.iterdir()) if carry.is_dir() else None) == before
