"""Every file format bench reads, and the command line, under generated hostile input (tests/fuzz/hostile.py):
each case is accepted or refused in one line, never a traceback. CI tries BENCH_FUZZ cases per format
(default 40); `BENCH_FUZZ=2000 python -m pytest tests/fuzz` or benchmarks/fuzz_inputs.py try more."""
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import hostile  # noqa: E402

N = int(os.environ.get("BENCH_FUZZ", "40"))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(hostile.FORMATS))
def test_generated_input_is_accepted_or_refused_in_one_line(name):
    tried, outcomes, failures = hostile.run_format(name, N)
    assert failures == [], failures
    assert tried >= N // 2 and sum(outcomes.values()) == tried


def test_the_harness_sees_a_traceback_and_a_second_line(tmp_path, monkeypatch):
    """A loader that raises something other than BenchError, and a command that prints two lines, fail."""
    import hypothesis.strategies as st

    monkeypatch.setitem(hostile.FORMATS, "planted", (st.integers(), lambda doc, folder: hostile._loader(
        lambda: [][doc])))
    tried, _, failures = hostile.run_format("planted", 5)
    assert failures and "IndexError" in failures[0]
    with pytest.raises(AssertionError, match="stderr"):
        monkeypatch.setattr(hostile, "main", lambda argv: print("a\nb", file=sys.stderr) or 2)
        hostile._cli(["run"], tmp_path)
    with pytest.raises(AssertionError, match="wrote into"):
        monkeypatch.setattr(hostile, "main", lambda argv: (Path("x").write_text("") and 0) or 0)
        hostile._cli(["run"], tmp_path)
