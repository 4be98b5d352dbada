"""The face users read: a one-page README, a docs site that builds strictly from Markdown and the code,
tutorials whose every code block runs, and pages that speak of the project and its users only."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
TUTORIALS = ["first-run", "evaluate", "new-method", "paper-table", "read-a-report", "scale-out"]

# What a page for users must not say: tracker issue numbers of this project, the machines it was built
# on, limits of a tool that moved files to them. A repository's own issue is cited by its name instead.
FORBIDDEN = [
    (re.compile(r"(?<!GitHub )\bissues? #?\d+", re.I), "a tracker issue number"),
    (re.compile(r"\b(transfer limit|MiB carry|borrowed|lent (GPU|machine)|device tool)\b", re.I), "the build's tools"),
    (re.compile(r"\b(this machine|measured here|on this host|no device was available)\b", re.I), "the build machine"),
    (re.compile(r"\bH[12]00\b"), "the GPU the project was measured on"),
]


def user_pages() -> list[Path]:
    pages = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted(DOCS.rglob("*.md")), *sorted((ROOT / "reports").rglob("*.md"))]
    return [p for p in pages if "_hooks" not in p.parts]


def test_readme_is_a_front_page():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    heads = [line for line in text.splitlines() if line.startswith("## ")]
    for needed in ("## A result", "## Set up", "## Evaluate your own checkpoint", "## Add a method",
                   "## Reproduce a paper table", "## Scale out", "## Documentation"):
        assert needed in heads, needed
    for link in re.findall(r"\]\(([^)#\s]+)", text):  # every relative link lands on a file
        assert link.startswith("http") or (ROOT / link).exists(), link


@pytest.mark.parametrize("page", user_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_pages_speak_of_the_project_and_its_users_only(page):
    text = page.read_text()
    found = [(why, m.group(0)) for pattern, why in FORBIDDEN for m in pattern.finditer(text)]
    assert not found, found


def test_the_checker_finds_what_it_is_for():
    """Mutation check of the test above: each kind of mention is caught."""
    assert not FORBIDDEN[0][0].search("MTARD's GitHub issue #5")  # a source's own tracker, cited
    for sample in ("see issue 33", "fixed in issue #5", "a 64 MiB carry", "measured here on", "on an H200"):
        assert any(p.search(sample) for p, _ in FORBIDDEN), sample


@pytest.mark.slow
def test_site_builds_strictly(tmp_path):
    """`mkdocs build --strict`: a broken link, a page missing from the nav or a reference page the code
    cannot generate fails the build."""
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    for page in ("reference/cli", "reference/config", "reference/methods", "reference/presets", "reference/api"):
        assert (tmp_path / "site" / page / "index.html").stat().st_size > 5000, page
    methods = (tmp_path / "site" / "reference" / "methods" / "index.html").read_text()
    assert "goldblum/AdversariallyRobustDistillation" in methods and "clean_pass" in methods


BLOCK = re.compile(r"(?:<!-- (needs|file): ?([^>]*?) -->\n)?```(bash|python)\n(.*?)```", re.S)


def blocks(page: str) -> list[tuple[str | None, str, str, str]]:
    """(marker, its argument, language, code) of each fenced bash or python block of a tutorial."""
    text = (DOCS / "tutorials" / f"{page}.md").read_text()
    return [(m.group(1), m.group(2), m.group(3), m.group(4)) for m in BLOCK.finditer(text)]


def test_every_tutorial_block_is_run_or_marked():
    for page in TUTORIALS:
        text = (DOCS / "tutorials" / f"{page}.md").read_text()
        assert text.count("```") == 2 * len(blocks(page)), page  # no block of another language slips by
        for marker, arg, _, _ in blocks(page):
            assert marker in (None, "file") or arg.strip() in ("gpu", "a GPU cluster"), (page, arg)


# Tutorials that build on one another run together, in reading order; the groups run side by side
GROUPS = {"first-run": ("first-run", "read-a-report"), "evaluate": ("evaluate", "scale-out"),
          "new-method": ("new-method",), "paper-table": ("paper-table",)}


def test_every_tutorial_is_run():
    assert sorted(p for group in GROUPS.values() for p in group) == sorted(TUTORIALS)


@pytest.mark.slow
@pytest.mark.parametrize("group", GROUPS)
def test_tutorials_run_as_written(tmp_path, group):
    """Every code block of the group's tutorials, in the order a reader meets them, in one fresh folder:
    a command that fails, or a flag that no longer exists, fails here. Blocks marked as needing a GPU are
    left out; a block marked `file: NAME` is written to NAME."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BENCH_DATA_DIR": str(tmp_path / "data"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    ran = 0
    for page in GROUPS[group]:
        for marker, arg, language, code in blocks(page):
            if marker == "needs":
                continue
            if marker == "file":
                (tmp_path / arg.strip()).write_text(code)
                continue
            cmd = ["bash", "-euo", "pipefail", "-c", code] if language == "bash" else [sys.executable, "-c", code]
            done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
            assert done.returncode == 0, f"{page}: {code}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
            ran += 1
    assert ran >= 1   # every group runs a command (a file block alone is not one)


def test_the_reports_index_lists_every_report(tmp_path):
    from bench.report.index import write_index

    committed = (ROOT / "reports" / "README.md").read_text()
    for folder in (ROOT / "reports").glob("*/README.md"):
        assert f"]({folder.parent.name}/README.md)" in committed, folder.parent.name
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "README.md").write_text("# a\n")
    (tmp_path / "a" / "runs.json").write_text('[{"role": "student", "method": "ard:t=10", "seed": 0, '
                                              '"dataset": "digits@0-4"}, {"role": "teacher", "seed": 0}]')
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "README.md").write_text("# b\n")
    (tmp_path / "b" / "runs.json").write_text("not json")
    text = write_index(tmp_path).read_text()
    assert "| [a](a/README.md) | digits@0-4; ard; 1 seed |" in text and "| [b](b/README.md) | – |" in text


