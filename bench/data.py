"""Datasets as whole uint8 tensors that live on the training device.

Every loader returns an :class:`ImageData`: train and test images as uint8 (N, C, H, W), labels as
int64, and how to augment them. Augmentation runs on the device, per batch, with a few tensor ops
(no PIL inside the training loop), as airbench does.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from bench.errors import BenchError
from bench.registry import Registry

DATASETS: Registry[Callable[..., "ImageData"]] = Registry("dataset")


@dataclass
class ImageData:
    name: str
    x_train: torch.Tensor  # uint8 (N, C, H, W)
    y_train: torch.Tensor  # int64 (N,)
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    pad: int = 0          # random-crop padding used by augmentation (0: no shift)
    flip: bool = False    # random horizontal flips
    info: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.x_train.shape[-1])

    def to(self, device: torch.device | str) -> "ImageData":
        return replace(self, x_train=self.x_train.to(device), y_train=self.y_train.to(device),
                       x_test=self.x_test.to(device), y_test=self.y_test.to(device))

    def resized(self, size: int) -> "ImageData":
        if size == self.image_size:
            return self
        return replace(self, x_train=resize_uint8(self.x_train, size),
                       x_test=resize_uint8(self.x_test, size))


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float in [0, 1]."""
    return x.float().div_(255.0)


def resize_uint8(x: torch.Tensor, size: int, chunk: int = 2048) -> torch.Tensor:
    out = [F.interpolate(to_float(x[i:i + chunk]), size=(size, size), mode="bilinear",
                         antialias=True, align_corners=False).mul_(255).round_().clamp_(0, 255)
           .to(torch.uint8) for i in range(0, len(x), chunk)]
    return torch.cat(out) if out else x.new_zeros((0, x.shape[1], size, size))


def augment(x: torch.Tensor, pad: int, flip: bool, generator: torch.Generator | None = None
            ) -> torch.Tensor:
    """Random crop with zero padding ``pad`` and optional horizontal flip, batched on x's device."""
    b, _, h, w = x.shape
    if pad > 0:
        padded = F.pad(x, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device="cpu").to(x.device)
        dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device="cpu").to(x.device)
        rows = (dy[:, None] + torch.arange(h, device=x.device)[None, :])[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=x.device)[None, :])[:, None, None, :]
        batch = torch.arange(b, device=x.device)[:, None, None, None]
        chan = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        x = padded[batch, chan, rows, cols]
    if flip:
        mask = torch.rand(b, generator=generator, device="cpu").to(x.device) < 0.5
        x = torch.where(mask[:, None, None, None], x.flip(3), x)
    return x


# The threat model's radius each data set is usually evaluated at (pixels in [0, 1]), per norm.
# L-inf: 8/255 for natural images (CIFAR, STL-10, folders of photos), the suite's measured default for
# 8x8 digits. L2: 0.5 on CIFAR-10/100, RobustBench's L2 threat model, and on the other natural-image sets
# (at 32x32x3; larger images scale it by sqrt(d / 3072), e.g. about 3 at 224x224 as the Madry lab's
# ImageNet L2 models use). Digits: measured (benchmarks/l2_eps.py: cnn-narrow, digits@0-4, 20 epochs, PGD-20 in
# the L2 ball, seed 0): at 0.5 a natural student keeps 51 % against 89 % for an L2 PGD-AT student; at 1.0 the natural
# student falls to 0.4 % and PGD-AT keeps 44 % (98 % clean); at 1.5 PGD-AT training collapses to chance.
# So 1.0, as the L-inf 0.2 was chosen. (Scaling CIFAR's pair by sqrt(d) would give 0.46: 0.5 / (8/255
# sqrt(3072)) = 0.29 of the L-inf ball's reach 0.2 sqrt(64) = 1.6, where natural students keep half.)
DEFAULT_EPS = {"Linf": {"digits": 0.2, "cifar10": 8 / 255, "cifar100": 8 / 255, "stl10": 8 / 255, "folder": 8 / 255},
               "L2": {"digits": 1.0, "cifar10": 0.5, "cifar100": 0.5, "stl10": 0.5, "folder": 0.5}}
