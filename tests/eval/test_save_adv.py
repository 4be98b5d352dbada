"""Issue 22: `bench eval --save-adv N` keeps the first N adversarial examples of each white-box attack,
the very examples the evaluation scored (their predictions match its per-image flags)."""
from __future__ import annotations

import torch

from bench.cli.main import main


def test_save_adv_keeps_the_evaluated_examples_in_the_ball_with_a_grid_each(tmp_path, trained_digits_model, digits):
    torch.save(trained_digits_model.state_dict(), tmp_path / "m.pt")
    out = tmp_path / "ev"
    assert main(["eval", "--weights", str(tmp_path / "m.pt"), "--arch", "cnn-narrow", "--dataset", "digits",
                 "--mean", ",".join(map(str, digits.mean)), "--std", ",".join(map(str, digits.std)),
                 "--attacks", "clean,fgsm,pgd20,cw", "--n", "40", "--batch-size", "16", "--no-sanity",
                 "--save-adv", "6", "--out", str(out)]) == 0
    saved = torch.load(out / "adversarial.pt", weights_only=True)
    assert set(saved["attacks"]) == {"fgsm", "pgd20", "cw"}
    assert saved["consistent"] == {"fgsm": True, "pgd20": True, "cw": True}  # the evaluation's own examples
    clean = saved["clean"]
    assert clean.shape == (6, 1, 8, 8) and torch.equal(saved["labels"], digits.y_test[:6])
    for name, adv in saved["attacks"].items():
        assert adv.shape == clean.shape and adv.min() >= 0 and adv.max() <= 1
        assert (adv - clean).abs().max() <= saved["eps"] + 1e-6, name
        assert (out / f"adv_{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (saved["attacks"]["pgd20"] != clean).any()  # an attack, not a copy
