"""Accuracy under common corruptions (Hendrycks & Dietterich 2019): the evaluation's "corruptions" entry.

On the first ``corruptions_n`` evaluated images, every corruption at severities 1-5: generated on the fly
(``bench.eval.corruptions``, make_cifar_c.py's tables, one numpy Generator per (seed, corruption,
severity), so each cell is reproducible alone), or read from the published CIFAR-10-C / CIFAR-100-C
``.npy`` files (``<dir>/<corruption>.npy``: 5 x 10,000 images, severity-major; ``<dir>/labels.npy``)
when ``corruptions_dir`` is given. The settings say which. Resumable: each (corruption, severity)
accuracy is kept in the evaluation's state as soon as it is known.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from bench.attacks.ascent import predict
from bench.common.errors import BenchError
from bench.config.schema import EvalConfig
from bench.data.images import float_images
from bench.eval.corruptions import APPLICABLE_SMALL_GREY, CORRUPTIONS, NOT_FOR_SMALL_GREY, corrupt
from bench.eval.state import EvalState, Progress

NAME = "corruptions"
SEVERITIES = (1, 2, 3, 4, 5)
SMALL = 16   # images at most this many pixels across, in grey, get APPLICABLE_SMALL_GREY


def chosen(cfg: EvalConfig, shape) -> tuple[tuple[str, ...], str]:
    """The corruptions evaluated on images of ``shape`` (C, H, W), and why any are left out."""
    if cfg.corruptions:
        unknown = sorted(set(cfg.corruptions) - set(CORRUPTIONS))
        if unknown:
            raise BenchError(f"eval.corruptions: unknown {', '.join(unknown)}; known: {', '.join(CORRUPTIONS)}")
        return tuple(cfg.corruptions), "as configured"
    c, h, w = shape
    if c == 1 and max(h, w) <= SMALL:
        left = "; ".join(f"{k}: {why}" for k, why in NOT_FOR_SMALL_GREY.items())
        return APPLICABLE_SMALL_GREY, f"small grey images, left out: {left}"
    return CORRUPTIONS, "all 15"


# robustbench's loader per folder name (its layout: <root>/CIFAR-10-C/<corruption>.npy, labels.npy)
LOADERS = {"CIFAR-10-C": "load_cifar10c", "CIFAR-100-C": "load_cifar100c"}
ZENODO = {"CIFAR-10-C": "https://zenodo.org/record/2535967", "CIFAR-100-C": "https://zenodo.org/record/3555552"}


def published_missing(folder: Path, names) -> list[str]:
    """The files of a published corruption set that ``folder`` lacks (corruptions ``names``, labels)."""
    return [f.name for f in [*(folder / f"{n}.npy" for n in names), folder / "labels.npy"] if not f.is_file()]


def how_to_get(folder: Path) -> str:
    where = f"the extracted {folder.name}.tar from {ZENODO[folder.name]}" if folder.name in ZENODO else \
        "one .npy per corruption and labels.npy"
    return f"put {where} in {folder.parent}, or run once with --download where there is internet"


def check_published(folder: Path, names) -> None:
    """One line naming what is missing and how to get it, before any model is evaluated."""
    missing = published_missing(folder, names)
    if missing:
        raise BenchError(f"published corruptions: {folder} lacks {', '.join(missing[:3])}"
                         f"{' ...' if len(missing) > 3 else ''}: {how_to_get(folder)}")


def fetch_published(folder: Path) -> None:
    """Download a published corruption set with robustbench (only where the user opted in)."""
    if folder.is_dir() or folder.name not in LOADERS:
        return
    from bench.models.robustbench_compat import import_robustbench
    import_robustbench()
    from robustbench.data import ZENODO_CORRUPTIONS_LINKS, BenchmarkDataset
    from robustbench.zenodo_download import zenodo_download
    dataset = BenchmarkDataset.cifar_10 if folder.name == "CIFAR-10-C" else BenchmarkDataset.cifar_100
    folder.parent.mkdir(parents=True, exist_ok=True)
    zenodo_download(*ZENODO_CORRUPTIONS_LINKS[dataset], save_dir=folder.parent)


def _through_robustbench(folder: Path, name: str, severity: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 NHWC images, labels) of one corruption and severity, read by robustbench's own loader."""
    from bench.models.robustbench_compat import import_robustbench
    import_robustbench()
    import robustbench.data as rbdata
    x, y = getattr(rbdata, LOADERS[folder.name])(n, severity, str(folder.parent), corruptions=(name,))
    # its floats are k / 255 in float32: back to the exact bytes
    return (x.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8), y.numpy()


