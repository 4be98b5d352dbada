"""The house rules of the package layout (README "Map of the code"): no import cycles among bench's
modules, function-level imports included, and no import of a later stage from an earlier one."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# import rank of each top-level part: a module may import only parts of its own rank or lower
RANK = {"bench.common": 0, "bench.attacks": 1, "bench.data": 1, "bench.models": 1, "methods": 1,
        "bench.config": 2, "bench.train": 3, "bench.eval": 4, "bench.runs": 5, "bench.report": 6,
        "bench.api": 7, "bench.cli": 8, "bench.__main__": 9, "bench": 9}


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted([*ROOT.glob("bench/**/*.py"), *ROOT.glob("methods/**/*.py")]):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
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


def test_the_checks_can_fail():
    """The checker sees a planted cycle and a planted arrow back up."""
    planted = {"bench.eval.protocol": {"bench.eval.sanity"}, "bench.eval.sanity": {"bench.eval.protocol"}}
    assert cycles(planted) == [["bench.eval.protocol", "bench.eval.sanity"]]
    assert rank("bench.report.build") > rank("bench.eval.protocol") > rank("bench.train.loop")
    assert "bench.common.io" in imports(modules())["bench.runs.runset"]
