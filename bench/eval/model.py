"""Evaluate any model under the suite's protocol: the function behind ``bench eval`` and ``bench.evaluate``.

``evaluate_model(model, dataset, attacks, eps, ...)`` takes any ``nn.Module`` that maps images with
pixels in [0, 1] to logits (bench's ``features``/``head`` split is not needed) and returns an
:class:`EvalResult`: every number with the settings that produced it, JSON-serialisable.

With ``out``, per-batch results are written under ``out/eval-state/<key>`` as they are computed, so an
interrupted evaluation resumes where it stopped; the key digests the evaluation settings, the data set
and the model's weights, so a changed setting or model never reads another evaluation's batches. The
finished record lands in ``out/record.json`` and ``out/table.md``.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from bench.attacks.threat import check_eps
from bench.common import distributed
from bench.common.device import resolve_device
from bench.common.errors import BenchError
from bench.common.io import atomic_write_json, atomic_write_text, load_weights
from bench.common.log import log
from bench.common.provenance import git_commit, now, package_versions
from bench.common.tables import markdown_table
from bench.config.schema import EvalConfig, config_hash
from bench.config.threat import default_eps
from bench.data.images import ImageData
from bench.data.sources import load_eval_set
from bench.eval.corruption_eval import corruption_record
from bench.eval.per_image import PER_IMAGE, class_record
from bench.eval.protocol import LABELS, check_attacks, evaluate
from bench.eval.state import EVAL_STATE, evaluate_and_keep
from bench.models import ARCHS, build_model
from bench.models.zoo import load_robustbench_model, locate_robustbench_model

ZOO_PREFIX = "robustbench:"
CURVE = "curve"                      # the attack name that asks for the PGD-20 eps-curve
DEFAULT_ATTACKS = EvalConfig().attacks
# the curve keeps the shape of the default one around whatever eps is evaluated (0.25 x ... 1.5 x eps)
CURVE_FACTORS = tuple(e / EvalConfig().eps for e in EvalConfig().curve_eps)
DIGEST_CHARS = 8                     # of the weights file's sha256 in the default output folder


@dataclass(frozen=True)
class ModelSource:
    """Where evaluated weights come from: a state_dict file with its architecture, or a RobustBench
    zoo entry (``robustbench:NAME``)."""
    weights: str
    arch: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    digest: str = ""                 # sha256 of the file's bytes (empty for a zoo entry)

    @property
    def zoo_name(self) -> str | None:
        return self.weights[len(ZOO_PREFIX):] if self.weights.startswith(ZOO_PREFIX) else None

    @property
    def label(self) -> str:
        return f"RobustBench {self.zoo_name}" if self.zoo_name else f"{Path(self.weights).name} ({self.arch})"

    def default_out(self, dataset: str, reports: str | Path = "reports") -> Path:
        """``reports/eval/<stem>-<digest>``: unique per file (two ``model.pt`` never share a folder), the
        same for the same bytes (so an interrupted evaluation resumes there)."""
        if self.zoo_name:
            stem = f"robustbench-{dataset.partition('@')[0]}-{self.zoo_name}"
        else:
            stem = f"{Path(self.weights).stem}-{self.digest[:DIGEST_CHARS]}"
        return Path(reports) / "eval" / stem


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def resolve_weights(weights: str, arch: str | None, dataset: str, mean=None, std=None) -> ModelSource:
    """Check a ``--weights`` argument before any data is loaded: one BenchError for what is wrong."""

    if (mean is None) != (std is None):
        raise BenchError("give both --mean and --std, or neither")
    mean, std = (tuple(mean) if mean is not None else None), (tuple(std) if std is not None else None)
    if weights.startswith(ZOO_PREFIX):

        name = weights[len(ZOO_PREFIX):]
        if not name:
            raise BenchError("robustbench:NAME needs a model name")
        locate_robustbench_model(name, dataset.partition("@")[0])
        return ModelSource(weights, arch, mean, std)
    if not arch:
        raise BenchError("--arch is required for a weights file (see `bench list`)")
    ARCHS.get(arch)
    path = Path(weights)
    if not path.is_file():
        raise BenchError(f"checkpoint {weights} does not exist")
    return ModelSource(weights, arch, mean, std, file_digest(path))


def load_model(source: ModelSource, data) -> nn.Module:
    """The network ``source`` names, built for ``data`` (an ImageData), on the CPU in eval mode."""

    for stats in (source.mean, source.std):
        if stats is not None and len(stats) != data.in_channels:
            raise BenchError(f"--mean/--std need {data.in_channels} values for {data.name}")
    if source.zoo_name:

        model = load_robustbench_model(source.zoo_name, data.name.partition("@")[0])
    else:
        model = load_weights(build_model(source.arch, data.num_classes, data.in_channels, source.mean, source.std),
                             source.weights, source.arch)
    return model.eval()


def load_test_data(dataset: str, data_dir=None, download: bool = False, image_size: int | None = None):
    """The images evaluated, in host memory: a data set's test split, or every image of a ``folder:``
    (a folder given to eval is a test set; one too large to decode is streamed from its files)."""
    return load_eval_set(dataset, data_dir, download, image_size)


@dataclass(frozen=True)
class EvalResult:
    """One model's evaluation. Accuracies are fractions in [0, 1]."""
    model: str                       # what was evaluated (a label)
    dataset: str
    n: int                           # test images evaluated (AutoAttack: settings["aa"]["n"])
    eps: float
    metrics: dict[str, float]
    curve: dict[str, float]          # eps (as text) -> PGD-20 accuracy; empty unless asked for
    settings: dict
    timings: dict[str, float]
    sanity: dict
    config: dict                     # the EvalConfig, as a dict
    source: dict = field(default_factory=dict)   # the weights it came from, when known
    out: str | None = None           # where record.json was written
    per_class: dict = field(default_factory=dict)    # bench.eval.per_image.class_record: names, accuracy, summary
    per_image: dict = field(default_factory=dict)    # bench.eval.per_image.store: flags per attack, packed
    corruptions: dict = field(default_factory=dict)  # bench.eval.corruption_eval.corruption_record

    def to_dict(self) -> dict:
        return asdict(self)

    def row(self) -> dict[str, str]:
        """The result as one row of the suite's tables."""

        row = {"Model": self.model, **{LABELS.get(k, k): f"{100 * v:.2f}" for k, v in self.metrics.items()},
               "eps": f"{self.eps:.6g}", "norm": self.config.get("norm", "Linf"), "images": str(self.n)}
        if CURVE in self.settings:
            row["curve"] = ", ".join(f"{e}: {100 * v:.1f}" for e, v in self.curve.items())
        if self.sanity:
            row["Sanity"] = ", ".join(self.sanity["flags"]) or "ok"
        return row

    def table(self) -> str:
        import pandas as pd

        return markdown_table(pd.DataFrame([self.row()]))

    def summary(self) -> str:
        """How many images each number rests on."""
        aa = self.settings.get("aa", {}).get("n")
        extra = f" (AutoAttack on the first {aa})" if aa is not None and aa != self.n else ""
        return f"{self.n} test images of {self.dataset} evaluated{extra}"


