import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import SPACES
from psvit_nas import ConfigError, SearchSpace
from psvit_nas.cli import main
from psvit_nas.data import Augment, batch_mixer, holdout_split, load_split

TINY = SearchSpace.from_yaml(SPACES / "tiny_imagenet.yaml")


def _write_cifar10(root, n=20):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": rng.integers(0, 10, n).tolist()}
        with open(folder / name, "wb") as fh:
            pickle.dump(batch, fh)


def test_cifar10_format_loads(tmp_path):
    _write_cifar10(tmp_path)
    train = load_split("cifar10", "train", TINY, tmp_path)
    val = load_split("cifar10", "val", TINY, tmp_path)
    assert len(train) == 100 and len(val) == 20
    x, y = train[0]
    assert x.shape == (3, 64, 64) and x.dtype == torch.uint8 and 0 <= y < 10


def test_tiny_imagenet_layout_loads(tiny_imagenet_dir):
    val = load_split(str(tiny_imagenet_dir), "val", TINY)
    assert len(val) == 500
    labels = [val[i][1] for i in range(0, 500, 25)]
    assert set(labels) <= set(range(10)) and len(set(labels)) > 3
    assert val[0][0].shape == (3, 64, 64)


def _image_folder(root, corrupt=False):
    for split in ("train", "val"):
        for c in ("cat", "dog"):
            folder = root / split / c
            folder.mkdir(parents=True)
            for i in range(3):
                Image.fromarray(np.full((40, 40, 3), 60 * i, np.uint8)).save(folder / f"{i}.png")
    if corrupt:
        (root / "train" / "dog" / "1.png").write_bytes(b"not a png")


def test_image_folder_loads(tmp_path):
    _image_folder(tmp_path)
    train = load_split(str(tmp_path), "train", TINY)
    assert len(train) == 6 and train.classes == ["cat", "dog"] and train[5][1] == 1
    assert train[0][0].shape == (3, 64, 64)


def test_digits_loads_and_mixup_makes_soft_targets():
    space = SearchSpace.from_yaml(SPACES / "digits.yaml")
    train = load_split("digits", "train", space)
    assert len(train) == 1500 and train[0][0].shape == (1, 8, 8)
    x = torch.stack([train[i][0] for i in range(8)]).float()
    y = torch.tensor([train[i][1] for i in range(8)])
    _, soft = batch_mixer(Augment.preset("deit", 224), 10)(x, y)
    assert soft.shape == (8, 10) and torch.allclose(soft.sum(1), torch.ones(8))


def test_holdout_split_is_fixed_and_disjoint():
    keep, held = holdout_split(100, 10)
    assert len(held) == 10 and not set(keep) & set(held) and sorted(keep + held) == list(range(100))
    assert holdout_split(100, 10) == (keep, held)


def test_bad_data_inputs(tmp_path, capsys):
    common = ["train-supernet", "--config", str(SPACES / "tiny_imagenet.yaml"), "--epochs", "1",
              "--out", str(tmp_path / "run")]
    assert main([*common, "--data", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "missing" in err and "--data" in err and "folder not found" in err
    (tmp_path / "empty" / "train").mkdir(parents=True)
    (tmp_path / "empty" / "val").mkdir()
    assert main([*common, "--data", str(tmp_path / "empty")]) == 2
    assert "no images found" in capsys.readouterr().err
    _image_folder(tmp_path / "bad", corrupt=True)
    for workers in ("0", "1"):
        code = main([*common, "--data", str(tmp_path / "bad"), "--batch-size", "2", "--search-holdout", "0",
                     "--workers", workers])
        err = capsys.readouterr().err
        assert code == 2 and "1.png" in err and "cannot read image" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "last.pt").exists()
    with pytest.raises(ConfigError, match="cifar10"):
        load_split("cifar10", "train", TINY, tmp_path / "nowhere-offline")
