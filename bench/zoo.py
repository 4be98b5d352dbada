"""RobustBench model-zoo teachers, offline, and export of bench students in RobustBench's format.

Three parts:

1. **Compatibility layer** (:func:`import_robustbench`). robustbench 1.1.1 imports two modules that
   this environment does not provide under those names:

   * ``autoattack`` -- ``robustbench/eval.py`` does ``from autoattack import AutoAttack`` and
     ``from autoattack.state import EvaluationState``. The PyPI release of AutoAttack is
     ``pyautoattack`` (import name ``pyautoattack``), which has both. When no real ``autoattack`` is
     importable, ``sys.modules['autoattack']`` and ``sys.modules['autoattack.state']`` become aliases
     of ``pyautoattack`` and ``pyautoattack.state`` (the alias stays: it is the complete package).
   * ``pkg_resources`` -- ``robustbench/loaders.py`` does ``import pkg_resources`` and calls only
     ``pkg_resources.resource_filename(__name__, path)`` (to find its ImageNet file lists). Recent
     setuptools no longer ships ``pkg_resources``. When it is not importable, a stand-in module with
     just ``resource_filename`` is registered *only while robustbench is being imported* and removed
     afterwards (robustbench keeps its reference), so other libraries that probe for
     ``pkg_resources`` still see that it is absent.

   Neither shim is installed when the real module can be imported.

2. **Offline teachers** (:func:`load_robustbench_model`). RobustBench's ``load_model`` looks for
   ``<model_dir>/<dataset>/<threat_model>/<name>.pt`` (e.g. ``cifar10/Linf/Zhang2019Theoretically.pt``;
   ``corruptions_3d`` shares the ``corruptions`` folder) and downloads the file when it is missing;
   it then calls ``torch.load`` *without* ``weights_only``. bench therefore never calls
   ``load_model``: it checks that the file exists (else a one-line error naming the path), reads it
   with :func:`bench.io.load_checkpoint` (``weights_only=True``), builds the architecture from
   RobustBench's model-zoo dict and applies RobustBench's own key clean-up and loading rules.
   The model directory defaults to ``$BENCH_ROBUSTBENCH_DIR``, else
   ``$XDG_CACHE_HOME/bench/robustbench`` (``~/.cache/bench/robustbench``).
   The loaded network is wrapped in :class:`ZooModel`, a :class:`~bench.models.base.BenchModel`.

3. **Export** (:func:`export_robustbench`). Writes a RobustBench ``model_info`` JSON and the
   weights as ``{"state_dict": ...}`` in RobustBench's layout, loadable by
   :func:`load_robustbench_weights` (the same code path the teachers use).

Verified against robustbench 1.1.1. Not supported offline: models RobustBench serves through timm
(the XCiT models, some ImageNet corruption models), ensembles stored as several files, and
ImageNet's ``Standard_R50`` (torchvision downloads its weights).
"""
from __future__ import annotations

import contextlib
import dataclasses
import difflib
import importlib
import importlib.util
import json
import math
import os
import re
import sys
import types
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.errors import BenchError
from bench.io import atomic_save, atomic_write_text, load_checkpoint
from bench.models.base import BenchModel

MODEL_DIR_ENV = "BENCH_ROBUSTBENCH_DIR"
ROBUSTBENCH_DATASETS = ("cifar10", "cifar100", "imagenet")
# Test-set sizes RobustBench evaluates on (ImageNet: its fixed 5,000-image subset).
FULL_TEST_SIZE = {"cifar10": 10000, "cifar100": 10000, "imagenet": 5000}
# bench architecture names -> the names RobustBench's leaderboards use.
ARCH_NAMES = {"resnet18": "ResNet-18", "preact-resnet18": "PreActResNet-18",
              "mobilenetv2": "MobileNetV2", "wrn-34-10": "WideResNet-34-10",
              "wrn-28-10": "WideResNet-28-10"}


# --------------------------------------------------------------------------------------------
# 1. Compatibility layer
# --------------------------------------------------------------------------------------------

def _importable(name: str) -> bool:
    """Whether a real module ``name`` is loaded or can be found, without importing it."""
    if sys.modules.get(name) is not None:
        return True
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _alias_autoattack() -> None:
    """Make ``import autoattack`` / ``autoattack.state`` resolve to pyautoattack, unless a real
    ``autoattack`` exists (then nothing is touched)."""
    if _importable("autoattack"):
        return
    try:
        pyautoattack = importlib.import_module("pyautoattack")
        state = importlib.import_module("pyautoattack.state")
    except ImportError as err:
        raise BenchError(f"robustbench needs AutoAttack, and neither autoattack nor pyautoattack is "
                         f"importable ({err}); install it with: pip install pyautoattack") from None
    sys.modules["autoattack"] = pyautoattack
    sys.modules["autoattack.state"] = state


