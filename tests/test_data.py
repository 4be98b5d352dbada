import numpy as np
import pytest
import torch
from PIL import Image

from bench.data import augment, load_dataset
from bench.errors import BenchError


def test_digits_is_real_fixed_and_stratified(digits):
    assert digits.x_train.dtype == torch.uint8 and digits.x_train.shape == (1347, 1, 8, 8)
    assert digits.x_test.shape == (450, 1, 8, 8)
    assert digits.num_classes == 10 and int(digits.x_train.max()) == 255
    test_counts = torch.bincount(digits.y_test, minlength=10).float()
    all_counts = test_counts + torch.bincount(digits.y_train, minlength=10)
    assert ((test_counts - 0.25 * all_counts).abs() <= 1).all()  # stratified 75/25
    again = load_dataset("digits")
    assert torch.equal(again.x_test, digits.x_test) and torch.equal(again.y_train, digits.y_train)


def test_augment_shapes_and_identity():
    x = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    assert torch.equal(augment(x, 0, False), x)
    out = augment(x, 2, True, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.uint8


def test_augment_crop_is_a_shift_of_the_padded_image():
    x = torch.arange(16, dtype=torch.uint8).view(1, 1, 4, 4) + 1
    seen = set()
    for seed in range(30):
        out = augment(x, 1, False, torch.Generator().manual_seed(seed))
        padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
        windows = {(dy, dx) for dy in range(3) for dx in range(3)
                   if torch.equal(padded[..., dy:dy + 4, dx:dx + 4], out)}
        assert windows
        seen |= windows
    assert len(seen) > 3  # offsets vary


def test_folder_dataset(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("cat", "ant", "bee"):
        (tmp_path / cls).mkdir()
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (10, 12, 3), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    (tmp_path / "ant" / "notes.txt").write_text("not an image")
    data = load_dataset(f"folder:{tmp_path}", image_size=16)
    assert data.classes == ["ant", "bee", "cat"]  # sorted
    assert data.x_train.shape[1:] == (3, 16, 16)
    assert len(data.y_train) + len(data.y_test) == 12


def test_missing_folder_and_offline_cifar(tmp_path):
    with pytest.raises(BenchError, match="does not exist"):
        load_dataset(f"folder:{tmp_path / 'nope'}")
    with pytest.raises(BenchError, match="cifar-10-batches-py.*cifar-10-python.tar.gz"):
        load_dataset("cifar10", data_dir=tmp_path)
    with pytest.raises(BenchError, match="known: cifar10, cifar100, digits, stl10"):
        load_dataset("mnist")


def test_cifar10_reads_local_files(tmp_path):
    """The real torchvision loader on a tiny CIFAR-10 layout made here (no download)."""
    import hashlib
    import pickle

    import torchvision

    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    rng = np.random.default_rng(0)
    for name in [f[0] for f in torchvision.datasets.CIFAR10.train_list + torchvision.datasets.CIFAR10.test_list]:
        with open(root / name, "wb") as fh:
            pickle.dump({"data": rng.integers(0, 255, (4, 3072), dtype=np.uint8),
                         "labels": [0, 1, 2, 3]}, fh)
    with open(root / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, fh)
    # torchvision checks md5 sums; point them at our files
    lists = [torchvision.datasets.CIFAR10.train_list, torchvision.datasets.CIFAR10.test_list]
    fixed = [[[n, hashlib.md5((root / n).read_bytes()).hexdigest()] for n, _ in lst] for lst in lists]
    meta = dict(torchvision.datasets.CIFAR10.meta, md5=hashlib.md5((root / "batches.meta").read_bytes()).hexdigest())
    mp = pytest.MonkeyPatch()
    mp.setattr(torchvision.datasets.CIFAR10, "train_list", fixed[0])
    mp.setattr(torchvision.datasets.CIFAR10, "test_list", fixed[1])
    mp.setattr(torchvision.datasets.CIFAR10, "meta", meta)
    try:
        data = load_dataset("cifar10", data_dir=tmp_path)
    finally:
        mp.undo()
    assert data.x_train.shape == (20, 3, 32, 32) and data.x_train.dtype == torch.uint8
    assert data.x_test.shape == (4, 3, 32, 32) and data.pad == 4 and data.flip
