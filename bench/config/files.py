"""Run configurations from YAML files and dotted overrides, typed against bench.config.schema's dataclasses.

Layers, lowest first: the preset (the base), a ``--config`` YAML file, the command's explicit flags
(bench/cli/parser.py), dotted overrides (``train.weight_decay=2e-4``). A layer is a nested mapping of
RunConfig's fields, plus the run's grid: ``methods`` and ``seeds`` (``seed: N`` alone means the one
seed N). ``preset`` in a file names the base preset (``--preset`` wins over it).

OmegaConf structured configs type every leaf (int, float, bool, str, Optional, tuples, Literal
choices, nested frozen dataclasses) and refuse unknown keys. Two things are done here around it:
``teacher`` is a Union of dataclasses, and OmegaConf types a Union-annotated field by the class of its
current value, so a teacher layer picks its class by ``kind`` first (a new kind starts from that
class's defaults) and is then typed against it; and every key is checked here before OmegaConf sees
it, so that an error names the key, what it expects and, for an unknown key, the known ones — on one
line (OmegaConf's own messages span several lines and lose the key inside lists).
"""
from __future__ import annotations

import dataclasses
import functools
import shlex
import types
import typing
from dataclasses import replace
from pathlib import Path

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from bench.common.errors import BenchError
from bench.common.io import atomic_write_text
from bench.config.presets import get_preset
from bench.config.schema import TEACHER_KINDS, TEACHER_ROLES, RunConfig


class _Dumper(yaml.SafeDumper):
    """Block mappings, flow lists: one line per field, a list on its line."""


_Dumper.add_representer(list, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))


def dump(data: dict) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False)


HEADER = ("# bench run configuration: python -m bench run --config THIS_FILE\n"
          "# precedence: preset < --config file < explicit flags < dotted overrides (key=value)\n")


@dataclasses.dataclass(frozen=True)
class Grid:
    """The (methods x seeds) a layer asks for; None where it says nothing."""
    methods: tuple[str, ...] | None = None
    seeds: tuple[int, ...] | None = None

    def over(self, lower: "Grid") -> "Grid":
        return Grid(self.methods if self.methods is not None else lower.methods,
                    self.seeds if self.seeds is not None else lower.seeds)


def read_file(path: str | Path) -> dict:
    """A YAML config file as a mapping (``yaml.safe_load``); anything else is one clear error."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        where = getattr(err, "problem_mark", None)
        at = f" (line {where.line + 1})" if where is not None else ""
        what = " ".join(str(getattr(err, "problem", None) or err).split())   # YAML's messages span lines
        raise BenchError(f"config file {path} is not valid YAML{at}: {what}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BenchError(f"config file {path} must be a mapping of config keys, got {type(data).__name__}")
    return data


def nested(overrides: typing.Mapping[str, typing.Any]) -> dict:
    """The one dotted-dict builder: ``{"train.epochs": 2}`` or ``{"train": {"epochs": 2}}`` -> one nested
    layer (what a config file holds)."""
    out: dict = {}
    for key, value in overrides.items():
        *parents, leaf = str(key).split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise BenchError(f"override {key!r} sets inside {p!r}, which another override sets to a value")
        if isinstance(value, dict) and isinstance(node.get(leaf), dict):
            node[leaf] = {**node[leaf], **nested(value)}
        else:
            node[leaf] = value
    return out


def parse_dotted(items: typing.Iterable[str]) -> dict:
    """``["train.epochs=2", "eval.attacks=[clean,fgsm]"]`` -> a nested mapping; each value is read as
    YAML (numbers, null, true/false, [lists]), and typed later against the config."""
    pairs = []
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not all(p.isidentifier() for p in key.strip().split(".")):
            raise BenchError(f"override {item!r} is not key=value with a dotted key (e.g. train.epochs=2)")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        pairs.append((key.strip(), value))
    return nested(dict(pairs))


def describe(tp) -> str:
    """A type hint in the words of an error message."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        return "one of " + ", ".join(map(str, args))
    if origin is tuple:
        return f"a list of {describe(args[0])}"
    if origin in (typing.Union, types.UnionType):
        kinds = [describe(a) for a in args if a is not type(None)]
        return " or ".join(kinds) + (" or null" if type(None) in args else "")
    if dataclasses.is_dataclass(tp):
        return "a mapping of " + ", ".join(f.name for f in dataclasses.fields(tp))
    return getattr(tp, "__name__", str(tp))


def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


@functools.lru_cache(maxsize=None)
def _schema(cls):
    """OmegaConf's typed node of a config class (merges copy it, so one per class will do)."""
    return OmegaConf.structured(cls)


