"""Do the method pins catch what matters? A mutation sweep of tests/methods/test_pins.py.

For every registered method, each change below runs through the pinned float64 trajectory and is
compared with the method's stored pins by the check the pin test uses (test_pins.first_mismatches):

* every numeric option x0.5 and x2 (ints rounded down; a default of 0 is tried at 1 instead);
* every bool option flipped, every other choice of a Literal option;
* every declared gradient site (``Method.gradient_sites``) turned the other way: detached where
  the gradient flows, let through where it is stopped;
* the declared attack (``Method.inner``): the student's batch-norm mode flipped, every other start.

An option the defaults leave inert is changed on the pinned variant where it acts (``WHERE``).
Every change must fail the pins or be listed in ``NO_OPS`` with the reason; a listed no-op that the
pins do catch is reported too (the list is stale). A value the option refuses is reported invalid.

    python benchmarks/mutation_sweep.py           # the table, then one summary line
    python benchmarks/mutation_sweep.py --save    # and writes benchmarks/results/mutation_sweep.txt

Exit status 1 when a change is undetected and not listed, or listed and detected. Seconds on a
CPU; tests/methods/test_mutations.py runs it and compares it with the committed table.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args, get_origin, get_type_hints

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "methods"))
sys.path.insert(0, str(ROOT))

import test_pins  # noqa: E402

from bench.common.errors import BenchError  # noqa: E402
from bench.methods import METHODS, parse_method  # noqa: E402
from bench.methods.base import InnerMax, option_fields, variant_label  # noqa: E402

RESULT = ROOT / "benchmarks" / "results" / "mutation_sweep.txt"

# (method, option) -> the pinned variant to change it on: the defaults leave the option inert
WHERE = {
    ("gacd", "power"): "gacd:reweight=teacher-prob-pow",   # that reweighting's exponent only
    ("gacd", "k"): "gacd:estimator=nce:k=32",   # NCE's negatives; 4096 > what 64 samples allow
    ("gacd", "momentum"): "gacd:estimator=nce",   # NCE's memory bank only
    ("crd", "k"): "crd:k=32",                     # 16384 negatives > what 64 samples allow
}

# (method, change) -> why the pins cannot see it; every entry must stay undetected
NO_OPS: dict[tuple[str, str], str] = {}

OUTCOMES = ("detected", "no-op", "invalid", "UNDETECTED", "STALE no-op")


@dataclass(frozen=True)
class Mutation:
    method: str
    base: str                       # the pinned variant it changes
    change: str                     # what, in words
    label: str = ""                 # the variant to run ("": the base, for a site or the attack)
    flip: frozenset = frozenset()   # gradient sites turned the other way
    inner: tuple = ()               # (field, value) pairs replaced in the method's InnerMax
    invalid: str = ""               # why the option refused the value


# --- the changes ------------------------------------------------------------------------------

def _scaled(value, hint) -> list:
    """x0.5 and x2 of a number (ints rounded down); a zero tried at 1."""
    if value == 0:
        return [hint(1)]
    return [int(value * f) if hint is int else value * f for f in (0.5, 2.0)]


def _alternatives(value, hint) -> list:
    if hint is bool:
        return [not value]
    if get_origin(hint) is Literal:
        return [c for c in get_args(hint) if c != value]
    if hint in (int, float):
        return [v for v in _scaled(value, hint) if v != value]
    return []


def _shown(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _option_mutation(name: str, base: str, field: str, value) -> Mutation:
    options = parse_method(base).options
    change = f"{field}: {_shown(getattr(options, field))} -> {_shown(value)}"
    try:
        label = variant_label(name, dataclasses.replace(options, **{field: value}))
        parse_method(label)   # the option's own checks, as a user's label meets them
    except (BenchError, ValueError) as err:
        return Mutation(name, base, change, invalid=str(err))
    return Mutation(name, base, change, label)


def _site_mutations(name: str, cls) -> list[Mutation]:
    out = []
    for site, what in sorted(cls.gradient_sites.items()):
        kind = what.split(":")[0]
        turned = "detached" if kind == "flow" else "let through"
        out.append(Mutation(name, name, f"site {site}: {kind} -> {turned}", flip=frozenset({site})))
    return out


def _inner_mutations(name: str, cls) -> list[Mutation]:
    if cls.inner is None:
        return []
    mode, start = cls.inner.student_mode, cls.inner.start
    other = "eval" if mode == "train" else "train"
    out = [Mutation(name, name, f"attack student_mode: {mode} -> {other}",
                    inner=(("student_mode", other),))]
    for new in get_args(get_type_hints(InnerMax)["start"]):
        if new != start:
            out.append(Mutation(name, name, f"attack start: {start} -> {new}",
                                inner=(("start", new),)))
    return out


def mutations(names: list[str] | None = None) -> list[Mutation]:
    out = []
    for name in names or sorted(METHODS.names()):
        cls = METHODS.get(name)
        for field, hint in option_fields(cls.Options).items():
            base = WHERE.get((name, field), name)
            value = getattr(parse_method(base).options, field)
            out += [_option_mutation(name, base, field, v) for v in _alternatives(value, hint)]
        out += _site_mutations(name, cls) + _inner_mutations(name, cls)
    return out


# --- the verdicts -----------------------------------------------------------------------------

@contextlib.contextmanager
def _declared(cls, changes: tuple):
    """The class's InnerMax with ``changes`` for the duration (its own attribute or its base's)."""
    if not changes:
        yield
        return
    own, old = "inner" in vars(cls), cls.inner
    cls.inner = dataclasses.replace(old, **dict(changes))
    try:
        yield
    finally:
        if own:
            cls.inner = old
        else:
            del cls.inner


def _moved(keys: list[str]) -> str:
    """The kinds of pinned numbers that moved in the first step that moved: "e2: grad (3 keys)"."""
    if keys[0].startswith("error"):
        return keys[0]
    kinds = sorted({k.split(".")[1] if k.split(".")[1] != "end" else "end_epoch" for k in keys})
    return f"{keys[0].split('.')[0]}: {', '.join(kinds)} ({len(keys)} keys)"


def verdict(m: Mutation, stored: dict) -> tuple[str, str]:
    """(outcome, detail); the outcome is one of OUTCOMES."""
    if m.invalid:
        return "invalid", m.invalid
    try:
        with _declared(METHODS.get(m.method), m.inner):
            bad = test_pins.first_mismatches(m.label or m.base, stored["methods"][m.base], m.flip)
    except Exception as err:   # the pin test fails on it too
        first = (str(err).splitlines() or [""])[0][:60]
        bad = [f"error: {type(err).__name__}: {first}"]
    reason = NO_OPS.get((m.method, m.change))
    if bad:
        return ("STALE no-op" if reason else "detected"), _moved(bad)
    return ("no-op" if reason else "UNDETECTED"), reason or "every pinned number unchanged"


def sweep(names: list[str] | None = None) -> list[tuple[Mutation, str, str]]:
    stored = test_pins.load()
    return [(m, *verdict(m, stored)) for m in mutations(names)]


def failures(rows) -> list:
    return [(m, o, d) for m, o, d in rows if o in ("UNDETECTED", "STALE no-op")]


# --- the table --------------------------------------------------------------------------------

def row_head(m: Mutation, outcome: str) -> str:
    return f"{m.method:<11} {m.base:<31} {m.change:<42} {outcome:<10}"


def summary(rows) -> str:
    n = {k: sum(o == k for _, o, _ in rows) for k in OUTCOMES}
    return (f"{len(rows)} changes: {n['detected']} detected, {n['no-op']} listed no-ops, "
            f"{n['invalid']} invalid values, {n['UNDETECTED']} undetected, "
            f"{n['STALE no-op']} listed no-ops detected")


def report(rows) -> str:
    head = (f"# python benchmarks/mutation_sweep.py: each change against the method's float64 pins"
            f" (tests/methods/test_pins.py)\n"
            f"{'method':<11} {'on':<31} {'change':<42} {'outcome':<10} what moved (first step)")
    lines = [f"{row_head(m, outcome)} {detail}" for m, outcome, detail in rows]
    return "\n".join([head, *lines, summary(rows)]) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--save", action="store_true", help=f"write {RESULT.relative_to(ROOT)}")
    parser.add_argument("--methods", help="comma-separated subset (default: every method)")
    args = parser.parse_args(argv)
    rows = sweep(args.methods.split(",") if args.methods else None)
    text = report(rows)
    print(text, end="")
    if args.save:
        RESULT.write_text(text)
    return 1 if failures(rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
