import pytest
import torch
import torch.nn.functional as F

from bench.data import load_dataset, to_float
from bench.models import build_model


@pytest.fixture(scope="session")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="session")
def trained_digits_model(digits):
    """A naturally trained small CNN on digits (a few seconds on CPU), in eval mode."""
    torch.manual_seed(0)
    model = build_model("cnn-narrow", 10, 1, digits.mean, digits.std)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = to_float(digits.x_train), digits.y_train
    for _ in range(8):
        perm = torch.randperm(len(y))
        for i in range(0, len(y), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()
