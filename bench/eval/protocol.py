"""Evaluation under one protocol: clean, FGSM, PGD-20, CW, AutoAttack, a PGD eps-curve and the
sanity checks that flag an unreliable robustness number, under the L-inf or the L2 threat model
(``EvalConfig.norm``, recorded in every attack's settings).

Accuracies are fractions in [0, 1]; every attack's settings are returned next to its number.

Resumable: with a ``state_dir``, each (attack, batch of ``cfg.batch_size`` images) writes its
per-image results there atomically as soon as it is done, and a re-run reads them back instead of
attacking again. Every batch draws its random start from its own generator, seeded by (seed, attack,
batch index), so an evaluation killed at any point and resumed gives exactly the numbers of one that
was never interrupted. AutoAttack runs per batch and per attack (APGD-CE, APGD-T, FAB-T, Square in
the standard order, each on the images still robust), which also yields the accuracy after each
attack for the black-box check.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from bench.attacks.ascent import AA_NAME, ATTACKS, batched, predict
from bench.attacks.threat import check_eps
from bench.common.errors import BenchError
from bench.common.precision import autocast
from bench.config.schema import EvalConfig
from bench.data.images import float_images
from bench.eval import per_image
from bench.eval.corruption_eval import NAME as CORRUPTIONS
from bench.eval.corruption_eval import corruption_accuracy
from bench.eval.sanity import sanity_checks
from bench.eval.state import EvalState, Progress, attack_flags, mine, state_key

EVAL_NAMES = ("clean", *ATTACKS.names(), AA_NAME, CORRUPTIONS)
LABELS = {"clean": "Clean", "fgsm": "FGSM", "pgd20": "PGD-20", "cw": "CW∞", "aa": "AutoAttack",
          "worst": "Worst case", CORRUPTIONS: "Corruptions"}
# table titles; "worst": correct under every attack run at eps (bench.eval.per_image); "corruptions":
# mean accuracy under common corruptions (bench.eval.corruption_eval), not an attack: it joins
# neither the worst case nor the sanity checks


AA_ATTACKS = ("apgd-ce", "apgd-t", "fab-t", "square", "apgd-dlr", "fab")  # pyautoattack's names, any version


def check_attacks(names, aa_attacks=()) -> None:
    for name in names:
        if name not in EVAL_NAMES:
            raise BenchError(f"unknown attack {name!r}; known: {', '.join(EVAL_NAMES)}")
    for name in aa_attacks:
        if name not in AA_ATTACKS:
            raise BenchError(f"eval.aa_attacks: unknown AutoAttack attack {name!r}; known: {', '.join(AA_ATTACKS)}")


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        msg = record.getMessage()
        if msg not in self.messages:
            self.messages.append(msg)


def autoattack_flags(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, num_classes: int,
                     version: str, seed: int, batch_size: int, state: EvalState, desc: str = "",
                     shard: tuple[int, int] | None = None, norm: str = "Linf", only: tuple[str, ...] = ()):
    """AutoAttack (pyautoattack, ``norm`` "Linf" or "L2"), per batch and per attack; returns (per-image
    robustness, accuracy after each attack, settings, AutoAttack's own warnings). The model must be in
    eval mode; target classes are min(9, C-1) for APGD-T and FAB-T. ``only``: run just these of the
    version's attacks (with the version's settings, in its order); the settings list what ran."""
    from pyautoattack import AutoAttack

    logger = logging.getLogger("auto-attack")
    logger.setLevel(logging.WARNING)
    collect = _Collect()
    logger.addHandler(collect)
    adversary = AutoAttack(model, device=x.device, eps=eps, norm=norm, seed=seed, version=version)
    n_targets = min(9, num_classes - 1)
    adversary.apgd_targeted.n_target_classes = n_targets
    adversary.fab.n_target_classes = n_targets
    unknown = set(only) - set(adversary.attacks_to_run)
    if unknown:
        raise BenchError(f"eval.aa_attacks: {', '.join(sorted(unknown))} not in AutoAttack {version!r} "
                         f"({', '.join(adversary.attacks_to_run)})")
    attacks = [a for a in adversary.attacks_to_run if not only or a in only]
    after = {a: 0 for a in ["clean", *attacks]}
    progress = Progress(desc, AA_NAME, len(x))

    def run_batch(index, xb, yb):
        key = f"{state_key(AA_NAME, norm)}-{index:05d}"
        done = state.get(key) or {}
        if "clean" not in done:
            done["clean"] = (predict(model, xb, batch_size) == yb).tolist()
            state.put(key, done)
        robust = torch.tensor(done["clean"], dtype=torch.bool, device=y.device)
        for attack in attacks:
            if attack not in done:
                idx = robust.nonzero().squeeze(1)
                if len(idx):
                    adversary.attacks_to_run = [attack]
                    x_adv, _ = adversary.run_standard_evaluation(xb[idx], yb[idx], batch_size=batch_size)
                    robust[idx] = predict(model, x_adv, batch_size) == yb[idx]
                done[attack] = robust.tolist()
                state.put(key, done)
            robust = torch.tensor(done[attack], dtype=torch.bool, device=y.device)
        for a in after:
            after[a] += sum(done[a])
        progress.update(len(xb))
        return robust

    try:
        robust = batched(run_batch, x, y, batch_size=batch_size, select=lambda index: mine(index, shard),
                         empty=torch.zeros(0, dtype=torch.bool, device=y.device))
    finally:
        adversary.attacks_to_run = attacks
        logger.removeHandler(collect)
    progress.close(float(robust.float().mean()) if len(robust) else None)
    settings = {"name": AA_NAME, "package": "pyautoattack", "version": version, "seed": seed, "eps": eps,
                "norm": norm, "attacks": attacks, "n_target_classes": n_targets, "n": len(x),
                "batch_size": batch_size}
    return robust, {a: v / len(x) for a, v in after.items()}, settings, collect.messages


def evaluate(model: nn.Module, x_test_u8: torch.Tensor, y_test: torch.Tensor, cfg: EvalConfig,
             num_classes: int, seed: int = 0, state_dir: Path | None = None, desc: str = "",
             shard: tuple[int, int] | None = None) -> dict:
    """Evaluate ``model`` (put in eval mode) on the first ``cfg.n`` test images.

    Returns {"metrics": {name: acc}, "curve": {eps: acc}, "settings": {...}, "timings": {...},
    "sanity": {...}, "per_class": {name: [acc per class]}, "class_n": {name: [images per class]},
    "per_image": ``bench.eval.per_image.store``'s dict} (sanity empty when ``cfg.sanity.enabled`` is
    false); metrics hold "worst" (correct under every attack run at eps, the sanity check's and the
    curve's point at eps included: their flags are in the per-image store too) when two or more ran.

    ``shard=(i, k)``: attack only the i-th of k round-robin shares of the batches (clean, FGSM, PGD,
    CW, AutoAttack, the curve), write them to ``state_dir`` and return {"shard": ..., "batches": ...}.
    An unsharded call on the same ``state_dir`` then finds every batch done and merges them; each batch
    draws its randomness from its own (seed, attack, batch) generator, so the merged result is the
    unsharded one, number for number.
    """
    if shard is not None and state_dir is None:
        raise BenchError("a sharded evaluation needs a state folder to write its batches to")
    check_attacks(cfg.attacks, cfg.aa_attacks)
    check_eps(cfg.eps, cfg.norm, math.prod(x_test_u8.shape[1:]))
    model.eval()
    n = len(y_test) if cfg.n is None else min(cfg.n, len(y_test))
    x, y = float_images(x_test_u8, n), y_test[:n]  # batch by batch where the images are not on the device
    with autocast(cfg.precision, y.device):  # fp32 unless bf16 is asked for
        return _evaluate(model, x, y, cfg, num_classes, seed, EvalState(state_dir), desc, shard, x_test_u8)


def _evaluate(model, x, y, cfg: EvalConfig, num_classes: int, seed: int, state: EvalState, desc: str,
              shard: tuple[int, int] | None, x_u8=None) -> dict:
    n = len(y)
    # (each attack's settings hold its own norm too)
    metrics, settings, timings, flags = {}, {"n": n, "norm": cfg.norm, "precision": cfg.precision}, {}, {}
    aa_after, aa_warnings, corrupted = {}, [], {}
    for name in cfg.attacks:
        t0 = time.perf_counter()
        if name == CORRUPTIONS:  # no gradients, no flags: computed whole in the unsharded pass
            if shard is None:
                metrics[name], settings[name], corrupted = corruption_accuracy(model, x_u8, y, cfg, state, desc)
                timings[name] = round(time.perf_counter() - t0, 3)
            continue
        if name == "clean":
            flags["clean"] = predict(model, x, cfg.batch_size) == y  # one forward pass: never sharded
            settings["clean"] = {"n": n}
        elif name == AA_NAME:
            n_aa = n if cfg.aa_n is None else min(cfg.aa_n, n)
            flags[name], aa_after, settings[name], aa_warnings = autoattack_flags(
                model, x[:n_aa], y[:n_aa], cfg.eps, num_classes, cfg.aa_version, cfg.aa_seed, cfg.batch_size,
                state, desc, shard, cfg.norm, cfg.aa_attacks)
        else:
            spec = ATTACKS.get(name)
            flags[name] = attack_flags(model, x, y, spec, cfg.eps, cfg.batch_size, seed, state_key(name, cfg.norm),
                                       state, desc, shard, cfg.norm)
            settings[name] = {**spec.settings(cfg.eps, cfg.norm), "n": n}
        metrics[name] = float(flags[name].float().mean())
        timings[name] = round(time.perf_counter() - t0, 3)
    curve, folded = {}, {}  # folded: other attacks at the evaluation's eps, for the worst case
    if cfg.curve_eps:
        t0 = time.perf_counter()
        spec = ATTACKS.get("pgd20")
        for eps in cfg.curve_eps:
            key = state_key(f"curve@{eps:.6g}", cfg.norm)
            correct = attack_flags(model, x, y, spec, eps, cfg.batch_size, seed, key, state, desc,
                                   shard, cfg.norm)
            curve[f"{eps:.6g}"] = float(correct.float().mean())
            if f"{eps:.6g}" == f"{cfg.eps:.6g}":  # the point at eps: PGD-20 from other random starts
                folded[f"curve@{eps:.6g}"] = correct
        settings["curve"] = {**spec.settings(0.0, cfg.norm), "eps": list(cfg.curve_eps), "n": n}
        timings["curve"] = round(time.perf_counter() - t0, 3)
    if shard is not None:  # the merge (an unsharded call) computes the metrics and the sanity checks
        return {"shard": list(shard), "batches": sum(mine(b, shard) for b in range(-(-n // cfg.batch_size))),
                "timings": timings}
    classes = {name: per_image.per_class(f, y, num_classes) for name, f in flags.items()}
    class_n = {name: per_image.class_counts(y, num_classes, len(f)) for name, f in flags.items()}
    sanity = {}
    if cfg.sanity.enabled:  # before the worst case: its attack at eps joins it (``folded``)
        t0 = time.perf_counter()
        sanity = sanity_checks(model, x, y, cfg, flags, aa_after, aa_warnings, seed, state, desc,
                               keep=folded)
        timings["sanity"] = round(time.perf_counter() - t0, 3)
    every = {**flags, **folded}
    _worst_case(every, metrics, settings)
    return {"metrics": metrics, "curve": curve, "settings": settings, "timings": timings, "sanity": sanity,
            "per_class": classes, "class_n": class_n, "per_image": per_image.store(every, y),
            "corruptions": corrupted}


def _worst_case(flags: dict, metrics: dict, settings: dict) -> None:
    """metrics["worst"] and its settings: on the images every evaluation attack covered
    (AutoAttack's first aa_n where it ran), correct clean and under every attack run at eps, the
    sanity check's and the curve's point at eps included, each on the images it covered
    (``settings["worst"]["folded"]``: how many of them; records before issue 33 have no such key)."""
    worst = per_image.worst_case(flags)
    if worst is None:
        return
    metrics["worst"], n = worst
    folded = {k: min(len(f), n) for k, f in flags.items() if per_image.folded_only(k)}
    settings["worst"] = {"n": n, "attacks": list(flags), "folded": folded,
                         "what": "correct clean and under every attack run at the evaluation's eps, "
                                 "image by image (the sanity check's stronger PGD and the eps-curve's "
                                 "point at eps included; the large-eps check is at another eps and "
                                 "is not)"}


def without_sanity(cfg: EvalConfig) -> EvalConfig:
    return replace(cfg, sanity=replace(cfg.sanity, enabled=False))
