"""The Python API (bench.run), user methods (bench.register_method, --methods-from, entry points) and
their code digests."""
import importlib.metadata
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from dataclasses import asdict, replace

import pytest

import bench
from bench import methods
from bench.cli.main import main
from bench.common.errors import BenchError
from bench.common.provenance import method_file, train_digest
from bench.config import files as configfile
from bench.runs.identity import student_run_id
from bench.records.record import RECORD, RunRecord
from bench.methods import METHODS, Method, parse_method

USER_METHODS = '''
import torch.nn.functional as F

import bench
from bench.methods.base import Method


@bench.register_method
class CleanCE(Method):
    name = "user-ce"
    citation = "a test method defined outside the package"
    summary = "CE(S(x), y) on clean inputs"

    def losses(self, batch, x_adv):
        return {"ce": F.cross_entropy(batch.student(batch.x), batch.y)}
'''

# the smallest run that still trains a teacher and a student and attacks both
TINY = {"train.epochs": 1, "teacher.train.epochs": 1, "attack.steps": 1, "data.train_limit": 128,
        "eval.attacks": ["clean", "fgsm"], "eval.curve_eps": [], "eval.n": 64, "eval.sanity.enabled": False,
        "probe.targets": [], "structure": False}


@pytest.fixture
def registry(monkeypatch):
    """The method registry as it is now, restored after the test (user methods do not leak)."""
    monkeypatch.setattr(METHODS, "_items", dict(METHODS._items))
    monkeypatch.setattr(methods, "_LOADED", {})
    return METHODS


def _write(path, text):
    path.write_text(textwrap.dedent(text))
    return path


def test_user_method_runs_from_the_cli_and_from_python(tmp_path, capsys, registry):
    (tmp_path / "user").mkdir()
    user = _write(tmp_path / "user" / "my_methods.py", USER_METHODS)
    res, rep = tmp_path / "results", tmp_path / "reports"
    dotted = [f"{k}={configfile._scalar(v)}" for k, v in TINY.items()]
    assert "user-ce" not in METHODS
    code = main(["run", "--methods-from", str(user), "--methods", "user-ce", "--seeds", "0", "--name", "u",
                 "--results", str(res), "--reports", str(rep), *dotted])
    out = capsys.readouterr().out
    assert code == 0
    assert any(line.split()[:1] == ["user-ce"] for line in out.splitlines())  # the run's ranked summary
    (run_dir,) = [p.parent for p in (res / "u").glob(f"user-ce-*/{RECORD}")]
    rec = RunRecord.load(run_dir / RECORD)
    assert rec.method == "user-ce" and rec.role == "student" and rec.config["train"]["epochs"] == 1
    # its training code digest covers the user's file
    cls = METHODS.get("user-ce")
    assert method_file(cls) == str(user.resolve())
    assert rec.code["train"] == train_digest(cls)
    # the run folder stores its resolved config; read back, it is the record's config
    _, cfg, grid = configfile.load(None, run_dir / "config.yaml")
    assert grid.seeds == (0,) and cfg.train.epochs == 1 and cfg.data.train_limit == 128
    assert json.loads(json.dumps(asdict(replace(cfg, seed=grid.seeds[0])))) == rec.config
    assert student_run_id(parse_method("user-ce"), replace(cfg, seed=0), rec.teacher_id) == run_dir.name

    # the same run from Python: same code path, so the same run id, reused
    result = bench.run(methods=["user-ce"], seeds=[0], name="u", results=res, reports=rep, report=False,
                       overrides={k: v for k, v in TINY.items() if k != "structure"}, structure=False)
    assert "reusing finished run" in capsys.readouterr().err
    assert [r.run_id for r in result.students] == [run_dir.name]
    assert result.report is None and result.results == res / "u"
    assert list(result.table["Method"]) == ["teacher (pgd-at, cnn-wide)", "user-ce"]
    assert result.summary.loc[1, "Clean mean"] == pytest.approx(rec.metrics["clean"])
    assert "--methods-from" in result.command and "train.epochs=1" in result.command


def test_editing_a_user_method_file_changes_its_digest(tmp_path, registry):
    user = _write(tmp_path / "edited.py", USER_METHODS)
    methods.load_file(user)
    cls = METHODS.get("user-ce")
    before = train_digest(cls)
    user.write_text(USER_METHODS.replace('"ce": F.cross_entropy', '"ce": 0.5 * F.cross_entropy'))
    assert train_digest(cls) != before  # an edited method file retrains (a new run id)
    user.write_text(USER_METHODS)
    assert train_digest(cls) == before
    assert train_digest(METHODS.get("ard")) != before


def test_duplicate_registration_raises_and_lists_names(registry):
    class Impostor(Method):
        name = "ard"

    with pytest.raises(BenchError, match=r"method 'ard' is already registered .*registered: .*ard.*gacd"):
        bench.register_method(Impostor)
    assert METHODS.get("ard") is not Impostor
    kd = METHODS.get("kd")
    assert bench.register_method(kd) is kd  # the same class again (a re-run cell, a reload) is not a clash
    with pytest.raises(BenchError, match="not a subclass of bench.methods.base.Method"):
        bench.register_method(dict)


