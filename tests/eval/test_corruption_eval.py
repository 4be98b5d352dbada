"""Issue 22: common corruptions as an evaluation (generated, or read from the published .npy files) and
sanity checks that are skipped, saying why, when the numbers already decide them."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from bench.common.errors import BenchError
from bench.config.schema import EvalConfig
from bench.eval.corruption_eval import SEVERITIES, chosen, corruption_accuracy
from bench.eval.corruptions import APPLICABLE_SMALL_GREY, CORRUPTIONS
from bench.eval.protocol import evaluate
from bench.eval.state import EvalState


class _Fixed(nn.Module):
    """Predicts ``cls`` for every image (with a gradient path, so attacks run)."""

    def __init__(self, cls: int, classes: int = 10):
        super().__init__()
        self.cls, self.classes = cls, classes

    def forward(self, x):
        out = torch.zeros(len(x), self.classes)
        out[:, self.cls] = 1.0
        return out + 0 * x.flatten(1)[:, :1]


class _Bright(nn.Module):
    """Class 1 when the image's mean pixel is above 0.3, else class 0: corruptions move it."""

    def forward(self, x):
        m = x.flatten(1).mean(1, keepdim=True)
        return torch.cat([0.3 - m, m - 0.3], 1)


def test_small_grey_images_get_the_corruptions_that_suit_them_and_all_others_get_15():
    assert chosen(EvalConfig(), (1, 8, 8))[0] == APPLICABLE_SMALL_GREY
    assert chosen(EvalConfig(), (3, 32, 32)) == (CORRUPTIONS, "all 15")
    with pytest.raises(BenchError, match="unknown"):
        chosen(replace(EvalConfig(), corruptions=("rain",)), (3, 32, 32))


def test_generated_corruptions_are_reproducible_resumable_and_say_their_source(digits, tmp_path):
    cfg = replace(EvalConfig(), corruptions=("gaussian_noise", "contrast"), corruptions_n=50)
    x, y = digits.x_test[:80], (digits.x_test[:80].float().mean((1, 2, 3)) / 255 > 0.3).long()
    mean, settings, per = corruption_accuracy(_Bright(), x, y, cfg, EvalState(tmp_path / "s"))
    assert settings["n"] == 50 and settings["seed"] == 0 and "generated" in settings["source"]
    assert set(per) == {"gaussian_noise", "contrast"} and all(len(v) == len(SEVERITIES) for v in per.values())
    assert mean == pytest.approx(np.mean([a for v in per.values() for a in v]))
    assert per["contrast"][-1] < 1.0  # contrast pulls every image to its mean: the brightness rule breaks
    again = corruption_accuracy(_Bright(), x, y, cfg, EvalState(None))[2]
    assert again == per  # the same seed, the same images, the same numbers
    # a second pass on the same state reads every (corruption, severity) back instead of corrupting again
    broken = corruption_accuracy(_Fixed(0, 2), x, y, cfg, EvalState(tmp_path / "s"))[2]
    assert broken == per


def test_the_published_npy_files_are_read_when_given(digits, tmp_path):
    n, per = 30, 40
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5 * per, 8, 8, 1), dtype=np.uint8)   # (N, H, W, C), severity-major
    y = torch.tensor(rng.integers(0, 2, per))
    np.save(tmp_path / "gaussian_noise.npy", images)
    np.save(tmp_path / "labels.npy", np.tile(y.numpy(), 5))
    cfg = replace(EvalConfig(), corruptions=("gaussian_noise",), corruptions_n=n, corruptions_dir=str(tmp_path))
    x = torch.zeros(per, 1, 8, 8, dtype=torch.uint8)  # the clean images are not used: the files are
    _, settings, out = corruption_accuracy(_Bright(), x, y, cfg, EvalState(None))
    assert "published .npy files" in settings["source"] and settings["seed"] is None
    for s in SEVERITIES:
        block = torch.from_numpy(images[(s - 1) * per:(s - 1) * per + n]).permute(0, 3, 1, 2).float() / 255
        expected = float((_Bright()(block).argmax(1) == y[:n]).float().mean())
        assert out["gaussian_noise"][s - 1] == pytest.approx(expected)
    np.save(tmp_path / "labels.npy", np.tile(1 - y.numpy(), 5))
    with pytest.raises(BenchError, match="does not match"):
        corruption_accuracy(_Bright(), x, y, cfg, EvalState(None))


def _sanity(model, digits):
    cfg = replace(EvalConfig(), attacks=("clean", "fgsm", "pgd20"), n=40, curve_eps=(), corruptions_n=40)
    x, y = digits.x_test[:40], digits.y_test[:40]
    return evaluate(model, x, y, cfg, num_classes=11)["sanity"]


