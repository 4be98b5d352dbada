"""Code-level pins that do not depend on training (as torchdistill pins its losses): every built-in method's
loss terms and attack objective, and one PGD step of each threat model, on fixed tiny inputs and fixed
weights, compared with the values stored in ``pins.json``.

A change to any method's arithmetic (a reduction, a temperature, a weight, which network sees which
input) moves its values by far more than the tolerance and fails here in seconds, whatever the seeds of
a training run; float rounding across CPUs moves them by about 1e-6 relative. After an intended change:
``python tests/methods/test_pins.py --update`` rewrites the fixture (say why in the commit).
"""
import json
import sys
from pathlib import Path

import pytest
import torch

from bench.attacks import ce_loss, pgd_ascent
from bench.config.presets import GACD_ABLATION
from bench.models import build_model
from methods import METHODS, Batch, Context, parse_method

PINS = Path(__file__).with_name("pins.json")
REL, ABS = 1e-4, 1e-6   # float32 rounding across CPUs is ~1e-6 relative; a changed formula is not
VARIANTS = sorted({*(n for n in METHODS.names() if n != "natural"), "natural", *GACD_ABLATION,
                   "ard:scale=0.1", "rslad:scale=0.1", "adaad:scale=0.1"})


def _setup(seed: int = 0):
    """Fixed weights and inputs: a 5-class problem on 8x8 grey images, batch 16."""
    torch.manual_seed(seed)
    student = build_model("cnn-narrow", 5, 1, (0.3,), (0.3,))
    teacher = build_model("cnn-wide", 5, 1, (0.3,), (0.3,)).eval().requires_grad_(False)
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(16, 1, 8, 8, generator=g)
    delta = (torch.rand(x.shape, generator=g) * 2 - 1) * 0.2
    x_adv = (x + delta).clamp(0, 1)
    y = torch.arange(16) % 5
    return student, teacher, x, x_adv, y


def values(variant: str) -> dict[str, float]:
    """The variant's loss terms and attack objective on the fixed inputs (epoch 1 of 2, student in train mode)."""
    student, teacher, x, x_adv, y = _setup()
    spec = parse_method(variant)
    ctx = Context(num_classes=5, n_train=64, train_labels=torch.arange(64) % 5, student_dim=student.feature_dim,
                  teacher_dim=teacher.feature_dim, device=torch.device("cpu"), epochs=2, seed=0,
                  build_student=lambda: build_model("cnn-narrow", 5, 1, (0.3,), (0.3,)))
    torch.manual_seed(1)                 # what a method draws when it is built (memory banks, heads, peers)
    method = spec.build(ctx)
    # further teachers by role: another fixed network each
    teachers = {role: build_model("cnn-wide", 5, 1, (0.3,), (0.3,)).eval().requires_grad_(False)
                for role in spec.cls.teachers}
    student.train()
    for net in method.networks().values():
        net.module.train()
    batch = Batch(x, y, torch.arange(16), student, teacher if spec.cls.needs_teacher else None, epoch=1,
                  generator=torch.Generator().manual_seed(2), teachers=teachers)
    out = {}
    if spec.cls.inner is not None:
        out["inner_objective"] = float(method.inner_objective(batch, x_adv.clone().requires_grad_(True)).detach())
    for name, term in method.losses(batch, x_adv if spec.cls.inner is not None else None).items():
        out[name] = float(term.detach())
    return out


def attack_step(norm: str) -> list[float]:
    """One PGD step from a fixed start on a fixed model: the sum and the sum of squares of x_adv - x."""
    student, _, x, _, y = _setup()
    student.eval()
    eps = 0.2 if norm == "Linf" else 1.0
    adv = pgd_ascent(lambda xa: ce_loss(student(xa), y), x, eps, eps / 4, 1, "none", None, norm=norm)
    d = adv - x
    return [float(d.sum()), float((d * d).sum())]


def current() -> dict:
    return {"methods": {v: values(v) for v in VARIANTS}, "attack_step": {n: attack_step(n) for n in ("Linf", "L2")}}


@pytest.fixture(scope="module")
def stored():
    return json.loads(PINS.read_text())


@pytest.mark.parametrize("variant", VARIANTS)
def test_method_loss_terms_are_pinned(variant, stored):
    assert variant in stored["methods"], f"no pin for {variant}: run python {__file__} --update"
    assert values(variant) == pytest.approx(stored["methods"][variant], rel=REL, abs=ABS)


@pytest.mark.parametrize("norm", ["Linf", "L2"])
def test_one_attack_step_is_pinned(norm, stored):
    assert attack_step(norm) == pytest.approx(stored["attack_step"][norm], rel=REL, abs=ABS)


def test_the_pins_catch_a_modest_change(stored, monkeypatch):
    """Halving ARD's KL weight (a change a regression check on trained numbers could miss) fails the pin."""
    from methods import ard

    real = ard.ARD.losses

    def halved(self, batch, x_adv):
        return {k: v * 0.5 for k, v in real(self, batch, x_adv).items()}
    monkeypatch.setattr(ard.ARD, "losses", halved)
    assert values("ard") != pytest.approx(stored["methods"]["ard"], rel=REL, abs=ABS)


if __name__ == "__main__" and "--update" in sys.argv:
    PINS.write_text(json.dumps(current(), indent=1, sort_keys=True) + "\n")
    print(f"written: {PINS}")
