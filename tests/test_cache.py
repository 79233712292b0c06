import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import SPACES
from psvit_nas import SearchSpace
from psvit_nas.cli import main
from psvit_nas.data import CacheConfig, CachedImages, load_images, load_split
from test_data import _image_folder, _write_cifar10

TINY = SearchSpace.from_yaml(SPACES / "tiny_imagenet.yaml")
DIGITS = SearchSpace.from_yaml(SPACES / "digits.yaml")
BIG = SearchSpace.from_yaml(SPACES / "psvit_2d_tiny.yaml")  # 224x224: stored at 256 for crops


def _assert_same(cached, streamed):
    assert isinstance(cached, CachedImages) and len(cached) == len(streamed)
    for i in range(len(streamed)):
        x, y = streamed[i]
        assert x.dtype == torch.uint8 and torch.equal(cached.images[i], x) and cached.labels[i] == y, i


def _varied_folder(root):
    """An ImageFolder of non-square, differently sized real-looking images."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            for i in range(3):
                h, w = rng.integers(30, 90, 2)
                Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / split / c / f"{i}.jpg")


@pytest.mark.parametrize("fmt", ["digits", "cifar10", "image_folder", "image_folder_224"])
def test_cached_images_equal_the_streamed_decode(fmt, tmp_path):
    cache = CacheConfig(dir=str(tmp_path / "cache"))
    space, data = {"digits": (DIGITS, "digits"), "cifar10": (TINY, "cifar10")}.get(fmt, (TINY, str(tmp_path / "f")))
    if fmt == "cifar10":
        _write_cifar10(tmp_path)
    if fmt.startswith("image_folder"):
        _varied_folder(tmp_path / "f")
        space = BIG if fmt.endswith("224") else TINY
    for split in ("train", "val"):
        streamed = load_split(data, split, space, tmp_path)
        cached = load_images(data, split, space, tmp_path, cache)
        _assert_same(cached, streamed)
        side = 256 if space is BIG else space.image_size
        assert cached.images.shape[1:] == (space.in_chans, side, side)
        again = load_images(data, split, space, tmp_path, cache)  # memory-mapped, not rebuilt
        assert again.folder == cached.folder and torch.equal(again.images, cached.images)


def test_tiny_imagenet_cache_equals_streamed(tiny_imagenet_dir, tmp_path):
    cache = CacheConfig(dir=str(tmp_path))
    _assert_same(load_images(str(tiny_imagenet_dir), "val", TINY, cache=cache),
                 load_split(str(tiny_imagenet_dir), "val", TINY))


def test_a_changed_dataset_invalidates_its_cache(tmp_path):
    _varied_folder(tmp_path / "f")
    cache = CacheConfig(dir=str(tmp_path / "cache"))
    first = load_images(str(tmp_path / "f"), "train", TINY, cache=cache)
    changed = tmp_path / "f" / "train" / "b" / "1.jpg"
    Image.fromarray(np.zeros((50, 50, 3), np.uint8)).save(changed)
    os.utime(changed, ns=(1, 1))  # even an older time stamp counts as a change
    second = load_images(str(tmp_path / "f"), "train", TINY, cache=cache)
    assert second.folder != first.folder
    _assert_same(second, load_split(str(tmp_path / "f"), "train", TINY))
    assert second.images[4].sum() == 0 and first.images[4].sum() > 0


@pytest.mark.parametrize("damage", ["truncate", "meta"])
def test_a_damaged_cache_is_rebuilt(damage, tmp_path, capsys):
    cache = CacheConfig(dir=str(tmp_path))
    folder = load_images("digits", "val", DIGITS, cache=cache).folder
    if damage == "truncate":
        data = (folder / "images.npy").read_bytes()
        (folder / "images.npy").write_bytes(data[: len(data) // 2])
    else:
        (folder / "meta.json").write_text("{not json")
    rebuilt = load_images("digits", "val", DIGITS, cache=cache)
    assert "damaged" in capsys.readouterr().err and rebuilt.folder == folder
    _assert_same(rebuilt, load_split("digits", "val", DIGITS))


def test_cache_limit_and_off_stream_instead(tmp_path, capsys):
    streamed = load_images("digits", "val", DIGITS, cache=CacheConfig(dir=str(tmp_path), limit=1000))
    assert not isinstance(streamed, CachedImages) and "--cache-limit" in capsys.readouterr().err
    assert not isinstance(load_images("digits", "val", DIGITS, cache=CacheConfig("off", str(tmp_path))),
                          CachedImages)
    assert not list(tmp_path.iterdir())


def test_unwritable_cache_dir_is_a_one_line_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code = main(["train-supernet", "--config", str(SPACES / "digits.yaml"), "--out", str(tmp_path / "run"),
                 "--epochs", "1", "--cache-dir", str(blocker / "cache")])
    err = capsys.readouterr().err
    assert code == 2 and "--cache-dir" in err and str(blocker) in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "last.pt").exists()


def test_a_corrupt_image_leaves_no_half_built_cache(tmp_path, capsys):
    _image_folder(tmp_path / "bad", corrupt=True)
    code = main(["train-supernet", "--config", str(SPACES / "tiny_imagenet.yaml"), "--out", str(tmp_path / "run"),
                 "--data", str(tmp_path / "bad"), "--cache-dir", str(tmp_path / "cache"), "--batch-size", "2",
                 "--search-holdout", "0", "--workers", "0"])
    assert code == 2 and "cannot read image" in capsys.readouterr().err
    assert not list((tmp_path / "cache").iterdir())


@pytest.mark.parametrize("mode", ["off", "on"])
def test_training_on_in_memory_digits_works_with_and_without_the_cache(mode, tmp_path):
    """The in-memory digits arrays (numpy) are streamed item by item under --cache off, not taken for the
    decoded cache's tensors."""
    out = tmp_path / "sn"
    assert main(["train-supernet", "--config", str(SPACES / "digits.yaml"), "--data", "digits", "--cache", mode,
                 "--epochs", "1", "--batch-size", "256", "--workers", "0", "--val-archs", "1",
                 "--out", str(out)]) == 0
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert row["epoch"] == 1 and 0 <= row["val_top1"] <= 100
