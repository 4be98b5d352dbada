"""Images as whole uint8 tensors that live on the training device (or, when they do not fit there,
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
from typing import Union

import torch
import torch.nn.functional as F

from bench.common.errors import BenchError


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


def host_memory_available() -> int | None:
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


def fits_in_host(n_bytes: int) -> bool:
    available = host_memory_available()
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


class DecodedFolder(torch.utils.data.Dataset):
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

        if not fits_in_host(self.nbytes):
            raise BenchError(f"{self.folder.root}: {len(self)} images at {self.size}x{self.size} take "
                             f"{self.nbytes / 2**30:.1f} GiB decoded, more than {HOST_SHARE:.0%} of the "
                             f"{host_memory_available() / 2**30:.1f} GiB of host memory available: lower "
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


class FileImages:
    """A folder's images decoded from their files on demand: a slice yields that batch, uint8 on ``device``,
    decoded by a DataLoader with worker processes. Consecutive batches (an evaluation pass) reuse one
    loader, whose workers decode ahead; any other slice starts a new one. For data sets larger than host
    memory; the labels are known without decoding."""

    def __init__(self, decoded: "DecodedFolder", device: torch.device | str, workers: int | None = None):
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
