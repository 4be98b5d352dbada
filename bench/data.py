"""Datasets as whole uint8 tensors that live on the training device (or, when they do not fit there,
in host memory, or in their files).

Every loader returns an :class:`ImageData`: train and test images as uint8 (N, C, H, W), labels as
int64, and how to augment them. Augmentation runs on the device, per batch, with a few tensor ops
(no PIL inside the training loop), as airbench does.

Where the images live (``ImageData.to(device, on_device)``): on the device when they fit (the fast
path: plain tensors, indexed there); otherwise in host memory as :class:`HostImages`, whose indexing
yields the batch on the device (pinned, non-blocking copies), so the training loop and the evaluation
index them as they index a tensor. Labels are always on the device (8 bytes an image). ``bench eval``
over a folder larger than host memory streams from the files (:class:`FileImages`, a DataLoader with
workers over torchvision's ImageFolder).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Union

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

    def to(self, device: torch.device | str, on_device: str = "auto") -> "ImageData":
        """Images on ``device`` (``on_device`` "yes"), in host memory with device batches ("no"), or
        on the device when they fit ("auto", see :func:`fits_on_device`); labels always on the device."""
        device = torch.device(device)
        if on_device not in ON_DEVICE:
            raise BenchError(f"on_device {on_device!r}: use one of {', '.join(ON_DEVICE)}")
        there = all(isinstance(x, torch.Tensor) and _same_device(x.device, device) for x in (self.x_train, self.x_test))
        # (images already on the device stay: free memory now counts their bytes as used)
        host = on_device == "no" or (on_device == "auto" and not there and not fits_on_device(self, device))
        return replace(self, x_train=place(self.x_train, device, host), y_train=self.y_train.to(device),
                       x_test=place(self.x_test, device, host), y_test=self.y_test.to(device))

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


ON_DEVICE = ("auto", "yes", "no")
# "auto" keeps the images on the device when their uint8 bytes, plus the float copy of the test split that
# evaluation makes, take at most this share of the free device memory (the rest: models, activations, attacks).
DEVICE_SHARE = 0.5


def _host_memory_available() -> int | None:
    """Bytes of host memory available now (Linux MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


# A folder is decoded into host memory at once when its uint8 images take at most this share of the
# available host memory (a train/test split copies them once more).
HOST_SHARE = 0.5


def _fits_in_host(n_bytes: int) -> bool:
    available = _host_memory_available()
    return available is None or n_bytes <= HOST_SHARE * available


def fits_on_device(data: "ImageData", device: torch.device) -> bool:
    """Whether ``data``'s images fit on ``device``; a CPU device is host memory, so always."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    need = _numel(data.x_train) + _numel(data.x_test) * (1 + 4)  # uint8, and evaluation's float32 copy
    return need <= DEVICE_SHARE * free


def _same_device(a: torch.device, b: torch.device) -> bool:
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)


def _numel(x) -> int:
    n = 1
    for d in x.shape:
        n *= int(d)
    return n


class HostImages:
    """uint8 images (N, C, H, W) kept in host memory; indexing with an index tensor or a slice yields that
    batch on ``device`` (pinned and copied without blocking on CUDA). It stands where the training loop
    and the evaluation expect a device tensor, so they index it as one."""

    def __init__(self, host: torch.Tensor, device: torch.device | str):
        self.host, self.device = host.cpu(), torch.device(device)

    def __len__(self) -> int:
        return len(self.host)

    @property
    def shape(self) -> torch.Size:
        return self.host.shape

    @property
    def dtype(self) -> torch.dtype:
        return self.host.dtype

    def __getitem__(self, idx) -> torch.Tensor:
        if isinstance(idx, torch.Tensor):
            idx = idx.cpu()  # an index on the device: one sync per batch, the price of host residency
        batch = self.host[idx]
        if self.device.type == "cuda":
            return batch.pin_memory().to(self.device, non_blocking=True)
        return batch.to(self.device)

    def take(self, idx: torch.Tensor) -> "HostImages":
        """The images at ``idx``, still in host memory."""
        return HostImages(self.host[idx.cpu()], self.device)

    def at(self, device: torch.device | str) -> "HostImages":
        return HostImages(self.host, device)


class FileImages:
    """A folder's images decoded from their files on demand: a slice yields that batch, uint8 on ``device``,
    decoded by a DataLoader with worker processes. Consecutive batches (an evaluation pass) reuse one
    loader, whose workers decode ahead; any other slice starts a new one. For data sets larger than host
    memory; the labels are known without decoding."""

    def __init__(self, decoded: "_Decoded", device: torch.device | str, workers: int | None = None):
        self.decoded, self.device = decoded, torch.device(device)
        self.workers = _workers(len(decoded)) if workers is None else workers
        self._stream, self._next, self._batch = None, -1, -1

    def __len__(self) -> int:
        return len(self.decoded)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self), 3, self.decoded.size, self.decoded.size))

    @property
    def dtype(self) -> torch.dtype:
        return torch.uint8

    def at(self, device: torch.device | str) -> "FileImages":
        return FileImages(self.decoded, device, self.workers)

    def __getitem__(self, idx) -> torch.Tensor:
        if not isinstance(idx, slice):
            raise BenchError("images streamed from files are read in slices (consecutive batches)")
        start, stop, step = idx.indices(len(self))
        if step != 1:
            raise BenchError("images streamed from files are read in slices with step 1")
        size = max(stop - start, 0)
        if size == 0:
            return torch.zeros((0, *self.shape[1:]), dtype=torch.uint8, device=self.device)
        if self._stream is None or start != self._next or size != min(self._batch, len(self) - start):
            from torch.utils.data import DataLoader, Subset

            loader = DataLoader(Subset(self.decoded, range(start, len(self))), batch_size=size,
                                num_workers=self.workers, pin_memory=self.device.type == "cuda")
            self._stream, self._batch = iter(loader), size
        x, _, ok = next(self._stream)
        self._next = start + len(x)
        self.decoded.check(ok, start)
        return x[:size].to(self.device, non_blocking=True)


Images = Union[torch.Tensor, HostImages, FileImages]


def place(x: Images, device: torch.device, host: bool) -> Images:
    """Images on ``device`` or (``host``) behind :class:`HostImages`; images already placed move with it."""
    if isinstance(x, (HostImages, FileImages)):
        return x.at(device)
    return HostImages(x, device) if host else x.to(device)


def float_images(x_u8: Images, n: int):
    """The first ``n`` images as float in [0, 1] for evaluation: one device tensor when they live on the
    device (the fast path), else a view whose slices convert one batch at a time."""
    if isinstance(x_u8, torch.Tensor):
        return to_float(x_u8[:n])
    return _FloatView(x_u8, n)


class _FloatView:
    def __init__(self, images, n: int):
        self.images, self.n = images, n

    def __len__(self) -> int:
        return self.n

    @property
    def shape(self) -> torch.Size:
        return torch.Size((self.n, *self.images.shape[1:]))

    def __getitem__(self, idx: slice) -> torch.Tensor:
        start, stop, _ = idx.indices(self.n)
        return to_float(self.images[start:max(start, stop)])


def augment(x: torch.Tensor, pad: int, flip: bool, generator: torch.Generator | None = None
            ) -> torch.Tensor:
    """Random crop with zero padding ``pad`` and optional horizontal flip, batched on x's device, drawing
    from ``generator`` (on x's device: no host-to-device copy) or x's device's global stream."""
    b, _, h, w = x.shape
    if pad > 0:
        padded = F.pad(x, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device=x.device)
        dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device=x.device)
        rows = (dy[:, None] + torch.arange(h, device=x.device)[None, :])[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=x.device)[None, :])[:, None, None, :]
        batch = torch.arange(b, device=x.device)[:, None, None, None]
        chan = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        x = padded[batch, chan, rows, cols]
    if flip:
        mask = torch.rand(b, generator=generator, device=x.device) < 0.5
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