def _check(cls, layer: dict, prefix: str) -> None:
    """Every key of ``layer`` exists in ``cls`` and every value has its field's type (one-line errors)."""
    if not isinstance(layer, dict):
        raise BenchError(f"config key {prefix.rstrip('.')}: expected {describe(cls)}, got {layer!r}")
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key, value in layer.items():
        full = f"{prefix}{key}"
        if key not in names:
            raise BenchError(f"unknown config key {full!r}; known keys{' of ' + prefix.rstrip('.') if prefix else ''}: "
                             f"{', '.join(names)}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            _check(tp, value, full + ".")
            continue
        try:  # OmegaConf types the leaf against its field alone
            OmegaConf.merge(_schema(cls), {key: value})
        except (OmegaConfBaseException, TypeError, ValueError):   # TypeError: a mapping where a list goes
            raise BenchError(f"config key {full}: expected {describe(tp)}, got {value!r}") from None


def _merge(obj, layer: dict):
    """``obj`` (a frozen config dataclass) with ``layer`` merged in, typed by OmegaConf."""
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(obj), layer))
    except (OmegaConfBaseException, TypeError, ValueError) as err:  # the rest, on one line
        key = getattr(err, "full_key", None) or "?"
        raise BenchError(f"config key {key}: {str(getattr(err, 'msg', err)).splitlines()[0]}") from None


TEACHER_FIELDS = ("teacher", *TEACHER_ROLES.values())   # union-typed fields: merged by kind


def _teacher(base, layer, key: str):
    """The teacher field ``key`` (teacher, natural_teacher) of ``base`` with ``layer`` merged in."""
    if not isinstance(layer, dict):
        raise BenchError(f"config key {key}: expected a mapping with kind: {', '.join(TEACHER_KINDS)}")
    kind = layer.get("kind", base.kind)
    if not isinstance(kind, str) or kind not in TEACHER_KINDS:
        raise BenchError(f"config key {key}.kind: expected one of {', '.join(TEACHER_KINDS)}, got {kind!r}")
    cls = TEACHER_KINDS[kind]
    start = base if isinstance(base, cls) else cls()  # a new kind starts from its own defaults
    _check(cls, layer, f"{key}.")
    return _merge(start, layer)


def _grid(layer: dict, source: str) -> Grid:
    methods, seeds = layer.pop("methods", None), layer.pop("seeds", None)
    seed = layer.pop("seed", None)
    if seed is not None:
        if seeds is not None:
            raise BenchError(f"{source}: give seeds or seed, not both")
        seeds = [seed]
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    if methods is not None and (not isinstance(methods, list) or not methods
                                or not all(isinstance(m, str) for m in methods)):
        raise BenchError(f"{source}: methods: expected a list of method names (e.g. [gacd, ard]), got {methods!r}")
    if isinstance(seeds, (int, str)) and not isinstance(seeds, bool):
        seeds = [int(s) for s in str(seeds).split(",")] if str(seeds).replace(",", "").isdigit() else seeds
    if seeds is not None and (not isinstance(seeds, list) or not seeds
                              or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
                              or len(set(seeds)) != len(seeds)):
        raise BenchError(f"{source}: seeds: expected a list of distinct non-negative integers, got {seeds!r}")
    return Grid(tuple(methods) if methods is not None else None, tuple(seeds) if seeds is not None else None)


def apply(cfg: RunConfig, layer: dict, source: str = "config") -> tuple[RunConfig, Grid]:
    """``cfg`` with one layer merged over it (typed; one-line errors), and the grid the layer names."""
    layer = dict(layer)
    grid = _grid(layer, source)
    if "preset" in layer:
        raise BenchError(f"{source}: preset names the base configuration: give it as --preset NAME (bench.run: "
                         "preset=NAME) or as preset: NAME in a --config file")
    teachers = {k: layer.pop(k) for k in TEACHER_FIELDS if k in layer}
    _check(RunConfig, layer, "")
    cfg = _merge(cfg, layer) if layer else cfg
    for key, teacher in teachers.items():
        cfg = replace(cfg, **{key: _teacher(getattr(cfg, key), teacher, key)})
    return cfg, grid


def config_of(stored: dict) -> RunConfig:
    """The typed config a record stores (``asdict`` of it), over the defaults for fields it predates."""
    layer = {k: v for k, v in stored.items() if k != "preset"}
    return replace(apply(RunConfig(), layer, "a stored config")[0], preset=stored.get("preset", RunConfig.preset))


