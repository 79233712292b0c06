"""Datasets and transforms.

`--data` takes `digits` (scikit-learn's bundled digits, offline), `cifar10` / `cifar100`
(torchvision, in `--data-dir`), a Tiny-ImageNet-200 folder in its own layout, or an
ImageFolder root with `train/` and `val/`. Images are sized to the space.
"""
from __future__ import annotations

import pickle
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset, Subset
from torchvision import datasets
from torchvision.transforms import v2

from .errors import ConfigError
from .space import SearchSpace

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".bmp", ".webp"}


@dataclass
class Augment:
    """DeiT-style augmentation settings; `for_size` picks defaults that suit the image size."""

    random_resized_crop: bool = False
    crop_padding: int = 0
    flip: bool = False
    randaugment: bool = False
    random_erasing: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    label_smoothing: float = 0.0

    @classmethod
    def preset(cls, name: str, image_size: int) -> "Augment":
        if name == "auto":
            name = "deit" if image_size >= 160 else "light" if image_size >= 32 else "none"
        if name == "none":
            return cls()
        if name == "light":
            return cls(crop_padding=image_size // 8, flip=True, label_smoothing=0.1)
        if name == "deit":
            return cls(random_resized_crop=True, flip=True, randaugment=True, random_erasing=0.25, mixup=0.8,
                       cutmix=1.0, label_smoothing=0.1)
        raise ConfigError(None, "--augment", f"expected one of auto, none, light, deit; got {name!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _normalize(channels: int) -> v2.Normalize:
    return v2.Normalize(IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else v2.Normalize([0.5] * channels,
                                                                                            [0.5] * channels)


def train_transform(space: SearchSpace, aug: Augment) -> Callable:
    size = space.image_size
    ops: list = [v2.ToImage()]
    if aug.random_resized_crop:
        ops.append(v2.RandomResizedCrop(size, antialias=True))
    else:
        ops.append(v2.Resize((size, size), antialias=True))
        if aug.crop_padding:
            ops.append(v2.RandomCrop(size, padding=aug.crop_padding, padding_mode="reflect"))
    if aug.flip:
        ops.append(v2.RandomHorizontalFlip())
    if aug.randaugment:
        ops.append(v2.RandAugment(num_ops=2, magnitude=9))
    ops += [v2.ToDtype(torch.float32, scale=True), _normalize(space.in_chans)]
    if aug.random_erasing:
        ops.append(v2.RandomErasing(p=aug.random_erasing))
    return v2.Compose(ops)


def eval_transform(space: SearchSpace) -> Callable:
    size = space.image_size
    resize = v2.Resize(int(size * 256 / 224), antialias=True) if size >= 160 else v2.Resize(size, antialias=True)
    return v2.Compose([v2.ToImage(), resize, v2.CenterCrop(size), v2.ToDtype(torch.float32, scale=True),
                       _normalize(space.in_chans)])


def batch_mixer(aug: Augment, num_classes: int) -> Callable | None:
    """Mixup / CutMix on whole batches (soft targets), or None."""
    mixers = [mix(alpha=alpha, num_classes=num_classes)
              for mix, alpha in ((v2.MixUp, aug.mixup), (v2.CutMix, aug.cutmix)) if alpha > 0]
    return v2.RandomChoice(mixers) if mixers else None


class ImageList(Dataset):
    """(path, label) pairs read with PIL; a corrupt image raises ConfigError naming the file."""

    def __init__(self, samples: list[tuple[Path, int]], classes: list[str], transform: Callable | None,
                 channels: int) -> None:
        self.samples, self.classes, self.transform = samples, classes, transform
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
    return ImageList(samples, classes, transform, channels)


def load_split(data: str, split: str, space: SearchSpace, transform: Callable | None,
               data_dir: str | Path = "data") -> Dataset:
    """One split ('train' or 'val') of a dataset, with `transform` applied to each image."""
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
    if isinstance(dataset, Subset):
        return num_classes(dataset.dataset)
    if isinstance(dataset, ImageList):
        return len(dataset.classes)
    return int(np.max(dataset.labels)) + 1


def holdout_split(size: int, holdout: int, seed: int = 0) -> tuple[list[int], list[int]]:
    """A fixed shuffled split of `size` training indices into (train, held-out for the search)."""
    if not 0 <= holdout < size:
        raise ConfigError(None, "--search-holdout", f"expected 0 <= holdout < {size} training images, got {holdout}")
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(order[holdout:]), order[:holdout]
