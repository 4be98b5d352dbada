"""CIFAR-10-C corruptions: shapes, ranges, seeds, severity order, the reference's tables, the motion-blur
kernel and glass_blur's copy semantics."""
import math

import numpy as np
import pytest
import torch

from bench.common.errors import BenchError
from bench.eval import corruptions as C

SEVERITIES = (1, 2, 3, 4, 5)


def _smooth(n=2, size=32, channels=3):
    """Smooth synthetic uint8 images (N, C, H, W): gradients and a low-frequency wave per channel."""
    r, c = np.mgrid[:size, :size] / size
    chans = [0.5 + 0.35 * np.sin(2 * np.pi * (r + k * c) + k) for k in range(channels)]
    img = np.stack(chans)[None] * np.linspace(0.8, 1.0, n)[:, None, None, None]
    return np.uint8(img * 255)


def _random(n=2, size=32, channels=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, channels, size, size), dtype=np.uint8)


@pytest.mark.parametrize("name", C.CORRUPTIONS)
def test_shape_dtype_range(name):
    colour, grey = _random(), _random(size=8, channels=1)
    for s in SEVERITIES:
        for x in (colour, grey):
            out = C.corrupt(x, name, s, np.random.default_rng(s))
            assert out.shape == x.shape and out.dtype == np.uint8
        # before the truncating cast: values already in [0, 255] (so the cast never wraps)
        raw = C._FUNCS[name](colour[0].transpose(1, 2, 0), C.PARAMS[name][s - 1], np.random.default_rng(s))
        assert raw.shape == (32, 32, 3) and raw.min() >= 0 and raw.max() <= 255


def test_torch_tensor_in_tensor_out():
    x = torch.from_numpy(_random())
    out = C.corrupt(x, "gaussian_noise", 3, np.random.default_rng(0))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.uint8 and out.shape == x.shape
    assert torch.equal(out, torch.from_numpy(C.corrupt(x.numpy(), "gaussian_noise", 3, np.random.default_rng(0))))
    assert out.float().div(255).min() >= 0 and out.float().div(255).max() <= 1   # as bench's to_float sees it


@pytest.mark.parametrize("name", C.CORRUPTIONS)
def test_seeds(name):
    x = _random(seed=1)
    state = np.random.get_state()
    a = C.corrupt(x, name, 3, np.random.default_rng(7))
    assert np.array_equal(a, C.corrupt(x, name, 3, np.random.default_rng(7)))
    b = C.corrupt(x, name, 3, np.random.default_rng(8))
    assert (not np.array_equal(a, b)) == (name in C.STOCHASTIC)
    assert all(np.array_equal(u, v) for u, v in zip(state, np.random.get_state()) if isinstance(u, np.ndarray))


@pytest.mark.parametrize("name", ["gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "zoom_blur",
                                  "brightness", "contrast", "pixelate", "jpeg_compression"])
def test_severity_is_monotone(name):
    x = _smooth(n=8)
    effect = [np.abs(C.corrupt(x, name, s, np.random.default_rng(0)).astype(float) - x).mean() for s in SEVERITIES]
    assert all(a < b for a, b in zip(effect, effect[1:])), effect


def test_tables_match_make_cifar_c():
    # typed from make_cifar_c.py (hendrycks/robustness ca36008), not copied from the module
    assert C.PARAMS["gaussian_noise"] == (0.04, 0.06, 0.08, 0.09, 0.10)
    assert C.PARAMS["shot_noise"] == (500, 250, 100, 75, 50)
    assert C.PARAMS["impulse_noise"][4] == 0.07
    assert C.PARAMS["defocus_blur"][3] == (1, 0.2)
    assert C.PARAMS["glass_blur"][3] == (0.25, 1, 2)
    assert C.PARAMS["motion_blur"] == ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5))
    assert C.PARAMS["snow"][2] == (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9)
    assert C.PARAMS["frost"][4] == (0.75, 0.45)
    assert C.PARAMS["fog"][4] == (1.5, 1.75)
    assert C.PARAMS["brightness"] == (0.05, 0.1, 0.15, 0.2, 0.3)
    assert C.PARAMS["contrast"] == (0.75, 0.5, 0.4, 0.3, 0.15)
    assert [32 * f for f in C.PARAMS["elastic_transform"][1]] == [32 * 0.05, 32 * 0.2, 32 * 0.07]
    assert C.PARAMS["pixelate"] == (0.95, 0.9, 0.85, 0.75, 0.65)
    assert C.PARAMS["jpeg_compression"] == (80, 65, 58, 50, 40)
    assert len(np.arange(*C.PARAMS["zoom_blur"][4])) == len(np.arange(1, 1.26, 0.01))
    assert set(C.CORRUPTIONS) == set(C.PARAMS) and len(C.CORRUPTIONS) == 15
    assert all(len(t) == 5 for t in C.PARAMS.values())


