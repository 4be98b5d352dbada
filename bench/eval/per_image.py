"""Per-image results: which test images each attack left correctly classified, and what follows from them.

An evaluation reduces each attack to one accuracy; the flags behind it are kept too (bit-packed, with
the images' indices in the evaluated split and their labels), so that

- the **worst case** over every attack run ("robust to all of them") is one more number per model:
  the evaluation's attacks and every other attack it ran at its own ε on those images (the sanity
  check's stronger PGD, the ε-curve's point at ε; stored under ``sanity-*`` and ``curve@*`` names);
- **per-class accuracy** (the worst class, the spread across classes: Fair-ARD's and ABSLD's second axis)
  is computed from the same flags, with each class's image count and what binomial noise alone
  gives at those counts (the spread's noise floor, the worst class's downward bias);
- two models evaluated on the same images compare **image by image**: per seed, which images only
  one of them got right (``discordant``, ``differences``): the seeds x images matrix that the
  ablation's method test (``bench.report.stats.seeds_images_difference``) takes.

Everything here is a pure function of tensors or of the stored dict.
"""
from __future__ import annotations

import base64
import math

import numpy as np
import torch
from scipy.stats import binom, norm

from bench.common.errors import BenchError

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
    """(flags per attack, labels, indices) from ``store``'s dict; a damaged one is one BenchError."""
    try:
        flags = {str(name): unpack(c["bits"], int(c["n"])) for name, c in stored["correct"].items()}
        labels = np.asarray(stored["labels"], dtype=np.int64)
        indices = np.asarray(stored["indices"], dtype=np.int64)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError) as err:
        raise BenchError(f"per-image store is damaged ({type(err).__name__}); evaluate the run again "
                         "(bench report --force, or delete its per_image.json)") from None
    if labels.ndim != 1 or indices.shape != labels.shape or any(len(f) > len(labels) for f in flags.values()):
        raise BenchError("per-image store is damaged (its labels, indices and flags disagree in length)")
    return flags, labels, indices


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


FOLDED = ("sanity-", "curve@")   # name prefixes: attacks that join the worst case and nothing else


def folded_only(name: str) -> bool:
    """Whether ``name`` is an attack kept only for the worst case: a sanity check's attack at the
    evaluation's ε (``sanity-pgd100x3``) or the ε-curve's point at ε (``curve@0.2``)."""
    return name.startswith(FOLDED)


def worst_images(flags: dict) -> int:
    """How many images the worst case is on: those every evaluation attack covered (AutoAttack's
    first ``aa_n`` where it ran). The folded-in attacks do not shrink it: one that covered fewer
    images (the sanity check's first ``sanity.n``) constrains only those (``survived_all``)."""
    own = [len(f) for name, f in flags.items() if not folded_only(name)]
    return min(own or [len(f) for f in flags.values()])


def survived_every(flags: dict):
    """Per image of ``worst_images``: correct clean and under every attack in ``flags``; None with
    fewer than two attacks besides clean (nothing to combine) or no image."""
    if len([k for k in flags if k != "clean"]) < 2:
        return None
    m = worst_images(flags)
    return survived_all(flags, list(flags), m) if m else None


def worst_case(flags: dict) -> tuple[float, int] | None:
    """(accuracy, images) of ``survived_every``: an image counts only if it was classified correctly
    clean and under every attack, the folded-in ones included; None with nothing to combine."""
    every = survived_every(flags)
    if every is None:
        return None
    mean = every.float().mean() if isinstance(every, torch.Tensor) else every.mean()
    return float(mean), len(every)


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


def class_counts(labels, num_classes: int, m: int | None = None) -> list[int]:
    """Images per class among the first ``m`` labels (all without ``m``): each class's n."""
    y = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    y = y if m is None else y[:m]
    return [int((y == k).sum()) for k in range(num_classes)]


def noise_floor(p: float, counts) -> float:
    """The class std that binomial noise alone gives: if every class had accuracy ``p`` and class k
    had ``counts[k]`` images, the per-class accuracies a_k = X_k / n_k (X_k ~ Bin(n_k, p)) would
    still spread. Returned: the square root of their expected population variance, exact,
    E[(1/K) sum (a_k - mean a)^2] = (K - 1) / K^2 * sum_k p (1 - p) / n_k
    (since E[sum (a_k - mean a)^2] = (1 - 1/K) sum_k Var a_k). By Jensen, E[std] itself is a little
    lower (about 6 % for five classes); a spread near this floor is what equal classes show."""
    counts = [n for n in counts if n > 0]
    k = len(counts)
    if k < 2:
        return 0.0
    return math.sqrt((k - 1) / k ** 2 * sum(p * (1 - p) / n for n in counts))


def expected_worst(p: float, counts) -> float:
    """E[min_k X_k / n_k] for independent X_k ~ Bin(n_k, p), exact: the integral over [0, 1] of
    P(min > t) = prod_k P(X_k > floor(t n_k)), a step function that changes only at the attainable
    accuracies j / n_k, so a sum over those steps."""
    counts = [n for n in counts if n > 0]
    if not counts:
        return math.nan
    steps = np.unique(np.concatenate([np.arange(n + 1) / n for n in counts]))
    mids = (steps[:-1] + steps[1:]) / 2
    above = np.ones_like(mids)
    for n in counts:
        above *= binom.sf(np.floor(mids * n), n, p)
    return float(np.sum(np.diff(steps) * above))


