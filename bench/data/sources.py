"""Where images live and how each data set is read: scikit-learn's digits, torchvision's CIFAR-10/100
and STL-10 (local files; a clear message where they are missing), Tiny ImageNet, any image folder,
and synthetic stand-ins for smoke runs. ``load_dataset`` takes a name (``digits@0-4``) and returns
an :class:`~bench.data.images.ImageData`."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from bench.common.errors import BenchError
from bench.common.registry import Registry
from bench.data.images import (
    DecodedFolder,
    FileImages,
    ImageData,
    fits_in_host,
    to_float,
)
from bench.data.splits import parse_classes, select_classes



@dataclass(frozen=True)
class DataSet:
    """Everything bench knows of one data set, in one registry entry: how to read it, its shape without
    reading it (cost estimates, run plans), its default threat-model radius per norm (the resolver's
    default, bench.config.threat), its channel statistics, the files it needs and the published
    corruption set's folder."""
    name: str
    load: Callable[..., "ImageData"]          # (data_dir, download) -> ImageData
    shape: tuple[int, int, int, int, int]     # train images, test images, channels, size, classes
    eps: dict[str, float]                     # norm -> default radius, pixels in [0, 1]
    stats: tuple | None = None                # (mean, std) per channel where fixed (stand-ins take them)
    files: tuple[str, str] | None = None      # (folder under the data dir, what to put there)
    corruptions: str | None = None            # the published corruptions' folder (robustbench's layout)


DATASETS: Registry[DataSet] = Registry("dataset")
# Natural images: 8/255 in L-inf, 0.5 in L2 (RobustBench's CIFAR threat models; see bench.config.threat)
NATURAL_EPS = {"Linf": 8 / 255, "L2": 0.5}
# a folder of images (folder:PATH) has no entry of its own: natural images, a shape known only once read
FOLDER = DataSet("folder", lambda *a: None, (0, 0, 3, 32, 0), NATURAL_EPS)


def dataset(name: str, shape: tuple[int, int, int, int, int], eps: dict[str, float] = NATURAL_EPS,
            **more) -> Callable:
    """Register the decorated loader as data set ``name`` with the rest of its entry (``DataSet``)."""
    def register(load: Callable) -> Callable:
        DATASETS.add(name, DataSet(name, load, shape, dict(eps), **more))
        return load
    return register


def dataset_entry(name: str) -> DataSet:
    """The entry of a data-set name: ``digits@0-4`` -> digits, ``folder:PATH`` -> FOLDER."""
    base = name.partition("@")[0]
    return FOLDER if base.startswith("folder:") or base == "folder" else DATASETS.get(base)

def default_data_dir() -> Path:
    env = os.environ.get("BENCH_DATA_DIR")
    if env:
        return Path(env)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "bench" / "data"


def corruptions_folder(name: str, data_dir: str | None) -> Path:
    """Where the published corruptions (Hendrycks & Dietterich 2019) of data set ``name`` live:
    ``<data dir>/CIFAR-10-C``."""
    base = name.partition("@")[0]
    folder = DATASETS.get(base).corruptions if base in DATASETS else None
    if folder is None:
        with_files = [n for n, d in DATASETS.items() if d.corruptions]
        raise BenchError(f"eval.corruptions_from=published: published corruption files exist for "
                         f"{' and '.join(with_files)} only, not {name} (use generated)")
    return Path(data_dir or default_data_dir()) / folder


def _channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    xf = to_float(x)
    mean = xf.mean(dim=(0, 2, 3))
    std = xf.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return tuple(round(v, 4) for v in mean.tolist()), tuple(round(v, 4) for v in std.tolist())


# the digits' radii are measured (bench.config.threat says how)
@dataset("digits", (1347, 450, 1, 8, 10), eps={"Linf": 0.2, "L2": 1.0})
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


_CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616))
_CIFAR100_STATS = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
_STL10_STATS = ((0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713))


def _torchvision(name: str, make: Callable, data_dir: Path | None, download: bool):
    root = Path(data_dir) if data_dir else default_data_dir()
    folder, source = DATASETS.get(name).files
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


@dataset("cifar10", (50000, 10000, 3, 32, 10), stats=_CIFAR10_STATS, corruptions="CIFAR-10-C",
         files=("cifar-10-batches-py/", "cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html"))
def load_cifar10(data_dir: Path | None = None, download: bool = False) -> ImageData:
    """CIFAR-10 via torchvision (50,000 / 10,000 images, 32x32); crop(pad 4) + flip."""
    return _cifar("cifar10", "CIFAR10", _CIFAR10_STATS, data_dir, download)


@dataset("cifar100", (50000, 10000, 3, 32, 100), stats=_CIFAR100_STATS, corruptions="CIFAR-100-C",
         files=("cifar-100-python/", "cifar-100-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html"))