def _resource_filename(package_or_requirement: str, resource_name: str) -> str:
    """``pkg_resources.resource_filename`` for an importable module or package name: the path of
    ``resource_name`` relative to the folder that holds the module (a package's own folder)."""
    if not isinstance(package_or_requirement, str):
        raise TypeError("bench's pkg_resources stand-in only accepts module names")
    module = importlib.import_module(package_or_requirement)
    locations = getattr(getattr(module, "__spec__", None), "submodule_search_locations", None)
    if locations:
        base = Path(next(iter(locations)))
    else:
        base = Path(module.__file__).parent
    return str(base.joinpath(*resource_name.split("/")))


def _pkg_resources_stub() -> types.ModuleType:
    stub = types.ModuleType("pkg_resources", "bench's minimal stand-in for setuptools' pkg_resources "
                                             "(only resource_filename), used while importing robustbench")
    stub.resource_filename = _resource_filename
    stub.__bench_stub__ = True
    return stub


@contextlib.contextmanager
def _temporary_pkg_resources() -> Iterator[None]:
    """Register the stand-in while the body runs, only when no real pkg_resources is importable."""
    if _importable("pkg_resources"):
        yield
        return
    stub = _pkg_resources_stub()
    sys.modules["pkg_resources"] = stub
    try:
        yield
    finally:
        if sys.modules.get("pkg_resources") is stub:
            del sys.modules["pkg_resources"]


def import_robustbench() -> types.ModuleType:
    """The ``robustbench`` package (with ``robustbench.utils`` and ``robustbench.model_zoo``
    loaded), after installing the shims above where needed; a BenchError when it cannot be imported."""
    loaded = sys.modules.get("robustbench")
    if loaded is not None and hasattr(loaded, "utils") and hasattr(loaded, "model_zoo"):
        return loaded
    _alias_autoattack()
    try:
        with _temporary_pkg_resources(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)      # torch.jit deprecations via timm
            warnings.simplefilter("ignore", DeprecationWarning)
            rb = importlib.import_module("robustbench")
            importlib.import_module("robustbench.utils")
            importlib.import_module("robustbench.model_zoo")
    except ImportError as err:
        raise BenchError(f"cannot import robustbench ({err}); install it with: "
                         f"pip install robustbench pyautoattack") from None
    return rb


# --------------------------------------------------------------------------------------------
# 2. Offline zoo models
# --------------------------------------------------------------------------------------------

def default_model_dir() -> Path:
    """$BENCH_ROBUSTBENCH_DIR, else $XDG_CACHE_HOME/bench/robustbench (~/.cache/bench/robustbench)."""
    env = os.environ.get(MODEL_DIR_ENV)
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "bench" / "robustbench"


def _enums(dataset: str, threat_model: str):
    """RobustBench's (BenchmarkDataset, ThreatModel) for the names, as its load_model resolves
    them (``corruptions_3d`` models live with ``corruptions``)."""
    import_robustbench()
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    try:
        ds = BenchmarkDataset(dataset)
    except ValueError:
        raise BenchError(f"RobustBench has no dataset {dataset!r}; known: "
                         f"{', '.join(d.value for d in BenchmarkDataset)}") from None
    try:
        tm = ThreatModel(ThreatModel(threat_model).value.replace("_3d", ""))
    except ValueError:
        raise BenchError(f"RobustBench has no threat model {threat_model!r}; known: "
                         f"{', '.join(t.value for t in ThreatModel)}") from None
    return ds, tm


def _zoo(dataset: str, threat_model: str) -> dict:
    from robustbench.model_zoo import model_dicts

    ds, tm = _enums(dataset, threat_model)
    zoo = model_dicts.get(ds, {}).get(tm)
    if zoo is None:
        raise BenchError(f"RobustBench has no {ds.value}/{tm.value} model zoo")
    return zoo


def known_models(dataset: str = "cifar10", threat_model: str = "Linf") -> list[str]:
    """The model names in RobustBench's zoo for that dataset and threat model, in its order."""
    return list(_zoo(dataset, threat_model))


