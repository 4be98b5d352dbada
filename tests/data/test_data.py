import numpy as np
import pytest
import torch
from PIL import Image

from bench.common.errors import BenchError
from bench.data.images import augment
from bench.data.sources import load_dataset


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


# --- folders through torchvision's ImageFolder, Tiny-ImageNet, eval sets, host-resident data ---------------

COLOURS = {"ant": (200, 30, 30), "bee": (30, 200, 30), "cat": (30, 30, 200)}


def _class_folder(root, n, size=8, ext="png", colours=COLOURS, sub=""):
    """``root/<class>/<sub>/i.ext``: each class one flat colour, so a label can be read back from pixels."""
    for cls, colour in colours.items():
        (root / cls / sub).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.new("RGB", (size, size), colour).save(root / cls / sub / f"{cls}_{i}.{ext}")


def _labels_from_pixels(x, classes, colours=COLOURS):
    table = torch.tensor([colours[c] for c in classes], dtype=torch.float32)  # (C, 3)
    mean = x.float().mean(dim=(2, 3))  # (N, 3)
    return torch.cdist(mean, table).argmin(1)


def test_folder_train_val_layout_reads_both_splits(tmp_path):
    _class_folder(tmp_path / "train", 3)
    _class_folder(tmp_path / "val", 2)
    (tmp_path / "train" / "bee" / "notes.txt").write_text("not an image")  # skipped, as ImageFolder does
    data = load_dataset(f"folder:{tmp_path}", image_size=8)
    assert data.classes == ["ant", "bee", "cat"]
    assert len(data.y_train) == 9 and len(data.y_test) == 6  # the folders' own split, not 75/25
    assert torch.equal(_labels_from_pixels(data.x_train, data.classes), data.y_train)
    assert torch.equal(_labels_from_pixels(data.x_test, data.classes), data.y_test)
    assert int(data.x_train[0, 0].min()) == 200 and data.x_train.dtype == torch.uint8  # exact pixels (PNG)


def test_single_folder_labels_follow_their_folders(tmp_path):
    _class_folder(tmp_path, 4, size=10)
    data = load_dataset(f"folder:{tmp_path}", image_size=6)
    assert data.x_train.shape[1:] == (3, 6, 6) and len(data.y_train) == 9 and len(data.y_test) == 3
    for x, y in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
        assert torch.equal(_labels_from_pixels(x, data.classes), y)


