"""The 15 CIFAR-10-C common corruptions at severities 1-5, as pure numpy functions.

What: Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations" (ICLR 2019) built CIFAR-10-C with ``ImageNet-C/create_c/make_cifar_c.py`` of
hendrycks/robustness (repository commit 8190fe3; the file's only commit is ca36008). This module
re-implements its 15 benchmark corruptions from their formulas; :data:`PARAMS` holds that file's
parameter tables, number for number. ``corrupt(images, name, severity, rng)`` corrupts a batch.
The file's four extra corruptions (speckle_noise, gaussian_blur, spatter, saturate) are not here.

Images: uint8 (N, C, H, W), C = 1 or 3, as bench stores them (other dtypes and layouts raise
BenchError); a torch tensor comes back as a uint8 tensor on its device, a numpy array as an array.
Every image goes through the reference's steps on [0, 1] or [0, 255] floats and ends, like the
reference, with a truncating ``np.uint8`` cast. All randomness comes from the ``np.random.Generator``
passed in, drawn in the reference's order: a fixed seed reproduces the output, but the stream is not the
reference's global ``np.random``, so images are not bit-identical to the released CIFAR-10-C files.
Checked against the reference on a 32x32 image: the deterministic corruptions match exactly (defocus
within 1/255, float32 vs float64), the frost textures after scaling match cv2 exactly, and the mean
|corrupted - clean| of the random ones agrees with the reference's within sampling noise.

Deviations from make_cifar_c.py, all forced by dropping its external tools or its fixed size:

- motion_blur and snow: ImageMagick's ``MagickMotionBlurImage`` (through Wand) is replaced by
  :func:`motion_kernel`, the same kernel in numpy: a one-sided line of width 2*ceil(radius)+1 at the
  angle, weights exp(-i^2 / 2 sigma^2) normalised, edge pixels replicated, the result rounded to 8 bits
  as ImageMagick returns it. Against ImageMagick 6.9.11 on 32x32 images it differs by 0.5/255 on
  average (rounding level) for every CIFAR radius and sigma.
- skimage: ``filters.gaussian`` -> ``scipy.ndimage.gaussian_filter`` per channel with skimage's
  arguments (glass_blur: mode nearest, truncate 4; elastic: reflect, truncate 3);
  ``util.random_noise(mode="s&p")`` -> two Bernoulli draws per value (hit with p = amount, salt or
  pepper with p = 1/2), the same distribution; ``color.rgb2hsv/hsv2rgb`` -> ``matplotlib.colors``.
- OpenCV: ``GaussianBlur``/``filter2D`` of defocus_blur -> ``scipy.ndimage`` (mode mirror is cv2's
  BORDER_REFLECT_101); ``getAffineTransform``/``warpAffine`` of elastic_transform -> a solved affine
  map and bilinear ``map_coordinates`` (mirror borders; cv2 also rounds sample positions to 1/32 px);
  ``cvtColor`` RGB->grey -> its weights 0.299, 0.587, 0.114; the frost textures are read with PIL and
  shrunk by 0.2 with cv2's INTER_LINEAR pixel mapping (half-pixel centres, no antialiasing: at 0.2 it
  takes every 5th pixel), rounded to uint8 as cv2 does. JPEG and pixelate use PIL, as the reference does.
- The hard-coded 32 px becomes the image's (h, w): glass_blur's loop bounds, fog's map (the next power
  of two >= max(h, w), cropped), the frost crop, pixelate's (int(w c), int(h c)), elastic's IMSIZE
  (min(h, w)), a zoom that crops height and width separately. A 32x32 image gets the reference's
  numbers. Elastic's three affine anchor points are built as (x, y) = (w // 2, h // 2) +- s, which cv2
  reads them as; the reference builds them from (h, w), the same for square images.
- frost: the textures frost1-5 (the reference draws ``randint(5)``, so frost6 is never used) are vendored
  byte-identical in ``assets/frost`` (Apache-2.0, see its README). Their 0.2-scaled sizes allow images
  up to 62 px; larger images raise :class:`BenchError`.
- glass_blur keeps the reference's semantics: its ``x[h, w], x[h', w'] = x[h', w'], x[h, w]`` acts on
  numpy views, so it copies x[h', w'] into x[h, w] (both sides end up equal) rather than swapping, and
  it walks from the bottom-right to the top-left over rows/columns H-d .. d+1.
- Grey images (C = 1): brightness, frost and snow need colour (HSV, a colour texture, an RGB->grey
  step); they run on the image repeated to 3 channels and return the channel mean. The rest act per
  channel and run on the one channel directly (repeating would let the mean average noise away).

corrupt-tta 0.1.7 (PyPI) was checked and not used: it carries the ImageNet-C (224 px) tables, hard-coded
as local lists (no CIFAR parameters, none can be passed in), and its motion_blur, snow, fog, frost and
glass_blur differ from the reference in algorithm as well.

Small grey images (8x8 digits): no reference exists. :data:`APPLICABLE_SMALL_GREY` lists the
corruptions that keep their meaning there: the pixel-wise ones (noises, brightness, contrast), those
whose reach is 1-2 px or relative to the image (defocus, glass, zoom, elastic), and JPEG (an 8x8 image is
one JPEG block). :data:`NOT_FOR_SMALL_GREY` gives the reason for each of the other five.
"""
from __future__ import annotations

