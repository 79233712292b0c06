"""psvit-nas models in timm's registry: `import psvit_nas.timm`, then

    timm.create_model("psvit_nas_deit_tiny")                    # a reference architecture, fresh weights
    timm.create_model("psvit_nas", pretrained=True,             # an exported model, spec and weights from
                      pretrained_cfg_overlay=dict(file="model.safetensors"))  # `psvit-nas export`
    timm.create_model("psvit_nas", spec="arch.yaml", num_classes=10)          # any spec, fresh weights
    timm.create_model("psvit_nas", spec="arch.yaml", features_only=True)      # one NCHW map per stage

Models come through timm's `build_model_with_cfg`, so `num_classes`, `global_pool`, `features_only`,
`out_indices` and `pretrained_cfg` behave as for timm's own models. The reference paths of the 224² spaces are
example paths at DeiT-Tiny's budget that use every cell choice, not search results.
"""
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional, Union

from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from .data.augment import IMAGENET_MEAN, IMAGENET_STD
from .errors import ConfigError
from .export import read_safetensors
from .model import PSViT
from .space import Arch, ArchSpec, SearchSpace

SPACES = Path(__file__).resolve().parents[1] / "search_spaces"
REFERENCE_PATHS = {  # registered name -> (space file, arch)
    "psvit_nas_deit_tiny": ("deit_tiny.yaml", None),  # the file is a spec: its own arch
    "psvit_nas_2d_tiny": ("psvit_2d_tiny.yaml", "reattn-lsla-identity-layer-lsla-layer|layer-reattn-layer-lsla-"
                          "reattn-identity|share-identity-layer-share-lsla-share"),
    "psvit_nas_1d_tiny": ("psvit_1d_tiny.yaml", "reattn-reattn-layer-identity-lsla-reattn|reattn-identity-reattn-"
                          "identity-lsla-share|lsla-share-identity-share-layer-lsla"),
}


def pretrained_cfg(space: SearchSpace, **fields: Any) -> dict[str, Any]:
    """timm's pretrained_cfg for models of `space`: input size, the evaluation's normalisation and crop (the
    centre crop at the stored size on small images; DeiT's 0.875 at 224²), first conv and classifier."""
    rgb = space.in_chans == 3
    return dict(url="", num_classes=space.num_classes, input_size=(space.in_chans, space.image_size,
                space.image_size), fixed_input_size=True, pool_size=None, interpolation="bicubic",
                crop_pct=0.875 if space.image_size >= 224 else 1.0,
                mean=IMAGENET_MEAN if rgb else (0.5,) * space.in_chans,
                std=IMAGENET_STD if rgb else (0.5,) * space.in_chans,
                first_conv="stem.proj", classifier="head", license="apache-2.0", **fields)


def reference_spec(name: str) -> ArchSpec:
    """The architecture spec of a registered reference model."""
    file, arch = REFERENCE_PATHS[name]
    if arch is None:
        return ArchSpec.from_yaml(SPACES / file)
    return SearchSpace.from_yaml(SPACES / file).spec(Arch.parse(arch))


def load_spec(spec: Union[str, Path, ArchSpec, dict]) -> ArchSpec:
    """An ArchSpec from a spec object, a spec dict, a spec YAML, or an exported .safetensors file."""
    if isinstance(spec, ArchSpec):
        return spec
    if isinstance(spec, dict):
        return ArchSpec.from_dict(spec)
    if str(spec).endswith(".safetensors"):
        found = read_safetensors(spec)[1]
        if found is None:
            raise ConfigError(str(spec), "metadata", "holds no psvit_nas_spec: not written by psvit-nas export")
        return ArchSpec.from_dict(found, source=str(spec))
    return ArchSpec.from_yaml(spec)


class TimmPSViT(PSViT):
    """PSViT with the constructor timm's builder calls: the spec plus the keywords timm fills in from the
    pretrained_cfg (`num_classes`, `global_pool`, `in_chans`, `img_size`), checked against the spec's space."""

    def __init__(self, spec: ArchSpec, num_classes: Optional[int] = None, global_pool: Optional[str] = None,
                 in_chans: Optional[int] = None, img_size: Optional[Any] = None, drop_path_rate: float = 0.0) -> None:
        space = spec.space
        if in_chans not in (None, space.in_chans):
            raise ValueError(f"in_chans {in_chans}: the spec's space {space.name!r} takes {space.in_chans}")
        if img_size is not None and tuple(img_size if isinstance(img_size, (tuple, list)) else (img_size,) * 2) \
                != (space.image_size,) * 2:
            raise ValueError(f"img_size {img_size}: the spec's space {space.name!r} takes {space.image_size}")
        if num_classes is not None and num_classes != space.num_classes:
            spec = ArchSpec(replace(space, num_classes=num_classes), spec.arch, dict(spec.metrics))
        super().__init__(spec, drop_path_rate)
        if global_pool is not None:
            self.reset_classifier(self.num_classes, global_pool)


def _build(spec: ArchSpec, variant: str, pretrained: bool, **kwargs: Any) -> PSViT:
    """A model through timm's builder; `features_only` gives one NCHW map per stage (as timm's PiT)."""
    kwargs.setdefault("feature_cfg", dict(feature_cls="getter", out_indices=tuple(range(len(spec.space.stages)))))
    return build_model_with_cfg(TimmPSViT, variant, pretrained, spec=spec, **kwargs)


default_cfgs = generate_default_cfgs({name: pretrained_cfg(reference_spec(name).space) for name in REFERENCE_PATHS}
                                     | {"psvit_nas": pretrained_cfg(reference_spec("psvit_nas_deit_tiny").space)})


@register_model
def psvit_nas(pretrained: bool = False, spec: Optional[Union[str, Path, ArchSpec, dict]] = None,
              **kwargs: Any) -> PSViT:
    """Any psvit-nas architecture: `spec` (an ArchSpec, a spec YAML or dict, an exported .safetensors), or the
    spec in the weights file of `pretrained_cfg_overlay=dict(file=...)`; the pretrained_cfg is the spec's."""
    overlay = dict(kwargs.pop("pretrained_cfg_overlay", None) or {})
    kwargs.pop("pretrained_cfg", None)
    if spec is None and overlay.get("file"):
        spec = overlay["file"]
    if spec is None:
        raise ValueError("psvit_nas: give spec='arch.yaml' or pretrained_cfg_overlay=dict(file='model.safetensors')")
    spec = load_spec(spec)
    return _build(spec, "psvit_nas", pretrained, pretrained_cfg=pretrained_cfg(spec.space) | overlay, **kwargs)


def _register_reference(name: str) -> None:
    def entrypoint(pretrained: bool = False, **kwargs: Any) -> PSViT:
        return _build(reference_spec(name), name, pretrained, **kwargs)
    entrypoint.__name__ = entrypoint.__qualname__ = name
    entrypoint.__doc__ = f"psvit-nas reference model {name} ({REFERENCE_PATHS[name][0]})."
    register_model(entrypoint)


for _name in REFERENCE_PATHS:
    _register_reference(_name)

__all__ = ["load_spec", "pretrained_cfg", "reference_spec", "psvit_nas", "TimmPSViT", "REFERENCE_PATHS"]