def _published(folder: Path, name: str, severity: int, n: int, y: torch.Tensor) -> torch.Tensor:
    check_published(folder, (name,))
    path, labels = folder / f"{name}.npy", folder / "labels.npy"
    if folder.name in LOADERS:
        images, got = _through_robustbench(folder, name, severity, n)
        if len(got) < n or not np.array_equal(got[:n], y[:n].cpu().numpy()):
            raise BenchError(f"{labels} does not match the evaluated test images' labels: not this data set's "
                             "test split, in its order")
        return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    images = np.load(path, mmap_mode="r")
    per = len(images) // len(SEVERITIES)
    if n > per:
        raise BenchError(f"{path} holds {per} images per severity, fewer than the {n} evaluated")
    block = slice((severity - 1) * per, (severity - 1) * per + n)
    if not np.array_equal(np.load(labels, mmap_mode="r")[block], y[:n].cpu().numpy()):
        raise BenchError(f"{labels} does not match the evaluated test images' labels: not this data set's "
                         "test split, in its order")
    return torch.from_numpy(np.array(images[block])).permute(0, 3, 1, 2)  # (N, H, W, C) -> NCHW, a writable copy


def corruption_accuracy(model: nn.Module, x_u8: torch.Tensor, y: torch.Tensor, cfg: EvalConfig, state: EvalState,
                        desc: str = "") -> tuple[float, dict, dict]:
    """(mean accuracy over corruptions and severities, settings, {corruption: [accuracy per severity]})."""
    n = len(y) if cfg.corruptions_n is None else min(cfg.corruptions_n, len(y))
    names, why = chosen(cfg, tuple(x_u8.shape[1:]))
    folder = Path(cfg.corruptions_dir) if cfg.corruptions_dir else None
    clean = x_u8[:n].cpu()
    progress = Progress(desc, NAME, n * len(names) * len(SEVERITIES))
    out: dict[str, list[float]] = {}
    for i, name in enumerate(names):
        out[name] = []
        for severity in SEVERITIES:
            key = f"{NAME}-{name}-{severity}"
            acc = state.get(key)
            if acc is None:
                if folder is not None:
                    images = _published(folder, name, severity, n, y)
                else:
                    rng = np.random.default_rng([cfg.corruptions_seed, i, severity])
                    images = corrupt(clean, name, severity, rng)
                correct = predict(model, float_images(images, n).to(y.device), cfg.batch_size) == y[:n]
                acc = float(correct.float().mean())
                state.put(key, acc)
            out[name].append(acc)
            progress.update(n)
    mean = float(np.mean([a for accs in out.values() for a in accs])) if out else float("nan")
    progress.close(mean)
    source = (f"published {folder.name} (robustbench.data.{LOADERS[folder.name]})" if folder is not None
              and folder.name in LOADERS else f"published .npy files in {folder}" if folder is not None else
              "generated on the fly (bench/eval/corruptions.py: make_cifar_c.py's tables)")
    settings = {"n": n, "corruptions": list(names), "severities": list(SEVERITIES), "source": source,
                "seed": None if folder is not None else cfg.corruptions_seed, "chosen": why,
                "what": "mean accuracy over every corruption and severity (Hendrycks & Dietterich 2019)"}
    return mean, settings, out


def corruption_record(per: dict[str, list[float]]) -> dict:
    """What a record keeps: each corruption's accuracy per severity, its mean over severities, and each
    severity's mean over corruptions."""
    if not per:
        return {}
    return {"accuracy": per, "mean": {k: float(np.mean(v)) for k, v in per.items()},
            "by_severity": [float(np.mean([v[i] for v in per.values()])) for i in range(len(SEVERITIES))]}
