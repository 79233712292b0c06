"""Artifacts of a model: safetensors weights (the architecture spec and its metrics in the file's metadata;
loading runs no code), a state dict, an ONNX graph or a `torch.export` program (.pt2).

ONNX and .pt2 files hold the graph and the weights, with a dynamic batch dimension, and
load without psvit-nas: `onnxruntime.InferenceSession(path)` or `torch.export.load(path).module()`.
Every file is written atomically; inputs are float32 images normalised as in training.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from .errors import ConfigError
from .io import atomic_write
from .model import PSViT

FORMATS = ("safetensors", "state_dict", "onnx", "pt2")
SUFFIXES = {".safetensors": "safetensors", ".onnx": "onnx", ".pt2": "pt2", ".pt": "state_dict", ".pth": "state_dict"}


def format_for(path: str | Path, fmt: str | None = None) -> str:
    """The format asked for, else the one the file name implies (.onnx, .pt2, .pt/.pth; anything else:
    safetensors)."""
    if fmt is None:
        return SUFFIXES.get(Path(path).suffix, "safetensors")
    if fmt not in FORMATS:
        raise ConfigError(None, "--format", f"expected one of {list(FORMATS)}, got {fmt!r}")
    return fmt


def example_input(model: PSViT, batch: int = 2) -> torch.Tensor:
    space = model.space
    return torch.randn(batch, space.in_chans, space.image_size, space.image_size)


def _batch_dim() -> dict:
    return {"x": {0: torch.export.Dim("batch", min=1, max=4096)}}


def export_program(model: PSViT) -> torch.export.ExportedProgram:
    """The model as a `torch.export` program with a dynamic batch dimension (eval mode, float32, CPU)."""
    model = model.float().cpu().eval()
    with torch.no_grad():
        return torch.export.export(model, (example_input(model),), dynamic_shapes=_batch_dim())


def save_artifact(model: PSViT, path: str | Path, fmt: str) -> None:
    """Write `model` to `path` as `fmt` (see FORMATS)."""
    model = model.float().cpu().eval()
    if fmt == "safetensors":
        from safetensors.torch import save_file

        metadata = {"format": "pt", "psvit_nas_spec": json.dumps(model.spec.to_dict())}
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        atomic_write(path, lambda tmp: save_file(state, tmp, metadata=metadata))
    elif fmt == "state_dict":
        atomic_write(path, lambda tmp: torch.save(model.state_dict(), tmp))
    elif fmt == "pt2":
        program = export_program(model)
        atomic_write(path, lambda tmp: torch.export.save(program, tmp))
    elif fmt == "onnx":
        atomic_write(path, lambda tmp: _save_onnx(model, tmp))
    else:
        raise ConfigError(None, "--format", f"expected one of {list(FORMATS)}, got {fmt!r}")


def _save_onnx(model: PSViT, path: str) -> None:
    import contextlib
    import io

    import onnx

    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):  # the exporter's progress lines
        program = torch.onnx.export(model, (example_input(model),), dynamo=True, input_names=["images"],
                                    output_names=["logits"], dynamic_shapes=_batch_dim(), verbose=False)
    proto = program.model_proto
    space = model.space
    shape = f"float32 batch x {space.in_chans} x {space.image_size} x {space.image_size}"
    for key, value in {"psvit_nas.arch": str(model.spec.arch), "psvit_nas.space": space.name,
                       "psvit_nas.input": f"{shape}: pixels normalised with ImageNet mean and std (RGB) or 0.5 and "
                                          "0.5"}.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save_model(proto, path)


def read_safetensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict | None]:
    """(weights, the architecture spec dict from the metadata, if any) of a .safetensors file."""
    from safetensors import safe_open

    tensors = {}
    with safe_open(str(path), framework="pt") as f:
        spec = (f.metadata() or {}).get("psvit_nas_spec")
        for key in f.keys():
            tensors[key] = f.get_tensor(key)
    return tensors, json.loads(spec) if spec else None