FALLBACK_EPS = {"Linf": 8 / 255, "L2": 0.5}  # a data set without its own entry: the natural-image value


def default_eps(name: str, norm: str = "Linf") -> float:
    """The default evaluation eps for a data-set name (``digits@0-4`` -> digits, ``folder:PATH`` -> folder)
    under the ``norm`` threat model."""
    if norm not in DEFAULT_EPS:
        raise BenchError(f"unknown norm {norm!r}; known: {', '.join(DEFAULT_EPS)}")
    base = name.partition("@")[0].partition(":")[0]
    return DEFAULT_EPS[norm].get(base, FALLBACK_EPS[norm])


def default_data_dir() -> Path:
    env = os.environ.get("BENCH_DATA_DIR")
    if env:
        return Path(env)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "bench" / "data"


def _channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    xf = to_float(x)
    mean = xf.mean(dim=(0, 2, 3))
    std = xf.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return tuple(round(v, 4) for v in mean.tolist()), tuple(round(v, 4) for v in std.tolist())


@DATASETS.register("digits")
def load_digits(data_dir: Path | None = None, download: bool = False) -> ImageData:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 real images, no download).

    Pixels 0..16 are scaled to 0..255 (uint8); a fixed stratified 75/25 split (random_state 0)
    gives 1,347 training and 450 test images. Augmentation: a one-pixel random shift, no flip.
    """
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # (N, 1, 8, 8)
    labels = bunch.target.astype(np.int64)
    tr, te = train_test_split(np.arange(len(labels)), test_size=0.25, stratify=labels,
                              random_state=0)
    x_train = torch.from_numpy(images[tr])
    mean, std = _channel_stats(x_train)
    return ImageData("digits", x_train, torch.from_numpy(labels[tr]), torch.from_numpy(images[te]),
                     torch.from_numpy(labels[te]), [str(i) for i in range(10)], mean, std,
                     pad=1, flip=False, info={"split": "stratified 75/25, random_state=0"})


_TORCHVISION_FILES = {
    "cifar10": ("cifar-10-batches-py/", "cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html"),
    "cifar100": ("cifar-100-python/", "cifar-100-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html"),
    "stl10": ("stl10_binary/", "stl10_binary.tar.gz from https://cs.stanford.edu/~acoates/stl10/"),
}
_CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616))
_CIFAR100_STATS = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
_STL10_STATS = ((0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713))


def _torchvision(name: str, make: Callable, data_dir: Path | None, download: bool):
    root = Path(data_dir) if data_dir else default_data_dir()
    folder, source = _TORCHVISION_FILES[name]
    try:
        return make(str(root), download)
    except RuntimeError as err:  # torchvision: "Dataset not found or corrupted"
        raise BenchError(f"{name}: files not found under {root / folder}: put the extracted {source} "
                         f"in {root} (or set BENCH_DATA_DIR / --data-dir), or pass --download "
                         f"where there is internet ({err})") from None


def _cifar(name: str, cls_name: str, stats, data_dir, download) -> ImageData:
    import torchvision

    cls = getattr(torchvision.datasets, cls_name)
    train, test = _torchvision(
        name, lambda root, dl: (cls(root, train=True, download=dl), cls(root, train=False, download=dl)),
        data_dir, download)

    def tensors(ds):
        return (torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2))),
                torch.tensor(ds.targets, dtype=torch.int64))
    xtr, ytr = tensors(train)
    xte, yte = tensors(test)
    return ImageData(name, xtr, ytr, xte, yte, list(train.classes), stats[0], stats[1], pad=4, flip=True)


@DATASETS.register("cifar10")
def load_cifar10(data_dir: Path | None = None, download: bool = False) -> ImageData:
    """CIFAR-10 via torchvision (50,000 / 10,000 images, 32x32); crop(pad 4) + flip."""
    return _cifar("cifar10", "CIFAR10", _CIFAR10_STATS, data_dir, download)


@DATASETS.register("cifar100")
def load_cifar100(data_dir: Path | None = None, download: bool = False) -> ImageData:
    """CIFAR-100 via torchvision (50,000 / 10,000 images, 32x32); crop(pad 4) + flip."""
    return _cifar("cifar100", "CIFAR100", _CIFAR100_STATS, data_dir, download)


@DATASETS.register("stl10")
def load_stl10(data_dir: Path | None = None, download: bool = False) -> ImageData:
    """STL-10 labelled splits via torchvision (5,000 / 8,000 images, 96x96); crop(pad 12) + flip."""
    import torchvision

    train, test = _torchvision(
        "stl10", lambda root, dl: (torchvision.datasets.STL10(root, split="train", download=dl),
                                   torchvision.datasets.STL10(root, split="test", download=dl)),
        data_dir, download)
    return ImageData("stl10", torch.from_numpy(train.data), torch.from_numpy(train.labels.astype(np.int64)),
                     torch.from_numpy(test.data), torch.from_numpy(test.labels.astype(np.int64)),
                     list(train.classes), *_STL10_STATS, pad=12, flip=True)


def load_folder(path: str, image_size: int = 32) -> ImageData:
    """Any ImageFolder layout: one sub-folder per class, classes in sorted order.

    With ``train/`` and ``test/`` sub-folders those are the splits; otherwise a fixed stratified
    75/25 split (random_state 0). Images become RGB at ``image_size`` once, at load time.
    """
    from PIL import Image, UnidentifiedImageError
    from sklearn.model_selection import train_test_split

    root = Path(path)
    if not root.is_dir():
        raise BenchError(f"folder dataset {root} does not exist or is not a directory")

    def read(split_root: Path):
        classes = sorted(d.name for d in split_root.iterdir() if d.is_dir())
        if not classes:
            raise BenchError(f"folder dataset {split_root} has no class sub-folders")
        images, labels = [], []
        for label, cls in enumerate(classes):
            for f in sorted((split_root / cls).iterdir()):
                if not f.is_file():
                    continue
                try:
                    with Image.open(f) as im:
                        im = im.convert("RGB").resize((image_size, image_size), Image.BILINEAR)
                        images.append(np.asarray(im, dtype=np.uint8).transpose(2, 0, 1))
                except (UnidentifiedImageError, OSError):
                    continue  # not an image: ImageFolder skips unknown files too
                labels.append(label)
        if not images:
            raise BenchError(f"folder dataset {split_root} holds no readable images")
        return classes, torch.from_numpy(np.stack(images)), torch.tensor(labels, dtype=torch.int64)

    if (root / "train").is_dir() and (root / "test").is_dir():
        classes, xtr, ytr = read(root / "train")
        test_classes, xte, yte = read(root / "test")
        if test_classes != classes:
            raise BenchError(f"folder dataset {root}: train/ and test/ have different classes")
    else:
        classes, x, y = read(root)
        counts = torch.bincount(y)
        strat = y.numpy() if int(counts.min()) >= 2 else None
        tr, te = train_test_split(np.arange(len(y)), test_size=0.25, stratify=strat, random_state=0)
        xtr, ytr, xte, yte = x[tr], y[tr], x[te], y[te]
    mean, std = _channel_stats(xtr)
    return ImageData(f"folder:{root}", xtr, ytr, xte, yte, classes, mean, std,
                     pad=max(1, image_size // 8), flip=True)


def parse_classes(text: str, num_classes: int, name: str) -> list[int]:
    """'0-4' or '0,2,5' or '5-9,1' -> sorted class indices."""
    chosen: set[int] = set()
    try:
        for part in text.split(","):
            lo, sep, hi = part.partition("-")
            chosen.update(range(int(lo), int(hi) + 1) if sep else [int(lo)])
    except ValueError:
        raise BenchError(f"{name}: class list {text!r} is not like 0-4 or 0,2,5") from None
    bad = [c for c in chosen if not 0 <= c < num_classes]
    if bad or len(chosen) < 2:
        raise BenchError(f"{name}: classes {text!r} must name at least two of 0..{num_classes - 1}")
    return sorted(chosen)


def select_classes(data: ImageData, classes: list[int], label: str) -> ImageData:
    """Keep only ``classes`` (relabelled 0..k-1 in that order); the split stays the dataset's own."""
    lookup = torch.full((data.num_classes,), -1, dtype=torch.int64)
    lookup[torch.tensor(classes)] = torch.arange(len(classes))
    tr, te = lookup[data.y_train] >= 0, lookup[data.y_test] >= 0
    return replace(data, name=label, x_train=data.x_train[tr], y_train=lookup[data.y_train[tr]],
                   x_test=data.x_test[te], y_test=lookup[data.y_test[te]],
                   classes=[data.classes[c] for c in classes], info={**data.info, "classes": classes})


