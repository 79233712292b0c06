"""Retraining recipes: the hyperparameters `train --recipe` takes, `tune` searches and `finalize` uses."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from ..data import Augment
from ..errors import ConfigError
from ..space import SearchSpace
from ..train import TrainConfig

# recipe field -> (type, smallest allowed value); the names are `psvit-nas train`'s options
FIELDS: dict[str, tuple[type, float]] = {
    "lr": (float, 1e-12), "min_lr": (float, 0.0), "weight_decay": (float, 0.0), "warmup_epochs": (float, 0.0),
    "label_smoothing": (float, 0.0), "mixup": (float, 0.0), "cutmix": (float, 0.0), "batch_size": (int, 1),
}


def check_recipe(recipe: Any, source: str | None = None) -> dict[str, Any]:
    """A validated recipe mapping (unknown fields, wrong types and out-of-range values are refused)."""
    if not isinstance(recipe, dict):
        raise ConfigError(source, "recipe", f"expected a mapping of {sorted(FIELDS)}")
    out = {}
    for key, value in recipe.items():
        if key not in FIELDS:
            raise ConfigError(source, f"recipe.{key}", f"unknown field; expected one of {sorted(FIELDS)}")
        kind, low = FIELDS[key]
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and \
            value >= low and (kind is float or float(value).is_integer())
        if not ok:
            raise ConfigError(source, f"recipe.{key}", f"expected a {kind.__name__} >= {low:g}, got {value!r}")
        out[key] = kind(value)
    return out


def load_recipe(path: str | Path) -> dict[str, Any]:
    """The `recipe:` mapping of a recipe.yaml (as `tune` writes it)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(str(path), None, "recipe file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(str(path), None, f"invalid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict) or "recipe" not in data:
        raise ConfigError(str(path), "recipe", "missing; expected a recipe.yaml written by psvit-nas tune")
    return check_recipe(data["recipe"], str(path))


def train_config(space: SearchSpace, recipe: dict[str, Any], epochs: int, seed: int = 0,
                 batch_size: int = 64) -> TrainConfig:
    """The training settings of `recipe` (the `train` defaults for what it leaves out)."""
    aug = Augment.preset("auto", space.image_size)
    for key in ("label_smoothing", "mixup", "cutmix"):
        if key in recipe:
            setattr(aug, key, recipe[key])
    plain = {k: recipe[k] for k in ("lr", "min_lr", "weight_decay", "warmup_epochs", "batch_size") if k in recipe}
    return TrainConfig(**{"batch_size": batch_size, **plain}, epochs=epochs, seed=seed, augment=aug.to_dict())