def load_cifar100(data_dir: Path | None = None, download: bool = False) -> ImageData:
    """CIFAR-100 via torchvision (50,000 / 10,000 images, 32x32); crop(pad 4) + flip."""
    return _cifar("cifar100", "CIFAR100", _CIFAR100_STATS, data_dir, download)


@dataset("stl10", (5000, 8000, 3, 96, 10), stats=_STL10_STATS,
         files=("stl10_binary/", "stl10_binary.tar.gz from https://cs.stanford.edu/~acoates/stl10/"))
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


def _image_folder(root: Path):
    """torchvision's ImageFolder over ``root`` (one sub-folder per class, sorted), its errors as one line."""
    from torchvision.datasets import ImageFolder

    try:
        return ImageFolder(str(root))
    except FileNotFoundError as err:  # no class folders, or a class folder without images
        raise BenchError(f"folder dataset {root}: {err}") from None


class _AnnotatedFolder:
    """Images in one folder, labelled by a table of (file name, class) rows: Tiny-ImageNet's val/
    (images/*.JPEG and val_annotations.txt, tab-separated: file, wnid, box). It offers what an
    ImageFolder offers here: samples, targets, classes and torchvision's image loader."""

    def __init__(self, images: Path, annotations: Path, classes: list[str]):
        from torchvision.datasets.folder import default_loader

        index = {c: i for i, c in enumerate(classes)}
        rows = [line.split("\t")[:2] for line in annotations.read_text().splitlines() if line.strip()]
        unknown = sorted({wnid for _, wnid in rows if wnid not in index})
        if unknown:
            raise BenchError(f"{annotations}: classes {', '.join(unknown[:3])} are not among the training classes")
        self.samples = [(str(images / name), index[wnid]) for name, wnid in sorted(rows)]
        self.targets = [label for _, label in self.samples]
        self.classes, self.loader, self.root = classes, default_loader, str(images.parent)
        missing = [p for p, _ in self.samples if not os.path.isfile(p)]
        if missing:
            raise BenchError(f"{annotations} names {len(missing)} missing image(s), e.g. {missing[0]}")


def _is_tiny_imagenet(root: Path) -> bool:
    return (root / "wnids.txt").is_file() and (root / "val" / "val_annotations.txt").is_file()


def _tiny_imagenet_splits(root: Path):
    """Tiny-ImageNet as shipped: train/<wnid>/images/*.JPEG (ImageFolder finds them), val/images/*.JPEG
    labelled by val/val_annotations.txt; test/ is unlabelled and not read. Class names come from words.txt."""
    train = _image_folder(root / "train")
    wnids = sorted(w for w in (root / "wnids.txt").read_text().split() if w)
    if train.classes != wnids:
        raise BenchError(f"{root}: train/ holds {len(train.classes)} class folders, wnids.txt lists {len(wnids)} "
                         f"other ones")
    test = _AnnotatedFolder(root / "val" / "images", root / "val" / "val_annotations.txt", train.classes)
    words = {}
    if (root / "words.txt").is_file():
        for line in (root / "words.txt").read_text().splitlines():
            wnid, _, text = line.partition("\t")
            words[wnid] = text.split(",")[0].strip()
    return train, test, [words.get(w) or w for w in train.classes]


def _folder_splits(root: Path):
    """(train, test, class names) folders of a layout: Tiny-ImageNet's; train/ + test/ (or val/); or one
    folder of classes (test None: the caller splits it)."""
    if not root.is_dir():
        raise BenchError(f"folder dataset {root} does not exist or is not a directory")
    if _is_tiny_imagenet(root):
        return _tiny_imagenet_splits(root)
    test_dir = next((root / d for d in ("test", "val") if (root / d).is_dir()), None)
    if (root / "train").is_dir() and test_dir is not None:
        train, test = _image_folder(root / "train"), _image_folder(test_dir)
        if test.classes != train.classes:
            raise BenchError(f"folder dataset {root}: train/ and {test_dir.name}/ have different classes")
        return train, test, train.classes
    folder = _image_folder(root)
    return folder, None, folder.classes


