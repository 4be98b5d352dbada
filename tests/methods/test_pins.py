"""Code-level pins that do not depend on training (as torchdistill pins its losses), in float64:
every built-in method variant through two steps of a fixed trajectory, compared with the numbers
stored in ``pins.json``.

The fixture: a 5-class problem on 8x8 grey images, batch 16, the suite's small CNN (batch norm) in
float64, heads fitted so that the logits are a few units (a temperature then matters) and teacher
and student are right on most samples, not all. Each step (0-based epochs 2 and 3 of 10: a 30 %
warm-up starts at the second; lr ratios 1 and 0.5) pins

* the attack objective and its gradient at a fixed x', and the harness's attack (3 steps);
* every loss term, and the gradient of their sum with respect to the student's parameters (and the
  method's modules' and further networks') -- per-tensor sums and a fixed random projection of the
  flattened gradient -- and with respect to the inputs x and x';
* the state after the step: ``method.state``, the networks' batch-norm buffers, ``facts()``, and
  the same after ``end_epoch``.

So a change to a method's arithmetic, a temperature, which tensor is detached, the order or mode of
its forwards or its state update fails here in seconds. The tolerance is 1e-7 relative: moving every
weight and input by 1e-13 relative (far more than float64 rounding on another CPU) moves no pinned
number by more than about 2e-9 (tested below): no attack step or argmax of the fixture is near
a tie.
After an intended change, ``python tests/methods/test_pins.py --update`` rewrites the fixture (say
why in the commit). ``first_mismatches`` is the check that the mutation sweep
(benchmarks/mutation_sweep.py) runs on changed options, gradient sites and attack declarations.
"""
import contextlib
import copy
import functools
import json
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.attacks import ce_loss, pgd_ascent
from bench.config.presets import GACD_ABLATION
from bench.config.schema import AttackConfig
from bench.models.small import SmallCNN
from bench.train.loop import adversarial_examples
from bench.methods import METHODS, Batch, Context, parse_method
from bench.methods.base import EpochEnd

PINS = Path(__file__).with_name("pins.json")
REL, ABS = 1e-7, 1e-12   # float64 rounding elsewhere moves far less, a changed formula far more
C, B, N_TRAIN, EPOCHS = 5, 16, 64, 10
STEPS = ((2, 1.0, 0.5), (3, 0.5, 0.25))   # (0-based epoch, its lr ratio, the next epoch's)
ATTACK = AttackConfig(eps=0.1, step_ratio=0.25, steps=3)
STUDENT, TEACHER = (8, 16, 16), (16, 32, 32)   # SmallCNN widths: cnn-narrow's, cnn-wide's halved
# every built-in method with its defaults, the GACD ablation, the magnitude options, and the
# variants where the mutation sweep changes options the defaults leave inert (mutation_sweep.WHERE)
VARIANTS = sorted({*METHODS.names(), *GACD_ABLATION, "ard:scale=0.1", "rslad:scale=0.1",
                   "adaad:scale=0.1", "crd:k=32", "gacd:estimator=nce:k=32"})


# --- the fixture --------------------------------------------------------------------------

