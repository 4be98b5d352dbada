"""The mutation sweep (benchmarks/mutation_sweep.py) as a test: every option change, flipped
gradient site and changed attack declaration of every method fails the float64 pins (test_pins.py)
or is a listed no-op; the committed table is the sweep's; every gradient site the code uses is
declared and reached; and the sweep itself can fail (an undetected change, a stale no-op, a refused
value)."""
import sys
from pathlib import Path

import pytest
import test_pins

from bench.methods import METHODS
from bench.methods.base import option_fields

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import mutation_sweep as sweep  # noqa: E402


@pytest.fixture(scope="module")
def rows():
    return sweep.sweep()


@pytest.mark.slow
def test_every_change_fails_the_pins_or_is_a_listed_no_op(rows):
    assert [(m.method, m.change, o, detail) for m, o, detail in sweep.failures(rows)] == []


def test_the_committed_sweep_is_this_one(rows):
    """Row by row (method, variant, change, outcome) and the summary line; what moved is shown, not
    compared (which pinned numbers pass the tolerance may differ by a key on another CPU)."""
    lines = sweep.RESULT.read_text().splitlines()
    hint = "run python benchmarks/mutation_sweep.py --save"
    assert len(lines) == len(rows) + 3, hint
    for line, (m, outcome, _) in zip(lines[2:], rows):
        assert line.startswith(sweep.row_head(m, outcome)), hint
    assert lines[-1] == sweep.summary(rows), hint


def test_the_sweep_covers_every_option_site_and_attack():
    changes = {}
    for m in sweep.mutations():
        changes.setdefault(m.method, []).append(m.change)
    for name in METHODS.names():
        cls = METHODS.get(name)
        wanted = [f"{field}:" for field in option_fields(cls.Options)]
        wanted += [f"site {site}:" for site in cls.gradient_sites]
        wanted += ["attack student_mode:"] if cls.inner is not None else []
        for prefix in wanted:
            assert any(c.startswith(prefix) for c in changes.get(name, [])), (name, prefix)


class _Reached(frozenset):
    """A ``Method.flipped`` that flips nothing and records every site the code asks about."""

    def __contains__(self, site):
        self.seen.add(site)
        return False


@pytest.mark.parametrize("name", sorted(METHODS.names()))
def test_the_code_uses_exactly_the_declared_gradient_sites(name):
    """A site the code names but does not declare would never be flipped by the sweep; a declared
    one the fixture never reaches would be flipped for nothing."""
    reached = _Reached()
    reached.seen = set()
    test_pins.record(name, flip=reached)
    assert reached.seen == set(METHODS.get(name).gradient_sites)


def test_the_sweep_can_fail(monkeypatch):
    """A change the pins cannot see is UNDETECTED unless listed; a listed one they do see is STALE;
    a value the option refuses is reported invalid; the attack declaration is restored after."""
    stored = test_pins.load()
    unseen = sweep.Mutation("ard", "ard", "site nowhere: flow -> detached",
                            flip=frozenset({"nowhere"}))
    assert sweep.verdict(unseen, stored)[0] == "UNDETECTED"
    monkeypatch.setitem(sweep.NO_OPS, ("ard", unseen.change), "no code reads this site")
    assert sweep.verdict(unseen, stored) == ("no-op", "no code reads this site")
    seen = sweep.Mutation("ard", "ard", "t: 30 -> 15", "ard:t=15.0")
    monkeypatch.setitem(sweep.NO_OPS, ("ard", seen.change), "claimed inert")
    assert sweep.verdict(seen, stored)[0] == "STALE no-op"
    assert sweep.failures([(unseen, "UNDETECTED", ""), (seen, "STALE no-op", "")]) != []
    refused = sweep._option_mutation("mtard", "mtard", "w_nat0", 2.0)
    assert refused.invalid and sweep.verdict(refused, stored)[0] == "invalid"
    inner = METHODS.get("fair-rslad").inner
    flipped = sweep.Mutation("fair-rslad", "fair-rslad", "attack",
                             inner=(("student_mode", "train"),))
    assert sweep.verdict(flipped, stored)[0] == "detected"
    cls = METHODS.get("fair-rslad")
    assert cls.inner is inner and "inner" not in vars(cls)