def worst_class_bias(p: float, counts) -> float:
    """How far below ``p`` the worst class reads on average when every class truly has accuracy
    ``p`` (negative): the minimum of K noisy accuracies is biased low, the more so the fewer images
    a class has."""
    return expected_worst(p, counts) - p


def wilson(correct: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion (``correct`` of ``n``): a class's accuracy at its n."""
    if n == 0:
        return math.nan, math.nan
    z = float(norm.ppf(0.5 + level / 2))
    q = correct / n
    centre = (q + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(q * (1 - q) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def class_summary(accs: list[float | None], counts: list[int] | None = None) -> dict:
    """The worst class (its index and accuracy) and the spread (population standard deviation and
    max - min) over the classes that have images. With the images per class (``counts``), also what
    noise alone gives at those counts: ``p`` the accuracy over all the images, ``floor`` the class
    std if every class had accuracy ``p`` (``noise_floor``), ``worst_bias`` the worst class's
    expected shortfall below ``p`` then (``worst_class_bias``), and for the worst class itself its
    ``worst_n`` images and ``worst_interval`` (Wilson, 95 %)."""
    present = [(k, a) for k, a in enumerate(accs) if a is not None]
    if not present:
        return {}
    worst_k, worst = min(present, key=lambda p: p[1])
    values = [a for _, a in present]
    mean = sum(values) / len(values)
    std = math.sqrt(sum((a - mean) ** 2 for a in values) / len(values))
    out = {"worst": worst, "worst_class": worst_k, "std": std, "range": max(values) - min(values),
           "classes": len(values)}
    return {**out, **_noise(present, counts, worst_k, worst)} if counts is not None else out


def _noise(present: list[tuple[int, float]], counts: list[int], worst_k: int, worst: float) -> dict:
    """``class_summary``'s noise figures (an accuracy times its class's count is whole images)."""
    sizes = [counts[k] for k, _ in present]
    p = sum(round(a * counts[k]) for k, a in present) / sum(sizes)
    n_worst = counts[worst_k]
    return {"n": sum(sizes), "p": p, "floor": noise_floor(p, sizes),
            "worst_bias": worst_class_bias(p, sizes), "worst_n": n_worst,
            "worst_interval": list(wilson(round(worst * n_worst), n_worst))}


def discordant(a, b) -> tuple[int, int]:
    """(images only ``a`` got right, images only ``b`` got right) over their common length."""
    k = min(len(a), len(b))
    a, b = np.asarray(a[:k], dtype=bool), np.asarray(b[:k], dtype=bool)
    return int((a & ~b).sum()), int((~a & b).sum())


def differences(pairs: list[tuple]) -> np.ndarray:
    """The seeds x images matrix of a - b (int8: 1 where only ``a`` got the image right, -1 where
    only ``b`` did, 0 where they agree): ``pairs`` holds one (flags of a, flags of b) per seed, on
    the same images, cut to the images every pair covers. What the ablation's method test takes
    (``bench.report.stats.seeds_images_difference``). Summing its discordant images over the
    seeds and testing them as independent draws (the pooled exact McNemar test the report used
    before issue 33) ignores that the seeds share the images and that a method's accuracy varies
    from seed to seed: it rejects equal methods far more often than its alpha
    (benchmarks/image_tests_null.py)."""
    if not pairs:
        return np.zeros((0, 0), dtype=np.int8)
    m = min(min(len(a), len(b)) for a, b in pairs)
    rows = [np.asarray(a[:m], dtype=np.int8) - np.asarray(b[:m], dtype=np.int8) for a, b in pairs]
    return np.stack(rows)


def class_record(accuracy: dict[str, list], classes, counts: dict[str, list] | None = None) -> dict:
    """What a record keeps per class: the class names, each attack's accuracy per class, its images
    per class (``n``: the per-class accuracies' sample sizes; records before them have none) and its
    summary (``class_summary``, with the noise figures where the counts are known)."""
    counts = counts or {}
    summary = {name: class_summary(accs, counts.get(name)) for name, accs in accuracy.items()}
    return {"classes": list(classes), "accuracy": accuracy, "n": counts, "summary": summary}


def with_counts(record: dict, stored: dict | None) -> dict:
    """An older record's per-class block (no images per class) completed from its per_image.json:
    each attack's counts from the stored labels on the images its flags cover, and the summaries
    recomputed with them. Unchanged where it has counts already, where there is no store, or where
    the stored flags do not give the record's per-class accuracies (a store of other images)."""
    if not record or record.get("n") or not stored:
        return record
    flags, labels, _ = load(stored)
    k = len(record["classes"])
    counts = {}
    for name, accs in record["accuracy"].items():
        if name not in flags or not _same(per_class(flags[name], labels, k), accs):
            return record
        counts[name] = class_counts(labels, k, len(flags[name]))
    return class_record(record["accuracy"], record["classes"], counts)


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all((x is None) == (y is None) and (x is None or abs(x - y) < 1e-6)
                                    for x, y in zip(a, b))


def flags_for(stored: dict, metric: str) -> np.ndarray | None:
    """One metric's per-image flags from ``store``'s dict: an attack's, or "worst" (correct under every
    attack, on the images all of them covered); None where the evaluation did not run it."""
    flags, _, _ = load(stored)
    if metric == "worst":  # the very images and attacks the record's worst case counted
        return survived_every(flags)
    return flags.get(metric)
