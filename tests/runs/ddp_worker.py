"""One training run per method, as one process or as a rank under torchrun; writes what it saw.

Run by tests/runs/test_distributed.py: ``python tests/runs/ddp_worker.py OUT`` (one process) and
``python -m torch.distributed.run --nproc-per-node 2 tests/runs/ddp_worker.py OUT`` (two gloo ranks).
The student and teacher have no batch norm, so one process and two ranks train the same function on
the same global batches and differ only by the order of floating-point sums.
"""
import sys
from pathlib import Path

import torch
from torch import nn

from bench.common import distributed
from bench.config.schema import AttackConfig, TrainConfig
from bench.data.sources import load_dataset
from bench.train.loop import train_model
from bench.methods import parse_method
from bench.methods.base import Context


class MLP(nn.Module):
    def __init__(self, width: int, classes: int):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU())
        self.fc = nn.Linear(width, classes)
        self.feature_dim = width

    def features(self, x):
        return self.body(x)

    def head(self, f):
        return self.fc(f)

    def forward(self, x):
        return self.head(self.features(x))


def main(out: Path, methods: list[str]) -> None:
    torch.set_num_threads(1)
    device = distributed.init(torch.device("cpu"))
    data = load_dataset("digits@0-4")
    torch.manual_seed(0)
    teacher = MLP(32, data.num_classes).eval().requires_grad_(False)
    found = {}
    for label in methods:
        spec = parse_method(label)
        torch.manual_seed(1)
        student = MLP(16, data.num_classes)
        ctx = Context(num_classes=data.num_classes, n_train=len(data.y_train), train_labels=data.y_train,
                      student_dim=16, teacher_dim=32, device=device, epochs=2, seed=1)
        method = spec.build(ctx)
        run_dir = out / f"{label}-of-{distributed.world_size()}"  # one folder for all ranks, as in a run
        history = train_model(student, method, data, TrainConfig(epochs=2, batch_size=64, lr=0.05),
                              AttackConfig(eps=0.2, steps=3), teacher if spec.cls.needs_teacher else None,
                              run_dir, device)
        extra = method.modules()
        found[label] = {"history": history, "student": student.state_dict(),
                        "extra": extra.state_dict() if extra is not None else {}}
    torch.save(found, out / f"rank{distributed.rank()}-of-{distributed.world_size()}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2].split(","))