def test_committed_figures_are_readable_at_page_width():
    import struct

    pngs = sorted((ROOT / "reports").rglob("*.png"))
    assert pngs
    for png in pngs:
        width = struct.unpack(">I", png.read_bytes()[16:20])[0]
        assert width <= 1600, (png.relative_to(ROOT), width)


def test_committed_reports_name_only_files_that_exist():
    """A report's setup lines name the code files of its digests: an old report naming a moved file is
    stale (rebuild it with `bench report NAME`)."""
    for readme in (ROOT / "reports").glob("*/README.md"):
        for path in re.findall(r"\b((?:bench|methods)/[\w/]+\.py)\b", readme.read_text()):
            assert (ROOT / path).exists(), (readme.parent.name, path)


def _main_table(readme: str) -> list[list[str]]:
    lines = readme.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| Method"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return [rows[0], *rows[2:]]


def test_committed_reports_open_on_a_ranked_table_of_at_most_eight_columns():
    for readme in (ROOT / "reports").glob("*/README.md"):
        text = readme.read_text()
        if "Rows ranked by" not in text:   # a report in the old format is refused by the test above too
            continue
        head, *rows = _main_table(text)
        assert len(head) <= 8, (readme.parent.name, head)
        by = re.search(r"Rows ranked by ([\w-]+)", text).group(1)
        students = [r for r in rows if not r[0].startswith("teacher")]
        means = [float(r[head.index(by)].split()[0]) for r in students]
        assert means == sorted(means, reverse=True), (readme.parent.name, means)


def test_the_readmes_result_is_the_committed_reports():
    """The front page's numbers are copied from reports/digits: a rebuilt report that moves them fails
    here until the README says the same."""
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index("| method | clean | PGD-20 | AutoAttack |"):].split("\n\n")[0].splitlines()[2:]
    shown = [[c.strip() for c in line.strip("|").split("|")] for line in block]
    head, *rows = _main_table((ROOT / "reports" / "digits" / "README.md").read_text())
    cols = [head.index(c) for c in ("Clean", "PGD-20", "AutoAttack")]
    assert len(shown) == len(rows)
    for ours, theirs in zip(shown, rows):
        assert ours[0].split()[0] == theirs[0].split()[0]
        assert ours[1:] == [theirs[c] for c in cols], (ours, theirs)