import io
import math
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
from matplotlib.colors import hsv_to_rgb, rgb_to_hsv
from PIL import Image
from scipy import ndimage

from bench.common.errors import BenchError

# make_cifar_c.py's tables, severity 1..5 (the comment names the meaning of each entry)
PARAMS: dict[str, tuple] = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),           # std on [0, 1]
    "shot_noise": (500, 250, 100, 75, 50),                      # Poisson events per unit intensity
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),            # fraction of values set to 0 or 1
    "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),  # disk radius, its blur sigma
    "glass_blur": ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),  # sigma, max shift, iterations
    "motion_blur": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),  # radius, sigma (px)
    "zoom_blur": ((1, 1.06, 0.01), (1, 1.11, 0.01), (1, 1.16, 0.01), (1, 1.21, 0.01), (1, 1.26, 0.01)),  # np.arange
    "snow": ((0.1, 0.2, 1, 0.6, 8, 3, 0.95),                    # flake mean, std, zoom, threshold,
             (0.1, 0.2, 1, 0.5, 10, 4, 0.9),                    # blur radius, blur sigma, image weight
             (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
             (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
             (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)),
    "frost": ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)),  # image weight, texture weight
    "fog": ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),  # fog amount, fractal roughness decay
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),                  # added to HSV value
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),                    # scale around each channel's mean
    "elastic_transform": ((0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06),  # alpha, sigma, affine
                          (0.1, 0.04, 0.05), (0.1, 0.03, 0.03)),                # jitter; each x IMSIZE
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),                  # down-sampling factor
    "jpeg_compression": (80, 65, 58, 50, 40),                   # PIL JPEG quality
}
CORRUPTIONS = tuple(PARAMS)

NOT_FOR_SMALL_GREY = {
    "motion_blur": "its streak is fixed in pixels (kernel 13-19 px, sigma 1-2.5): up to half of an 8 px digit",
    "snow": "flakes are zoomed noise streaked over 8-14 px: no flake shape survives at 8 px",
    "frost": "an 8x8 crop of the texture is a flat patch of ice colour, not frost",
    "fog": "an 8 px fractal has 3 octaves, so its roughness (half the table) hardly acts: a smooth ramp",
    "pixelate": "int(8 c) gives 7, 7, 6, 6, 5 px: severities coincide in pairs, and 7->8 px is a resampling blur",
}
APPLICABLE_SMALL_GREY = tuple(n for n in CORRUPTIONS if n not in NOT_FOR_SMALL_GREY)

FROST_DIR = Path(__file__).resolve().parent / "assets" / "frost"
FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg")
_GREY_WEIGHTS = np.array([0.299, 0.587, 0.114])  # cv2 RGB -> grey


# ----------------------------------------------------------------------------- helpers

def _blur(y: np.ndarray, sigma: float, **kw) -> np.ndarray:
    """skimage.filters.gaussian on an (H, W, C) image: each channel alone."""
    return ndimage.gaussian_filter(y, sigma=(sigma, sigma, 0), **kw)


def _clipped_zoom(y: np.ndarray, factor: float) -> np.ndarray:
    """Magnify the central 1/factor of y (bilinear) back to y's height and width."""
    h, w = y.shape[:2]
    ch, cw = math.ceil(h / factor), math.ceil(w / factor)
    top, left = (h - ch) // 2, (w - cw) // 2
    z = ndimage.zoom(y[top:top + ch, left:left + cw], (factor, factor, 1), order=1)
    top, left = (z.shape[0] - h) // 2, (z.shape[1] - w) // 2
    return z[top:top + h, left:left + w]


