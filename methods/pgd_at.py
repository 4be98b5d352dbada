"""PGD adversarial training: train on the examples that maximise the student's cross-entropy."""
from typing import ClassVar

import torch.nn.functional as F

from bench.attacks import ce_loss
from bench.methods import register
from bench.methods.base import InnerMax, Method, Recipe


@register
class PGDAT(Method):
    name = "pgd-at"
    citation = "Madry et al., Towards Deep Learning Models Resistant to Adversarial Attacks, ICLR 2018"
    summary = "CE(S(x'), y) on PGD examples"
    inner = InnerMax("CE(S(x'), y)", start="uniform", student_mode="train")
    schedule = ("Madry et al.'s hyper-parameters as IAD's pre_train/AT.py runs them in PyTorch: 200 epochs, SGD 0.1, "
                "decay /10 at 99 and 149, wd 2e-4, batch 128, PGD-10 of 2/255 at 8/255")
    # Madry's own code (MadryLab/cifar10_challenge) is TensorFlow with its own network; our published PGD-AT
    # number is second-hand (CURE, as quoted by IGDM) with no script. IAD's PyTorch AT.py runs Madry's
    # hyper-parameters on ResNet-18 (its attack in eval mode, ours in train mode as Madry's; last epoch, as
    # Madry reports, not its test-selected bestpoint).
    official: ClassVar[Recipe] = Recipe(
        repo="ZFancy/IAD@a8091a8 (pre_train/AT.py; Madry et al.'s hyper-parameters)",
        train={"epochs": 200, "lr": 0.1, "milestones": (99, 149), "weight_decay": 2e-4, "batch_size": 128,
               "schedule": "step"},
        attack={"eps": 8 / 255, "step_ratio": 0.25, "steps": 10}, checkpoint="last",
        sources={"epochs": "pre_train/AT.py", "milestones": "pre_train/AT.py:66-75,123 (decays on epoch+1)",
                 "lr": "pre_train/AT.py", "weight_decay": "pre_train/AT.py", "batch_size": "pre_train/AT.py",
                 "eps": "attack_generator.py:18-51", "step_ratio": "attack_generator.py:18-51",
                 "steps": "attack_generator.py:18-51", "schedule": "pre_train/AT.py:66-75",
                 "checkpoint": "Madry et al. report the final model (AT.py also keeps a test-selected bestpoint)",
                 "precision": "fp32", "input_norm": "pre_train/AT.py (ToTensor, no Normalize)"})

    def inner_objective(self, batch, x_adv):
        return ce_loss(batch.student(x_adv), batch.y)

    def losses(self, batch, x_adv):
        return {"ce_adv": F.cross_entropy(batch.student(x_adv), batch.y)}