@pytest.mark.parametrize("radius,sigma", [(6, 1), (9, 2.5), (2.5, 1.5)])
@pytest.mark.parametrize("angle", [-45.0, 0.0, 30.0, 90.0, -120.0])
def test_motion_kernel(radius, sigma, angle):
    w, rows, cols = C.motion_kernel(radius, sigma, angle)
    width = 2 * math.ceil(radius) + 1
    assert len(w) == len(rows) == len(cols) == width
    assert math.isclose(w.sum(), 1.0) and np.all(np.diff(w) < 0)
    assert math.isclose(w[1] / w[0], math.exp(-1 / (2 * sigma ** 2)))
    assert rows[0] == 0 and cols[0] == 0
    # one-sided: every tap lies ahead of the pixel along the angle, never coming back (ImageMagick's
    # rounding may put two taps on one pixel)
    t = math.radians(angle)
    along = rows * math.sin(t) + cols * math.cos(t)
    assert np.all(along[1:] > 0) and np.all(np.diff(along) >= 0)
    assert np.all(np.abs(rows * math.cos(t) - cols * math.sin(t)) <= 1)   # within a pixel of the line


def test_motion_blur_is_one_sided_on_an_impulse():
    y = np.zeros((9, 9, 1))
    y[4, 4] = 255
    out = C._motion_blur(y, 2, 1, 0.0)        # angle 0: each pixel averages itself and pixels to its right
    assert out[4, 5:].max() == 0 and out[4, 2:5].min() > 0 and np.all(out[:4] == 0) and np.all(out[5:] == 0)
    assert np.array_equal(C.motion_kernel(2, 1, 0.0)[2], np.arange(5))


class _FixedShifts:
    """A Generator stand-in for glass_blur: returns the given (dx, dy) per visited pixel."""

    def __init__(self, shifts):
        self.shifts = shifts

    def integers(self, low, high, size):
        assert (low, high) == (-1, 1) and size == self.shifts.shape
        return self.shifts


def test_glass_blur_copies_rather_than_swaps():
    img = (np.arange(25, dtype=np.uint8).reshape(5, 5, 1) + 100)
    shifts = np.zeros((3, 3, 2), dtype=int)   # visits rows 4, 3, 2 x columns 4, 3, 2 (bottom-right first)
    shifts[0, 0] = (-1, 0)                    # pixel (4, 4) takes (4, 3)
    shifts[2, 2] = (0, -1)                    # pixel (2, 2) takes (1, 2)
    # sigma 0.05 with truncate 4 is a 1-tap (identity) filter; the /255*255 round trip may truncate by 1
    out = C._glass_blur(img, (0.05, 1, 1), _FixedShifts(shifts))
    base = np.uint8(img / 255 * 255)
    want = base.copy()
    want[4, 4], want[2, 2] = base[4, 3], base[1, 2]   # copies; a swap would also change (4, 3) and (1, 2)
    assert np.array_equal(np.uint8(out), np.uint8(np.clip(want / 255, 0, 1) * 255))


def test_grey_images_use_the_colour_path_where_needed():
    x = _smooth(n=2, size=8, channels=1)
    out = C.corrupt(x, "brightness", 5, np.random.default_rng(0))
    want = np.clip(x / 255 + 0.3, 0, 1) * 255                    # grey in HSV: value + c
    assert np.abs(out.astype(float) - want).max() <= 1
    assert C.corrupt(x, "frost", 1, np.random.default_rng(0)).shape == x.shape


def test_small_grey_list():
    assert set(C.APPLICABLE_SMALL_GREY) | set(C.NOT_FOR_SMALL_GREY) == set(C.CORRUPTIONS)
    assert not set(C.APPLICABLE_SMALL_GREY) & set(C.NOT_FOR_SMALL_GREY)
    assert {"gaussian_noise", "contrast", "brightness"} <= set(C.APPLICABLE_SMALL_GREY)
    assert {"frost", "snow"} <= set(C.NOT_FOR_SMALL_GREY)


def test_plasma_fractal():
    m = C.plasma_fractal(32, 2.0, np.random.default_rng(0))
    assert m.shape == (32, 32) and m.min() == 0 and m.max() == 1
    smooth, rough = (np.abs(np.diff(C.plasma_fractal(32, d, np.random.default_rng(0)))).mean() for d in (3, 1.5))
    assert smooth < rough   # a larger decay shrinks the fine-scale noise faster


def test_frost_textures_are_vendored():
    sizes = {(C._frost_texture(i).shape[:2]) for i in range(5)}
    assert sizes == {(120, 180), (63, 112), (70, 105), (99, 132)}   # cv2.resize(fx=fy=0.2) of the five files


def test_bad_input_raises():
    x = _random()
    for args in [("blur", 1), ("contrast", 0), ("contrast", 6)]:
        with pytest.raises(BenchError):
            C.corrupt(x, *args, np.random.default_rng(0))
    for bad in (x.astype(np.float32) / 255, x[:, :2], x[0]):
        with pytest.raises(BenchError):
            C.corrupt(bad, "contrast", 1, np.random.default_rng(0))
    with pytest.raises(BenchError, match="frost"):
        C.corrupt(_random(n=1, size=64), "frost", 1, np.random.default_rng(0))
