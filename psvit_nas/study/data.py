"""The study's data: a class subset of a Tiny-ImageNet-layout folder, and the ground truth's folder, whose
validation set also holds training images that no retraining and no fitness evaluation sees."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

from ..errors import ConfigError


def is_tiny_imagenet(folder: str | Path) -> bool:
    folder = Path(folder)
    return (folder / "wnids.txt").is_file() and (folder / "train").is_dir() and \
        (folder / "val" / "val_annotations.txt").is_file()


def check_data(data: str) -> None:
    """`digits`, `cifar10`, `cifar100`, or a folder in the Tiny-ImageNet layout; anything else is bad input."""
    if data in ("digits", "cifar10", "cifar100") or is_tiny_imagenet(data):
        return
    what = "no such folder" if not Path(data).exists() else \
        "not in the Tiny-ImageNet layout (wnids.txt, train/<wnid>/images, val/val_annotations.txt)"
    raise ConfigError(data, "--data", f"{what}; expected a Tiny-ImageNet-layout folder or digits, cifar10, cifar100")


def link_folder(folder: Path, wnids: list[str], fill: Callable[[Path], list[str]]) -> str:
    """Build a Tiny-ImageNet-layout folder of links once, atomically: `fill` links the images into a temporary
    sibling and returns its val_annotations lines; the folder is renamed into place when complete."""
    if not (folder / "wnids.txt").is_file():
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "train").mkdir(parents=True)
        (tmp / "val").mkdir()
        annotations = fill(tmp)
        (tmp / "val" / "val_annotations.txt").write_text("\n".join(annotations) + "\n")
        (tmp / "wnids.txt").write_text("\n".join(wnids) + "\n")
        tmp.rename(folder)
    return str(folder)


def read_wnids(src: Path) -> list[str]:
    return [w for w in (src / "wnids.txt").read_text().split() if w]


def class_subset(data: str, classes: int, folder: Path) -> str:
    """A Tiny-ImageNet-layout folder of links holding the first `classes` classes of `data` (`data` itself
    for other datasets, or when `classes` is 0)."""
    src = Path(data).resolve()
    if not is_tiny_imagenet(src) or classes <= 0:
        return data
    wnids = read_wnids(src)
    if classes > len(wnids):
        raise ConfigError(data, "--classes", f"expected at most the {len(wnids)} classes of wnids.txt, got {classes}")
    wnids = wnids[:classes]

    def fill(tmp: Path) -> list[str]:
        for w in wnids:
            os.symlink(src / "train" / w, tmp / "train" / w)
        os.symlink(src / "val" / "images", tmp / "val" / "images")
        keep = set(wnids)
        return [line for line in (src / "val" / "val_annotations.txt").read_text().splitlines()
                if line.split("\t")[1:2] and line.split("\t")[1] in keep]

    return link_folder(folder, wnids, fill)


def gt_subset(data: str, per_class: int, fitness_images: set[str], folder: Path) -> str:
    """A Tiny-ImageNet-layout folder of links whose validation set also holds `per_class` training images of
    each class (never one of the supernet's fitness images), which its training set lacks: the ground
    truth's accuracy is then measured on more images, so it is less noisy (at 1,500 validation images the
    seed-to-seed differences are the evaluation's sampling noise)."""
    src = Path(data).resolve()
    if per_class <= 0 or not is_tiny_imagenet(src):
        return data
    wnids = read_wnids(src)

    def fill(tmp: Path) -> list[str]:
        (tmp / "val" / "images").mkdir()
        annotations = (src / "val" / "val_annotations.txt").read_text().splitlines()
        for line in annotations:
            name = line.split("\t")[0]
            os.symlink((src / "val" / "images" / name).resolve(), tmp / "val" / "images" / name)
        for w in wnids:
            files = sorted((src / "train" / w / "images").iterdir())
            held = [f for f in files if f.name not in fitness_images][:per_class]
            if len(held) < per_class or len(files) == len(held):
                raise ConfigError(data, "--gt-holdout", f"class {w} has too few training images for {per_class}")
            (tmp / "train" / w / "images").mkdir(parents=True)
            for f in files:
                os.symlink(f.resolve(), tmp / ("val/images" if f in held else f"train/{w}/images") / f.name)
            annotations += [f"{f.name}\t{w}" for f in held]
        return annotations

    return link_folder(folder, wnids, fill)
