"""Training recipes and the one place option values become a `TrainConfig`.

A recipe is a YAML file whose `recipe:` mapping holds `psvit-nas train` option values
(`recipes/deit.yaml`, or the recipe.yaml `tune` writes). `train_config` turns option values
(a recipe's, or the command line's) into the loop's settings; the command line, tune,
finalize and the study all go through it, so a default lives in one place (`TrainConfig`,
`Augment.preset`).
"""
from __future__ import annotations

import math
from dataclasses import fields
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..data import Augment
from ..data.augment import PRESETS, check_randaugment
from ..errors import ConfigError
from ..space import SearchSpace
from .config import TrainConfig

# number fields -> (type, smallest allowed value); choice fields -> the allowed values; the names are
# `psvit-nas train`'s options (optimizer and schedule have one value each: what the loop does)
NUMBERS: dict[str, tuple[type, float]] = {
    "epochs": (int, 1), "batch_size": (int, 1), "lr": (float, 1e-12), "lr_batch": (int, 1), "min_lr": (float, 0.0),
    "weight_decay": (float, 0.0), "warmup_epochs": (float, 0.0), "clip_grad": (float, 0.0), "ema": (float, 0.0),
    "label_smoothing": (float, 0.0), "mixup": (float, 0.0), "cutmix": (float, 0.0), "random_erasing": (float, 0.0),
    "drop_path": (float, 0.0), "repeated_aug": (int, 1),
}
CHOICES: dict[str, tuple[str, ...]] = {"augment": PRESETS, "optimizer": ("adamw",), "schedule": ("cosine",)}
FIELDS: tuple[str, ...] = (*NUMBERS, *CHOICES, "randaugment")
AUGMENT_FIELDS = ("mixup", "cutmix", "label_smoothing", "random_erasing", "randaugment")


def check_recipe(recipe: Any, source: str | None = None) -> dict[str, Any]:
    """A validated recipe mapping (unknown fields, wrong types and out-of-range values are refused)."""
    if not isinstance(recipe, dict):
        raise ConfigError(source, "recipe", f"expected a mapping of {sorted(FIELDS)}")
    return {key: _check_field(key, value, source) for key, value in recipe.items()}


def _check_field(key: str, value: Any, source: str | None) -> Any:
    where = f"recipe.{key}"
    if key in CHOICES:
        if value not in CHOICES[key]:
            raise ConfigError(source, where, f"expected one of {', '.join(CHOICES[key])}, got {value!r}")
        return value
    if key == "randaugment":
        if not isinstance(value, str):
            raise ConfigError(source, where, f"expected a timm RandAugment config string, got {value!r}")
        if value:
            check_randaugment(value, source, where)
        return value
    if key not in NUMBERS:
        raise ConfigError(source, where, f"unknown field; expected one of {sorted(FIELDS)}")
    kind, low = NUMBERS[key]
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and \
        value >= low and (kind is float or float(value).is_integer())
    if not ok:
        raise ConfigError(source, where, f"expected a {kind.__name__} >= {low:g}, got {value!r}")
    return kind(value)


def load_recipe(path: str | Path) -> dict[str, Any]:
    """The `recipe:` mapping of a recipe file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(str(path), None, "recipe file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(str(path), None, f"invalid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict) or "recipe" not in data:
        raise ConfigError(str(path), "recipe", "missing; expected a recipe file (recipes/deit.yaml, or the "
                          "recipe.yaml psvit-nas tune writes)")
    return check_recipe(data["recipe"], str(path))


def train_config(space: SearchSpace, values: Mapping[str, Any]) -> TrainConfig:
    """The loop's settings from option values (`psvit-nas train`'s names; what `values` leaves out or sets to
    None takes `TrainConfig`'s default, the augmentation its `augment` preset's). clip_grad 0 turns clipping off."""
    given = {k: v for k, v in values.items() if v is not None}
    aug = Augment.preset(given.get("augment", "auto"), space.image_size)
    for name in AUGMENT_FIELDS:
        if name in given:
            setattr(aug, name, given[name])
    plain = {f.name: given[f.name] for f in fields(TrainConfig) if f.name in given and f.name != "augment"}
    if "clip_grad" in plain:
        plain["clip_grad"] = plain["clip_grad"] or None
    return TrainConfig(**plain, augment=aug.to_dict())
