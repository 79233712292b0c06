"""Checkpoints (written atomically, checked against the search space on load) and the weight loading every
command uses: a standalone model from exported weights, a supernet from its training checkpoint."""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError
from ..export import read_safetensors
from ..io import atomic_write
from ..model import PSViT
from ..space import ArchSpec, SearchSpace
from ..supernet import Supernet


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write a checkpoint atomically. When writing fails (a full disk: torch raises OSError or, from its zip
    writer, RuntimeError) the previous checkpoint is intact and the run stops with one line."""
    try:
        atomic_write(path, lambda tmp: torch.save(state, tmp))
    except (OSError, RuntimeError) as err:
        why = err.strerror if isinstance(err, OSError) and err.strerror else str(err).strip().splitlines()[0]
        raise ConfigError(str(path), None, f"could not be written ({why}); the previous checkpoint is intact: "
                          "free some space and rerun with --resume") from None


def load_checkpoint(path: str | Path, space: SearchSpace | None = None) -> dict[str, Any]:
    """Load a psvit-nas checkpoint; with `space`, check that it was trained on that space."""
    return _parse_checkpoint(path, _read_bytes(path), space)


def _read_bytes(path: str | Path) -> bytes:
    if not Path(path).is_file():
        raise ConfigError(str(path), None, "checkpoint not found")
    return Path(path).read_bytes()


def _parse_checkpoint(path: str | Path, data: bytes, space: SearchSpace | None) -> dict[str, Any]:
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:
        raise ConfigError(str(path), None, f"not a readable checkpoint ({err.__class__.__name__})") from None
    if not isinstance(state, dict) or "model" not in state or "space" not in state:
        raise ConfigError(str(path), None, "not a psvit-nas training checkpoint (no 'model' and 'space')")
    if space is not None and SearchSpace.from_dict(state["space"]) != space:
        raise ConfigError(str(path), "space", f"checkpoint was trained on space {state['space'].get('name')!r}, "
                          f"which differs from {space.name!r}")
    return state


@dataclass(frozen=True)
class SupernetCheckpoint:
    """A train-supernet checkpoint read once: where it is, its Supernet, the checkpoint dict (run settings,
    weights) and the file's content hash (the key that ties cached fitness values to exact weights)."""

    path: str
    net: Supernet
    state: dict[str, Any]
    digest: str


def read_supernet(path: str | Path) -> SupernetCheckpoint:
    """The supernet checkpoint in `path`, its file read once."""
    data = _read_bytes(path)
    state = _parse_checkpoint(path, data, None)
    if state.get("kind") != "supernet":
        raise ConfigError(str(path), "kind", f"expected a supernet checkpoint, got a {state.get('kind')} checkpoint")
    net = Supernet(SearchSpace.from_dict(state["space"], source=str(path)))
    net.load_state_dict(state["model"])
    return SupernetCheckpoint(str(path), net, state, hashlib.sha1(data).hexdigest()[:16])


def load_supernet(path: str | Path) -> tuple[Supernet, dict[str, Any]]:
    """The Supernet stored in a train-supernet checkpoint, and the checkpoint (`read_supernet`'s two)."""
    read = read_supernet(path)
    return read.net, read.state


def load_weights(path: str, spec: ArchSpec) -> PSViT:
    """A PSViT for `spec` with the weights of an exported .safetensors or .pt file, or a standalone training
    checkpoint."""
    model = PSViT.from_spec(spec)
    try:
        state = read_safetensors(path)[0] if path.endswith(".safetensors") else \
            torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConfigError(path, None, "weights file not found") from None
    except Exception as err:
        raise ConfigError(path, None, f"not a readable weights file ({err.__class__.__name__})") from None
    if isinstance(state, dict) and "model" in state and "space" in state:
        state = load_checkpoint(path, spec.space)["model"]
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as err:
        raise ConfigError(path, "weights", f"do not fit the architecture in the spec "
                          f"({str(err).splitlines()[0]})") from None
    return model