def test_unreadable_image_is_one_line(tmp_path):
    _class_folder(tmp_path, 2)
    (tmp_path / "cat" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(BenchError, match=r"broken\.png: not a readable image"):
        load_dataset(f"folder:{tmp_path}")
    (tmp_path / "cat" / "broken.png").unlink()
    (tmp_path / "empty").mkdir()
    with pytest.raises(BenchError, match="Found no valid file for the classes empty"):
        load_dataset(f"folder:{tmp_path}")


TINY = {"n02": (200, 30, 30), "n01": (30, 200, 30), "n03": (30, 30, 200)}


def _tiny_imagenet(root, n_train=3, n_val=2):
    """Tiny-ImageNet-200's layout as shipped, three classes of flat-colour JPEGs."""
    _class_folder(root / "train", n_train, size=64, ext="JPEG", colours=TINY, sub="images")
    for wnid in TINY:
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text(f"{wnid}_0.JPEG\t0\t0\t63\t63\n")
    (root / "val" / "images").mkdir(parents=True)
    rows, wnids = [], list(TINY)
    for i in range(n_val * len(TINY)):
        wnid = wnids[(i * 2) % len(wnids)]  # not grouped by class
        Image.new("RGB", (64, 64), TINY[wnid]).save(root / "val" / "images" / f"val_{i}.JPEG")
        rows.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t63\t63")
    (root / "val" / "val_annotations.txt").write_text("\n".join(rows) + "\n")
    (root / "test" / "images").mkdir(parents=True)
    Image.new("RGB", (64, 64), (0, 0, 0)).save(root / "test" / "images" / "test_0.JPEG")  # unlabelled
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (root / "words.txt").write_text("n00\tentity\nn01\tgoldfish, Carassius auratus\nn02\tsalamander\n"
                                    "n03\ttree frog, tree-frog\n")


def test_tiny_imagenet_as_shipped(tmp_path):
    _tiny_imagenet(tmp_path / "tiny-imagenet-200")
    data = load_dataset("tiny-imagenet", data_dir=tmp_path)
    assert data.classes == ["n01", "n02", "n03"]  # sorted wnids, as ImageFolder orders them
    assert data.info["class_names"] == ["goldfish", "salamander", "tree frog"]
    assert data.x_train.shape == (9, 3, 64, 64) and len(data.y_test) == 6  # test/ (unlabelled) not read
    assert torch.equal(_labels_from_pixels(data.x_train, data.classes, TINY), data.y_train)
    assert torch.equal(_labels_from_pixels(data.x_test, data.classes, TINY), data.y_test)  # val_annotations
    assert data.pad == 8 and data.flip
    as_folder = load_dataset(f"folder:{tmp_path / 'tiny-imagenet-200'}", image_size=16)  # the same layout
    assert as_folder.x_train.shape == (9, 3, 16, 16) and torch.equal(as_folder.y_test, data.y_test)
    assert as_folder.info["class_names"] == data.info["class_names"]


def test_missing_tiny_imagenet_one_line_exit_2(capsys, tmp_path):
    from bench.cli.main import main
    with pytest.raises(BenchError, match="tiny-imagenet: files not found under .*tiny-imagenet-200"):
        load_dataset("tiny-imagenet", data_dir=tmp_path)
    code = main(["run", "--dataset", "tiny-imagenet", "--data-dir", str(tmp_path), "--methods", "kd",
                 "--epochs", "1", "--teacher-epochs", "1", "--results", str(tmp_path / "r"),
                 "--reports", str(tmp_path / "rep")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and str(tmp_path / "tiny-imagenet-200") in err[0], err


def test_eval_set_of_a_folder_is_every_image(tmp_path):
    from bench.data.images import FileImages
    from bench.data.sources import load_eval_set
    _class_folder(tmp_path / "one", 4)
    every = load_eval_set(f"folder:{tmp_path / 'one'}", image_size=8)
    assert len(every.y_test) == 12 and len(every.y_train) == 0  # not the 25 % test split of training
    assert every.in_channels == 3 and every.num_classes == 3
    assert torch.equal(_labels_from_pixels(every.x_test, every.classes), every.y_test)
    _class_folder(tmp_path / "two" / "train", 3)
    _class_folder(tmp_path / "two" / "test", 2)
    assert len(load_eval_set(f"folder:{tmp_path / 'two'}", image_size=8).y_test) == 6  # its test/ split
    streamed = load_eval_set(f"folder:{tmp_path / 'one'}", image_size=8, stream=True)
    assert isinstance(streamed.x_test, FileImages)
    import torch.utils.data as tud

    loaders = []

    class Counting(tud.DataLoader):
        def __init__(self, *args, **kwargs):
            loaders.append(1)
            super().__init__(*args, **kwargs)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tud, "DataLoader", Counting)
        assert torch.equal(torch.cat([streamed.x_test[i:i + 5] for i in range(0, 12, 5)]), every.x_test)
    assert len(loaders) == 1  # one pass over consecutive batches: one loader, decoding ahead
    assert torch.equal(streamed.x_test[3:7], every.x_test[3:7])  # a jump restarts the stream
    digits = load_eval_set("digits")
    assert len(digits.y_test) == 450 and len(digits.y_train) == 0


def test_cli_eval_over_a_folder_counts_every_image(tmp_path, capsys):
    import json

    from bench.cli.main import main
    from bench.models import build_model

    _class_folder(tmp_path / "imgs", 5)
    ckpt = tmp_path / "m.pt"
    torch.save(build_model("cnn-narrow", 3, 3).state_dict(), ckpt)
    assert main(["eval", "--weights", str(ckpt), "--arch", "cnn-narrow", "--dataset",
                 f"folder:{tmp_path / 'imgs'}", "--image-size", "8", "--attacks", "clean", "--no-sanity",
                 "--out", str(tmp_path / "out")]) == 0
    record = json.loads((tmp_path / "out" / "record.json").read_text())
    assert record["settings"]["n"] == 15


def test_host_resident_data_trains_and_evaluates_like_device_resident(tmp_path, digits):
    from dataclasses import replace

    from bench.config.schema import AttackConfig, EvalConfig, SanityConfig, TrainConfig
    from bench.data.images import HostImages
    from bench.data.splits import carve_validation
    from bench.eval.protocol import evaluate
    from bench.models import build_model
    from bench.train.loop import train_model
    from bench.train.selection import Selection
    from bench.methods import Context, parse_method

    small = replace(digits, x_train=digits.x_train[:192], y_train=digits.y_train[:192],
                    x_test=digits.x_test[:100], y_test=digits.y_test[:100])
    cpu = torch.device("cpu")
    results = []
    for mode in ("yes", "no"):
        data = small.to(cpu, mode)
        assert isinstance(data.x_train, HostImages) == (mode == "no")
        train, val = carve_validation(data, 0.25)
        assert isinstance(train.x_train, HostImages) == (mode == "no") and isinstance(val[0], torch.Tensor)
        torch.manual_seed(0)
        model = build_model("cnn-narrow", 10, 1, data.mean, data.std)
        ctx = Context(num_classes=10, n_train=len(train.y_train), train_labels=train.y_train,
                      student_dim=model.feature_dim, teacher_dim=model.feature_dim, device=cpu, epochs=2)
        history = train_model(model, parse_method("pgd-at").build(ctx), train, TrainConfig(epochs=2, batch_size=32),
                              AttackConfig(steps=2), None, tmp_path / mode, cpu,
                              selection=Selection("best-val", *val))
        ev = evaluate(model, data.x_test, data.y_test,
                      EvalConfig(attacks=("clean", "fgsm"), curve_eps=(0.1,), batch_size=40,
                                 sanity=SanityConfig(n=50, strong_steps=2, strong_restarts=1)), 10)
        results.append(([{k: v for k, v in r.items() if k not in ("seconds", "images_per_s")} for r in history],
                        ev["metrics"], ev["curve"], ev["sanity"]["checks"], model.state_dict()))
    (h_dev, m_dev, c_dev, s_dev, w_dev), (h_host, m_host, c_host, s_host, w_host) = results
    assert h_dev == h_host and m_dev == m_host and c_dev == c_host and s_dev == s_host
    assert all(torch.equal(w_dev[k], w_host[k]) for k in w_dev)
    assert 0 < m_dev["clean"] < 1


def test_on_device_auto_and_bad_value(digits):
    from bench.data.images import HostImages, fits_on_device
    cpu = torch.device("cpu")
    assert fits_on_device(digits, cpu) and isinstance(digits.to(cpu).x_train, torch.Tensor)
    assert isinstance(digits.to(cpu, "no").to(cpu).x_test, HostImages)  # placed data keeps its place
    with pytest.raises(BenchError, match="on_device 'maybe'"):
        digits.to(cpu, "maybe")


def test_folder_too_big_for_host_memory(tmp_path, monkeypatch):
    from bench.data import images, sources
    _class_folder(tmp_path, 2)
    monkeypatch.setattr(images, "host_memory_available", lambda: 1000)  # bytes: less than 6 images
    with pytest.raises(BenchError, match="6 images at 8x8 take .* lower --image-size"):
        load_dataset(f"folder:{tmp_path}", image_size=8)
    streamed = sources.load_eval_set(f"folder:{tmp_path}", image_size=8)  # eval streams instead
    assert isinstance(streamed.x_test, images.FileImages) and len(streamed.y_test) == 6
    assert streamed.info["streamed"]


def test_each_data_set_is_one_registry_entry_that_every_stage_reads():
    """A data set is one entry (bench.data.sources.DataSet): its loader, its shape without loading it
    (run plans, cost estimates), its default radius per norm (the resolver), its statistics (stand-ins),
    the files it needs and its published corruptions. The stages read the entry, not copies of it."""
    from bench.config.threat import default_eps
    from bench.config.schema import DataConfig
    from bench.data.sources import DATASETS, NATURAL_EPS, dataset_entry, synthetic_stand_in
    from bench.runs.estimate import data_shape

    digits = load_dataset("digits")
    shape = (len(digits.y_train), len(digits.y_test), *digits.x_train.shape[1:3], digits.num_classes)
    assert DATASETS.get("digits").shape == shape
    for name, entry in DATASETS.items():
        assert set(entry.eps) == {"Linf", "L2"} and len(entry.shape) == 5, name
        assert data_shape(DataConfig(name=name)) == entry.shape
        for norm in ("Linf", "L2"):
            assert default_eps(f"{name}@0-1", norm) == entry.eps[norm]
        if entry.stats is not None:   # a stand-in has the entry's shape and statistics
            fake = synthetic_stand_in(name, 8, 4)
            assert (fake.x_train.shape[-1], fake.num_classes, fake.mean) == (entry.shape[3], entry.shape[4],
                                                                               entry.stats[0])
    assert default_eps("folder:/x", "L2") == NATURAL_EPS["L2"] == dataset_entry("folder:/x").eps["L2"]
    assert DATASETS.get("cifar10").corruptions == "CIFAR-10-C" and DATASETS.get("digits").corruptions is None
