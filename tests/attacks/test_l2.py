"""The L2 threat model: every attack stays in the L2 ball and the [0, 1] box and lowers accuracy; the
training attack, the sanity checks, the defaults and the record all follow ``norm``."""
import copy
import json

import pytest
import torch

from bench.attacks import (
    ATTACKS,
    attack_accuracy,
    ce_loss,
    check_eps,
    eps_cap,
    predict,
    random_start,
    whitebox_attack,
)
from bench.cli.main import main
from bench.common.errors import BenchError
from bench.config.schema import AttackConfig, EvalConfig, SanityConfig
from bench.config.threat import default_eps
from bench.data.images import to_float
from bench.eval.protocol import autoattack_flags, evaluate, without_sanity
from bench.eval.state import EvalState
from bench.train.loop import adversarial_examples
from bench.methods import Batch, Context, parse_method

EPS = 1.0  # the digits L2 default (bench/data/sources.py says how it was measured)


def l2(delta: torch.Tensor) -> torch.Tensor:
    return delta.flatten(1).norm(dim=1)


def in_ball_and_box(adv, x, eps):
    return bool((l2(adv - x) <= eps + 1e-5).all() and adv.min() >= 0 and adv.max() <= 1)


def test_l2_random_start_fills_the_ball():
    x = torch.full((2000, 1, 4, 4), 0.5)
    u = random_start(x, 0.3, "uniform", torch.Generator().manual_seed(0), norm="L2") - x
    r = l2(u)
    assert r.max() <= 0.3 + 1e-6  # 0.3 < 0.5: no box clipping, so the radius is the drawn one
    # volume-uniform radius in d = 16 dimensions: E[r] = eps * d / (d + 1), and the directions are spread
    assert r.mean().item() == pytest.approx(0.3 * 16 / 17, rel=0.01)
    assert u.flatten(1).mean(0).abs().max() < 0.01 and (u.abs().flatten(1).amax(1) < 0.3).all()
    n = random_start(x, 0.3, "normal", norm="L2") - x  # the method's "normal" start ignores the norm
    assert n.abs().max() < 0.01 and n.std() > 0.0005
    with pytest.raises(ValueError, match="known: Linf, L2"):
        random_start(x, 0.3, "uniform", norm="L1")


def test_l2_fgsm_is_one_normalised_step_of_length_eps(trained_digits_model, digits):
    x, y = to_float(digits.x_test[:50]), digits.y_test[:50]
    adv = whitebox_attack(trained_digits_model, x, y, ATTACKS.get("fgsm"), 0.5, norm="L2")
    xg = x.clone().requires_grad_(True)
    grad, = torch.autograd.grad(ce_loss(trained_digits_model(xg), y), xg)
    expected = (x + 0.5 * grad / l2(grad).reshape(-1, 1, 1, 1)).clamp(0, 1)
    assert torch.allclose(adv, expected, atol=1e-6)
    assert in_ball_and_box(adv, x, 0.5)


@pytest.mark.parametrize("name", ["fgsm", "pgd20", "cw"])
def test_l2_eval_attacks_stay_in_ball_and_lower_accuracy(trained_digits_model, digits, name):
    model = trained_digits_model
    x, y = to_float(digits.x_test), digits.y_test
    adv = whitebox_attack(model, x, y, ATTACKS.get(name), EPS, torch.Generator().manual_seed(0), norm="L2")
    assert in_ball_and_box(adv, x, EPS)
    clean = (predict(model, x, 500) == y).float().mean().item()
    robust = (predict(model, adv, 500) == y).float().mean().item()
    assert clean > 0.9 and robust < clean - 0.3
    # and the ball is an L2 one: the same budget read as L-inf would break (nearly) everything
    linf = whitebox_attack(model, x, y, ATTACKS.get(name), EPS, torch.Generator().manual_seed(0))
    assert l2(linf - x).max() > 2 * EPS


def test_l2_pgd_breaks_more_than_fgsm(trained_digits_model, digits):
    x, y = to_float(digits.x_test), digits.y_test
    acc = {name: attack_accuracy(trained_digits_model, x, y, ATTACKS.get(name), 0.5, 500,
                                 lambda _: torch.Generator().manual_seed(0), "L2").float().mean().item()
           for name in ("fgsm", "pgd20")}
    assert acc["pgd20"] <= acc["fgsm"]


