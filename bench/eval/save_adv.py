"""`bench eval --save-adv N`: the first N adversarial examples of each white-box attack, as evaluated.

The evaluation keeps only which images each attack broke; the examples themselves are crafted again
here for the first batch (the first ``batch_size`` images, the batch the evaluation attacked first),
from that batch's own random stream (``bench.eval.state.batch_generator``), so they are the evaluation's
examples; each kept example's prediction is checked against the per-image flags of the evaluation
(``consistent`` in the file). AutoAttack's examples are not kept: it attacks each batch as a cascade
over the images still robust, which this does not replay.

Written: ``adversarial.pt`` (a plain dict of tensors: clean images in [0, 1], each attack's examples,
labels, indices, eps, norm; loads with ``torch.load(..., weights_only=True)``) and per attack
``adv_<attack>.png``: clean | adversarial | perturbation x10 (centred on grey), one row per image.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from bench.attacks.ascent import ATTACKS, predict, whitebox_attack
from bench.common.io import atomic_save, atomic_write_bytes
from bench.common.precision import autocast
from bench.config.schema import EvalConfig
from bench.data.images import to_float
from bench.eval.per_image import load
from bench.eval.state import batch_generator, state_key

FILE = "adversarial.pt"
SHOWN = 8            # rows in each PNG grid (every kept example is in the .pt file)
MAGNIFY = 10.0       # the perturbation's display gain


def first_examples(model: nn.Module, x_u8: torch.Tensor, y: torch.Tensor, cfg: EvalConfig, seed: int,
                   keep: int, per_image: dict | None = None) -> dict:
    """{"clean", "labels", "indices", "eps", "norm", "attacks": {name: examples}, "consistent": {name: bool}}
    for the first ``keep`` images (at most one batch) of every white-box attack in ``cfg.attacks``."""
    model.eval()
    m = min(cfg.batch_size, len(y), cfg.n or len(y))
    keep = min(keep, m)
    xb, yb = to_float(x_u8[:m]), y[:m]
    flags = load(per_image)[0] if per_image else {}
    out = {"clean": xb[:keep].cpu(), "labels": yb[:keep].cpu(), "indices": torch.arange(keep), "eps": cfg.eps,
           "norm": cfg.norm, "attacks": {}, "consistent": {}}
    with autocast(cfg.precision, y.device):
        for name in cfg.attacks:
            if name not in ATTACKS.names():
                continue
            gen = batch_generator(seed, state_key(name, cfg.norm), 0)  # batch 0's stream, as evaluated
            adv = whitebox_attack(model, xb, yb, ATTACKS.get(name), cfg.eps, gen, cfg.norm)[:keep]
            out["attacks"][name] = adv.detach().cpu()
            if name in flags:
                ok = (predict(model, adv, cfg.batch_size) == yb[:keep]).cpu().numpy()
                out["consistent"][name] = bool(np.array_equal(ok, flags[name][:keep]))
    return out


def grid_png(clean: torch.Tensor, adv: torch.Tensor, title: str) -> bytes:
    """clean | adversarial | perturbation x MAGNIFY, one row per image (at most SHOWN), as PNG bytes."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = min(SHOWN, len(clean))
    fig, axes = plt.subplots(rows, 3, figsize=(3 * 1.3, rows * 1.3 + 0.4), squeeze=False)
    for r in range(rows):
        delta = (0.5 + MAGNIFY * (adv[r] - clean[r])).clamp(0, 1)
        for c, (img, label) in enumerate(((clean[r], "clean"), (adv[r], "adversarial"),
                                          (delta, f"perturbation x{MAGNIFY:g}"))):
            ax = axes[r][c]
            pic = img.permute(1, 2, 0).float().numpy()
            ax.imshow(pic[..., 0] if pic.shape[-1] == 1 else pic, cmap="gray", vmin=0, vmax=1,
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(label, fontsize=7)
    fig.suptitle(title, fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def save(examples: dict, out: Path) -> list[Path]:
    """Write the .pt file and one PNG grid per attack; the paths written."""
    out = Path(out)
    atomic_save(examples, out / FILE)
    written = [out / FILE]
    for name, adv in examples["attacks"].items():
        path = out / f"adv_{name}.png"
        atomic_write_bytes(path, grid_png(examples["clean"], adv, f"{name}: {examples['norm']} eps "
                                                                    f"{examples['eps']:.4g}"))
        written.append(path)
    return written
