"""TRADES: clean cross-entropy plus beta x KL between the student on x' and on x."""
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from methods import register
from methods.base import InnerMax, Method, kl_div


@register
class TRADES(Method):
    name = "trades"
    citation = "Zhang et al., Theoretically Principled Trade-off between Robustness and Accuracy, ICML 2019"
    summary = "CE(S(x), y) + beta KL(S(x') || S(x))"
    inner = InnerMax("sum KL(S(x') || S(x)), S(x) fixed", start="normal", student_mode="eval")
    schedule = "76 epochs, SGD 0.1, decay at 75 (and 90 for 100 epochs), wd 2e-4"
    paper_train = {"epochs": 76, "lr": 0.1, "milestones": (75,), "weight_decay": 2e-4, "batch_size": 128,
                   "schedule": "step"}

    @dataclass(frozen=True)
    class Options:
        beta: float = 6.0  # weight of the robust KL term (TRADES' 1/lambda)

    def inner_objective(self, batch, x_adv):
        if "clean_eval" not in batch.cache:
            with torch.no_grad():
                batch.cache["clean_eval"] = batch.student(batch.x)
        return kl_div(batch.student(x_adv), batch.cache["clean_eval"], reduction="sum")

    def losses(self, batch, x_adv):
        clean = batch.student(batch.x)
        return {"ce": F.cross_entropy(clean, batch.y),
                "kl_robust": self.options.beta * kl_div(batch.student(x_adv), clean)}