def test_l2_autoattack_stays_in_ball_and_lowers_accuracy(trained_digits_model, digits, monkeypatch):
    import bench.eval.protocol as evaluation

    x, y = to_float(digits.x_test[:8]), digits.y_test[:8]
    seen = []
    real_predict = evaluation.predict

    def recording_predict(model, xs, batch_size):  # every point AutoAttack returns is scored here
        seen.append(xs.detach().clone())
        return real_predict(model, xs, batch_size)
    monkeypatch.setattr(evaluation, "predict", recording_predict)
    robust, after, info, _ = autoattack_flags(trained_digits_model, x, y, EPS, 10, "standard", 0, 8, EvalState(None),
                                              norm="L2")
    assert info["norm"] == "L2" and info["attacks"] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert len(seen) > 1  # the clean pass and at least one attack's examples
    for xs in seen:  # each returned example lies within eps of (its own) clean image, inside the box
        nearest = torch.cdist(xs.flatten(1), x.flatten(1)).amin(1)
        assert (nearest <= EPS + 1e-5).all() and xs.min() >= 0 and xs.max() <= 1
    assert after["clean"] > 0.8 and float(robust.float().mean()) < after["clean"] - 0.3


def _method_batch(name, model, digits):
    x, y = to_float(digits.x_train[:32]), digits.y_train[:32]
    ctx = Context(num_classes=10, n_train=len(digits.y_train), train_labels=digits.y_train,
                  student_dim=model.feature_dim, teacher_dim=model.feature_dim, device=torch.device("cpu"), epochs=1)
    method = parse_method(name).build(ctx)
    return method, Batch(x, y, torch.arange(32), model, model, 0)


@pytest.mark.parametrize("name", ["pgd-at", "trades", "ard"])  # uniform, normal and teacher-driven starts
def test_training_attack_honours_the_norm(trained_digits_model, digits, name):
    # a copy: the training attack leaves the student in train mode, whose batch norm would move the fixture's
    method, batch = _method_batch(name, copy.deepcopy(trained_digits_model), digits)
    torch.manual_seed(0)
    adv = adversarial_examples(method, batch, AttackConfig(eps=EPS, norm="L2"))
    assert in_ball_and_box(adv, batch.x, EPS)
    assert (l2(adv - batch.x) > 0.5 * EPS).float().mean() > 0.5  # it uses the budget
    with torch.no_grad():
        assert method.inner_objective(batch, adv) > method.inner_objective(batch, batch.x)
    torch.manual_seed(0)
    linf = adversarial_examples(method, batch, AttackConfig(eps=EPS))
    assert l2(linf - batch.x).max() > 2 * EPS  # the default is still the L-inf ball


def test_norm_is_recorded_with_every_number(trained_digits_model, digits):
    cfg = without_sanity(EvalConfig(eps=EPS, norm="L2", attacks=("clean", "fgsm", "pgd20"), n=40, curve_eps=(0.5,)))
    ev = evaluate(trained_digits_model, digits.x_test, digits.y_test, cfg, 10)
    s = ev["settings"]
    assert s["norm"] == "L2" and s["fgsm"]["norm"] == s["pgd20"]["norm"] == s["curve"]["norm"] == "L2"
    assert ev["metrics"]["pgd20"] < ev["metrics"]["clean"] and ev["curve"]["0.5"] >= ev["metrics"]["pgd20"]
    linf = evaluate(trained_digits_model, digits.x_test, digits.y_test, without_sanity(EvalConfig(eps=0.1, n=40,
                    attacks=("clean", "pgd20"), curve_eps=())), 10)
    assert linf["settings"]["norm"] == linf["settings"]["pgd20"]["norm"] == "Linf"


def test_l2_state_does_not_mix_with_linf(trained_digits_model, digits, tmp_path):
    """A state folder that holds an L-inf evaluation is not read back for an L2 one (and vice versa)."""
    base = dict(eps=0.3, attacks=("clean", "pgd20"), n=40, curve_eps=())
    linf = evaluate(trained_digits_model, digits.x_test, digits.y_test, without_sanity(EvalConfig(**base)), 10,
                    state_dir=tmp_path)
    l2_ev = evaluate(trained_digits_model, digits.x_test, digits.y_test,
                     without_sanity(EvalConfig(**base, norm="L2")), 10, state_dir=tmp_path)
    fresh = evaluate(trained_digits_model, digits.x_test, digits.y_test,
                     without_sanity(EvalConfig(**base, norm="L2")), 10)
    assert l2_ev["metrics"] == fresh["metrics"] and l2_ev["metrics"]["pgd20"] > linf["metrics"]["pgd20"]


