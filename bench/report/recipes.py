"""The recipe table: per method, every field where protocol ``official`` differs from ``common``, with the
official file and line it comes from (``bench list --recipes``, and a section of every paper report)."""
from __future__ import annotations

from bench.config.protocol import dataset_of, recipe_rows
from bench.config.schema import RunConfig
from bench.methods import METHODS, parse_method


def _show(value) -> str:
    if isinstance(value, float):
        if 0 < value < 1 and abs(value * 255 - round(value * 255)) < 1e-6:
            return f"{round(value * 255)}/255"  # 8/255 reads better than 0.03137; 0.031 stays 0.031
        return f"{value:.4g}"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)


def recipe_table(cfg: RunConfig, methods) -> list[dict]:
    """Rows (method, field, common, official, source) for ``methods`` (labels or names) on ``cfg``'s data."""
    rows = []
    for name in dict.fromkeys(parse_method(m).name for m in methods):
        r = METHODS.get(name).official
        if r is None:
            rows.append({"method": name, "field": "-", "common": "", "official": "no official recipe known here: "
                         "runs the common config", "source": ""})
        elif not r.code:
            rows.append({"method": name, "field": "-", "common": "", "official": "no official code: the official "
                         "protocol runs the suite's own default (the common config), stated as such",
                         "source": r.repo})
        else:
            rows += [{**row, "common": _show(row["common"]), "official": _show(row["official"])}
                     for row in recipe_rows(name, cfg)] or [
                {"method": name, "field": "-", "common": "", "official": "the common config", "source": r.repo}]
    return rows


def recipe_markdown(cfg: RunConfig, methods) -> str:
    rows = recipe_table(cfg, methods)
    out = [f"Official recipes on {dataset_of(cfg)} (`--protocol official`): every field that differs from the common "
           "protocol, and where the official value comes from.", "",
           "| method | field | common | official | source |", "|---|---|---|---|---|"]
    out += [f"| {r['method']} | {r['field']} | {r['common']} | {r['official']} | {r['source']} |" for r in rows]
    return "\n".join(out)


def recipe_lines() -> list[str]:
    """``bench list --recipes``: the recipe table of each paper data set, as text."""
    from bench.config.presets import PAPER_METHODS, PAPER_PRESETS

    lines, seen = [], set()
    for preset in PAPER_PRESETS.values():
        cfg = preset.config
        if dataset_of(cfg) in seen:
            continue
        seen.add(dataset_of(cfg))
        lines.append(f"{dataset_of(cfg)} (preset {cfg.preset}; common: {cfg.train.epochs} epochs, lr {cfg.train.lr}, "
                     f"milestones {list(cfg.train.milestones)}, wd {cfg.train.weight_decay}, batch "
                     f"{cfg.train.batch_size}, checkpoint {cfg.train.checkpoint}, precision {cfg.precision}, "
                     f"input_norm {cfg.input_norm}):")
        for r in recipe_table(cfg, PAPER_METHODS):
            lines.append(f"  {r['method']:8s} {r['field']:18s} {r['common']:>12s} -> {r['official']:<14s} "
                         f"{r['source']}")
    return lines
