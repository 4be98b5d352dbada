"""Checkpoint selection as the official scripts run it (bench.train.selection): which epochs are scored, with
which attack step, and the further checkpoints a script keeps (PeerAiD's plain-best, ABSLD's fair-best)."""
from dataclasses import replace

import pytest
import torch

from bench.attacks import ascent
from bench.common.errors import BenchError
from bench.config.presets import get_preset
from bench.config.protocol import method_config
from bench.runs.job import validate
from bench.train.selection import Selection, also_key, fair_score
from bench.methods import METHODS


def _sel(**kw):
    return Selection("best-test-pgd20", torch.zeros(4, 1, 2, 2, dtype=torch.uint8), torch.tensor([0, 0, 1, 1]), **kw)


def test_the_scored_epochs_follow_the_script_s_condition():
    # RSLAD's `(epoch % 20 == 0 and epoch < 215) or epoch >= 215` over 1-based epochs
    rslad = _sel(every=20, dense_from=215)
    assert [e for e in range(1, 301) if rslad.scores_epoch(e)] == [*range(20, 201, 20), *range(215, 301)]
    absld = _sel(every=10, dense_from=215)
    assert [e for e in range(1, 231) if absld.scores_epoch(e)] == [*range(10, 211, 10), *range(215, 231)]
    assert all(_sel().scores_epoch(e) for e in range(1, 50))   # no schedule: every epoch


def test_the_scoring_attack_takes_the_script_s_step(monkeypatch):
    seen = []
    monkeypatch.setattr("bench.train.selection.attack_accuracy",
                        lambda model, x, y, spec, eps, *a, **k: seen.append(spec.step_ratio * eps) or
                        torch.ones(len(y), dtype=torch.bool))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    _sel(step=0.003).score(model, 8 / 255)
    _sel().score(model, 8 / 255)
    assert seen[0] == pytest.approx(0.003)
    assert seen[1] == pytest.approx(ascent.ATTACKS.get("pgd20").step_ratio * 8 / 255)


def test_fair_score_is_the_mean_plus_the_worst_class():
    y = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])
    ok = torch.tensor([1, 1, 1, 0, 1, 0, 0, 0], dtype=torch.bool)
    assert fair_score(ok, y) == pytest.approx(4 / 8 + 0.0)
    assert fair_score(torch.ones(8, dtype=torch.bool), y) == pytest.approx(2.0)
    assert also_key("fair-best", "test_pgd20") == "fair_test_pgd20"
    assert also_key("plain-best", "test_pgd10") == "plain_test_pgd10"


def test_official_recipes_keep_their_script_s_selection_and_checkpoints():
    cfg = replace(get_preset("cifar10").config, protocol="official")
    train = {name: method_config(cfg, METHODS.get(name)).train for name in ("rslad", "mtard", "absld", "peeraid")}
    assert (train["rslad"].select_every, train["rslad"].select_dense_from, train["rslad"].select_step) == (20, 215, 0.003)
    assert (train["mtard"].select_every, train["mtard"].select_step) == (20, 0.003)
    assert (train["absld"].select_every, train["absld"].also_keep) == (10, ("fair-best",))
    assert train["peeraid"].also_keep == ("plain-best",) and train["peeraid"].swa_start == 214
    common = method_config(replace(cfg, protocol="common"), METHODS.get("absld")).train
    assert common.also_keep == () and common.select_every is None


def test_unknown_or_pointless_further_checkpoints_are_refused():
    cfg = get_preset("digits").config
    with pytest.raises(BenchError, match="unknown best-ever"):
        validate(replace(cfg, train=replace(cfg.train, checkpoint="best-val", also_keep=("best-ever",))), ["ard"])
    with pytest.raises(BenchError, match="give train.checkpoint a best-"):
        validate(replace(cfg, train=replace(cfg.train, also_keep=("fair-best",))), ["ard"])
