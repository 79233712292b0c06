"""Datasets: every split yields (uint8 image decoded at the space's stored size, label).

`--data` takes `digits` (scikit-learn's bundled digits, offline), `cifar10` / `cifar100`
(torchvision, in `--data-dir`), a Tiny-ImageNet-200 folder in its own layout, or an
ImageFolder root with `train/` and `val/`. Decoding is deterministic (resize of the short
side, centre crop), so a decoded split can be cached (`cache.py`); every random operation
happens later, on whole batches (`augment.py`).
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset, Subset
from torchvision import datasets
from torchvision.transforms import v2

from ..errors import ConfigError
from ..space import SearchSpace

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".bmp", ".webp"}


def stored_size(space: SearchSpace) -> int:
    """Side of the decoded (cached) images: the image size, or DeiT's 256/224 margin for crops above 160²."""
    size = space.image_size
    return int(size * 256 / 224) if size >= 160 else size


def decode_transform(space: SearchSpace) -> Callable:
    """uint8 CHW tensor at the stored size: short side resized, then centre-cropped square."""
    size = stored_size(space)
    return v2.Compose([v2.ToImage(), v2.Resize(size, antialias=True), v2.CenterCrop(size)])


class ImageList(Dataset):
    """(path, label) pairs read with PIL; a corrupt image raises ConfigError naming the file."""

    def __init__(self, samples: list[tuple[Path, int]], classes: list[str], transform: Callable | None,
                 channels: int) -> None:
        self.samples, self.classes, self.transform = samples, classes, transform
        self.channels = channels
        self.mode = "RGB" if channels == 3 else "L"

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        try:
            with Image.open(path) as img:
                img = img.convert(self.mode)
        except (UnidentifiedImageError, OSError) as err:
            raise ConfigError(str(path), None, f"cannot read image ({err.__class__.__name__})") from None
        return (self.transform(img) if self.transform else img), label


class TensorImages(Dataset):
    """In-memory uint8 images (N, H, W, C) with integer labels."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Callable | None) -> None:
        self.images, self.labels, self.transform = images, labels, transform
        self.classes = [str(c) for c in range(int(labels.max()) + 1)]
        self.channels = images.shape[-1]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        img = torch.from_numpy(self.images[index]).permute(2, 0, 1)
        return (self.transform(img) if self.transform else img), int(self.labels[index])


def _digits(split: str, transform: Callable | None) -> TensorImages:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images * (255 / 16)).round().astype(np.uint8)[..., None]
    order = np.random.default_rng(0).permutation(len(images))
    idx = order[:1500] if split == "train" else order[1500:]
    return TensorImages(images[idx], bunch.target[idx], transform)


def _cifar(name: str, root: Path, split: str, transform: Callable | None) -> TensorImages:
    """CIFAR-10/100 from the python-pickle batches (downloaded by torchvision if absent)."""
    folder, train_files, test_files, key = {
        "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "labels"),
        "cifar100": ("cifar-100-python", ["train"], ["test"], "fine_labels"),
    }[name]
    if not (root / folder).is_dir():
        try:
            (datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100)(str(root), download=True)
        except Exception as err:  # no network, disk full, ...
            raise ConfigError(str(root / folder), None, f"{name} not found and could not be downloaded "
                              f"({err.__class__.__name__}); put the python batches there") from None
    images, labels = [], []
    for file in train_files if split == "train" else test_files:
        path = root / folder / file
        try:
            with open(path, "rb") as fh:
                batch = pickle.load(fh, encoding="latin1")
            images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            labels.extend(batch[key])
        except (OSError, pickle.UnpicklingError, KeyError, ValueError, EOFError) as err:
            raise ConfigError(str(path), None, f"not a readable CIFAR batch ({err.__class__.__name__})") from None
    return TensorImages(np.concatenate(images), np.asarray(labels), transform)


def _list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def _tiny_imagenet(root: Path, split: str, transform: Callable | None, channels: int) -> ImageList:
    classes = [w for w in (root / "wnids.txt").read_text().split() if w]
    index = {w: i for i, w in enumerate(classes)}
    if split == "train":
        samples = [(p, index[w]) for w in classes for p in _list_images(root / "train" / w)]
    else:
        annotations = root / "val" / "val_annotations.txt"
        samples = []
        for n, line in enumerate(annotations.read_text().splitlines(), 1):
            fields = line.split("\t")
            if len(fields) < 2 or fields[1] not in index:
                raise ConfigError(str(annotations), f"line {n}", "expected '<image>\\t<wnid>' with a wnid from "
                                  "wnids.txt")
            samples.append((root / "val" / "images" / fields[0], index[fields[1]]))
    return ImageList(samples, classes, transform, channels)


def _image_folder(root: Path, split: str, transform: Callable | None, channels: int) -> ImageList:
    folder = root / split
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir()) if folder.is_dir() else []
    samples = [(p, i) for i, c in enumerate(classes) for p in _list_images(folder / c)]
    empty = [c for i, c in enumerate(classes) if not any(label == i for _, label in samples)]
    if samples and empty and split == "train":  # a class the model could never learn
        raise ConfigError(str(folder / empty[0]), "--data", f"class folder has no images ({len(empty)} of "
                          f"{len(classes)} classes are empty)")
    return ImageList(samples, classes, transform, channels)


def load_split(data: str, split: str, space: SearchSpace, data_dir: str | Path = "data",
               transform: Callable | None = None) -> Dataset:
    """One split ('train' or 'val') of a dataset, streamed: each item decoded on access.

    `transform` defaults to `decode_transform(space)`; give another only to read raw images.
    """
    if transform is None:
        transform = decode_transform(space)
    if data == "digits":
        dataset: Dataset = _digits(split, transform)
    elif data in ("cifar10", "cifar100"):
        dataset = _cifar(data, Path(data_dir), split, transform)
    else:
        root = Path(data)
        if not root.is_dir():
            raise ConfigError(data, "--data", "folder not found; expected digits, cifar10, cifar100, a "
                              "Tiny-ImageNet folder or an ImageFolder root with train/ and val/")
        if (root / "wnids.txt").is_file():
            dataset = _tiny_imagenet(root, split, transform, space.in_chans)
        elif (root / "train").is_dir() and (root / "val").is_dir():
            dataset = _image_folder(root, split, transform, space.in_chans)
        else:
            raise ConfigError(data, "--data", "expected a Tiny-ImageNet layout (wnids.txt) or train/ and val/ "
                              "class folders")
        if len(dataset) == 0:
            raise ConfigError(str(root / split), "--data", "no images found")
    classes = num_classes(dataset)
    if classes > space.num_classes:
        raise ConfigError(data, "--data", f"{classes} classes, but space {space.name!r} has a "
                          f"{space.num_classes}-way head")
    return dataset


def num_classes(dataset: Dataset) -> int:
    return len(dataset.dataset.classes if isinstance(dataset, Subset) else dataset.classes)


def holdout_split(size: int, holdout: int, seed: int = 0) -> tuple[list[int], list[int]]:
    """A fixed shuffled split of `size` training indices into (train, held-out for the search)."""
    if not 0 <= holdout < size:
        raise ConfigError(None, "--search-holdout", f"expected 0 <= holdout < {size} training images, got {holdout}")
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(order[holdout:]), order[:holdout]