def load_folder(path: str, image_size: int = 32) -> ImageData:
    """A folder of images in any ImageFolder layout, read by torchvision's ImageFolder: one sub-folder per
    class, classes in sorted order, files with an image extension.

    With ``train/`` and ``test/`` (or ``val/``) sub-folders those are the splits; Tiny-ImageNet's layout
    as shipped is recognised (``wnids.txt``, ``val/val_annotations.txt``); otherwise a fixed stratified
    75/25 split (random_state 0). Images become RGB at ``image_size`` once, at load time.
    """
    from sklearn.model_selection import train_test_split

    root = Path(path)
    train, test, names = _folder_splits(root)
    info = {"class_names": names} if names != train.classes else {}
    if test is not None:
        xtr, ytr = DecodedFolder(train, image_size).read_all()
        xte, yte = DecodedFolder(test, image_size).read_all()
    else:
        x, y = DecodedFolder(train, image_size).read_all()
        counts = torch.bincount(y)
        strat = y.numpy() if int(counts.min()) >= 2 else None
        tr, te = train_test_split(np.arange(len(y)), test_size=0.25, stratify=strat, random_state=0)
        xtr, ytr, xte, yte = x[tr], y[tr], x[te], y[te]
        info["split"] = "stratified 75/25, random_state=0"
    mean, std = _channel_stats(xtr)
    return ImageData(f"folder:{root}", xtr, ytr, xte, yte, list(train.classes), mean, std,
                     pad=max(1, image_size // 8), flip=True, info=info)


TINY_IMAGENET_DIR = "tiny-imagenet-200"
_TINY_IMAGENET_STATS = ((0.4802, 0.4481, 0.3975), (0.2302, 0.2265, 0.2262))


@dataset("tiny-imagenet", (100000, 10000, 3, 64, 200), stats=_TINY_IMAGENET_STATS)
def load_tiny_imagenet(data_dir: Path | None = None, download: bool = False) -> ImageData:
    """Tiny-ImageNet-200 as shipped (100,000 / 10,000 labelled images, 64x64, 200 classes; the unlabelled
    test/ is not read): train/ for training, val/ as the test split; crop(pad 8) + flip."""
    root = (Path(data_dir) if data_dir else default_data_dir()) / TINY_IMAGENET_DIR
    if not _is_tiny_imagenet(root):
        raise BenchError(f"tiny-imagenet: files not found under {root}: put the extracted tiny-imagenet-200.zip "
                         f"from http://cs231n.stanford.edu/tiny-imagenet-200.zip there (or set BENCH_DATA_DIR / "
                         f"--data-dir); bench does not download it")
    train, test, names = _tiny_imagenet_splits(root)
    xtr, ytr = DecodedFolder(train, 64).read_all()
    xte, yte = DecodedFolder(test, 64).read_all()
    return ImageData("tiny-imagenet", xtr, ytr, xte, yte, list(train.classes), *_TINY_IMAGENET_STATS, pad=8,
                     flip=True, info={"class_names": names, "split": "train/ and val/ (test/ is unlabelled)"})


def synthetic_stand_in(name: str, n_train: int = 512, n_test: int = 128, seed: int = 0) -> ImageData:
    """Random images of a dataset's shape and class count, each class with its own mean colour:
    only for smoke runs that check a full-scale path where the real files are absent."""
    entry = DATASETS.get(name)
    _, _, _, size, classes = entry.shape
    stats = entry.stats
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
    entry = DATASETS.get(base)
    try:
        data = entry.load(Path(data_dir) if data_dir else None, download)
    except BenchError:
        if not (stand_in and entry.stats is not None and entry.shape[2] == 3):
            raise
        data = synthetic_stand_in(base)
    if train_limit:
        data = replace(data, x_train=data.x_train[:train_limit], y_train=data.y_train[:train_limit])
    if subset:
        data = select_classes(data, parse_classes(subset, data.num_classes, base), name)
    return data.resized(image_size) if image_size else data


def load_eval_set(name: str, data_dir: Path | str | None = None, download: bool = False,
                  image_size: int | None = None, device: torch.device | str = "cpu", on_device: str = "auto",
                  stream: bool | None = None) -> ImageData:
    """The images ``bench eval`` evaluates, placed for ``device``: a registered data set's test split, or
    for ``folder:PATH`` every image of the folder (a folder given to eval is a test set), or its test/
    (val/) split where it has train/ beside it (Tiny-ImageNet: val/). The training split is left empty.

    A folder whose decoded images would take more than half the available host memory (or with
    ``stream=True``) is not decoded at once: its images are read from the files batch by batch
    (:class:`FileImages`)."""
    device = torch.device(device)
    if not name.startswith("folder:"):
        data = load_dataset(name, data_dir, download, image_size)
        data = replace(data, x_train=data.x_train[:0], y_train=data.y_train[:0])
        return data.to(device, on_device)
    root = Path(name[len("folder:"):])
    size = image_size or 32
    train, test, names = _folder_splits(root)
    folder = train if test is None else test
    decoded = DecodedFolder(folder, size)
    if stream is None:
        stream = not fits_in_host(decoded.nbytes)
    info = {"split": "every image of the folder" if test is None else f"the {Path(folder.root).name}/ split"}
    if names != list(train.classes):
        info["class_names"] = names
    if stream:
        info["streamed"] = "from the files, batch by batch"
    x = FileImages(decoded, device) if stream else decoded.read_all()[0]
    # no training split, so no normalisation statistics of one (identity) and no augmentation
    data = ImageData(f"folder:{root}", torch.zeros((0, 3, size, size), dtype=torch.uint8),
                     torch.zeros(0, dtype=torch.int64), x, decoded.labels, list(train.classes), (0.0,) * 3,
                     (1.0,) * 3, info=info)
    return data.to(device, on_device)
