"""Data sets and pipelines: sizes, splits, determinism, pipeline equivalence and error messages.

Every folder used here is written by the test into tmp_path; nothing needs the network.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from causalprune.data import DATASETS, Batches, dataset_spec, load_data
from causalprune.data import fashion_mnist as fm
from causalprune.data.batches import DeviceBatches, Finisher, LoaderBatches, epoch_plan
from causalprune.data.sets import ArraySet
from causalprune.data.split import split_indices
from causalprune.errors import CausalPruneError, ConfigError, DataError

from .datafiles import FakeCifar, idx_bytes, write_fmnist, write_image, write_imagefolder, write_tiny_imagenet


def collect(batches: Batches, seed: int = 0):
    xs, ys = zip(*batches.epoch(seed))
    return torch.cat(xs), torch.cat(ys)


@pytest.fixture(autouse=True)
def no_download(monkeypatch):
    """Tests never touch the network: a download attempt fails at once."""
    def refuse(root):
        raise RuntimeError("network disabled in tests")
    monkeypatch.setattr(fm, "_download", refuse)


# --------------------------------------------------------------------------- registry / spec
def test_registry_and_unknown_names():
    assert {"fashion-mnist", "digits", "synthetic", "cifar10", "tinyimagenet", "imagefolder",
            "imagenet"} <= set(DATASETS)
    with pytest.raises(ConfigError) as err:
        load_data("mnist", model="mlp", batch_size=8, seed=0)
    assert all(name in str(err.value) for name in DATASETS)
    with pytest.raises(ConfigError, match="lenet"):
        load_data("digits", model="vgg", batch_size=8, seed=0)


def test_dataset_spec_without_disk(monkeypatch):
    monkeypatch.setattr(fm, "DEBIAN_DIR", Path("/nonexistent"))  # proves no file is looked up
    assert tuple(vars(dataset_spec("fashion-mnist", "lenet")).values()) == (1, 28, 10)
    assert dataset_spec("fashion-mnist", "resnet18").size == 32
    assert dataset_spec("fashion-mnist", "alexnet").size == 224
    assert tuple(vars(dataset_spec("tinyimagenet", "lenet")).values()) == (3, 64, 200)
    assert dataset_spec("tinyimagenet", "resnet18").size == 32
    assert tuple(vars(dataset_spec("cifar10", "lenet")).values()) == (3, 32, 10)
    assert tuple(vars(dataset_spec("digits", "mlp")).values()) == (1, 8, 10)
    assert dataset_spec("synthetic", "mlp", synthetic_shape=(3, 16, 16)).channels == 3
    with pytest.raises(ConfigError):
        dataset_spec("imagefolder", "lenet")


def test_bad_arguments_are_config_errors():
    for kw in ({"val_frac": 1.0}, {"val_frac": -0.1}, {"batch_size": 0}, {"pipeline": "gpu"}):
        args = {"model": "mlp", "batch_size": 8, "seed": 0, **kw}
        with pytest.raises(ConfigError):
            load_data("digits", **args)
    with pytest.raises(ConfigError):
        load_data("synthetic", model="mlp", batch_size=8, seed=0, synthetic_shape=(1, 8, 9))
    with pytest.raises(ConfigError, match="workers"):
        load_data("imagenet", model="resnet50", batch_size=8, seed=0, pipeline="device")


# --------------------------------------------------------------------------- digits / synthetic
def test_digits_sizes_split_and_normalisation():
    b = load_data("digits", model="mlp", batch_size=100, seed=0)
    assert (b.train.num_samples, b.val.num_samples, b.test.num_samples) == (1294, 144, 359)
    assert b.train.num_samples + b.val.num_samples + b.test.num_samples == 1797
    assert len(b.train) == 13 and len(b.val) == 2  # partial last batches count
    assert tuple(vars(b.spec).values()) == (1, 8, 10) and "sklearn" in b.source
    x, y = collect(b.train)
    assert x.shape == (1294, 1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert abs(x.mean().item()) < 0.05 and abs(x.std().item() - 1) < 0.05  # standardised with train stats
    assert sorted(y.unique().tolist()) == list(range(10))
    # the test holdout does not depend on the run seed; the val split does
    b2 = load_data("digits", model="mlp", batch_size=100, seed=1)
    assert torch.equal(collect(b.test)[0], collect(b2.test)[0])
    assert len(load_data("digits", model="mlp", batch_size=100, seed=0, eval_batch_size=50).test) == 8
    assert not torch.equal(collect(b.val)[0], collect(b2.val)[0])


def test_epoch_is_a_function_of_its_seed_and_covers_every_sample_once():
    b = load_data("digits", model="mlp", batch_size=64, seed=0)
    x1, y1 = collect(b.train, 5)
    x2, y2 = collect(b.train, 5)
    x3, y3 = collect(b.train, 6)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(y1, y3)
    ref, _ = collect(DeviceBatches(_plain(b.train), 64, b.train.finisher))  # unshuffled
    key = lambda t: sorted(map(tuple, t.flatten(1).tolist()))  # noqa: E731
    assert key(x1) == key(x3) == key(ref)  # a permutation of the same samples
    # val / test ignore the seed
    assert torch.equal(collect(b.val, 1)[0], collect(b.val, 2)[0])


def _plain(batches: DeviceBatches) -> ArraySet:
    return ArraySet(batches.images, batches.labels)


def test_synthetic_is_seeded_shaped_and_learnable():
    b = load_data("synthetic", model="mlp", batch_size=64, seed=3, synthetic_shape=(2, 6, 6), synthetic_samples=400)
    same = load_data("synthetic", model="mlp", batch_size=64, seed=3, synthetic_shape=(2, 6, 6), synthetic_samples=400)
    other = load_data("synthetic", model="mlp", batch_size=64, seed=4, synthetic_shape=(2, 6, 6), synthetic_samples=400)
    assert (b.train.num_samples + b.val.num_samples, b.test.num_samples) == (400, 300)
    assert tuple(vars(b.spec).values()) == (2, 6, 10)
    assert torch.equal(collect(b.test)[0], collect(same.test)[0])
    assert not torch.equal(collect(b.test)[0], collect(other.test)[0])

    from causalprune.models import build_model
    torch.manual_seed(0)
    default = load_data("synthetic", model="mlp", batch_size=64, seed=0)
    assert tuple(vars(default.spec).values()) == (1, 8, 10) and default.train.num_samples == 1080
    model = build_model("mlp", default.spec)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def accuracy():
        with torch.no_grad():
            return np.mean([(model(x).argmax(1) == y).float().mean().item() for x, y in default.test])

    before = accuracy()
    for epoch in range(5):
        for x, y in default.train.epoch(epoch):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    after = accuracy()
    assert after > 0.6 and after > before + 0.3


# --------------------------------------------------------------------------- fashion-mnist
@pytest.mark.parametrize("layout,gz", [("torchvision", True), ("flat", False), ("flat", True)])
def test_fashion_mnist_from_data_dir(tmp_path, layout, gz):
    folder = tmp_path / "FashionMNIST" / "raw" if layout == "torchvision" else tmp_path
    arrays = write_fmnist(folder, gz=gz)
    b = load_data("fashion-mnist", model="lenet", batch_size=16, seed=0, data_dir=str(tmp_path))
    assert (b.train.num_samples, b.val.num_samples, b.test.num_samples) == (36, 4, 12)
    assert b.source == str(folder)
    x, y = collect(b.test)
    expected = (torch.from_numpy(arrays["test_images"]).float() / 255 - 0.2860) / 0.3530
    assert torch.allclose(x[:, 0], expected, atol=1e-5)
    assert torch.equal(y, torch.from_numpy(arrays["test_labels"]).long())


def test_fashion_mnist_is_resized_for_resnet18_and_pipelines_agree(tmp_path):
    write_fmnist(tmp_path)
    kw = dict(model="resnet18", batch_size=16, seed=0, data_dir=str(tmp_path))
    dev = load_data("fashion-mnist", pipeline="device", **kw)
    wrk = load_data("fashion-mnist", pipeline="workers", workers=0, **kw)
    assert dev.spec.size == 32 and dev.pipeline == "device" and wrk.pipeline == "workers"
    xd, yd = collect(dev.train, 7)
    xw, yw = collect(wrk.train, 7)
    assert xd.shape == (36, 1, 32, 32) and torch.equal(xd, xw) and torch.equal(yd, yw)


@pytest.mark.parametrize("damage,match", [
    (lambda b: b[:-100], "truncated"),
    (lambda b: b[:10], "truncated"),
    (lambda b: b"\x00\x00\x08\x01" + b[4:], "magic"),   # wrong number of dimensions
    (lambda b: b"PK\x03\x04" + b[4:], "magic"),
    (lambda b: b + b"\x00", "longer"),
])
def test_corrupt_idx_is_a_one_line_data_error(tmp_path, damage, match):
    write_fmnist(tmp_path, gz=False)
    path = tmp_path / fm.IDX_FILES["train_images"]
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DataError, match=match) as err:
        load_data("fashion-mnist", model="lenet", batch_size=16, seed=0, data_dir=str(tmp_path))
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_truncated_gzip_and_mismatched_counts(tmp_path):
    write_fmnist(tmp_path, gz=True)
    path = tmp_path / (fm.IDX_FILES["test_labels"] + ".gz")
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(DataError, match="gzip|truncated"):
        load_data("fashion-mnist", model="lenet", batch_size=16, seed=0, data_dir=str(tmp_path))
    write_fmnist(tmp_path / "b", gz=False)
    (tmp_path / "b" / fm.IDX_FILES["test_labels"]).write_bytes(idx_bytes(np.zeros(5)))
    with pytest.raises(DataError, match="do not belong"):
        load_data("fashion-mnist", model="lenet", batch_size=16, seed=0, data_dir=str(tmp_path / "b"))


def test_fashion_mnist_missing_everywhere_names_three_ways(tmp_path, monkeypatch):
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "no-debian")
    with pytest.raises(DataError) as err:
        load_data("fashion-mnist", model="lenet", batch_size=16, seed=0, data_dir=str(tmp_path / "empty"))
    msg = str(err.value)
    assert "\n" not in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "--data-dir" in msg and "network" in msg


@pytest.mark.skipif(fm.find_idx_files(fm.DEBIAN_DIR) is None, reason="Debian's dataset-fashion-mnist not installed")
def test_real_fashion_mnist_from_debian_folder():
    b = load_data("fashion-mnist", model="lenet", batch_size=512, seed=0)
    assert b.train.num_samples + b.val.num_samples == 60_000 and b.test.num_samples == 10_000
    assert (b.train.num_samples, b.val.num_samples) == (54_000, 6_000)
    assert len(b.train) == 106  # ceil(54000 / 512): the partial batch counts
    assert b.pipeline == "device" and b.spec.size == 28
    x, _ = next(b.train.epoch(0))
    assert abs(x.mean().item()) < 0.15 and 0.8 < x.std().item() < 1.2  # the published mean/std fit


# --------------------------------------------------------------------------- splits / batches
def test_split_indices_partition():
    tr, va = split_indices(103, 0.1, seed=2)
    assert len(va) == 10 and len(tr) == 93
    assert torch.equal(torch.cat([tr, va]).sort().values, torch.arange(103))
    assert not torch.equal(va, split_indices(103, 0.1, seed=3)[1])
    assert len(split_indices(50, 0.0, 0)[1]) == 0


def test_flips_are_fresh_each_epoch_and_only_mirror():
    # Row 0 of every image is constant (= its index), so flips keep the identity readable.
    n, size = 40, 6
    images = torch.randint(0, 256, (n, 1, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    images[:, 0, 0, :] = torch.arange(n, dtype=torch.uint8)[:, None]
    fin = Finisher((0.5,), (0.25,), 1 / 255, size, size, "cpu")
    batches = DeviceBatches(ArraySet(images, torch.arange(n) % 3), 16, fin, shuffle=True, flip=True)
    plain = fin(images, None)
    flipped_by_seed = []
    for seed in range(4):
        x, y = collect(batches, seed)
        ids = torch.round((x[:, 0, 0, 0] * 0.25 + 0.5) * 255).long()
        assert sorted(ids.tolist()) == list(range(n))
        is_plain = (x == plain[ids]).flatten(1).all(1)
        is_mirror = (x == plain[ids].flip(3)).flatten(1).all(1)
        assert (is_plain | is_mirror).all() and torch.equal(y, ids % 3)
        flipped_by_seed.append(set(ids[is_mirror & ~is_plain].tolist()))
        assert 5 < len(flipped_by_seed[-1]) < 35
    assert len({frozenset(s) for s in flipped_by_seed}) == 4  # new flips every epoch


def test_epoch_plan_is_pure():
    a, fa, _ = epoch_plan(50, 9, True, True)
    b, fb, _ = epoch_plan(50, 9, True, True)
    assert torch.equal(a, b) and torch.equal(fa, fb)
    order, flips, _ = epoch_plan(50, 9, False, True)
    assert torch.equal(order, torch.arange(50)) and flips is None


# --------------------------------------------------------------------------- image folders
def test_imagefolder_pipelines_give_identical_batches(tmp_path):
    root = write_imagefolder(tmp_path / "imgs")
    kw = dict(model="lenet", batch_size=5, seed=1, data_dir=str(root), val_frac=0.2)
    dev = load_data("imagefolder", pipeline="device", **kw)
    w0 = load_data("imagefolder", pipeline="workers", workers=0, **kw)
    w2 = load_data("imagefolder", pipeline="workers", workers=2, **kw)
    assert tuple(vars(dev.spec).values()) == (3, 12, 3)
    assert (dev.train.num_samples, dev.val.num_samples, dev.test.num_samples) == (17, 4, 6)
    for seed in (0, 3):
        ref = list(dev.train.epoch(seed))
        for other in (w0, w2):
            got = list(other.train.epoch(seed))
            assert len(got) == len(ref) == len(dev.train) == 4
            for (xa, ya), (xb, yb) in zip(ref, got):
                assert torch.equal(xa, xb) and torch.equal(ya, yb)
    for part in ("val", "test"):
        assert torch.equal(collect(getattr(dev, part))[0], collect(getattr(w2, part))[0])
    assert not torch.equal(collect(dev.train, 0)[1], collect(dev.train, 3)[1])
    # normalised with the training images' own statistics
    x, _ = collect(dev.train)
    assert x.mean(dim=(0, 2, 3)).abs().max() < 0.3


def test_imagefolder_greyscale_and_resize(tmp_path):
    root = tmp_path / "grey"
    for split in ("train", "test"):
        for c in ("a", "b"):
            for i in range(3):
                write_image(root / split / c / f"{i}.png", size=20, mode="L", seed=i)
    b = load_data("imagefolder", model="resnet18", batch_size=4, seed=0, data_dir=str(root), val_frac=0.0)
    assert tuple(vars(b.spec).values()) == (1, 32, 2)
    x, _ = next(b.train.epoch(0))
    assert x.shape == (4, 1, 32, 32)
    assert len(b.val) == 0 and list(b.val.epoch(0)) == []


@pytest.mark.parametrize("make,match", [
    (lambda r: None, "does not exist"),
    (lambda r: r.mkdir(), "training folder"),
    (lambda r: (r / "train").mkdir(parents=True), "no class"),
    (lambda r: [(r / "train" / "a").mkdir(parents=True), (r / "test" / "a").mkdir(parents=True)], "no images"),
])
def test_imagefolder_missing_or_empty(tmp_path, make, match):
    root = tmp_path / "data"
    make(root)
    with pytest.raises(DataError, match=match) as err:
        load_data("imagefolder", model="lenet", batch_size=4, seed=0, data_dir=str(root))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("pipeline,workers", [("device", 0), ("workers", 0), ("workers", 2)])
def test_unreadable_image_names_the_file(tmp_path, pipeline, workers, monkeypatch):
    import causalprune.data.imagefolder as imf
    monkeypatch.setattr(imf, "STATS_SAMPLES", 4)  # keep the bad file out of the statistics sample
    root = write_imagefolder(tmp_path / "imgs", per_class=3)
    bad = root / "test" / "owl" / "9.png"
    bad.write_bytes(b"this is not a png")
    with pytest.raises(DataError) as err:
        b = load_data("imagefolder", model="lenet", batch_size=4, seed=0, data_dir=str(root),
                      pipeline=pipeline, workers=workers)
        collect(b.test)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


def test_tinyimagenet_layout_labels_and_sizes(tmp_path):
    root = write_tiny_imagenet(tmp_path)
    b = load_data("tinyimagenet", model="lenet", batch_size=4, seed=0, data_dir=str(root), val_frac=0.25)
    assert tuple(vars(b.spec).values()) == (3, 64, 3)
    assert (b.train.num_samples, b.val.num_samples, b.test.num_samples) == (9, 3, 6)
    _, y = collect(b.test)
    assert y.tolist() == [i % 3 for i in range(6)]  # wnids.txt order, not sorted order
    r = load_data("tinyimagenet", model="resnet18", batch_size=4, seed=0, pipeline="workers", workers=0,
                  data_dir=str(root / "tiny-imagenet-200"))
    x, _ = next(r.train.epoch(0))
    assert r.spec.size == 32 and x.shape == (4, 3, 32, 32)


def test_tinyimagenet_broken_annotations(tmp_path):
    root = write_tiny_imagenet(tmp_path)
    ann = root / "tiny-imagenet-200" / "val" / "val_annotations.txt"
    ann.write_text("val_0.JPEG\tn99\t0\t0\t1\t1\n")
    with pytest.raises(DataError, match="unknown class"):
        load_data("tinyimagenet", model="lenet", batch_size=4, seed=0, data_dir=str(root))
    ann.unlink()
    with pytest.raises(DataError, match="val_annotations.txt"):
        load_data("tinyimagenet", model="lenet", batch_size=4, seed=0, data_dir=str(root))
    with pytest.raises(DataError, match="--data-dir"):
        load_data("tinyimagenet", model="lenet", batch_size=4, seed=0)


# --------------------------------------------------------------------------- cifar10 (torchvision faked)
def test_cifar10_layout_and_flips(monkeypatch, tmp_path):
    import torchvision
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCifar)
    b = load_data("cifar10", model="lenet", batch_size=8, seed=0, data_dir=str(tmp_path))
    assert tuple(vars(b.spec).values()) == (3, 32, 10) and b.train.flip and not b.test.flip
    x, _ = collect(b.test)
    raw = torch.from_numpy(FakeCifar(None, False, False).data).permute(0, 3, 1, 2).float() / 255
    mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
    std = torch.tensor([0.2023, 0.1994, 0.2010]).view(1, 3, 1, 1)
    assert torch.allclose(x, (raw - mean) / std, atol=1e-5)


def test_cifar10_failed_download_says_what_to_delete(monkeypatch, tmp_path):
    import torchvision

    class Broken:
        def __init__(self, root, train, download):
            raise RuntimeError("File not found or corrupted." if download else "Dataset not found or corrupted.")
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", Broken)
    with pytest.raises(DataError) as err:
        load_data("cifar10", model="lenet", batch_size=8, seed=0, data_dir=str(tmp_path))
    assert "delete" in str(err.value) and "cifar-10-python.tar.gz" in str(err.value)
    assert isinstance(err.value, CausalPruneError) and "\n" not in str(err.value)


def test_loader_batches_len_and_partial_batch():
    images = torch.randint(0, 255, (23, 1, 4, 4), dtype=torch.uint8)
    fin = Finisher((0.0,), (1.0,), 1 / 255, 4, 4, "cpu")
    lb = LoaderBatches(ArraySet(images, torch.zeros(23)), 10, fin, shuffle=True, workers=0)
    sizes = [len(x) for x, _ in lb.epoch(1)]
    assert len(lb) == 3 and sizes == [10, 10, 3]



def test_imagenet_crops_follow_the_epoch_seed(tmp_path):
    import random

    from causalprune.data.imagenet import MEAN, STD, ImageNetSet, random_resized_box
    for seed in range(200):
        left, top, w, h = random_resized_box(300, 260, random.Random(seed))
        assert 0 <= left and left + w <= 300 and 0 <= top and top + h <= 260 and w > 0 and h > 0
    paths = []
    for i in range(4):
        paths.append(tmp_path / f"{i}.JPEG")
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (260, 300, 3), dtype=np.uint8)).save(paths[-1])
    data = ImageNetSet([str(p) for p in paths], torch.arange(4), train=True)
    fin = Finisher(MEAN, STD, 1 / 255, 224, 224, "cpu")
    lb = LoaderBatches(data, 2, fin, shuffle=True, flip=True, workers=0)
    a, b, c = collect(lb, 3), collect(lb, 3), collect(lb, 4)
    assert a[0].shape == (4, 3, 224, 224) and torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])
    ev = data.eval_view()
    assert not ev.needs_seed and data.needs_seed
    assert torch.equal(ev[(1, 5)][0], ev[(1, 6)][0]) and ev[1][0].shape == (3, 224, 224)  # centre crop


@pytest.mark.slow
def test_bench_pipeline_quick_reports_both_pipelines():
    import importlib.util
    path = Path(__file__).resolve().parents[1] / "bench" / "bench_pipeline.py"
    spec = importlib.util.spec_from_file_location("bench_pipeline", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    res = bench.run(quick=True)
    for p in ("device", "workers"):
        assert res[p]["pipeline"] == p and res[p]["steps_timed"] == bench.QUICK_BATCHES
        assert res[p]["train_epoch_s"] > 0 and res[p]["data_epoch_s"] > 0
    table = bench.markdown(res)
    assert "| device |" in table and "| workers (2 workers) |" in table