def motion_kernel(radius: float, sigma: float, angle: float):
    """ImageMagick's motion-blur kernel: weights and (row, col) offsets of the taps. The line starts at
    the pixel itself and runs one way along ``angle`` (degrees), 2*ceil(radius)+1 taps long."""
    width = 2 * math.ceil(radius) + 1
    i = np.arange(width)
    weights = np.exp(-i ** 2 / (2 * sigma ** 2))
    t = math.radians(angle)
    px, py = width * math.sin(t), width * math.cos(t)   # as ImageMagick computes them
    hyp = math.hypot(px, py)
    rows = np.ceil(i * px / hyp - 0.5).astype(int)
    cols = np.ceil(i * py / hyp - 0.5).astype(int)
    return weights / weights.sum(), rows, cols


def _motion_blur(y: np.ndarray, radius: float, sigma: float, angle: float) -> np.ndarray:
    """Blur (H, W, C) floats along the kernel's line, edge pixels replicated; rounded like 8-bit output."""
    h, w = y.shape[:2]
    out = np.zeros(y.shape)
    for k, dr, dc in zip(*motion_kernel(radius, sigma, angle)):
        out += k * y[np.clip(np.arange(h) + dr, 0, h - 1)][:, np.clip(np.arange(w) + dc, 0, w - 1)]
    return np.round(out)