def load(preset: str | None, config: str | Path | None = None, default: str = "digits"):
    """(preset object, config, grid) of the lower layers: the preset (``preset``, else the file's
    ``preset:``, else ``default``) with the ``config`` file over it."""

    layer = read_file(config) if config else {}
    layer.pop("job", None)  # a job file (bench.runs.job) is a config file with where its grid goes on top
    named = layer.pop("preset", None)
    if named is not None and not isinstance(named, str):
        raise BenchError(f"config file {config}: preset: expected a preset name, got {named!r}")
    base = get_preset(preset or named or default)
    cfg, grid = apply(base.config, layer, f"config file {config}")
    return base, cfg, grid.over(Grid(tuple(base.methods), tuple(base.seeds)))


def _plain(value):
    """Mappings and lists all the way down (OmegaConf leaves some tuples as tuples)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def to_dict(cfg: RunConfig, methods=None, seeds=None) -> dict:
    """The resolved run as plain data: preset, the grid, then every field of the config (``seed`` is
    the grid's business and stays out)."""
    body = _plain(OmegaConf.to_container(OmegaConf.structured(cfg), enum_to_str=True))
    body.pop("seed")
    head = {"preset": body.pop("preset")}
    if methods is not None:
        head["methods"] = list(methods)
    if seeds is not None:
        head["seeds"] = list(seeds)
    return {**head, **body}


def to_yaml(cfg: RunConfig, methods=None, seeds=None) -> str:
    return HEADER + dump(to_dict(cfg, methods, seeds))


def write_run_config(run_dir: Path, cfg: RunConfig) -> Path:
    """A run folder's resolved config as YAML beside its record (atomic); ``seed`` is that run's seed."""

    path = Path(run_dir) / "config.yaml"
    data = {"seed": cfg.seed, **to_dict(cfg)}
    atomic_write_text(path, HEADER + dump(data))
    return path


def _flat(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _scalar(value) -> str:
    text = yaml.dump(value, Dumper=_Dumper, default_flow_style=True, width=10**6).strip()
    return text[:-3].strip() if text.endswith("...") else text


def dotted_diff(base: RunConfig, cfg: RunConfig) -> list[str]:
    """The dotted overrides that turn ``base`` into ``cfg`` (a changed teacher kind: all its fields)."""
    old, new = to_dict(base), to_dict(cfg)
    out = []
    for key in TEACHER_FIELDS:
        if old[key].get("kind") != new[key].get("kind"):
            teacher = _flat(new.pop(key), f"{key}.")
            out += [f"{key}.kind={_scalar(teacher.pop(f'{key}.kind'))}"]
            out += [f"{k}={_scalar(v)}" for k, v in teacher.items()]
            old.pop(key)
    flat_old = _flat(old)
    out += [f"{k}={_scalar(v)}" for k, v in _flat(new).items() if k != "preset" and flat_old.get(k) != v]
    return out


def command(base: RunConfig, cfg: RunConfig, methods, seeds, name: str | None = None,
            methods_from: typing.Iterable[str] = ()) -> str:
    """The ``python -m bench run`` command that runs ``cfg``: its preset, grid and dotted overrides."""
    argv = ["run", "--preset", cfg.preset, "--methods", ",".join(methods), "--seeds", ",".join(map(str, seeds))]
    argv += ["--name", name] if name else []
    for path in methods_from:
        argv += ["--methods-from", str(path)]
    return "python -m bench " + shlex.join(argv + dotted_diff(base, cfg))


# Bounds the types cannot say (the flags check the same ones as they parse): key -> (low, high, closed low)
RANGES = {"train.epochs": (1, None), "train.batch_size": (1, None), "train.lr": (0, None, False),
          "train.val_fraction": (0, 1, False), "attack.eps": (0, None, False), "attack.steps": (1, None),
          "attack.step_ratio": (0, None, False), "eval.eps": (0, None, False), "eval.n": (1, None),
          "eval.aa_n": (1, None), "eval.batch_size": (1, None), "probe.epochs": (1, None),
          "probe.batch_size": (1, None), "probe.lr": (0, None, False), "teacher.train.epochs": (1, None),
          "teacher.train.batch_size": (1, None), "teacher.train.lr": (0, None, False)}


def check_ranges(cfg: RunConfig) -> None:
    """Counts at least 1, rates and radii above 0, fractions inside (0, 1): one line naming the key."""
    values = _flat(to_dict(cfg))
    for key, (low, high, *closed) in RANGES.items():
        value = values.get(key)
        if value is None:  # not set (None: all images), or not this teacher kind's field
            continue
        inclusive = closed[0] if closed else True
        if (value < low if inclusive else value <= low) or (high is not None and value >= high):
            bound = f"{'>=' if inclusive else '>'} {low}" + (f" and < {high}" if high is not None else "")
            raise BenchError(f"config key {key} = {value} must be {bound}")