def test_large_eps_check_is_norm_aware(trained_digits_model, digits):
    cfg = EvalConfig(eps=EPS, norm="L2", attacks=("clean", "pgd20"), n=60, curve_eps=(),
                     sanity=SanityConfig(n=60, strong_steps=10, strong_restarts=1))
    checks = evaluate(trained_digits_model, digits.x_test, digits.y_test, cfg, 10)["sanity"]["checks"]
    # 4 x eps = 4.0 = 0.5 sqrt(64), the L2 cap on 8x8 images (the L-inf cap 0.5 would be no attack at all here)
    assert checks["large_eps"]["what"] == "PGD-20 accuracy at L2 eps 4" and not checks["large_eps"]["flagged"]
    assert eps_cap("L2", 64) == 4.0 and eps_cap("Linf", 64) == 0.5


def test_default_eps_and_caps_per_norm():
    assert default_eps("cifar10", "L2") == default_eps("cifar100", "L2") == 0.5  # RobustBench's L2 threat model
    assert default_eps("digits@0-4", "L2") == 1.0 and default_eps("folder:/x", "L2") == 0.5
    assert default_eps("cifar10") == 8 / 255 and default_eps("digits@0-4", "Linf") == 0.2
    with pytest.raises(BenchError, match="unknown norm"):
        default_eps("cifar10", "L1")
    check_eps(3.0, "L2", 64)
    for eps, norm in ((4.5, "L2"), (0.6, "Linf"), (0.0, "L2")):
        with pytest.raises(BenchError, match="outside"):
            check_eps(eps, norm, 64)


def test_cli_eps_caps_follow_the_norm(capsys, tmp_path, trained_digits_model):
    assert main(["run", "--eps", "2"]) == 2
    assert "outside (0, 0.5] for the Linf threat model" in capsys.readouterr().err
    torch.save(trained_digits_model.state_dict(), tmp_path / "m.pt")
    argv = ["eval", "--weights", str(tmp_path / "m.pt"), "--arch", "cnn-narrow", "--dataset", "digits", "--n", "20",
            "--attacks", "clean,pgd20", "--no-sanity", "--norm", "L2"]
    assert main(argv + ["--eps", "5", "--out", str(tmp_path / "big")]) == 2  # above 0.5 sqrt(64) = 4: one line
    err = capsys.readouterr().err
    assert "Traceback" not in err and [line for line in err.splitlines() if line.startswith("bench: error")] == [
        "bench: error: eps 5 is outside (0, 4] for the L2 threat model on 64 pixel values in [0, 1] (half the box's "
        "L2 diameter)"]
    assert main(argv + ["--out", str(tmp_path / "ok")]) == 0  # 2 > 0.5 is fine under L2; default eps 1.0
    assert "L2 eps 1 (the default for digits)" in capsys.readouterr().err
    record = json.loads((tmp_path / "ok" / "record.json").read_text())
    assert record["config"]["norm"] == "L2" and record["settings"]["pgd20"]["norm"] == "L2"


@pytest.mark.slow
def test_run_with_l2_end_to_end(capsys, tmp_path):
    argv = ["run", "--methods", "natural", "--epochs", "1", "--teacher-epochs", "1", "--seeds", "0", "--attacks",
            "clean,pgd20", "--n", "40", "--transfer", "none", "--no-structure", "--no-sanity", "--norm", "L2",
            "--results", str(tmp_path / "res"), "--reports", str(tmp_path / "rep")]
    assert main(argv) == 0
    runs = json.loads((tmp_path / "rep" / "digits" / "runs.json").read_text())
    assert {r["role"] for r in runs} == {"teacher", "student"}
    for r in runs:  # the teacher trained with the L2 attack; both evaluated in the L2 ball at the digits default
        assert r["config"]["attack"]["norm"] == r["config"]["eval"]["norm"] == "L2"
        assert r["config"]["eval"]["eps"] == 1.0 and r["attack_settings"]["pgd20"]["norm"] == "L2"
        assert r["metrics"]["pgd20"] <= r["metrics"]["clean"]
    assert "- Threat model: L2, ε = 1 on pixels in [0, 1]." in (tmp_path / "rep" / "digits" / "README.md").read_text()


def test_regress_baseline_made_before_norm_still_matches():
    """A baseline made before the norm fields existed: at their default (Linf) they are no change; L2 is one."""
    from dataclasses import asdict, replace

    from bench.config.presets import get_preset
    from bench.config.schema import RunConfig
    from bench.regress.check import config_changes

    cfg = get_preset("regress").config
    stored = json.loads(json.dumps(asdict(cfg)))
    del stored["attack"]["norm"], stored["eval"]["norm"]
    defaults = asdict(RunConfig())
    assert not config_changes(stored, asdict(cfg), defaults)
    l2_cfg = replace(cfg, attack=replace(cfg.attack, norm="L2"), eval=replace(cfg.eval, norm="L2"))
    assert set(config_changes(stored, asdict(l2_cfg), defaults)) == {"attack.norm", "eval.norm"}