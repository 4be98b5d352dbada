"""Per-image results: which test images each attack left correctly classified, and what follows from them.

An evaluation reduces each attack to one accuracy; the flags behind it are kept too (bit-packed, with
the images' indices in the evaluated split and their labels), so that

- the **worst case** over every attack run ("robust to all of them") is one more number per model;
- **per-class accuracy** (the worst class, the spread across classes: Fair-ARD's and ABSLD's second axis)
  is computed from the same flags;
- two models evaluated on the same images compare **image by image**: the exact McNemar test on the
  discordant pairs (a binomial test at 1/2, ``scipy.stats.binomtest``), pooled over seeds.

Everything here is a pure function of tensors or of the stored dict.
"""
from __future__ import annotations

import base64
import math

import numpy as np
import torch
from scipy.stats import binomtest

PER_IMAGE = "per_image.json"     # beside a run's record.json
FORMAT = 1


def pack(flags: torch.Tensor | np.ndarray) -> str:
    """Booleans -> base64 of their packed bits (8 images a byte, numpy's big-endian bit order)."""
    bits = np.asarray(flags.cpu() if isinstance(flags, torch.Tensor) else flags, dtype=bool)
    return base64.b64encode(np.packbits(bits).tobytes()).decode("ascii")


def unpack(text: str, n: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(base64.b64decode(text), dtype=np.uint8), count=n).astype(bool)


def store(flags: dict[str, torch.Tensor], labels: torch.Tensor, indices=None) -> dict:
    """The JSON-serialisable per-image record of one evaluation: per attack, its images' flags (an attack
    may cover only the first of the images, as AutoAttack on ``aa_n``), the labels and the indices of the
    images in the evaluated split (the first n unless given)."""
    n = len(labels)
    idx = list(range(n)) if indices is None else [int(i) for i in indices]
    return {"format": FORMAT, "n": n, "indices": idx, "labels": [int(v) for v in labels.tolist()],
            "correct": {name: {"n": len(f), "bits": pack(f)} for name, f in flags.items()}}


def load(stored: dict) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """(flags per attack, labels, indices) from ``store``'s dict."""
    flags = {name: unpack(c["bits"], c["n"]) for name, c in stored["correct"].items()}
    return flags, np.asarray(stored["labels"], dtype=np.int64), np.asarray(stored["indices"], dtype=np.int64)


def survived_all(flags: dict, names, m: int):
    """Per image of the first ``m``: correct under every attack in ``names`` that covered it (an attack run
    on fewer images constrains only those)."""
    first = next(iter(flags.values()))
    out = torch.ones(m, dtype=torch.bool, device=first.device) if isinstance(first, torch.Tensor) else (
        np.ones(m, dtype=bool))
    for name in names:
        f = flags[name]
        k = min(m, len(f))
        out[:k] &= f[:k]
    return out


def worst_case(flags: dict) -> tuple[float, int] | None:
    """Accuracy on the images every attack ran on (the shortest flag vector: AutoAttack's ``aa_n`` where it
    ran), counting an image only if it was classified correctly clean and under every attack; None with
    fewer than two attacks besides clean (nothing to combine)."""
    if len([k for k in flags if k != "clean"]) < 2:
        return None
    m = min(len(f) for f in flags.values())
    if m == 0:
        return None
    every = survived_all(flags, list(flags), m)
    return float(every.float().mean() if isinstance(every, torch.Tensor) else every.mean()), m


def per_class(correct, labels, num_classes: int) -> list[float | None]:
    """Accuracy per class on the images ``correct`` covers (its first len(correct) labels); None for a
    class with no image there."""
    c = np.asarray(correct.cpu() if isinstance(correct, torch.Tensor) else correct, dtype=bool)
    y = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)[:len(c)]
    out = []
    for k in range(num_classes):
        mask = y == k
        out.append(float(c[mask].mean()) if mask.any() else None)
    return out


def class_summary(accs: list[float | None]) -> dict:
    """The worst class (its index and accuracy) and the spread (population standard deviation and
    max - min) over the classes that have images."""
    present = [(k, a) for k, a in enumerate(accs) if a is not None]
    if not present:
        return {}
    worst_k, worst = min(present, key=lambda p: p[1])
    values = [a for _, a in present]
    mean = sum(values) / len(values)
    std = math.sqrt(sum((a - mean) ** 2 for a in values) / len(values))
    return {"worst": worst, "worst_class": worst_k, "std": std, "range": max(values) - min(values),
            "classes": len(values)}


def discordant(a, b) -> tuple[int, int]:
    """(images only ``a`` got right, images only ``b`` got right) over their common length."""
    k = min(len(a), len(b))
    a, b = np.asarray(a[:k], dtype=bool), np.asarray(b[:k], dtype=bool)
    return int((a & ~b).sum()), int((~a & b).sum())


def mcnemar(pairs: list[tuple]) -> dict:
    """Exact McNemar test of two models over paired images, pooled over seeds: ``pairs`` holds one
    (flags of a, flags of b) per seed, on the same images; the discordant counts are summed and tested with
    a two-sided binomial test at 1/2 (the exact McNemar test; ``scipy.stats.binomtest``). Returns the counts
    and the p-value (1.0 with no discordant image)."""
    only_a = only_b = 0
    for a, b in pairs:
        x, y = discordant(a, b)
        only_a, only_b = only_a + x, only_b + y
    total = only_a + only_b
    p = float(binomtest(only_a, total, 0.5).pvalue) if total else 1.0
    return {"only_a": only_a, "only_b": only_b, "p": p, "seeds": len(pairs)}


def class_record(accuracy: dict[str, list], classes) -> dict:
    """What a record keeps per class: the class names, each attack's accuracy per class and its summary
    (``class_summary``)."""
    return {"classes": list(classes), "accuracy": accuracy,
            "summary": {name: class_summary(accs) for name, accs in accuracy.items()}}


def flags_for(stored: dict, metric: str) -> np.ndarray | None:
    """One metric's per-image flags from ``store``'s dict: an attack's, or "worst" (correct under every
    attack, on the images all of them covered); None where the evaluation did not run it."""
    flags, _, _ = load(stored)
    if metric == "worst":
        if worst_case(flags) is None:
            return None
        return survived_all(flags, list(flags), min(len(f) for f in flags.values()))
    return flags.get(metric)
