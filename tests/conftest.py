import os

import pytest
import torch
import torch.nn.functional as F

from bench.data.images import to_float
from bench.data.sources import load_dataset
from bench.models import build_model

# Under pytest-xdist (-n N) the workers share the cores: each one, and the processes its tests start, gets
# cores / N threads instead of every core (oversubscribed, small networks run several times slower).
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _threads = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ["OMP_NUM_THREADS"] = str(_threads)
    torch.set_num_threads(_threads)


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


@pytest.fixture
def lrs():
    """The learning rate each epoch of ``train_cfg`` trains at, from the loop's own optimiser and schedule."""
    from torch import nn

    from bench.train.loop import make_optimizer

    def trace(train_cfg, epochs=None):
        opt, sched = make_optimizer([nn.Parameter(torch.zeros(1))], train_cfg)
        out = []
        for _ in range(epochs or train_cfg.epochs):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return out
    return trace


@pytest.fixture
def quick_autoattack(monkeypatch):
    """AutoAttack with its standard attacks in their order but a few iterations each (10 for APGD and FAB,
    50 Square queries), for tests of the paths around it (tables, reports, resumption, regress bands);
    AutoAttack's own strength is pyautoattack's, and `bench regress` in CI runs the real one."""
    import pyautoattack

    real = pyautoattack.AutoAttack.__init__

    def shortened(self, *args, **kwargs):
        real(self, *args, **kwargs)
        for attack in (self.apgd, self.apgd_targeted, self.fab):
            attack.n_iter = 10
        self.square.n_queries = 50
    monkeypatch.setattr(pyautoattack.AutoAttack, "__init__", shortened)


@pytest.fixture
def kill_at():
    """A training tracker class: ``kill_at(N)`` stops training with KeyboardInterrupt when epoch N is logged,
    i.e. killed after the checkpoint of the epoch before."""
    from bench.train.tracking import Tracker

    class KillAt(Tracker):
        def __init__(self, epoch):
            super().__init__()
            self.at = epoch

        def epoch(self, row):
            if row["epoch"] == self.at:
                raise KeyboardInterrupt
    return KillAt


@pytest.fixture
def kill_during_autoattack():
    """``kill(cmd, out)``: start ``cmd`` (a `bench eval ... --out OUT`), SIGKILL it as soon as its first
    AutoAttack batch has APGD-CE's results in OUT/eval-state, and return once it is dead."""
    import os
    import signal
    import subprocess
    import time

    def kill(cmd, out, cwd=None):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=cwd)
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            first = next((out / "eval-state").glob("*/aa-00000.json"), None)
            if first is not None and "apgd-ce" in first.read_text():
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the evaluation ended before it could be killed during AutoAttack"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    return kill


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: trains or evaluates whole runs (tests/e2e/ is slow throughout); "
                                       "`pytest -m 'not slow'` is the fast set, CI runs everything")
    config.addinivalue_line("markers", "cuda: needs a GPU (tests/e2e/test_cuda.py; `pytest -m cuda` on the device "
                                       "machine, skipped without CUDA)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "/e2e/" in item.path.as_posix():
            item.add_marker(pytest.mark.slow)
