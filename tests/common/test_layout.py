"""The house rules of the package layout (docs/development/code-map.md): no import cycles among bench's
modules, function-level imports included, and no import of a later stage from an earlier one."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# import rank of each top-level part: a module may import only parts of its own rank or lower
RANK = {"bench.common": 0, "bench.attacks": 1, "bench.data": 1, "bench.models": 1, "bench.methods": 1,
        "bench.config": 2, "bench.train": 3, "bench.eval": 4, "bench.records": 5, "bench.runs": 6, "bench.report": 6,
        "bench.regress": 7, "bench.leaderboard": 7, "bench.api": 8, "bench.cli": 9, "bench.__main__": 10, "bench": 10}
# siblings that must not import each other: the report reads records only; runs never builds a report
APART = (("bench.report", "bench.runs"), ("bench.report", "bench.train"), ("bench.runs", "bench.report"),
         ("bench.leaderboard", "bench.runs"), ("bench.leaderboard", "bench.train"), ("bench.leaderboard", "bench.regress"))


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted([*ROOT.glob("bench/**/*.py"), *ROOT.glob("methods/**/*.py")]):
        # methods/ is installed as bench.methods (pyproject's package-dir)
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(("bench", *parts) if parts[0] == "methods" else parts)
        out[name.removesuffix(".__init__")] = path
    return out


def imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Every bench/methods module each module imports, wherever the import statement stands."""
    def known(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for name, path in mods.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {known(a.name) for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                # "from bench.config import files" names the submodule when there is one
                found |= {known(f"{node.module}.{a.name}") for a in node.names} | {known(node.module)}
        graph[name] = {m for m in found if m and m != name and not name.startswith(m + ".")}
    return graph


def rank(name: str) -> int:
    part = max((p for p in RANK if name == p or name.startswith(p + ".")), key=len)
    return RANK[part]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    assert cycles(imports(modules())) == []


def test_no_stage_imports_a_later_stage():
    graph = imports(modules())
    back = sorted(f"{a} -> {b}" for a, deps in graph.items() for b in deps if rank(b) > rank(a))
    assert back == []


def _within(name: str, part: str) -> bool:
    return name == part or name.startswith(part + ".")


def crossings(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} -> {b}" for a, deps in graph.items() for b in deps
                  for src, dst in APART if _within(a, src) and _within(b, dst))


def test_the_report_reads_records_only():
    """bench/report imports nothing from bench/runs or bench/train (it reads records), and bench/runs
    builds no report: the regression check, which trains and compares, is a stage of its own above both."""
    assert crossings(imports(modules())) == []


def test_the_checks_can_fail():
    """The checker sees a planted cycle and a planted arrow back up."""
    planted = {"bench.eval.protocol": {"bench.eval.sanity"}, "bench.eval.sanity": {"bench.eval.protocol"}}
    assert cycles(planted) == [["bench.eval.protocol", "bench.eval.sanity"]]
    assert rank("bench.report.build") > rank("bench.eval.protocol") > rank("bench.train.loop")
    assert "bench.common.io" in imports(modules())["bench.records.runset"]
    assert crossings({"bench.report.build": {"bench.runs.orchestrate"}}) == ["bench.report.build -> bench.runs.orchestrate"]


def test_no_function_is_over_80_lines_unless_its_docstring_says_why():
    """Rooms with one job each: a function of bench/ or methods/ over 80 lines (docstring included) is
    split where the split has a name, or says in its docstring why it stays whole ("one piece: ...")."""
    long = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 80:
                if "one piece:" not in (ast.get_docstring(node) or ""):
                    long.append(f"{name}.{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert long == []
