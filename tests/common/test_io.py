"""Atomic writes leave what a plain write would: the content, and the mode the umask gives."""
import os
import stat

import pytest

from bench.common.io import atomic_write_json, atomic_write_text


def test_an_atomic_write_has_the_mode_a_plain_write_would(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    if stat.S_IMODE(plain.stat().st_mode) & 0o044 == 0:
        pytest.skip("this umask hides files from group and others anyway")
    atomic_write_text(tmp_path / "report.md", "x")
    atomic_write_json(tmp_path / "record.json", {"a": 1})
    for name in ("report.md", "record.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == stat.S_IMODE(plain.stat().st_mode), name
    assert sorted(os.listdir(tmp_path)) == ["plain.txt", "record.json", "report.md"]  # no temporary left