def plasma_fractal(size: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    """A (size, size) diamond-square height map in [0, 1] (size a power of two, wrapping edges). Each new
    point is the mean of its 4 neighbours plus a * U(-a, a); a starts at 100 and is divided by ``decay``
    at each halving of the step, so a larger decay gives a smoother map."""
    m = np.zeros((size, size))
    step, amp = size, 100.0

    def mean_plus_noise(total):
        return total / 4 + amp * rng.uniform(-amp, amp, total.shape)

    while step >= 2:
        half = step // 2
        corners = m[::step, ::step]
        pair = corners + np.roll(corners, -1, 0)       # square step: centres from their 4 corners
        m[half::step, half::step] = mean_plus_noise(pair + np.roll(pair, -1, 1))
        centres = m[half::step, half::step]             # diamond step: edge midpoints
        m[::step, half::step] = mean_plus_noise(centres + np.roll(centres, 1, 0) + corners + np.roll(corners, -1, 1))
        m[half::step, ::step] = mean_plus_noise(centres + np.roll(centres, 1, 1) + corners + np.roll(corners, -1, 0))
        step, amp = half, amp / decay
    m -= m.min()
    return m / m.max()


def _linear_shrink(img: np.ndarray, f: float) -> np.ndarray:
    """cv2.resize(img, fx=f, fy=f) with INTER_LINEAR: half-pixel centres, no antialiasing, uint8 out."""
    def taps(n):
        pos = np.clip((np.arange(round(n * f)) + 0.5) / f - 0.5, 0, n - 1)
        lo = np.floor(pos).astype(int)
        return lo, np.minimum(lo + 1, n - 1), pos - lo
    (r0, r1, fr), (c0, c1, fc) = taps(img.shape[0]), taps(img.shape[1])
    rows = img[r0] * (1 - fr)[:, None, None] + img[r1] * fr[:, None, None]
    out = rows[:, c0] * (1 - fc)[None, :, None] + rows[:, c1] * fc[None, :, None]
    return np.round(out).astype(np.uint8)


@lru_cache(maxsize=None)
def _frost_texture(i: int) -> np.ndarray:
    path = FROST_DIR / FROST_FILES[i]
    if not path.is_file():
        raise BenchError(f"frost texture {path} is missing: restore bench/eval/assets/frost (see its README)")
    with Image.open(path) as im:
        texture = _linear_shrink(np.asarray(im.convert("RGB"), dtype=np.float64), 0.2)  # alpha dropped, as cv2
    texture.setflags(write=False)   # cached: shared by every call
    return texture


def _pil(x: np.ndarray) -> Image.Image:
    return Image.fromarray(x[..., 0] if x.shape[-1] == 1 else x)


# ----------------------------------------------------------------------------- the 15 corruptions
# Each takes one uint8 (H, W, C) image, its severity's parameters and the Generator, and returns
# values in [0, 255] (float or uint8).

def _gaussian_noise(x, c, rng):
    return np.clip(x / 255 + rng.normal(scale=c, size=x.shape), 0, 1) * 255


def _shot_noise(x, c, rng):
    return np.clip(rng.poisson(x / 255 * c) / c, 0, 1) * 255


def _impulse_noise(x, c, rng):
    y = x / 255
    hit = rng.random(x.shape) < c
    salt = rng.random(x.shape) < 0.5
    y[hit & salt] = 1
    y[hit & ~salt] = 0
    return y * 255


def _defocus_blur(x, c, rng):
    radius, alias_sigma = c
    grid = np.arange(-8, 9)                               # the reference's 17x17 grid (radius <= 8)
    disk = (grid[:, None] ** 2 + grid[None, :] ** 2 <= radius ** 2).astype(float)
    g = np.exp(-np.arange(-1, 2) ** 2 / (2 * alias_sigma ** 2))
    kernel = ndimage.convolve(disk / disk.sum(), np.outer(g, g) / g.sum() ** 2, mode="constant")
    kernel = kernel[np.ix_(kernel.any(1), kernel.any(0))]  # drop the zero border (symmetric): 3x3 or 5x5
    return np.clip(ndimage.correlate(x / 255, kernel[..., None], mode="mirror"), 0, 1) * 255


def _glass_blur(x, c, rng):
    sigma, d, iterations = c
    y = np.uint8(_blur(x / 255, sigma, mode="nearest", truncate=4.0) * 255)
    h, w = y.shape[:2]
    rows, cols = range(h - d, d, -1), range(w - d, d, -1)
    for _ in range(iterations):
        shifts = rng.integers(-d, d, size=(len(rows), len(cols), 2)).tolist()  # randint(-d, d): d excluded
        for r, row_shifts in zip(rows, shifts):
            for q, (dx, dy) in zip(cols, row_shifts):
                y[r, q] = y[r + dy, q + dx]   # the reference's "swap" on views: a copy (module docstring)
    return np.clip(_blur(y / 255, sigma, mode="nearest", truncate=4.0), 0, 1) * 255


def _motion_blur_c(x, c, rng):
    return np.clip(_motion_blur(x.astype(float), *c, rng.uniform(-45, 45)), 0, 255)


def _zoom_blur(x, c, rng):
    y = (x / 255).astype(np.float32)
    factors = np.arange(*c)               # the reference's float arange, its end point and all
    total = y + sum(_clipped_zoom(y, f) for f in factors)
    return np.clip(total / (len(factors) + 1), 0, 1) * 255


def _snow(x, c, rng):
    mean, std, zoom, threshold, radius, sigma, keep = c
    y = x.astype(np.float32) / 255
    layer = _clipped_zoom(rng.normal(mean, std, size=y.shape[:2])[..., None], zoom)
    layer[layer < threshold] = 0
    layer = np.floor(np.clip(layer, 0, 1) * 255)   # the reference stores the layer as 8-bit (truncating)
    layer = _motion_blur(layer, radius, sigma, rng.uniform(-135, -45)) / 255
    grey = (y @ _GREY_WEIGHTS)[..., None]
    y = keep * y + (1 - keep) * np.maximum(y, grey * 1.5 + 0.5)
    return np.clip(y + layer + np.rot90(layer, k=2), 0, 1) * 255


def _frost(x, c, rng):
    keep, amount = c
    (h, w), (th, tw) = x.shape[:2], np.min([_frost_texture(i).shape[:2] for i in range(len(FROST_FILES))], axis=0)
    if h >= th or w >= tw:   # checked against the smallest texture, so the answer does not depend on the draw
        raise BenchError(f"frost takes images under {th}x{tw} px (its smallest texture), got {h}x{w}")
    texture = _frost_texture(int(rng.integers(len(FROST_FILES))))
    (th, tw) = texture.shape[:2]
    top, left = rng.integers(0, th - h), rng.integers(0, tw - w)
    return np.clip(keep * x + amount * texture[top:top + h, left:left + w], 0, 255)


def _fog(x, c, rng):
    amount, decay = c
    y = x / 255
    h, w = y.shape[:2]
    size = 1 << (max(h, w) - 1).bit_length()          # next power of two
    top = y.max()
    y = y + amount * plasma_fractal(size, decay, rng)[:h, :w, None]
    return np.clip(y * top / (top + amount), 0, 1) * 255


def _brightness(x, c, rng):
    hsv = rgb_to_hsv(x / 255)
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
    return np.clip(hsv_to_rgb(hsv), 0, 1) * 255


def _contrast(x, c, rng):
    y = x / 255
    mean = y.mean(axis=(0, 1), keepdims=True)
    return np.clip((y - mean) * c + mean, 0, 1) * 255


def _affine_warp(y, src, dst):
    """cv2.warpAffine with the map taking the (x, y) points src to dst: bilinear, mirrored borders."""
    m = np.linalg.solve(np.c_[src, np.ones(3)], dst).T      # 2x3: [x', y'] = m @ [x, y, 1]
    h, w = y.shape[:2]
    rows, cols = np.mgrid[:h, :w].astype(float)
    out_xy = np.stack([cols.ravel() - m[0, 2], rows.ravel() - m[1, 2]])
    in_x, in_y = np.linalg.solve(m[:, :2], out_xy)          # each output pixel reads its preimage
    return np.stack([ndimage.map_coordinates(y[..., k], [in_y, in_x], order=1, mode="mirror").reshape(h, w)
                     for k in range(y.shape[2])], axis=-1)


def _elastic_transform(x, c, rng):
    h, w = x.shape[:2]
    alpha, sigma, jitter = (f * min(h, w) for f in c)      # the reference's IMSIZE * fraction
    y = x.astype(np.float32) / 255
    centre, s = np.float32([w, h]) // 2, min(h, w) // 3
    src = np.float32([centre + s, [centre[0] + s, centre[1] - s], centre - s])
    dst = src + rng.uniform(-jitter, jitter, size=src.shape).astype(np.float32)
    y = _affine_warp(y, src.astype(float), dst.astype(float))
    dx, dy = (ndimage.gaussian_filter(rng.uniform(-1, 1, size=(h, w)), sigma, mode="reflect", truncate=3) * alpha
              for _ in range(2))
    rows, cols = np.mgrid[:h, :w]
    coords = [rows + dy.astype(np.float32), cols + dx.astype(np.float32)]
    out = np.stack([ndimage.map_coordinates(y[..., k], coords, order=1, mode="reflect")
                    for k in range(y.shape[2])], axis=-1)
    return np.clip(out, 0, 1) * 255


def _pixelate(x, c, rng):
    h, w = x.shape[:2]
    small = _pil(x).resize((int(w * c), int(h * c)), Image.BOX)
    return np.asarray(small.resize((w, h), Image.BOX)).reshape(x.shape)


def _jpeg_compression(x, c, rng):
    buf = io.BytesIO()
    _pil(x).save(buf, format="JPEG", quality=c)
    with Image.open(buf) as im:
        return np.asarray(im).reshape(x.shape)


_FUNCS = {
    "gaussian_noise": _gaussian_noise, "shot_noise": _shot_noise, "impulse_noise": _impulse_noise,
    "defocus_blur": _defocus_blur, "glass_blur": _glass_blur, "motion_blur": _motion_blur_c,
    "zoom_blur": _zoom_blur, "snow": _snow, "frost": _frost, "fog": _fog, "brightness": _brightness,
    "contrast": _contrast, "elastic_transform": _elastic_transform, "pixelate": _pixelate,
    "jpeg_compression": _jpeg_compression,
}
_NEEDS_RGB = {"brightness", "frost", "snow"}
STOCHASTIC = ("gaussian_noise", "shot_noise", "impulse_noise", "glass_blur", "motion_blur", "snow", "frost",
              "fog", "elastic_transform")


def corrupt(images, name: str, severity: int, rng: np.random.Generator):
    """``images`` (uint8 (N, C, H, W), C = 1 or 3, numpy or torch) with corruption ``name`` at
    ``severity`` 1..5; same type, shape, dtype (and torch device). Randomness only from ``rng``."""
    if name not in _FUNCS:
        raise BenchError(f"unknown corruption {name!r}: use one of {', '.join(CORRUPTIONS)}")
    if severity not in (1, 2, 3, 4, 5):
        raise BenchError(f"corruption severity {severity!r}: use 1 to 5")
    torch = sys.modules.get("torch")                      # a tensor implies torch is imported
    is_tensor = torch is not None and isinstance(images, torch.Tensor)
    x = images.detach().cpu().numpy() if is_tensor else np.asarray(images)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1] not in (1, 3):
        raise BenchError(f"corrupt takes uint8 (N, C, H, W) images with C = 1 or 3, got {x.dtype} {x.shape}")
    fn, c = _FUNCS[name], PARAMS[name][severity - 1]
    out = np.empty_like(x)
    for i, img in enumerate(x.transpose(0, 2, 3, 1)):
        if img.shape[-1] == 1 and name in _NEEDS_RGB:
            y = fn(np.repeat(img, 3, axis=-1), c, rng).mean(axis=-1, keepdims=True)
        else:
            y = fn(img, c, rng)
        out[i] = np.uint8(y).transpose(2, 0, 1)           # truncating cast, as the reference
    return torch.from_numpy(out).to(images.device) if is_tensor else out