def _batch_norms(net: nn.Module):
    return [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def _calibrate(net: nn.Module, x: torch.Tensor) -> None:
    """Running statistics of one train-mode pass over ``x`` (as after some training: eval and
    train modes give logits of the same size)."""
    for bn in _batch_norms(net):
        bn.reset_running_stats()
        bn.momentum = None
    net.train()
    with torch.no_grad():
        net(x)
    for bn in _batch_norms(net):
        bn.momentum = 0.1


def _fit_head(net, x, y, noise: float, seed: int) -> None:
    """The head as ridge regression to the one-hot labels from the train-mode features of ``x``,
    plus ``noise`` x its spread of random weights, scaled to logits of sd 2: mostly right."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        f = net.train().features(x)
        fc = f - f.mean(0)
        gram = fc.T @ fc
        ridge = gram + 0.1 * gram.trace() / len(gram) * torch.eye(len(gram), dtype=gram.dtype)
        w = torch.linalg.solve(ridge, fc.T @ (F.one_hot(y, C).double() - 1 / C))
        w = w + noise * w.std() * torch.randn(w.shape, generator=g, dtype=torch.float64)
        w = w * (2.0 / (fc @ w).std())
        net.linear.weight.copy_(w.T)
        jitter = 0.1 * torch.randn(C, generator=g, dtype=torch.float64)
        net.linear.bias.copy_(-w.T @ f.mean(0) + jitter)


def _network(widths: tuple, seed: int, noise: float, x, y, calibration) -> nn.Module:
    """The suite's digits CNN (conv-bn-relu x 3, pooling, linear head), narrow: float64 is fast."""
    torch.manual_seed(seed)
    net = SmallCNN(widths, C, 1, (0.3,), (0.3,)).double()
    _calibrate(net, calibration)
    _fit_head(net, x, y, noise, seed)
    return net.train()


@functools.lru_cache(maxsize=1)
def _fixture() -> dict:
    """Inputs and networks, built once (each use takes copies)."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(B, 1, 8, 8, generator=g, dtype=torch.float64)
    # a fixed x' for the attack objective (the attack's own x' is in each step)
    delta = (torch.rand(x.shape, generator=g, dtype=torch.float64) * 2 - 1) * 0.25
    x_adv = (x + delta).clamp(0, 1)
    calibration = torch.rand(64, 1, 8, 8, generator=g, dtype=torch.float64)
    y = torch.arange(B) % C
    nets = {"student": _network(STUDENT, 0, 0.3, x, y, calibration),
            "peer": _network(STUDENT, 3, 1.5, x, y, calibration)}
    for role, seed, noise in (("teacher", 1, 2.0), ("natural", 2, 1.0)):
        nets[role] = _network(TEACHER, seed, noise, x, y, calibration).eval().requires_grad_(False)
    return {"x": x, "x_adv": x_adv, "y": y, **nets}


# --- summaries -----------------------------------------------------------------------------

@functools.lru_cache(maxsize=64)
def _direction(n: int) -> torch.Tensor:
    return torch.randn(n, generator=torch.Generator().manual_seed(n), dtype=torch.float64)


def _project(t: torch.Tensor) -> float:
    """A fixed random projection of the flattened tensor."""
    return float(t.detach().double().flatten() @ _direction(t.numel()))


def _summary(t: torch.Tensor) -> list[float]:
    t = t.detach().double()
    return t.flatten().tolist() if t.numel() <= 2 * C else [float(t.sum()), _project(t)]


def _grad_summary(named: list[tuple[str, torch.Tensor]]) -> dict[str, list[float]]:
    """Per-tensor sums and one projection of the whole flattened gradient."""
    out = {name: [float(g.double().sum())] for name, g in named}
    out["projection"] = [_project(torch.cat([g.flatten() for _, g in named]))] if named else []
    return out


def _state(method) -> dict[str, list[float]]:
    out = {}
    for key, value in sorted(method.state.items()):
        out[key] = _summary(value) if isinstance(value, torch.Tensor) else [float(value)]
    for key, value in sorted(method.facts().items()):
        values = value if isinstance(value, (list, tuple)) else [value]
        out[f"facts.{key}"] = [float(v) for v in values]
    return out


def _buffers(nets: dict[str, nn.Module]) -> dict[str, list[float]]:
    return {f"{name}.{b}": _summary(v) for name, net in nets.items()
            for b, v in net.named_buffers() if v.is_floating_point() or b.endswith("tracked")}


def _prefixed(prefix: str, values: dict) -> dict:
    return {f"{prefix}.{k}": v for k, v in values.items()}


# --- one variant's trajectory --------------------------------------------------------------

def _build(variant: str, fx: dict, flip) -> tuple:
    spec = parse_method(variant)
    student = copy.deepcopy(fx["student"])
    ctx = Context(num_classes=C, n_train=N_TRAIN, train_labels=torch.arange(N_TRAIN) % C,
                  student_dim=student.feature_dim, teacher_dim=fx["teacher"].feature_dim,
                  device=torch.device("cpu"), epochs=EPOCHS, seed=0,
                  build_student=lambda: copy.deepcopy(fx["peer"]))
    torch.manual_seed(1)   # what a method draws when it is built (memory banks, heads)
    method = spec.build(ctx)
    method.flipped = flip if isinstance(flip, frozenset) else frozenset(flip)
    if method.modules() is not None:
        method.modules().double()
    trained = {"student": student, **{n: net.module for n, net in method.networks().items()}}
    if method.modules() is not None:
        trained["modules"] = method.modules()
    return spec, method, trained


def _inner(method, batch, x_adv) -> dict:
    """The attack objective at a fixed x' (a batch of its own) and its input gradient."""
    student = batch.student
    student.train(method.inner.student_mode == "train")
    xa = x_adv.clone().requires_grad_(True)
    value = method.inner_objective(batch, xa)
    grad, = torch.autograd.grad(value, xa)
    student.train(True)
    return {"inner.value": [float(value.detach())], "inner.grad_x_adv": _summary(grad)}


def _step(spec, method, trained, fx, epoch, lr_scale) -> dict:
    student, teacher = trained["student"], fx["teacher"] if spec.cls.needs_teacher else None
    teachers = {role: fx[role] for role in spec.cls.teachers}
    x = fx["x"].clone().requires_grad_(True)

    def batch(seed):
        return Batch(x, fx["y"], torch.arange(B), student, teacher, epoch=epoch,
                     teachers=teachers, generator=torch.Generator().manual_seed(seed),
                     lr_scale=lr_scale)
    out, x_adv, main = {}, None, batch(epoch)
    if spec.cls.inner is not None:
        out.update(_inner(method, batch(100 + epoch), fx["x_adv"]))
        x_adv = adversarial_examples(method, main, ATTACK).requires_grad_(True)
        out["attack"] = _summary(x_adv - fx["x"])
    for net in trained.values():
        net.train()
    terms = method.losses(main, x_adv)
    out.update({f"loss.{k}": [float(v.detach())] for k, v in terms.items()})
    named = [(f"{n}.{p}", t) for n, net in trained.items() for p, t in net.named_parameters()
             if t.requires_grad]
    wrt = [t for _, t in named] + [x] + ([x_adv] if x_adv is not None else [])
    grads = torch.autograd.grad(sum(terms.values()), wrt, allow_unused=True)
    grads = [torch.zeros_like(t) if g is None else g for g, t in zip(grads, wrt)]
    out.update(_prefixed("grad", _grad_summary([(n, g) for (n, _), g in zip(named, grads)])))
    inputs = zip(("x", "x_adv"), grads[len(named):])
    out.update({f"grad_input.{n}": _summary(g) for n, g in inputs})
    out.update(_prefixed("state", _state(method)))
    out.update(_prefixed("buffers", _buffers(trained)))
    return out


@contextlib.contextmanager
def _one_thread():
    """Tiny float64 networks run fastest on one thread (and leave the other cores alone)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def trajectory(variant: str, flip=()):
    """The pinned numbers of ``variant`` (a method label, options included) step by step, with the
    gradient sites in ``flip`` turned the other way (a mutation)."""
    fx = _fixture()
    with _one_thread():
        spec, method, trained = _build(variant, fx, flip)
    for epoch, lr_scale, next_scale in STEPS:
        with _one_thread():
            out = _prefixed(f"e{epoch}", _step(spec, method, trained, fx, epoch, lr_scale))
            method.end_epoch(EpochEnd(epoch, next_scale))
            out.update(_prefixed(f"e{epoch}.end", _state(method)))
        yield out


def record(variant: str, flip=()) -> dict[str, list[float]]:
    return {k: v for step in trajectory(variant, flip) for k, v in step.items()}


def mismatches(got: dict, want: dict, prefix: str = "") -> list[str]:
    """The keys (under ``prefix``) whose numbers differ beyond the tolerance or one side lacks."""
    keys = sorted(k for k in set(got) | set(want) if k.startswith(prefix))
    return [k for k in keys if k not in got or k not in want
            or got[k] != pytest.approx(want[k], rel=REL, abs=ABS, nan_ok=False)]


def first_mismatches(variant: str, want: dict, flip=()) -> list[str]:
    """The mismatches of the first step that has any ([] when every step matches): the mutation
    sweep's check, which stops there. An error inside the method (the pin test fails on it too) is
    raised."""
    for (epoch, _, _), got in zip(STEPS, trajectory(variant, flip)):
        bad = mismatches(got, want, f"e{epoch}.")
        if bad:
            return bad
    return []


def attack_step(norm: str) -> list[float]:
    """One PGD step from a fixed start on the fixed student (eval): sum and sum of squares of
    x_adv - x."""
    fx = _fixture()
    student = copy.deepcopy(fx["student"]).eval()
    x, y = fx["x"], fx["y"]
    eps = 0.2 if norm == "Linf" else 1.0
    adv = pgd_ascent(lambda xa: ce_loss(student(xa), y), x, eps, eps / 4, 1, "none", None,
                     norm=norm)
    d = adv - x
    return [float(d.sum()), float((d * d).sum())]


def current() -> dict:
    return {"methods": {v: record(v) for v in VARIANTS},
            "attack_step": {n: attack_step(n) for n in ("Linf", "L2")}}


def load() -> dict:
    return json.loads(PINS.read_text())


def dump(pins: dict) -> str:
    """JSON with one pinned key per line (reviewable diffs)."""
    def block(d: dict, indent: str) -> str:
        return ",\n".join(f"{indent}{json.dumps(k)}: {json.dumps(v)}" for k, v in sorted(d.items()))
    methods = ",\n".join(f'  {json.dumps(v)}: {{\n{block(pins["methods"][v], "   ")}\n  }}'
                         for v in sorted(pins["methods"]))
    steps = block(pins["attack_step"], "  ")
    return f'{{\n "attack_step": {{\n{steps}\n }},\n "methods": {{\n{methods}\n }}\n}}\n'


# --- the tests -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def stored():
    return load()


def test_the_fixture_is_realistic():
    """Logits of a few units; teacher and student right on most samples but not all (DGAD's
    groups, IAD's reliability, Fair's kappa, GACD's teacher-correct weights see both cases)."""
    fx = _fixture()
    with torch.no_grad():
        s, t = copy.deepcopy(fx["student"])(fx["x"]), fx["teacher"](fx["x"])
    for logits in (s, t):
        assert 2.0 < float(logits.abs().max()) < 10.0
        assert 8 <= int((logits.argmax(1) == fx["y"]).sum()) < B


@pytest.mark.parametrize("variant", VARIANTS)
def test_method_trajectory_is_pinned(variant, stored):
    assert variant in stored["methods"], f"no pin for {variant}: python {__file__} --update"
    assert mismatches(record(variant), stored["methods"][variant]) == []


def test_the_pins_hold_when_everything_moves_by_1e_13(stored):
    """Another CPU rounds otherwise (~1e-16 relative per operation): with every weight, buffer and
    input moved by 1e-13 relative every variant still matches its pins (no sign step or argmax of
    the fixture is that close to a tie, no pinned number that ill-conditioned)."""
    fx = _fixture()
    saved = {k: copy.deepcopy(v) for k, v in fx.items()}
    nets = [fx[k] for k in ("student", "teacher", "natural", "peer")]
    tensors = [fx["x"], fx["x_adv"]]
    tensors += [t for net in nets for t in [*net.parameters(), *net.buffers()]]
    g = torch.Generator().manual_seed(7)
    try:
        with torch.no_grad():
            for t in filter(torch.is_floating_point, tensors):
                t.mul_(1 + 1e-13 * torch.randn(t.shape, generator=g, dtype=t.dtype))
        moved = {v: mismatches(record(v), stored["methods"][v]) for v in VARIANTS}
        assert {v: bad for v, bad in moved.items() if bad} == {}
    finally:
        fx.update(saved)


@pytest.mark.parametrize("norm", ["Linf", "L2"])
def test_one_attack_step_is_pinned(norm, stored):
    assert attack_step(norm) == pytest.approx(stored["attack_step"][norm], rel=REL, abs=ABS)


def test_the_pins_catch_a_modest_change(stored, monkeypatch):
    """Halving ARD's KL weight (a change a regression check on trained numbers could miss) fails
    the pin."""
    from bench.methods import ard

    real = ard.ARD.losses

    def halved(self, batch, x_adv):
        return {k: v * 0.5 for k, v in real(self, batch, x_adv).items()}
    monkeypatch.setattr(ard.ARD, "losses", halved)
    assert "e2.loss.kd_adv" in mismatches(record("ard"), stored["methods"]["ard"])


@pytest.mark.parametrize("variant,site", [("adaiad", "self_target"), ("dgad", "consistency_adv"),
                                          ("dgad", "consistency_clean")])
def test_a_detached_gradient_fails_the_pins(variant, site, stored):
    """Same loss values, another training algorithm: S(x) detached in AdaIAD's self term, one side
    of DGAD's consistency MSE detached. The values agree; the student's gradient does not."""
    bad = mismatches(record(variant, flip={site}), stored["methods"][variant])
    assert bad and not any(".loss." in k for k in bad)
    assert any(".grad.student." in k for k in bad)


if __name__ == "__main__" and "--update" in sys.argv:
    PINS.write_text(dump(current()))
    print(f"written: {PINS}")


def test_igdm_code_attack_swaps_eps_and_step_as_the_author_code_calls_it():
    """igdm.py:49 calls the attack with step_size=8/255, epsilon=2/255: option attack=code runs that pair,
    the default the run's (8/255, 2/255)."""
    from bench.config.schema import AttackConfig
    from bench.methods import parse_method

    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 1, 4, 4, generator=g)
    y = torch.randint(0, 3, (6,), generator=g)
    student, teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3)), \
        torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    ctx = Context(num_classes=3, n_train=6, train_labels=y, student_dim=16, teacher_dim=16,
                  device=torch.device("cpu"), epochs=10)
    reach = {}
    for form in ("paper", "code"):
        method = parse_method(f"igdm:attack={form}").build(ctx)
        assert method.attack_radius(8 / 255, 2 / 255) == ((8 / 255, 2 / 255) if form == "paper" else (2 / 255, 8 / 255))
        batch = Batch(x, y, torch.arange(6), student, teacher, epoch=0, generator=torch.Generator().manual_seed(1))
        x_adv = adversarial_examples(method, batch, AttackConfig(eps=8 / 255, step_ratio=0.25, steps=3))
        reach[form] = float((x_adv - x).abs().max())
    assert reach["code"] <= 2 / 255 + 1e-6 < reach["paper"] <= 8 / 255 + 1e-6