def test_sanity_checks_the_numbers_decide_are_skipped_and_say_why(digits):
    wrong = _sanity(_Fixed(10, classes=11), digits)  # an 11th class no image has: 0 % under everything
    assert set(wrong["skipped"]) == {"large_eps", "not_converged"}
    assert "already leaves 0.0 %" in wrong["skipped"]["large_eps"]
    assert "nothing to break" in wrong["skipped"]["not_converged"]
    assert not wrong["checks"]["large_eps"]["flagged"] and wrong["checks"]["large_eps"]["value"] is None
    assert wrong["seconds"] == {}


def test_sanity_checks_run_where_the_numbers_leave_something_to_check(digits):
    always0 = _sanity(_Fixed(0), digits)  # right on every 0 whatever the attack: something is left
    share = float((digits.y_test[:40] == 0).float().mean())
    assert share > 0.03 and always0["skipped"] == {}
    assert always0["checks"]["large_eps"]["value"] == pytest.approx(share)  # what no attack can move
    assert always0["checks"]["not_converged"]["value"] == 0.0 and set(always0["seconds"]) == {"large_eps",
                                                                                           "not_converged"}


def test_the_released_cifar10c_layout_is_read_through_robustbench_s_loader(tmp_path, monkeypatch):
    """A small stand-in of CIFAR-10-C (robustbench's layout: 5 x 10,000 images per corruption, severity-major;
    8 x 8 grey images keep it at 3 MB) is read by robustbench.data.load_cifar10c, and the settings name
    that source; a missing file is one line saying how to get it."""
    from bench.models.robustbench_compat import import_robustbench
    import_robustbench()
    import robustbench.data as rbdata

    per, n = 10000, 30
    rng = np.random.default_rng(1)
    folder = tmp_path / "CIFAR-10-C"
    folder.mkdir()
    images = rng.integers(0, 256, (5 * per, 8, 8, 1), dtype=np.uint8)
    y = torch.tensor(rng.integers(0, 2, per))
    np.save(folder / "gaussian_noise.npy", images)
    np.save(folder / "labels.npy", np.tile(y.numpy(), 5))
    calls = []
    original = rbdata.load_cifar10c
    monkeypatch.setattr(rbdata, "load_cifar10c", lambda *a, **k: calls.append((a, k)) or original(*a, **k))
    cfg = replace(EvalConfig(), corruptions=("gaussian_noise",), corruptions_n=n, corruptions_dir=str(folder),
                  corruptions_from="published")
    x = torch.zeros(per, 1, 8, 8, dtype=torch.uint8)
    _, settings, out = corruption_accuracy(_Bright(), x, y, cfg, EvalState(None))
    assert len(calls) == 5 and settings["source"] == "published CIFAR-10-C (robustbench.data.load_cifar10c)"
    for s in SEVERITIES:
        block = torch.from_numpy(images[(s - 1) * per:(s - 1) * per + n]).permute(0, 3, 1, 2).float() / 255
        expected = float((_Bright()(block).argmax(1) == y[:n]).float().mean())
        assert out["gaussian_noise"][s - 1] == pytest.approx(expected)
    (folder / "gaussian_noise.npy").unlink()
    with pytest.raises(BenchError, match=r"lacks gaussian_noise.npy: put the extracted CIFAR-10-C.tar from "
                                         r"https://zenodo.org/record/2535967 .* or run once with --download"):
        corruption_accuracy(_Bright(), x, y, cfg, EvalState(None))


def test_cifar_presets_ask_for_the_released_files_and_say_how_to_get_them(tmp_path):
    """The CIFAR presets read the released CIFAR-10-C / CIFAR-100-C on all 10,000 test images from the
    data folder; without them and without --download a dry run lists them as missing, a run refuses at
    once; smoke scale generates its corruptions (the stand-in images have no released twins)."""
    from bench.config.presets import get_preset, smoke
    from bench.config.resolve import place_corruptions
    from bench.runs.estimate import missing_files
    from bench.runs.job import validate

    for name, folder in (("cifar10", "CIFAR-10-C"), ("cifar100", "CIFAR-100-C")):
        cfg = get_preset(name).config
        cfg = place_corruptions(replace(cfg, data=replace(cfg.data, data_dir=str(tmp_path))))
        assert cfg.eval.corruptions_n is None and cfg.eval.corruptions_dir == str(tmp_path / folder)
        assert [m.what for m in missing_files(cfg) if "corruptions" in m.what] == [f"corruptions {folder}"]
        with pytest.raises(BenchError, match="or run once with --download"):
            validate(cfg, ["ard"])
        fetching = replace(cfg, data=replace(cfg.data, download=True))
        assert not [m for m in missing_files(fetching) if "corruptions" in m.what]
    assert smoke(get_preset("cifar10")).config.eval.corruptions_from == "generated"
