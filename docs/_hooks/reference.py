"""MkDocs hook: the reference pages, generated from the code at every build so that they cannot drift.

reference/cli.md from the argument parser, reference/config.md from the config dataclasses (their field
comments are the descriptions), reference/methods.md from the method registry and the official recipes,
reference/presets.md from the presets, reference/api.md from the public API's docstrings.
"""
from __future__ import annotations

import dataclasses
import inspect
import os
import re
import typing

from mkdocs.structure.files import File

_FIELD = re.compile(r"^\s+(\w+)\s*:\s*[^#]*?(?:#\s*(.*))?$")


def _comments(cls: type) -> dict[str, str]:
    """Each field's description in ``cls``'s source: the comment lines just above it (this code base
    writes a long description there) and its trailing comment."""
    out, above = {}, []
    for line in inspect.getsource(cls).splitlines()[1:]:
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(stripped.lstrip("# "))
            continue
        m = _FIELD.match(line)
        if m and not stripped.startswith(("def ", "return", "@", "class ")):
            out[m.group(1)] = " ".join(above + ([m.group(2).strip()] if m.group(2) else []))
        above = []
    return out


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _type_name(hint) -> str:
    text = getattr(hint, "__name__", None) if not typing.get_args(hint) else None
    return text or str(hint).replace("typing.", "")


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return repr(f.default)
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        value = f.default_factory()  # type: ignore[misc]
        return type(value).__name__ + "()" if dataclasses.is_dataclass(value) else repr(value)
    return "required"


def config_page() -> str:
    from bench.config import schema

    lines = ["# Config schema", "",
             "Every field of `RunConfig` (`bench/config/schema.py`), generated from the dataclasses at build "
             "time. A config file, `--print-config` and dotted overrides (`train.epochs=10`) use these names; "
             "see [Config files](../how-to/config-files.md).", ""]
    seen: set[type] = set()
    queue: list[tuple[str, type]] = [("", schema.RunConfig)]
    while queue:
        prefix, cls = queue.pop(0)
        if cls in seen:
            continue
        seen.add(cls)
        hints = typing.get_type_hints(cls)
        notes = _comments(cls)
        doc = inspect.getdoc(cls) or ""
        lines += [f"## `{cls.__name__}`" + (f" (`{prefix}`)" if prefix else ""), ""]
        if doc and not doc.startswith(cls.__name__ + "("):
            lines += [doc.split("\n\n")[0].replace("\n", " "), ""]
        lines += ["| field | type | default | what it is |", "|---|---|---|---|"]
        for f in dataclasses.fields(cls):
            hint = hints.get(f.name, f.type)
            lines.append(f"| `{f.name}` | `{_cell(_type_name(hint))}` | `{_cell(_default(f))}` "
                         f"| {_cell(notes.get(f.name, ''))} |")
            for arg in [hint, *typing.get_args(hint)]:
                if dataclasses.is_dataclass(arg) and isinstance(arg, type):
                    queue.append((f"{prefix}.{f.name}".lstrip("."), arg))
        lines.append("")
    return "\n".join(lines)


def cli_page() -> str:
    from bench.cli.parser import build_parser

    os.environ["COLUMNS"] = "100"  # argparse wraps at the terminal's width: one width for every build
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    lines = ["# Command line", "",
             "`python -m bench --help` and each command's `--help`, generated from the parser at build time.",
             "", "```text", parser.format_help().rstrip(), "```", ""]
    for name, command in sub.choices.items():
        lines += [f"## `bench {name}`", "", "```text", command.format_help().rstrip(), "```", ""]
    return "\n".join(lines)


def methods_page() -> str:
    from bench.config.schema import TEACHER_ROLES
    from bench.report.recipes import recipe_lines
    from bench.methods import METHODS

    lines = ["# Methods and recipes", "",
             "Every registered method (`methods/<name>.py`), generated from the registry at build time: what its "
             "attack ascends, its loss, its options with their defaults, and the recipe of its official script "
             "with the file and line each value comes from. See [Methods](../guide/methods.md) for the contract "
             "and [Paper tables](../guide/protocols.md) for the two protocols.", ""]
    for name, cls in METHODS.items():
        lines += [f"## `{name}`", "", f"**Loss.** {cls.summary}", "", f"**Source.** {cls.citation}", ""]
        if cls.inner:
            i = cls.inner
            lines += [f"**Attack.** ascends {i.ascends}; start {i.start}; student batch norm in {i.student_mode} "
                      f"mode; teacher at {i.teacher_at}.", ""]
        else:
            lines += ["**Attack.** none.", ""]
        if not cls.needs_teacher or cls.teachers:
            roles = "; ".join(f"{role} ({what}; config `{TEACHER_ROLES[role]}`)" for role, what in cls.teachers.items())
            lines += [f"**Teachers.** {'the run teacher' if cls.needs_teacher else 'none'}"
                      + (f", and {roles}" if roles else "") + ".", ""]
        lines += [f"**Official schedule.** {cls.schedule}", ""]
        if cls.note:
            lines += [f"**Note.** {cls.note}", ""]
        options = dataclasses.fields(cls.Options)
        if options:
            notes = _comments(cls.Options)
            lines += ["| option | default | what it is |", "|---|---|---|"]
            lines += [f"| `{f.name}` | `{_cell(_default(f))}` | {_cell(notes.get(f.name, ''))} |" for f in options]
            lines.append("")
    lines += ["## Official recipes", "",
              "What each method's official recipe changes against the common protocol, per data set "
              "(`python -m bench list --recipes`):", "", "```text", *recipe_lines(), "```", ""]
    return "\n".join(lines)


def presets_page() -> str:
    from bench.config.presets import all_presets

    lines = ["# Presets", "", "Every preset (`python -m bench list`), generated at build time.", "",
             "| preset | what it is | methods | seeds |", "|---|---|---|---|"]
    for name, p in sorted(all_presets().items()):
        lines.append(f"| `{name}` | {_cell(p.description)} | {_cell(', '.join(p.methods))} "
                     f"| {', '.join(map(str, p.seeds))} |")
    return "\n".join(lines) + "\n"


def api_page() -> str:
    import bench

    lines = ["# Python API reference", "",
             "The public names of `import bench`, with their signatures and docstrings, generated at build "
             "time. The [Python API](python-api.md) page shows them at work.", ""]
    for name in bench.__all__:
        obj = getattr(bench, name)
        try:
            sig = str(inspect.signature(obj))
        except (TypeError, ValueError):
            sig = "(...)"
        kind = "class" if inspect.isclass(obj) else "def"
        lines += [f"## `bench.{name}`", "", "```python", f"{kind} {name}{sig}", "```", "",
                  inspect.getdoc(obj) or "(no docstring)", ""]
    return "\n".join(lines)


PAGES = {"reference/cli.md": cli_page, "reference/config.md": config_page,
         "reference/methods.md": methods_page, "reference/presets.md": presets_page,
         "reference/api.md": api_page}


def on_files(files, config):
    for path, make in PAGES.items():
        files.append(File.generated(config, path, content=make()))
    return files
