"""A run-set's manifest (bench/records/runset.py): merged by every command, keyed by (role, method, seed),
refused in one line when damaged unless the command is about to rebuild it."""
import json

import pytest

from bench.common.errors import BenchError
from bench.records.runset import RUNSET_FILE, Entry, entries, merge_manifest, read_manifest


def teacher(run_id="teacher-t0", seed=None):
    return Entry("teacher", "pgd-at", seed, run_id, "t0")


def student(method, seed, run_id=None):
    return Entry("student", method, seed, run_id or f"{method}-{seed}", "t0")


def test_no_manifest_yet_is_empty(tmp_path):
    assert read_manifest(tmp_path) == {}
    assert read_manifest(tmp_path / "not-made-yet") == {}


def test_two_merges_keep_both_commands_entries(tmp_path):
    first = [teacher(), student("ard", 0), student("ard", 1)]
    merge_manifest(tmp_path, first, {"command": "bench run --methods ard", "methods": ["ard"]})
    second = [teacher(), student("kd", 0)]
    manifest = merge_manifest(tmp_path, second, {"command": "bench run --methods kd", "methods": ["kd"]})
    assert manifest == read_manifest(tmp_path)  # what it returns is what it wrote
    assert entries(manifest) == [teacher(), student("ard", 0), student("ard", 1), student("kd", 0)]
    assert manifest["runs"] == ["teacher-t0", "ard-0", "ard-1", "kd-0"]
    assert manifest["methods"] == ["ard", "kd"]
    assert manifest["commands"] == ["bench run --methods ard", "bench run --methods kd"]
    assert manifest["command"] == "bench run --methods kd"


def test_a_changed_entry_replaces_its_own_by_key(tmp_path):
    merge_manifest(tmp_path, [teacher(), student("ard", 0), student("kd", 0)],
                   {"command": "a", "methods": ["ard", "kd"]})
    changed = student("ard", 0, run_id="ard-newcode")  # same (role, method, seed), new code or config
    manifest = merge_manifest(tmp_path, [changed], {"command": "b", "methods": ["ard"]})
    assert entries(manifest) == [teacher(), changed, student("kd", 0)]  # replaced in place, others untouched
    assert manifest["runs"] == ["teacher-t0", "ard-newcode", "kd-0"]
    assert manifest["commands"] == ["a", "b"]
    # the same entries again change nothing: a job running its slice of the grid does not record its command
    again = merge_manifest(tmp_path, [changed], {"command": "c", "methods": ["ard"]})
    assert entries(again) == entries(manifest) and again["commands"] == ["a", "b"]


def test_teacher_rows_are_keyed_by_seed_not_by_label(tmp_path):
    merge_manifest(tmp_path, [teacher("teacher-a", seed=0), teacher("teacher-b", seed=1)], {})
    manifest = merge_manifest(tmp_path, [Entry("teacher", "trades", 0, "teacher-c", "t1")], {})
    assert [e.run_id for e in entries(manifest)] == ["teacher-c", "teacher-b"]


@pytest.mark.parametrize("damage", ["{not json", "[1, 2]", '{"entries": [{"role": "student"}]}',
                                    '{"entries": 5}', b"\xff\xfe\x00"])
def test_a_damaged_manifest_is_refused_unless_repairing(tmp_path, damage, capsys):
    path = tmp_path / RUNSET_FILE
    path.write_bytes(damage if isinstance(damage, bytes) else damage.encode())
    with pytest.raises(BenchError, match="damaged"):
        read_manifest(tmp_path)
    assert read_manifest(tmp_path, repair=True) == {}
    assert "was damaged" in capsys.readouterr().err


def test_merging_into_a_damaged_manifest_rebuilds_it(tmp_path, capsys):
    (tmp_path / RUNSET_FILE).write_text("{trunc")
    manifest = merge_manifest(tmp_path, [student("ard", 0)], {"command": "a", "methods": ["ard"]})
    assert entries(manifest) == [student("ard", 0)]
    assert json.loads((tmp_path / RUNSET_FILE).read_text()) == manifest