def eval_config(attacks: Sequence[str] = DEFAULT_ATTACKS, eps: float = EvalConfig().eps, *, n: int | None = None,
                curve: bool | Sequence[float] = False, base: EvalConfig | None = None, **options) -> EvalConfig:
    """The EvalConfig of a request: ``attacks`` may name ``curve``; ``curve=True`` gives the PGD-20
    curve at CURVE_FACTORS x eps, a sequence gives its eps values; ``options`` are further EvalConfig
    fields (``aa_n``, ``aa_version``, ``batch_size``, ...), an unknown one is one BenchError. ``sanity``
    (a bool or a SanityConfig): the sanity checks, by default whenever a robustness number is asked for
    (clean accuracy alone has none to check)."""
    base = base or EvalConfig()
    known = {f.name for f in fields(EvalConfig)}
    sanity = options.pop("sanity", None)  # None: when there is a robustness number to check; or a bool
    unknown = sorted(set(options) - known)
    if unknown:
        raise BenchError(f"unknown evaluation option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    attacks = [attacks] if isinstance(attacks, str) else list(attacks)
    asked_curve = CURVE in attacks
    attacks = [a for a in attacks if a != CURVE]
    check_attacks(attacks)
    if not attacks and not (curve or asked_curve):
        raise BenchError("no attack to run: name at least one of clean, fgsm, pgd20, cw, aa, curve")
    if isinstance(curve, (list, tuple)):
        curve_eps = tuple(float(e) for e in curve)
    else:
        curve_eps = tuple(round(f * eps, 6) for f in CURVE_FACTORS) if (curve or asked_curve) else ()
    if not isinstance(sanity, type(base.sanity)):  # the checks judge robustness numbers: none, no checks
        robust = bool(curve_eps) or any(a != "clean" for a in attacks)
        sanity = replace(base.sanity, enabled=robust if sanity is None else bool(sanity))
    return replace(base, attacks=tuple(attacks), eps=eps, n=n, curve_eps=curve_eps, sanity=sanity,
                   **{k: v for k, v in options.items() if v is not None})


def weights_digest(model: nn.Module) -> str:
    """A short digest of a model's parameters and buffers: the same weights, the same digest."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def state_key(cfg: EvalConfig, dataset: str, model: nn.Module, seed: int) -> str:
    """The evaluation's identity: its settings, the data set, the weights and the seed."""
    return config_hash({"eval": asdict(cfg), "dataset": dataset, "weights": weights_digest(model), "seed": seed})


def state_folder(out: Path, cfg: EvalConfig, dataset: str, model: nn.Module, seed: int) -> Path:
    return Path(out) / EVAL_STATE / state_key(cfg, dataset, model, seed)


def _prepare(model, dataset, attacks, eps, n, curve, seed, device, data_dir, download, image_size, options,
             on_device: str = "auto"):

    data = dataset if isinstance(dataset, ImageData) else load_test_data(dataset, data_dir, download, image_size)
    given = eps is not None
    norm = options.get("norm") or EvalConfig().norm
    eps = float(eps) if given else default_eps(data.name, norm)
    cfg = eval_config(attacks, eps, n=n, curve=curve, **options)
    check_eps(eps, cfg.norm, data.in_channels * data.image_size ** 2)
    if cfg.n is not None and cfg.n > len(data.y_test):
        raise BenchError(f"--n {cfg.n} exceeds the {len(data.y_test)} test images of {data.name}")
    dev = distributed.init(device if isinstance(device, torch.device) else resolve_device(device))
    if seed is None or seed < 0:
        raise BenchError(f"seed must be a non-negative integer, got {seed}")
    model = model.to(dev).eval()
    try:  # channels_last, as bench's own models train and evaluate (faster convolutions on CPU and GPU)
        model = model.to(memory_format=torch.channels_last)
    except RuntimeError:  # a model with 5-D weights (3-D convolutions) keeps its layout
        pass
    return data.to(dev, on_device), model, cfg, eps, ("given" if given else f"the default for {data.name}")


def evaluate_shard(model: nn.Module, dataset="digits", attacks: Sequence[str] = DEFAULT_ATTACKS,
                   eps: float | None = None, *, shard: tuple[int, int], out: str | Path, n: int | None = None,
                   curve: bool | Sequence[float] = False, seed: int = 0, device: str | torch.device = "auto",
                   data_dir=None, download: bool = False, image_size: int | None = None, on_device: str = "auto",
                   **options) -> int:
    """Attack only the i-th of k round-robin shares of the batches into ``out`` (jobs side by side);
    ``evaluate_model`` with the same arguments and ``out`` then merges them. Returns the batches written."""
    data, model, cfg, _, _ = _prepare(model, dataset, attacks, eps, n, curve, seed, device, data_dir, download,
                                      image_size, options, on_device)
    state = state_folder(Path(out), cfg, data.name, model, seed)
    part = evaluate(model, data.x_test, data.y_test, cfg, data.num_classes, seed, state, shard=tuple(shard))
    return part["batches"]


def evaluate_model(model: nn.Module, dataset="digits", attacks: Sequence[str] = DEFAULT_ATTACKS,
                   eps: float | None = None, *, n: int | None = None, curve: bool | Sequence[float] = False,
                   out: str | Path | None = None, seed: int = 0, device: str | torch.device = "auto",
                   data_dir=None, download: bool = False, image_size: int | None = None, label: str | None = None,
                   source: ModelSource | None = None, on_device: str = "auto", **options) -> EvalResult:
    """Evaluate any ``nn.Module`` (images with pixels in [0, 1] -> logits) under the suite's protocol.

    ``dataset``: a data-set name (``digits``, ``cifar10``, ``folder:PATH``, ...) or a loaded ImageData;
    its test split is evaluated (the first ``n`` images). ``attacks``: any of clean, fgsm, pgd20, cw, aa
    and curve (the PGD-20 eps-curve, also ``curve=True``). ``eps``: the threat model's radius (default:
    the data set's). ``options``: further EvalConfig fields (``aa_n``, ``aa_version``, ``batch_size``,
    ``sanity``: True/False, default on when anything beyond clean accuracy is asked for, ...). ``out``: a folder for resumable per-batch state and the record (None: nothing
    is written). Under torchrun every rank attacks its share of the batches and every rank returns
    the merged result.
    """

    data, model, cfg, eps, eps_source = _prepare(model, dataset, attacks, eps, n, curve, seed, device, data_dir,
                                                 download, image_size, options, on_device)
    label = label or (source.label if source else type(model).__name__)
    if distributed.is_main():
        log(f"evaluating {label} on {data.name}: {cfg.norm} eps {eps:.6g} ({eps_source}), {cfg.n or len(data.y_test)} "
            f"test images; attacks {', '.join(cfg.attacks) or 'none'}"
            f"{'; eps-curve ' + str(list(cfg.curve_eps)) if cfg.curve_eps else ''}")

    def passes(state, shard):
        return evaluate(model, data.x_test, data.y_test, cfg, data.num_classes, seed, state, shard=shard)

    def keep(ev):
        result = EvalResult(label, data.name, ev["settings"]["n"], eps, ev["metrics"], ev["curve"], ev["settings"],
                            ev["timings"], ev["sanity"], asdict(cfg), asdict(source) if source else {},
                            str(out) if out is not None else None,
                            class_record(ev["per_class"], data.classes, ev.get("class_n")),
                            ev["per_image"],
                            corruption_record(ev["corruptions"]))
        if out is not None:
            record = {**{k: v for k, v in result.to_dict().items() if k != "per_image"},
                      "versions": package_versions(), "git_commit": git_commit(), "created": now()}
            atomic_write_json(Path(out) / PER_IMAGE, result.per_image)  # beside the record, not inside it
            atomic_write_json(Path(out) / "record.json", record)
            atomic_write_text(Path(out) / "table.md", result.table() + "\n")
        return result

    return evaluate_and_keep(Path(out) if out is not None else None, state_key(cfg, data.name, model, seed), passes,
                             keep)