def test_entry_points_are_loaded_when_the_registry_is_first_read(tmp_path, monkeypatch, capsys, registry):
    _write(tmp_path / "ep_methods.py", '''
        import torch.nn.functional as F
        from bench.methods.base import Method

        class EntryCE(Method):
            name = "ep-ce"
            citation = "an installed plug-in"
            summary = "CE on clean inputs"

            def losses(self, batch, x_adv):
                return {"ce": F.cross_entropy(batch.student(batch.x), batch.y)}
        ''')
    monkeypatch.syspath_prepend(str(tmp_path))
    groups = []

    def entry_points(group):
        groups.append(group)
        return [importlib.metadata.EntryPoint("ep-ce", "ep_methods:EntryCE", group)] if group == "bench.methods" else []

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    monkeypatch.setattr(METHODS, "_entry_points_loaded", False)
    assert parse_method("ep-ce").cls.__name__ == "EntryCE"
    assert groups == ["bench.methods"]
    assert main(["list"]) == 0
    assert "ep-ce" in capsys.readouterr().out

    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group: [importlib.metadata.EntryPoint("broken", "no_such_module_xyz:M", group)])
    monkeypatch.setattr(METHODS, "_entry_points_loaded", False)
    with pytest.raises(BenchError, match=r"entry point broken = no_such_module_xyz:M \(bench.methods\) failed to load"):
        METHODS.names()


@pytest.mark.parametrize("body,pattern", [
    (None, "no such file"),
    ("x = 1\ny = 1 / 0\n", "(line 2): ZeroDivisionError: division by zero"),
    (USER_METHODS.replace('"user-ce"', '"gacd"'), "method 'gacd' is already registered"),
])
def test_methods_from_errors_are_one_line(tmp_path, capsys, registry, body, pattern):
    path = tmp_path / "bad.py"
    if body is not None:
        path.write_text(body)
    assert main(["list", "--methods-from", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and pattern in err[0], err


def test_import_bench_is_cheap_and_lazy():
    # submodules load on first use (bench.eval.protocol stays a module; bench.evaluate will be a function)
    code = ("import sys, bench; heavy = [m for m in ('torch', 'pandas', 'bench.api') if m in sys.modules]; "
            "print(heavy, bench.config.__name__, 'register_method' in dir(bench))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[] bench.config True", out.stdout + out.stderr
    assert callable(bench.run) and bench.RunResult.__module__ == "bench.api"
    with pytest.raises(AttributeError):
        bench.no_such_attribute


def test_a_method_defined_in_a_notebook_cell_has_a_digest_of_its_source(monkeypatch, registry):
    """A notebook's __main__ has no file; IPython keeps each cell's text in linecache."""
    import linecache
    import types

    def cell(body: str, n: int):
        name = f"<ipython-input-{n}>"
        linecache.cache[name] = (len(body), None, body.splitlines(True), name)
        module = types.ModuleType("fake_notebook_main")  # no __file__, as in a notebook
        monkeypatch.setitem(sys.modules, "fake_notebook_main", module)
        exec(compile(body, name, "exec"), module.__dict__)
        return module.CellCE

    body = textwrap.dedent('''
        from dataclasses import dataclass
        import torch.nn.functional as F
        from bench.methods.base import Method

        class CellCE(Method):
            name = "cell-ce"

            @dataclass(frozen=True)
            class Options:
                alpha: float = 1.0

            def losses(self, batch, x_adv):
                return {"ce": self.options.alpha * F.cross_entropy(batch.student(batch.x), batch.y)}
        ''')
    first = cell(body, 1)
    assert method_file(first) == ""
    digest = train_digest(first)
    assert train_digest(cell(body, 2)) == digest  # the same code, cell run again
    assert train_digest(cell(body.replace("self.options.alpha *", "0.5 *"), 3)) != digest
    assert train_digest(cell(body.replace("alpha: float = 1.0", "alpha: float = 2.0"), 4)) != digest


def test_bench_evaluate_is_the_eval_protocol_on_any_module():
    """``bench.evaluate`` evaluates a plain nn.Module (no features/head) as ``bench eval`` does, under
    either norm, with the data set's default eps for that norm."""
    import torch

    import bench

    torch.manual_seed(0)
    plain = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    linf = bench.evaluate(plain, dataset="digits", attacks=["clean", "pgd20"], n=20, sanity=False, device="cpu")
    assert isinstance(linf, bench.EvalResult) and linf.eps == 0.2 and linf.settings["pgd20"]["norm"] == "Linf"
    l2 = bench.evaluate(plain, dataset="digits", attacks=["clean", "pgd20"], n=20, sanity=False, device="cpu",
                        norm="L2")
    assert l2.eps == 1.0 and l2.settings["pgd20"]["norm"] == "L2" and l2.row()["norm"] == "L2"
    assert l2.metrics["clean"] == linf.metrics["clean"] and l2.metrics["pgd20"] <= l2.metrics["clean"]


def test_importing_the_methods_folder_by_its_old_name_says_what_to_import(tmp_path):
    """methods/ installs as bench.methods; a user file written for a top-level "methods" package gets
    one line that names the import to use, not a clash of registrations."""
    user = tmp_path / "old_style.py"
    user.write_text("from methods.kd import KD\n")
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-m", "bench", "list", "--methods-from", str(user)], cwd=root,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert "from bench.methods.kd import KD" in out.stderr
