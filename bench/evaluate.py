"""Evaluation under one protocol: clean, FGSM, PGD-20, CW-inf, AutoAttack and a PGD eps-curve.

Accuracies are fractions in [0, 1]; every attack's settings are returned next to its number.
"""
from __future__ import annotations

import time

import torch
from torch import nn

from bench.attacks import AA_NAME, ATTACKS, autoattack_eval, predict, whitebox_attack
from bench.config import EvalConfig
from bench.data import to_float
from bench.errors import BenchError

EVAL_NAMES = ("clean", *ATTACKS.names(), AA_NAME)


def check_attacks(names) -> None:
    for name in names:
        if name not in EVAL_NAMES:
            raise BenchError(f"unknown attack {name!r}; known: {', '.join(EVAL_NAMES)}")


def _attack_accuracy(model, x, y, spec, eps, batch_size, generator) -> float:
    correct = 0
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        adv = whitebox_attack(model, xb, yb, spec, eps, generator)
        with torch.no_grad():
            correct += int((model(adv).argmax(1) == yb).sum())
    return correct / len(x)


def evaluate(model: nn.Module, x_test_u8: torch.Tensor, y_test: torch.Tensor, cfg: EvalConfig,
             num_classes: int, seed: int = 0) -> dict:
    """Evaluate ``model`` (put in eval mode) on the first ``cfg.n`` test images.

    Returns {"metrics": {name: acc}, "curve": {eps: acc}, "settings": {...}, "timings": {...}}.
    """
    check_attacks(cfg.attacks)
    model.eval()
    n = len(y_test) if cfg.n is None else min(cfg.n, len(y_test))
    x, y = to_float(x_test_u8[:n]), y_test[:n]
    generator = torch.Generator().manual_seed(seed)
    metrics, settings, timings = {}, {"n": n}, {}
    for name in cfg.attacks:
        t0 = time.perf_counter()
        if name == "clean":
            metrics["clean"] = float((predict(model, x, cfg.batch_size) == y).float().mean())
            settings["clean"] = {"n": n}
        elif name == AA_NAME:
            n_aa = n if cfg.aa_n is None else min(cfg.aa_n, n)
            robust, settings[name] = autoattack_eval(model, x[:n_aa], y[:n_aa], cfg.eps, num_classes,
                                                     cfg.aa_version, cfg.aa_seed, cfg.batch_size)
            metrics[name] = float(robust.float().mean())
        else:
            spec = ATTACKS.get(name)
            metrics[name] = _attack_accuracy(model, x, y, spec, cfg.eps, cfg.batch_size, generator)
            settings[name] = {**spec.settings(cfg.eps), "n": n}
        timings[name] = round(time.perf_counter() - t0, 3)
    curve = {}
    if cfg.curve_eps:
        t0 = time.perf_counter()
        spec = ATTACKS.get("pgd20")
        for eps in cfg.curve_eps:
            curve[f"{eps:.6g}"] = _attack_accuracy(model, x, y, spec, eps, cfg.batch_size, generator)
        settings["curve"] = {**spec.settings(0.0), "eps": list(cfg.curve_eps), "n": n}
        timings["curve"] = round(time.perf_counter() - t0, 3)
    return {"metrics": metrics, "curve": curve, "settings": settings, "timings": timings}
