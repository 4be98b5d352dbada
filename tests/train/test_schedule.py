"""The learning-rate schedule as the training loop (bench/train/loop.py) runs and logs it."""
import pytest
import torch

from bench.methods import Context, parse_method


def test_logged_lr_is_the_rate_each_epoch_trained_at(tmp_path, digits, lrs):
    """The per-epoch log (and TensorBoard's train/lr) holds the lr of that epoch, not the next one's."""
    from bench.config.schema import AttackConfig, TrainConfig
    from bench.data.splits import select_classes
    from bench.models import build_model
    from bench.train.loop import train_model

    small = select_classes(digits, [0, 1], "digits@0-1")
    torch.manual_seed(0)
    student = build_model("cnn-narrow", 2, 1)
    spec = parse_method("natural")
    ctx = Context(num_classes=2, n_train=len(small.y_train), train_labels=small.y_train, student_dim=student.feature_dim,
                  teacher_dim=None, device=torch.device("cpu"), epochs=2)
    cfg = TrainConfig(epochs=2, batch_size=128, lr=0.05, schedule="step", milestones=(1,), gamma=0.1)
    history = train_model(student, spec.build(ctx), small, cfg, AttackConfig(), None, tmp_path, torch.device("cpu"))
    assert [row["lr"] for row in history] == pytest.approx([0.05, 0.005])
    assert [row["lr"] for row in history] == pytest.approx(lrs(cfg))
