"""Subsets of a data set: a class selection (``digits@0-4``) and the validation split carved from
the training data (never the test set)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from bench.common.errors import BenchError
from bench.data.images import HostImages, ImageData


def parse_classes(text: str, num_classes: int, name: str) -> list[int]:
    """'0-4' or '0,2,5' or '5-9,1' -> sorted class indices."""
    chosen: set[int] = set()
    try:
        for part in text.split(","):
            lo, sep, hi = part.partition("-")
            chosen.update(range(int(lo), int(hi) + 1) if sep else [int(lo)])
    except ValueError:
        raise BenchError(f"{name}: class list {text!r} is not like 0-4 or 0,2,5") from None
    bad = [c for c in chosen if not 0 <= c < num_classes]
    if bad or len(chosen) < 2:
        raise BenchError(f"{name}: classes {text!r} must name at least two of 0..{num_classes - 1}")
    return sorted(chosen)


def select_classes(data: ImageData, classes: list[int], label: str) -> ImageData:
    """Keep only ``classes`` (relabelled 0..k-1 in that order); the split stays the dataset's own."""
    lookup = torch.full((data.num_classes,), -1, dtype=torch.int64)
    lookup[torch.tensor(classes)] = torch.arange(len(classes))
    tr, te = lookup[data.y_train] >= 0, lookup[data.y_test] >= 0
    return replace(data, name=label, x_train=data.x_train[tr], y_train=lookup[data.y_train[tr]],
                   x_test=data.x_test[te], y_test=lookup[data.y_test[te]],
                   classes=[data.classes[c] for c in classes], info={**data.info, "classes": classes})


def carve_validation(data: ImageData, fraction: float) -> tuple[ImageData, tuple[torch.Tensor, torch.Tensor]]:
    """Split a stratified validation set off the training data (fixed random_state 0)."""
    from sklearn.model_selection import train_test_split

    if not 0 < fraction < 1:
        raise BenchError(f"validation fraction {fraction} must be in (0, 1)")
    labels = data.y_train.cpu().numpy()
    tr, va = train_test_split(np.arange(len(labels)), test_size=fraction, stratify=labels, random_state=0)
    tr, va = torch.from_numpy(tr).to(data.y_train.device), torch.from_numpy(va).to(data.y_train.device)
    x = data.x_train  # host-resident images stay on the host; the validation images go to the device
    return (replace(data, x_train=x.take(tr) if isinstance(x, HostImages) else x[tr], y_train=data.y_train[tr]),
            (x[va], data.y_train[va]))
