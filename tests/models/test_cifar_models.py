"""Tests for the CIFAR-size architectures in bench/models/cifar.py."""
from __future__ import annotations

from collections import OrderedDict

import pytest
import torch

from bench.models import ARCHS, BenchModel, build_model

ARCH_DIMS = {
    "resnet18": 512,
    "preact-resnet18": 512,
    "mobilenetv2": 1280,
    "wrn-34-10": 640,
    "wrn-28-10": 640,
}

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _bn_shapes(prefix: str, c: int) -> dict[str, tuple]:
    return {f"{prefix}.{k}": (() if k == "num_batches_tracked" else (c,)) for k in BN}


def classic_resnet18_shapes(num_classes: int = 10, in_channels: int = 3) -> "OrderedDict[str, tuple]":
    """State-dict names and shapes of the classic CIFAR ResNet-18 (kuangliu / ARD / RSLAD / AutoAttack)."""
    s: OrderedDict[str, tuple] = OrderedDict()
    s["conv1.weight"] = (64, in_channels, 3, 3)
    s.update(_bn_shapes("bn1", 64))
    in_planes = 64
    for li, planes in enumerate([64, 128, 256, 512], start=1):
        for b in range(2):
            p = f"layer{li}.{b}"
            s[f"{p}.conv1.weight"] = (planes, in_planes, 3, 3)
            s.update(_bn_shapes(f"{p}.bn1", planes))
            s[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            s.update(_bn_shapes(f"{p}.bn2", planes))
            if b == 0 and li > 1:
                s[f"{p}.shortcut.0.weight"] = (planes, in_planes, 1, 1)
                s.update(_bn_shapes(f"{p}.shortcut.1", planes))
            in_planes = planes
    s["linear.weight"] = (num_classes, 512)
    s["linear.bias"] = (num_classes,)
    return s


def classic_wrn_keys(depth: int) -> list[str]:
    n = (depth - 4) // 6
    keys = ["conv1.weight"]
    for g in (1, 2, 3):
        for i in range(n):
            p = f"block{g}.layer.{i}"
            keys += [f"{p}.bn1.{k}" for k in BN] + [f"{p}.conv1.weight"]
            keys += [f"{p}.bn2.{k}" for k in BN] + [f"{p}.conv2.weight"]
            if i == 0:  # 16->160, 160->320, 320->640: channels change in every group
                keys.append(f"{p}.convShortcut.weight")
    keys += [f"bn1.{k}" for k in BN] + ["fc.weight", "fc.bias"]
    return keys


@pytest.mark.parametrize("arch", list(ARCH_DIMS))
def test_forward_backward(arch):
    assert arch in ARCHS
    torch.manual_seed(0)
    model = build_model(arch, num_classes=10)
    assert isinstance(model, BenchModel)
    assert model.num_classes == 10
    assert model.feature_dim == ARCH_DIMS[arch]
    model.train()
    x = torch.rand(2, 3, 32, 32)
    f = model.features(x)
    assert f.shape == (2, model.feature_dim)
    logits = model.head(f)
    assert logits.shape == (2, 10)
    logits.sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:5]}"
    with torch.no_grad():
        model.eval()
        assert torch.allclose(model(x), model.head(model.features(x)))


def test_resnet18_classic_state_dict():
    model = build_model("resnet18", num_classes=10)
    sd = model.state_dict()
    for key in ["conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight",
                "layer2.0.shortcut.0.weight", "layer2.0.shortcut.1.weight",
                "layer4.1.bn2.num_batches_tracked", "linear.weight", "linear.bias"]:
        assert key in sd
    assert "layer1.0.shortcut.0.weight" not in sd
    assert "input_mean" not in sd and "input_std" not in sd

    expected = classic_resnet18_shapes()
    assert len(sd) == len(expected) == 122
    assert set(sd) == set(expected)
    for k, shape in expected.items():
        assert tuple(sd[k].shape) == shape, k

    # a checkpoint written with the classic names and shapes loads strictly
    g = torch.Generator().manual_seed(1)
    ckpt = OrderedDict(
        (k, torch.randint(0, 100, (), dtype=torch.long) if k.endswith("num_batches_tracked")
         else torch.randn(shape, generator=g))
        for k, shape in expected.items())
    model.load_state_dict(ckpt, strict=True)
    for k, v in model.state_dict().items():
        assert torch.equal(v, ckpt[k]), k