def robustbench_checkpoint_path(name: str, dataset: str = "cifar10", threat_model: str = "Linf",
                                model_dir: str | Path | None = None) -> Path:
    """Where RobustBench keeps the weights: ``<model_dir>/<dataset>/<threat_model>/<name>.pt``."""
    ds, tm = _enums(dataset, threat_model)
    base = default_model_dir() if model_dir is None else Path(model_dir).expanduser()
    return base / ds.value / tm.value / f"{name}.pt"


def _final_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    found = None
    for qualname, module in model.named_modules():
        if isinstance(module, nn.Linear):
            found = (qualname, module)
    if found is None:
        raise BenchError(f"{type(model).__name__} has no nn.Linear layer to split into features and head")
    return found


class ZooModel(BenchModel):
    """A RobustBench network as a BenchModel.

    ``head`` is the network's final ``nn.Linear`` (the last one in ``modules()`` order, e.g. ``fc``
    of a WideResNet, ``linear`` of a ResNet); ``features(x)`` runs the whole network once and returns
    that layer's input, captured with a forward pre-hook. RobustBench models take [0, 1] inputs and
    normalise internally, so the BenchModel normalisation is the identity. ``forward`` runs the
    wrapped network directly; it equals ``head(features(x))``.
    """

    def __init__(self, model: nn.Module, name: str = ""):
        super().__init__()
        self.head_name, linear = _final_linear(model)
        self.model = model
        self.zoo_name = name
        self.feature_dim = linear.in_features
        self.num_classes = linear.out_features

    def _head(self) -> nn.Linear:
        return self.model.get_submodule(self.head_name)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        linear = self._head()
        inputs, outputs = [], []
        pre = linear.register_forward_pre_hook(lambda _m, args: inputs.append(args[0]))
        post = linear.register_forward_hook(lambda _m, _args, out: outputs.append(out))
        try:
            logits = self.model(x)
        finally:
            pre.remove()
            post.remove()
        label = self.zoo_name or type(self.model).__name__
        if len(inputs) != 1:
            raise BenchError(f"{label}: its final linear layer {self.head_name!r} ran {len(inputs)} times "
                             f"in one forward pass; cannot split it into features and head")
        if outputs[0] is not logits and not (isinstance(logits, torch.Tensor)
                                             and logits.shape == outputs[0].shape
                                             and torch.equal(logits, outputs[0])):
            raise BenchError(f"{label}: its output is not that of its final linear layer "
                             f"{self.head_name!r}; cannot split it into features and head")
        feats = inputs[0]
        if feats.dim() != 2:
            raise BenchError(f"{label}: the input of {self.head_name!r} has shape {tuple(feats.shape)}, "
                             f"not (batch, features)")
        return feats

    def head(self, f: torch.Tensor) -> torch.Tensor:
        return self._head()(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def _strip(state: dict, prefix: str) -> dict:
    return {k.removeprefix(prefix): v for k, v in state.items()}


def load_robustbench_weights(model: nn.Module, path: str | Path, model_name: str = "",
                             dataset: str = "cifar10") -> nn.Module:
    """Load a RobustBench-style checkpoint into ``model`` the way robustbench 1.1.1 does, but with
    ``torch.load(weights_only=True)`` (via :func:`bench.io.load_checkpoint`).

    Clean-up, as in robustbench: take ``['last']`` when the file holds last/best snapshots, the
    ``'state_dict'`` entry when there is one, drop the ``'module.'`` and then ``'model.'`` key
    prefixes (robustbench's own helper when available); for ImageNet wrappers whose parameters sit
    under ``model.``, add that prefix back when it makes the keys fit. Then a strict load, relaxed
    only for the models robustbench itself knows to need it. Returns ``model`` in eval mode.
    """
    return _apply_checkpoint(model, load_checkpoint(path), path, model_name, dataset)


def _apply_checkpoint(model: nn.Module, checkpoint: Any, path: str | Path, model_name: str,
                      dataset: str) -> nn.Module:
    if not isinstance(checkpoint, dict):
        raise BenchError(f"checkpoint {path} does not hold a state_dict")
    if "state_dict" not in checkpoint and isinstance(checkpoint.get("last"), dict):
        checkpoint = checkpoint["last"]
    state = checkpoint["state_dict"] if isinstance(checkpoint.get("state_dict"), dict) else checkpoint

    rb_utils = sys.modules.get("robustbench.utils")
    strip = getattr(rb_utils, "rm_substr_from_state_dict", None) or _strip
    state = dict(strip(strip(state, "module."), "model."))
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BenchError(f"checkpoint {path} does not hold a state_dict of tensors")

    own = set(model.state_dict())
    if dataset == "imagenet" and set(state) != own:
        prefixed = {f"model.{k}": v for k, v in state.items()}
        if len(own & set(prefixed)) > len(own & set(state)):
            state = prefixed

    safe_load = getattr(rb_utils, "_safe_load_state_dict", None)
    try:
        if safe_load is not None and model_name:
            from robustbench.model_zoo.enums import BenchmarkDataset

            model = safe_load(model, model_name, state, BenchmarkDataset(dataset))
        else:
            model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        text = " ".join(str(err).split())
        raise BenchError(f"checkpoint {path} does not fit {model_name or type(model).__name__}: "
                         f"{text[:300]}") from None
    return model.eval()


def load_robustbench_model(name: str, dataset: str = "cifar10", threat_model: str = "Linf",
                           model_dir: str | Path | None = None) -> ZooModel:
    """A RobustBench zoo model from a checkpoint already on disk (never downloads), as a ZooModel
    on the CPU in eval mode.

    The checkpoint must be at ``<model_dir>/<dataset>/<threat_model>/<name>.pt``, RobustBench's own
    layout, so a RobustBench model folder can be reused as ``model_dir``; ``model_dir`` defaults to
    :func:`default_model_dir`.
    """
    entry, path = locate_robustbench_model(name, dataset, threat_model, model_dir)
    checkpoint = load_checkpoint(path)  # a bad file fails before a possibly large network is built
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        network = entry["model"]()
    network = _apply_checkpoint(network, checkpoint, path, name, _enums(dataset, threat_model)[0].value)
    return ZooModel(network, name).eval()


def locate_robustbench_model(name: str, dataset: str = "cifar10", threat_model: str = "Linf",
                             model_dir: str | Path | None = None) -> tuple[dict, Path]:
    """The zoo entry and local checkpoint path of a model bench can load offline, or one BenchError."""
    import_robustbench()
    import timm

    zoo = _zoo(dataset, threat_model)
    ds, tm = _enums(dataset, threat_model)
    if name not in zoo:
        names = list(zoo)
        shown = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
        shown += [n for n in names if n not in shown][:8 - len(shown)]
        raise BenchError(f"unknown RobustBench model {name!r} for {ds.value}/{tm.value}; known "
                         f"({len(names)} in all) include: {', '.join(shown)}")
    entry = zoo[name]
    timm_name = f"{name.lower().replace('-', '_')}_{ds.value.lower()}_{tm.value.lower()}"
    if timm.is_model(timm_name) or entry.get("gdrive_id") is None:
        raise BenchError(f"RobustBench model {name!r} is served through timm's online hub; "
                         f"bench loads zoo models offline only")
    if isinstance(entry["gdrive_id"], list):
        raise BenchError(f"RobustBench model {name!r} is an ensemble of {len(entry['gdrive_id'])} "
                         f"checkpoints; bench does not load ensembles")
    if ds.value == "imagenet" and "Standard" in name:
        raise BenchError(f"RobustBench model {name!r} takes torchvision's downloaded weights; "
                         f"bench loads zoo models offline only")
    path = robustbench_checkpoint_path(name, ds.value, tm.value, model_dir)
    if not path.is_file():
        gid = entry["gdrive_id"]
        raise BenchError(f"RobustBench checkpoint for {name} not found: put it at {path} "
                         f"(RobustBench's file{f', Google Drive id {gid}' if gid else ''}; "
                         f"bench never downloads"
                         f"{f'; set ${MODEL_DIR_ENV} to use another folder' if model_dir is None else ''})")
    return entry, path


# --------------------------------------------------------------------------------------------
# 3. Export in RobustBench's format
# --------------------------------------------------------------------------------------------

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def format_eps(eps: float) -> str:
    """``"8/255"`` when eps is k/255 for an integer k, else the decimal (``"0.031"``, ``"0.5"``)."""
    k = eps * 255
    if abs(k - round(k)) < 1e-6 and round(k) > 0:
        return f"{round(k)}/255"
    return f"{eps:.6g}"


def _percent(fraction: float) -> str:
    return f"{100 * float(fraction):.2f}"


def _fraction(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1 \
            or math.isnan(value):
        raise BenchError(f"the run record's {what} accuracy {value!r} is not a fraction in [0, 1]")
    return float(value)


def export_robustbench(record: dict, state_dict: dict, out_dir: Path, name: str) -> tuple[Path, Path]:
    """Write a bench run as a RobustBench submission; returns (json_path, checkpoint_path).

    Layout, mirroring the RobustBench repository and its default ``./models`` model folder::

        <out_dir>/model_info/<dataset>/<threat_model>/<name>.json
        <out_dir>/models/<dataset>/<threat_model>/<name>.pt      # {"state_dict": ...}

    so ``load_robustbench_weights(model, ckpt)`` -- or RobustBench with
    ``model_dir=<out_dir>/models`` once the architecture is in its zoo -- loads the weights back.
    The JSON has RobustBench's ``model_info`` fields; bench fills dataset, eps, architecture,
    clean_acc, autoattack_acc (percent strings, two decimals), additional_data (false: bench trains
    on the dataset's training split only), number_forward_passes (1) and a footnote with the method,
    teacher and AutoAttack settings (saying so when AutoAttack ran on fewer than the full test set);
    link, name, authors, venue and reported stay empty. Refuses a record without an AutoAttack
    accuracy.
    """
    if dataclasses.is_dataclass(record) and not isinstance(record, type):
        record = dataclasses.asdict(record)
    if not _NAME.match(name or ""):
        raise BenchError(f"RobustBench model name {name!r} must be letters, digits, '_', '-' or '.'")
    metrics = record.get("metrics") or {}
    if metrics.get("aa") is None:
        raise BenchError(f"run {record.get('run_id', '?')} has no AutoAttack accuracy (metrics['aa']); "
                         f"RobustBench entries need one: evaluate with the 'aa' attack first")
    aa = _fraction(metrics["aa"], "AutoAttack")
    clean = _fraction(metrics["clean"], "clean") if metrics.get("clean") is not None else None
    config = record.get("config") or {}
    aa_settings = (record.get("attack_settings") or {}).get("aa") or {}

    dataset = (config.get("data") or {}).get("name") or record.get("dataset") or ""
    if dataset not in ROBUSTBENCH_DATASETS:
        raise BenchError(f"RobustBench has leaderboards for {', '.join(ROBUSTBENCH_DATASETS)} only, "
                         f"not {dataset!r}")
    threat_model = aa_settings.get("norm") or "Linf"
    if threat_model not in ("Linf", "L2"):
        raise BenchError(f"AutoAttack norm {threat_model!r} is not a RobustBench threat model (Linf, L2)")
    eps = aa_settings.get("eps", (config.get("eval") or {}).get("eps"))
    if not isinstance(eps, (int, float)) or isinstance(eps, bool):
        raise BenchError("the run record gives no AutoAttack eps")
    arch = config.get("student_arch") if record.get("role", "student") == "student" else None
    arch = arch or record.get("arch") or ""
    if not isinstance(state_dict, dict) or not state_dict \
            or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise BenchError("the weights to export are not a non-empty state_dict of tensors")

    full = FULL_TEST_SIZE[dataset]
    n_aa = aa_settings.get("n")
    version = aa_settings.get("version", "standard")
    notes = []
    method = record.get("method") or record.get("method_name")
    if method:
        teacher = record.get("teacher_id")
        notes.append(f"bench run {record.get('run_id', '')}: {method}"
                     + (f" distilled from teacher {teacher}" if teacher else "") + ".")
    where = f"{n_aa} of the {full}" if n_aa is not None else f"an unrecorded number of the {full}"
    notes.append(f"AutoAttack (pyautoattack, version {version}, {threat_model}, "
                 f"eps {format_eps(float(eps))}) on {where} test images.")
    if n_aa is not None and n_aa < full:
        notes.append(f"AutoAttack ran on fewer than the full test set (the first {n_aa} images only).")
    if version != "standard":
        notes.append(f"AutoAttack version {version!r}, not 'standard'.")
    n_clean = (config.get("eval") or {}).get("n")
    if clean is not None and n_clean is not None and n_clean < full:
        notes.append(f"Clean accuracy on the first {n_clean} of the {full} test images.")

    info = {
        "link": "", "name": "", "authors": "",
        "additional_data": False,
        "number_forward_passes": 1,
        "dataset": dataset,
        "venue": "",
        "architecture": ARCH_NAMES.get(arch, arch),
        "eps": format_eps(float(eps)),
        "clean_acc": _percent(clean) if clean is not None else "",
        "reported": "",
        "autoattack_acc": _percent(aa),
        "footnote": " ".join(notes),
    }
    out_dir = Path(out_dir)
    json_path = out_dir / "model_info" / dataset / threat_model / f"{name}.json"
    ckpt_path = out_dir / "models" / dataset / threat_model / f"{name}.pt"
    weights = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    atomic_save({"state_dict": weights}, ckpt_path)
    atomic_write_text(json_path, json.dumps(info, indent=2) + "\n")
    return json_path, ckpt_path