def carve_validation(data: ImageData, fraction: float) -> tuple[ImageData, tuple[torch.Tensor, torch.Tensor]]:
    """Split a stratified validation set off the training data (fixed random_state 0)."""
    from sklearn.model_selection import train_test_split

    if not 0 < fraction < 1:
        raise BenchError(f"validation fraction {fraction} must be in (0, 1)")
    labels = data.y_train.cpu().numpy()
    tr, va = train_test_split(np.arange(len(labels)), test_size=fraction, stratify=labels, random_state=0)
    tr, va = torch.from_numpy(tr).to(data.y_train.device), torch.from_numpy(va).to(data.y_train.device)
    return (replace(data, x_train=data.x_train[tr], y_train=data.y_train[tr]),
            (data.x_train[va], data.y_train[va]))


_STAND_IN_SHAPES = {"cifar10": (10, 32, _CIFAR10_STATS), "cifar100": (100, 32, _CIFAR100_STATS),
                    "stl10": (10, 96, _STL10_STATS)}


def synthetic_stand_in(name: str, n_train: int = 512, n_test: int = 128, seed: int = 0) -> ImageData:
    """Random images of a dataset's shape and class count, each class with its own mean colour:
    only for smoke runs that check a full-scale path where the real files are absent."""
    classes, size, stats = _STAND_IN_SHAPES[name]
    g = torch.Generator().manual_seed(seed)
    colours = torch.randint(40, 216, (classes, 3, 1, 1), generator=g)

    def split(n):
        y = torch.arange(n) % classes
        noise = torch.randint(-40, 41, (n, 3, size, size), generator=g)
        return (colours[y] + noise).clamp(0, 255).to(torch.uint8), y
    xtr, ytr = split(n_train)
    xte, yte = split(n_test)
    return ImageData(name, xtr, ytr, xte, yte, [f"class{i}" for i in range(classes)], *stats, pad=size // 8,
                     flip=True, info={"stand_in": "synthetic (smoke only: the real files were not found)"})


def load_dataset(name: str, data_dir: Path | str | None = None, download: bool = False,
                 image_size: int | None = None, stand_in: bool = False,
                 train_limit: int | None = None) -> ImageData:
    """Load a registered dataset or ``folder:PATH``; ``NAME@0-4`` keeps classes 0..4 only;
    optionally resize to ``image_size``. ``stand_in`` (smoke runs only) replaces a torchvision data
    set whose files are missing by a synthetic one of the same shape; ``train_limit`` keeps the first
    N training images."""
    if name.startswith("folder:"):
        return load_folder(name[len("folder:"):], image_size or 32)
    base, _, subset = name.partition("@")
    loader = DATASETS.get(base)
    try:
        data = loader(Path(data_dir) if data_dir else None, download)
    except BenchError:
        if not (stand_in and base in _STAND_IN_SHAPES):
            raise
        data = synthetic_stand_in(base)
    if train_limit:
        data = replace(data, x_train=data.x_train[:train_limit], y_train=data.y_train[:train_limit])
    if subset:
        data = select_classes(data, parse_classes(subset, data.num_classes, base), name)
    return data.resized(image_size) if image_size else data