def test_resnet18_in_channels():
    model = build_model("resnet18", num_classes=7, in_channels=1, mean=[0.5], std=[0.5])
    assert model.conv1.weight.shape == (64, 1, 3, 3)
    assert model(torch.rand(2, 1, 32, 32)).shape == (2, 7)


def test_preact_resnet18_keys():
    sd = build_model("preact-resnet18", num_classes=10).state_dict()
    for key in ["conv1.weight", "layer1.0.bn1.weight", "layer1.0.conv1.weight",
                "layer2.0.shortcut.0.weight", "bn.running_var", "linear.weight"]:
        assert key in sd
    assert "bn1.weight" not in sd
    assert not any(k.startswith("layer1.") and "shortcut" in k for k in sd)
    assert "layer2.1.shortcut.0.weight" not in sd
    assert not any(k.startswith("layer2.0.shortcut.1") for k in sd)  # conv only, no BN
    # stem conv + 8 blocks x (2 BN x 5 + 2 convs) + 3 shortcut convs + final BN + linear
    assert len(sd) == 1 + 8 * 12 + 3 + 5 + 2
    assert "input_mean" not in sd


def test_mobilenetv2_keys():
    model = build_model("mobilenetv2", num_classes=10)
    sd = model.state_dict()
    assert len(model.layers) == 17
    for key in ["conv1.weight", "bn1.weight", "layers.0.conv1.weight", "layers.0.shortcut.0.weight",
                "layers.16.bn3.running_mean", "conv2.weight", "bn2.weight", "linear.weight"]:
        assert key in sd
    assert sd["conv2.weight"].shape == (1280, 320, 1, 1)
    assert "layers.2.shortcut.0.weight" not in sd  # stride-2 block: no residual


def test_wrn_34_10_keys():
    model = build_model("wrn-34-10", num_classes=10)
    sd = model.state_dict()
    assert "block1.layer.0.convShortcut.weight" in sd
    assert "block1.layer.1.convShortcut.weight" not in sd
    assert "fc.weight" in sd and "fc.bias" in sd
    assert not any("sub_block1" in k for k in sd)
    assert len(model.block1.layer) == 5
    assert set(sd) == set(classic_wrn_keys(34))
    assert sd["fc.weight"].shape == (10, 640)
    assert "input_mean" not in sd and "input_std" not in sd


def test_wrn_28_10_keys():
    model = build_model("wrn-28-10", num_classes=100)
    sd = model.state_dict()
    assert len(model.block3.layer) == 4
    assert set(sd) == set(classic_wrn_keys(28))
    assert sd["fc.weight"].shape == (100, 640)


@pytest.mark.parametrize("arch", ["resnet18", "preact-resnet18", "mobilenetv2", "wrn-28-10"])
def test_normalisation_inside(arch):
    torch.manual_seed(0)
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    norm = build_model(arch, num_classes=10, mean=mean, std=std).eval()
    plain = build_model(arch, num_classes=10).eval()
    plain.load_state_dict(norm.state_dict(), strict=True)
    assert torch.equal(plain.input_mean, torch.zeros(1, 3, 1, 1))
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        got = norm.features(x)
        want = plain.features((x - 0.5) / 0.25)
        naive = plain.features(x)
    # relative comparisons: with default init and eval-mode BN some nets give tiny activations
    assert got.norm() > 0
    assert (got - want).norm() <= 1e-4 * want.norm()
    assert (got - naive).norm() > 1e-2 * got.norm()  # the normalisation really is applied


def test_resnet18_stl_size():
    model = build_model("resnet18", num_classes=10).eval()
    with torch.no_grad():
        f = model.features(torch.rand(2, 3, 96, 96))
        assert f.shape == (2, 512)
        assert model.head(f).shape == (2, 10)
