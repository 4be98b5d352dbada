"""Executors (bench/runs/executors.py): Slurm's time formats, --sbatch lines, and the grid's job commands."""
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench.common.errors import BenchError
from bench.runs.executors import command, make_grid, parse_sbatch, parse_time


@pytest.mark.parametrize("text,minutes", [
    ("30", 30), (" 45 ", 45),                       # MM
    ("01:30:00", 90), ("2:00:00", 120),            # HH:MM:SS
    ("00:00:30", 1), ("01:30:01", 91),             # a part minute rounds up, never to 0
    ("10:30", 11),                                 # MM:SS
    ("1-12:00", 36 * 60), ("2-00:30", 2 * 1440 + 30),  # D-HH:MM
    ("1-12", 36 * 60),                             # D-HH
    ("1-00:00:30", 1441),                          # D-HH:MM:SS
])
def test_parse_time_reads_slurm_formats(text, minutes):
    assert parse_time(text) == minutes


@pytest.mark.parametrize("text", ["", "1h", "1:2:3:4", "-5", "1-", "a-01:00"])
def test_parse_time_refuses_other_text(text):
    with pytest.raises(BenchError, match="not a Slurm time"):
        parse_time(text)


def test_parse_sbatch():
    assert parse_sbatch(None) == {} and parse_sbatch([]) == {}
    assert parse_sbatch(["constraint=a100", "--mail-type=END", "exclusive", " nodelist=n[1-2] "]) == \
        {"constraint": "a100", "mail-type": "END", "exclusive": "", "nodelist": "n[1-2]"}
    assert parse_sbatch(["comment=a=b"]) == {"comment": "a=b"}  # the first = splits
    for bad in ("=a100", "", "--"):
        with pytest.raises(BenchError, match="key=value"):
            parse_sbatch([bad])


def test_make_grid_commands():
    job = SimpleNamespace(methods=("ard", "kd:t=2"), seeds=(0, 3), runset="rs")
    grid = make_grid(Path("/r/rs/.jobs/abc.yaml"), job, Path("/r"), Path("/p"))
    file = "/r/rs/.jobs/abc.yaml"
    assert grid.teacher == ["job", file, "--teacher"]
    assert grid.runs == [("ard", 0, ["job", file, "--method", "ard", "--seed", "0"]),
                         ("kd:t=2", 0, ["job", file, "--method", "kd:t=2", "--seed", "0"]),
                         ("ard", 3, ["job", file, "--method", "ard", "--seed", "3"]),
                         ("kd:t=2", 3, ["job", file, "--method", "kd:t=2", "--seed", "3"])]
    assert grid.report == ["job", file, "--report", "--reports", "/p"]
    assert (grid.runset, grid.results) == ("rs", Path("/r"))
    assert command(grid.runs[1][2]) == f"python -m bench job {file} --method kd:t=2 --seed 0"


def test_make_grid_passes_tensorboard_to_every_job():
    job = SimpleNamespace(methods=("ard",), seeds=(1,), runset="rs")
    grid = make_grid("j.yaml", job, "res", "rep", tensorboard=Path("tb"))
    base = ["job", "j.yaml", "--tensorboard", "tb"]
    assert grid.teacher == [*base, "--teacher"]
    assert grid.runs == [("ard", 1, [*base, "--method", "ard", "--seed", "1"])]
    assert grid.report == [*base, "--report", "--reports", "rep"]
    assert grid.results == Path("res")
