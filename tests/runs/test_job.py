"""The checked job and its file (bench/runs/job.py): planned once, written once, read back as written."""
from dataclasses import replace

import pytest

from bench.common.errors import BenchError
from bench.config.resolve import Flags, resolve
from bench.runs import job as jobs


@pytest.fixture(scope="module")
def resolved():
    return resolve(preset="digits", flags=Flags(methods=("kd",), seeds=(0,)))


def test_a_written_job_reads_back_as_planned(resolved, tmp_path):
    job = jobs.plan(resolved, command="python -m bench run --methods kd --seeds 0")
    assert (job.methods, job.seeds, job.runset) == (("kd",), (0,), "digits")
    path = job.write(tmp_path)
    assert path == tmp_path / "digits" / jobs.JOBS_DIR / f"{job.id()}.yaml"
    back = jobs.read(path)
    assert back.config == job.config == resolved.config
    assert (back.methods, back.seeds, back.runset) == (job.methods, job.seeds, job.runset)
    assert (back.command, back.compare_to, back.methods_from) == (job.command, None, ())
    assert back == job


def test_a_changed_config_survives_the_file(resolved, tmp_path):
    cfg = replace(resolved.config, train=replace(resolved.config.train, epochs=3, lr=0.02),
                  eval=replace(resolved.config.eval, n=40, attacks=("clean", "fgsm")))
    job = jobs.Job(cfg, ("ard", "kd:t=2"), (1, 2), "mine")
    back = jobs.read(job.write(tmp_path))
    assert back.config == cfg and back.config != resolved.config
    assert (back.methods, back.seeds, back.runset) == (("ard", "kd:t=2"), (1, 2), "mine")


def test_the_same_job_is_the_same_file(resolved, tmp_path):
    first = jobs.plan(resolved)
    again = jobs.plan(resolve(preset="digits", flags=Flags(methods=("kd",), seeds=(0,))))
    assert first.id() == again.id() and first.write(tmp_path) == again.write(tmp_path)
    assert len(list((tmp_path / "digits" / jobs.JOBS_DIR).iterdir())) == 1
    other = jobs.plan(resolve(preset="digits", flags=Flags(methods=("kd",), seeds=(1,))))
    assert other.id() != first.id() and other.write(tmp_path) != first.write(tmp_path)
    more = jobs.plan(resolve(preset="digits", flags=Flags(methods=("kd",), seeds=(0,), epochs=2)))
    assert more.id() != first.id()  # the config is part of the job's id


@pytest.mark.parametrize("damage", [
    lambda text: text.replace("\njob:", "\njob: [", 1),   # not YAML any more
    lambda text: "- a list\n- of things\n",               # YAML, but not a job
    lambda text: text.replace("\njob:", "\njab:", 1),     # the job's head is gone
    lambda text: "",                                       # emptied
], ids=["not-yaml", "a-list", "no-head", "empty"])
def test_a_damaged_job_file_is_refused(resolved, tmp_path, damage):
    path = jobs.plan(resolved).write(tmp_path)
    text = path.read_text()
    assert damage(text) != text
    path.write_text(damage(text))
    with pytest.raises(BenchError, match="damaged"):
        jobs.read(path)


def test_a_missing_job_file_is_refused(tmp_path):
    with pytest.raises(BenchError, match="no job file"):
        jobs.read(tmp_path / "nothing.yaml")


def test_validate_refuses_unknown_names(resolved):
    jobs.validate(resolved.config, resolved.methods)  # the resolved run itself is fine
    with pytest.raises(BenchError, match="unknown method 'no-such-method'"):
        jobs.validate(resolved.config, ("kd", "no-such-method"))
    with pytest.raises(BenchError, match="unknown architecture 'no-such-arch'"):
        jobs.validate(replace(resolved.config, student_arch="no-such-arch"), resolved.methods)
    with pytest.raises(BenchError, match="unknown architecture 'no-such-arch'"):
        jobs.validate(replace(resolved.config, teacher=replace(resolved.config.teacher, arch="no-such-arch")),
                      resolved.methods)
    with pytest.raises(BenchError, match="unknown method"):
        jobs.plan(replace(resolved, methods=("no-such-method",)))