class _Decoded(torch.utils.data.Dataset):
    """An ImageFolder's samples as uint8 (3, size, size) tensors: torchvision finds the classes and files
    (its image extensions; other files are skipped) and its loader opens them as RGB; resizing is PIL's
    bilinear, once. An unreadable image file comes back flagged instead of raised (from a worker
    process it would arrive as a multi-line traceback), and :meth:`check` names it in one line."""

    def __init__(self, folder, size: int):
        self.folder, self.size = folder, size

    def __len__(self) -> int:
        return len(self.folder.samples)

    def __getitem__(self, i: int):
        from PIL import Image
        from torchvision.transforms.functional import pil_to_tensor

        path, label = self.folder.samples[i]
        try:
            im = self.folder.loader(path)
            if im.size != (self.size, self.size):
                im = im.resize((self.size, self.size), Image.BILINEAR)
            return pil_to_tensor(im), label, True
        except (OSError, ValueError):  # PIL's UnidentifiedImageError is an OSError
            return torch.zeros((3, self.size, self.size), dtype=torch.uint8), label, False

    @property
    def labels(self) -> torch.Tensor:
        return torch.tensor(self.folder.targets, dtype=torch.int64)

    @property
    def nbytes(self) -> int:
        return len(self) * 3 * self.size * self.size

    def check(self, ok: torch.Tensor, offset: int) -> None:
        if not bool(ok.all()):
            bad = int((~ok).nonzero()[0, 0]) + offset
            raise BenchError(f"{self.folder.samples[bad][0]}: not a readable image (remove it or replace it)")

    def read_all(self, workers: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Every image decoded into one uint8 tensor (worker processes decode in parallel)."""
        from torch.utils.data import DataLoader

        if not _fits_in_host(self.nbytes):
            raise BenchError(f"{self.folder.root}: {len(self)} images at {self.size}x{self.size} take "
                             f"{self.nbytes / 2**30:.1f} GiB decoded, more than {HOST_SHARE:.0%} of the "
                             f"{_host_memory_available() / 2**30:.1f} GiB of host memory available: lower "
                             f"--image-size (training reads decoded images; `bench eval` streams from the files)")
        x = torch.empty((len(self), 3, self.size, self.size), dtype=torch.uint8)
        done = 0
        for xb, _, ok in DataLoader(self, batch_size=256, num_workers=_workers(len(self)) if workers is None
                                    else workers):
            self.check(ok, done)
            x[done:done + len(xb)] = xb
            done += len(xb)
        return x, self.labels


def _workers(n_images: int) -> int:
    """Decoding processes: none for a few hundred images (starting workers costs more), else up to 8 cores."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 0 if n_images < 1024 or cores < 2 else min(8, cores)


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
        xtr, ytr = _Decoded(train, image_size).read_all()
        xte, yte = _Decoded(test, image_size).read_all()
    else:
        x, y = _Decoded(train, image_size).read_all()
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


@DATASETS.register("tiny-imagenet")
def load_tiny_imagenet(data_dir: Path | None = None, download: bool = False) -> ImageData:
    """Tiny-ImageNet-200 as shipped (100,000 / 10,000 labelled images, 64x64, 200 classes; the unlabelled
    test/ is not read): train/ for training, val/ as the test split; crop(pad 8) + flip."""
    root = (Path(data_dir) if data_dir else default_data_dir()) / TINY_IMAGENET_DIR
    if not _is_tiny_imagenet(root):
        raise BenchError(f"tiny-imagenet: files not found under {root}: put the extracted tiny-imagenet-200.zip "
                         f"from http://cs231n.stanford.edu/tiny-imagenet-200.zip there (or set BENCH_DATA_DIR / "
                         f"--data-dir); bench does not download it")
    train, test, names = _tiny_imagenet_splits(root)
    xtr, ytr = _Decoded(train, 64).read_all()
    xte, yte = _Decoded(test, 64).read_all()
    return ImageData("tiny-imagenet", xtr, ytr, xte, yte, list(train.classes), *_TINY_IMAGENET_STATS, pad=8,
                     flip=True, info={"class_names": names, "split": "train/ and val/ (test/ is unlabelled)"})


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
    x = data.x_train  # host-resident images stay on the host; the validation images go to the device
    return (replace(data, x_train=x.take(tr) if isinstance(x, HostImages) else x[tr], y_train=data.y_train[tr]),
            (x[va], data.y_train[va]))


_STAND_IN_SHAPES = {"cifar10": (10, 32, _CIFAR10_STATS), "cifar100": (100, 32, _CIFAR100_STATS),
                    "stl10": (10, 96, _STL10_STATS), "tiny-imagenet": (200, 64, _TINY_IMAGENET_STATS)}


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
    decoded = _Decoded(folder, size)
    if stream is None:
        stream = not _fits_in_host(decoded.nbytes)
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
