"""RobustBench model-zoo networks as bench teachers, loaded offline.

RobustBench keeps a zoo model's weights at ``<model_dir>/<dataset>/<threat_model>/<name>.pt`` (e.g.
``cifar10/Linf/Zhang2019Theoretically.pt``; ``corruptions_3d`` shares the ``corruptions`` folder).
bench reads that layout, so a RobustBench model folder can be reused as the model directory, which
defaults to ``$BENCH_ROBUSTBENCH_DIR``, else ``$XDG_CACHE_HOME/bench/robustbench``
(``~/.cache/bench/robustbench``).

Loading goes through robustbench's own ``load_model`` (robustbench 1.1.1, read for this): it reads
that layout, builds the zoo entry's network, takes ``['last']`` where an entry needs it, strips the
``module.``/``model.`` key prefixes, re-adds ``model.`` for ImageNet wrappers and relaxes the strict
load only for the entries it knows to need it -- what bench used to copy. Two parts of it are unsafe
here and bench guards them:

* it downloads a missing file (Google Drive, or timm's hub for timm-served entries) -- bench first
  checks the file is on disk (else one line naming the path) and refuses timm-served entries,
  ensembles and ImageNet's ``Standard_R50`` (torchvision weights), then replaces robustbench's download
  functions for the call, so a download attempt fails instead of reaching the network;
* it calls ``torch.load`` without ``weights_only`` -- bench sets ``TORCH_FORCE_WEIGHTS_ONLY_LOAD`` for
  the call, which every torch it supports reads (weights only, whatever the default), and refuses to
  load while ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` is set.

The loaded network is wrapped in :class:`ZooModel`, a :class:`~bench.models.base.BenchModel`.
Not supported offline: models RobustBench serves through timm (the XCiT models, some ImageNet
corruption models), ensembles stored as several files, and ImageNet's ``Standard_R50``.
"""
from __future__ import annotations

import contextlib
import csv
import difflib
import os
import pickle
import types
import warnings
import zipfile
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from bench.common.errors import BenchError
from bench.models.base import BenchModel
from bench.models.robustbench_compat import import_robustbench

MODEL_DIR_ENV = "BENCH_ROBUSTBENCH_DIR"
# what the zoo reports about the entries bench knows (training method, clean and AutoAttack %), with sources
ZOO_MODELS = Path(__file__).with_name("zoo_models.csv")
# robustbench's load_model calls torch.load without weights_only; torch >= 2.4 reads this variable
# and then loads weights only whatever the call says (the default is weights_only=True from 2.6 on)
WEIGHTS_ONLY_ENV = "TORCH_FORCE_WEIGHTS_ONLY_LOAD"
NO_WEIGHTS_ONLY_ENV = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"


def default_model_dir() -> Path:
    """$BENCH_ROBUSTBENCH_DIR, else $XDG_CACHE_HOME/bench/robustbench (~/.cache/bench/robustbench)."""
    env = os.environ.get(MODEL_DIR_ENV)
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "bench" / "robustbench"


def _base_dir(model_dir: str | Path | None) -> Path:
    return default_model_dir() if model_dir is None else Path(model_dir).expanduser()


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
    ds, tm = _enums(dataset, threat_model)  # imports robustbench through the shims first
    from robustbench.model_zoo import model_dicts

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
    return _base_dir(model_dir) / ds.value / tm.value / f"{name}.pt"


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


@contextlib.contextmanager
def _weights_only() -> Iterator[None]:
    """While the body runs, every torch.load loads weights only (robustbench's call included, which
    does not say): the environment variable torch reads, set and then restored."""
    if os.environ.get(NO_WEIGHTS_ONLY_ENV, "0").lower() in ("1", "y", "yes", "true"):
        raise BenchError(f"${NO_WEIGHTS_ONLY_ENV} is set, which makes torch.load run arbitrary pickled code; "
                         f"bench reads RobustBench checkpoints with weights_only=True only: unset it")
    before = os.environ.get(WEIGHTS_ONLY_ENV)
    os.environ[WEIGHTS_ONLY_ENV] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(WEIGHTS_ONLY_ENV, None)
        else:
            os.environ[WEIGHTS_ONLY_ENV] = before


@contextlib.contextmanager
def _downloads_refused(rb_utils: types.ModuleType) -> Iterator[None]:
    """While the body runs, robustbench's download functions raise instead of fetching anything."""
    def refuse(gdrive_id, fname_save):
        raise BenchError(f"RobustBench checkpoint {fname_save} not found (Google Drive id {gdrive_id}): "
                         f"bench never downloads")

    names = [n for n in ("download_gdrive", "download_gdrive_new") if hasattr(rb_utils, n)]
    saved = {n: getattr(rb_utils, n) for n in names}
    for n in names:
        setattr(rb_utils, n, refuse)
    try:
        yield
    finally:
        for n, f in saved.items():
            setattr(rb_utils, n, f)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return " ".join(text.split())[:300] if text else type(err).__name__


def _unreadable(path: Path, err: BaseException) -> BenchError:
    return BenchError(f"checkpoint {path} is not a readable PyTorch weights file (truncated, not a torch "
                      f"file, or holds more than weights): {_first_line(err)[:160]}")


def load_robustbench_model(name: str, dataset: str = "cifar10", threat_model: str = "Linf",
                           model_dir: str | Path | None = None) -> ZooModel:
    """A RobustBench zoo model from a checkpoint already on disk (never downloads), as a ZooModel
    on the CPU in eval mode, loaded by robustbench's own ``load_model`` with ``weights_only=True``.

    The checkpoint must be at ``<model_dir>/<dataset>/<threat_model>/<name>.pt``, RobustBench's own
    layout; ``model_dir`` defaults to :func:`default_model_dir`.
    """
    _, path = locate_robustbench_model(name, dataset, threat_model, model_dir)  # one line if not on disk
    ds, tm = _enums(dataset, threat_model)
    rb_utils = import_robustbench().utils
    with _weights_only(), _downloads_refused(rb_utils), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        try:
            network = rb_utils.load_model(name, model_dir=_base_dir(model_dir), dataset=ds, threat_model=tm)
        except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError, OSError) as err:
            raise _unreadable(path, err) from None
        except RuntimeError as err:
            # load_state_dict's mismatch report; any other RuntimeError comes from torch.load
            if "loading state_dict" not in str(err):
                raise _unreadable(path, err) from None
            raise BenchError(f"checkpoint {path} does not fit {name}: {_first_line(err)}") from None
        except (KeyError, IndexError, TypeError, AttributeError) as err:
            raise BenchError(f"checkpoint {path} does not hold a state_dict robustbench can load into {name} "
                             f"({type(err).__name__}: {_first_line(err)})") from None
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


@lru_cache(maxsize=None)
def _zoo_rows() -> tuple[dict, ...]:
    with open(ZOO_MODELS, newline="") as fh:
        return tuple(csv.DictReader(line for line in fh if not line.startswith("#")))


def zoo_metadata(name: str, dataset: str, threat_model: str = "Linf") -> dict | None:
    """What the zoo reports about an entry (training method, clean and AutoAttack %), if bench knows it."""
    return next((r for r in _zoo_rows() if r["name"] == name and r["dataset"] == dataset
                 and r["threat_model"] == threat_model), None)
