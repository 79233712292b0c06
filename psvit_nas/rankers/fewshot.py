"""Few-shot supernets (Zhao et al., 2021): the trained supernet split into sub-supernets along one decision
(`samplers.Split`), each warm-started from it and trained on its own part's paths only, so that paths which
compete for the same weights in the one-shot supernet stop sharing them. Every architecture is scored by the
sub-supernet of its part. `train_parts` trains them into a folder holding fewshot.yaml; `FewShotRanker` reads it.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from ..io import atomic_write_text
from ..samplers import Split
from ..space import Arch
from ..supernet import Supernet
from ..train import TrainConfig, fit_on, load_supernet, read_supernet
from .fitness import Evaluator


MANIFEST = "fewshot.yaml"


def train_parts(supernet_path: str, split: Split, cfg: TrainConfig, out: str | Path, resume: bool = False,
                cache: Any = None) -> list[dict[str, Any]]:
    """Train one sub-supernet per part of `split` into OUT/partK, each from the weights of the supernet in
    `supernet_path`, on its data less the same held-out fitness images; write OUT/fewshot.yaml after each."""
    out = Path(out)
    read = read_supernet(supernet_path)
    net, parent = read.net, read.state
    run = parent.get("run", {})
    parts, metrics = split.parts(net.space), []
    for k in range(parts):
        folder = out / f"part{k}"
        model = Supernet(net.space)
        model.load_state_dict(parent["model"])
        last = fit_on(model, net.space, run.get("data", "digits"), replace(cfg, part=f"{split.text}/{k}"), folder,
                      holdout=run.get("search_holdout"), data_dir=run.get("data_dir", "data"), cache=cache,
                      resume=resume and (folder / "last.pt").is_file(), command=f"psvit-nas few-shot: part {k}")
        metrics.append({"part": k, "checkpoint": f"part{k}/last.pt", "val_top1": last.get("val_top1")})
        atomic_write_text(out / MANIFEST, yaml.safe_dump({
            "supernet": str(supernet_path), "split": split.text, "parts": parts, "epochs_per_part": cfg.epochs,
            "trained": metrics}, sort_keys=False))
    return metrics


def load_parts(folder: str | Path, supernet: Supernet) -> tuple[Split, list[Supernet]]:
    """The split and the sub-supernets of a few-shot folder, checked against the supernet they came from."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise ConfigError(str(path), None, "not found; train the parts with psvit-nas few-shot")
    manifest = yaml.safe_load(path.read_text())
    split = Split.parse(manifest["split"], supernet.space, field=f"{path}: split")
    if len(manifest.get("trained", [])) < split.parts(supernet.space):
        raise ConfigError(str(path), "trained", f"{len(manifest.get('trained', []))} of "
                          f"{split.parts(supernet.space)} parts trained; rerun psvit-nas few-shot with --resume")
    nets = []
    for entry in manifest["trained"]:
        net, _ = load_supernet(Path(folder) / entry["checkpoint"])
        if net.space != supernet.space:
            raise ConfigError(str(path), "space", "the parts were trained on another space than this supernet's")
        nets.append(net)
    return split, nets


class FewShotRanker:
    """Each architecture scored by the evaluator of its part's sub-supernet (same fitness images and BatchNorm
    recalibration as the one-shot supernet's)."""

    def __init__(self, evaluator: "Evaluator", folder: str | Path) -> None:
        self.space = evaluator.supernet.space
        self.split, nets = load_parts(folder, evaluator.supernet)
        self.evaluators = [type(evaluator)(net, evaluator.batches, evaluator.calib, evaluator.device) for net in nets]

    def part(self, arch: Arch) -> int:
        return self.split.part(self.space, arch)

    def __call__(self, arch: Arch) -> float:
        return self.evaluators[self.part(arch)](arch)
