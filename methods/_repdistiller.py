"""The training recipe of HobbitLong/RepDistiller's train_student.py, which KD and CRD share (its
--distill kd / --distill crd): CIFAR-100 only there; the same recipe stands for CIFAR-10 here."""
from bench.methods.base import Recipe

REPDISTILLER = Recipe(
    repo="HobbitLong/RepDistiller@b84f547",
    train={"epochs": 240, "lr": 0.05, "milestones": (150, 180, 210), "weight_decay": 5e-4, "batch_size": 64,
           "schedule": "step"},
    by_student={"mobilenetv2": {"lr": 0.01}},
    checkpoint="last", input_norm="dataset", datasets=("cifar100",),  # Normalize in the input pipeline: as the model's own here
    sources={"epochs": "train_student.py:46", "lr": "train_student.py:50 (0.01 for MobileNetV2: :93-94)",
             "weight_decay": "train_student.py:53", "batch_size": "train_student.py:44",
             "milestones": "train_student.py:51-52; helper/util.py:16-22 (1-based epochs > 150, 180, 210)",
             "schedule": "helper/util.py:16-22",
             "checkpoint": "train_student.py:333-334 (the paper's numbers are from the last epoch)",
             "precision": "fp32 (no amp)", "input_norm": "dataset/cifar100.py:53-62 (Normalize, CIFAR-100 stats)",
             "datasets": "train_student.py loads CIFAR-100 only"})
