"""Bad input, across the commands: each case gives one line naming what is wrong, exit code 2, no traceback
and no output folder. `scripts/bad_inputs.py` runs the same table and writes docs/reliability.md."""
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import SPACES
from psvit_nas import PSViT, SearchSpace
from psvit_nas.cli import main

DIGITS = str(SPACES / "digits.yaml")
DIGITS_SPACE = SearchSpace.from_yaml(DIGITS)


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def _space(tmp: Path, **changes) -> str:
    import yaml

    data = yaml.safe_load(Path(DIGITS).read_text())
    data["stages"][0].update(changes)
    return _write(tmp / "space.yaml", yaml.safe_dump(data))


def _spec(tmp: Path, space: str = DIGITS, arch: str | None = None) -> str:
    space_obj = SearchSpace.from_yaml(space)
    import yaml

    data = space_obj.spec(space_obj.sample(__import__("random").Random(0))).to_dict()
    if arch is not None:
        data["arch"] = [stage.split("-") for stage in arch.split("|")]
    return _write(tmp / "arch.yaml", yaml.safe_dump(data))


def _weights(tmp: Path) -> str:
    from psvit_nas import ArchSpec

    torch.save(PSViT.from_spec(ArchSpec.from_yaml(_spec(tmp))).state_dict(), tmp / "model.pt")
    return str(tmp / "model.pt")


def _images(tmp: Path, broken: bytes | None = None, empty_class: bool = False) -> str:
    """A two-class image folder (train/val), optionally with one broken image or an empty class."""
    for split in ("train", "val"):
        for c in ("cat", "dog"):
            folder = tmp / "images" / split / c
            folder.mkdir(parents=True)
            if empty_class and c == "dog" and split == "train":
                continue
            for i in range(4):
                Image.fromarray(np.full((16, 16, 3), 50 * i, np.uint8)).save(folder / f"{i}.png")
    if broken is not None:
        (tmp / "images" / "train" / "cat" / "2.png").write_bytes(broken)
    return str(tmp / "images")


def _truncated_cifar(tmp: Path) -> str:
    folder = tmp / "cifar" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batch = pickle.dumps({"data": np.zeros((4, 3072), np.uint8), "labels": [0, 1, 2, 3]})
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(batch[: len(batch) // 2])
    return str(tmp / "cifar")


def _recipe(tmp: Path, text: str) -> str:
    return _write(tmp / "recipe.yaml", text)


TRAIN = ["train-supernet", "--config", DIGITS, "--epochs", "1", "--workers", "0"]
FIT = ["train", "--data", "digits", "--epochs", "1"]

# (id, argv built in a temporary folder, words the one line must hold)
CASES = [
    ("malformed space YAML", lambda t: ["space", "--config", _write(t / "s.yaml", "stages: [unclosed\n")],
     "s.yaml"),
    ("space: unknown stage field", lambda t: ["space", "--config", _space(t, depth=3)], "depth"),
    ("space: zero cells", lambda t: ["space", "--config", _space(t, cells=0)], "cells"),
    ("space: heads do not divide width", lambda t: ["space", "--config", _space(t, heads=5)], "heads"),
    ("space: unknown choice", lambda t: ["space", "--config", _space(t, choices=["layer", "teleport"])], "teleport"),
    ("spec: unknown choice", lambda t: ["flops", _spec(t, arch="teleport-layer-layer-layer|" * 2 + "layer")],
     "teleport"),
    ("spec: wrong number of cells", lambda t: ["flops", _spec(t, arch="layer|layer|layer")], "cells"),
    ("spec: not YAML", lambda t: ["flops", _write(t / "a.yaml", "{{{")], "a.yaml"),
    ("spec: a folder, not a file", lambda t: ["flops", str(t)], "not found"),
    ("weights from another space", lambda t: ["eval", "--weights", _weights(t), "--arch",
                                              _spec(t, str(SPACES / "tiny_imagenet.yaml"))], "model.pt"),
    ("weights: truncated file", lambda t: ["eval", "--arch", _spec(t), "--weights",
                                           _write(t / "cut.pt", "PK\x03\x04 truncated")], "cut.pt"),
    ("budget: unknown unit", lambda t: ["sample", "--config", DIGITS, "--max-flops", "1.3Q", "--out",
                                        str(t / "a.yaml")], "--max-flops"),
    ("budget: negative", lambda t: ["sample", "--config", DIGITS, "--max-flops=-1M", "--out", str(t / "a.yaml")],
     "--max-flops"),
    ("budget: below every architecture", lambda t: ["sample", "--config", DIGITS, "--max-flops", "10K", "--out",
                                                    str(t / "a.yaml")], "--max-flops"),
    ("latency: not a duration", lambda t: ["evolve", "--supernet", str(t / "none.pt"), "--latency", "fast",
                                          "--latency-table", str(t / "lut.json"), "--out", str(t / "run")],
     "--latency"),
    ("data: missing folder", lambda t: [*TRAIN, "--data", str(t / "missing"), "--out", str(t / "run")], "missing"),
    ("data: CIFAR batches truncated", lambda t: [*TRAIN, "--data", "cifar10", "--data-dir", _truncated_cifar(t),
                                                 "--out", str(t / "run")], "data_batch_1"),
    ("data: an empty class folder", lambda t: [*TRAIN, "--data", _images(t, empty_class=True), "--batch-size",
                                               "2", "--out", str(t / "run")], "dog"),
    ("data: a text file named like an image", lambda t: [*TRAIN, "--data", _images(t, broken=b"a note"),
                                                         "--batch-size", "2", "--out", str(t / "run")], "2.png"),
    ("data: a zero-byte image", lambda t: [*TRAIN, "--data", _images(t, broken=b""), "--batch-size", "2", "--out",
                                         str(t / "run")],
     "2.png"),
    ("data: a corrupt image", lambda t: [*TRAIN, "--data", _images(t, broken=b"not a png"),
                                         "--batch-size", "2", "--out", str(t / "run")], "2.png"),
    ("epochs negative", lambda t: [*TRAIN, "--epochs", "-1", "--out", str(t / "run")], "--epochs"),
    ("batch size zero", lambda t: [*TRAIN, "--batch-size", "0", "--out", str(t / "run")], "--batch-size"),
    ("batch size larger than the dataset", lambda t: [*TRAIN, "--data", _images(t), "--batch-size", "64",
                                                      "--search-holdout", "0", "--monitor", "val",
                                                      "--out", str(t / "run")],
     "--batch-size"),
    ("learning rate negative", lambda t: [*TRAIN, "--lr", "-0.1", "--out", str(t / "run")], "--lr"),
    ("learning rate NaN", lambda t: [*TRAIN, "--lr", "nan", "--out", str(t / "run")], "--lr"),
    ("held-out images exceed the training set", lambda t: [*TRAIN, "--search-holdout", "99999", "--out",
                                                           str(t / "run")], "--search-holdout"),
    ("workers negative", lambda t: [*TRAIN, "--workers", "-2", "--out", str(t / "run")], "--workers"),
    ("cache limit: unknown unit", lambda t: [*TRAIN, "--cache-limit", "5X", "--out", str(t / "run")],
     "--cache-limit"),
    ("recipe: NaN learning rate", lambda t: [*FIT, "--arch", _spec(t), "--recipe",
                                             _recipe(t, "recipe: {lr: .nan}\n"), "--out", str(t / "run")], "lr"),
    ("recipe: negative weight decay", lambda t: [*FIT, "--arch", _spec(t), "--recipe",
                                                 _recipe(t, "recipe: {weight_decay: -0.05}\n"), "--out",
                                                 str(t / "run")], "weight_decay"),
    ("recipe: unknown field", lambda t: [*FIT, "--arch", _spec(t), "--recipe",
                                         _recipe(t, "recipe: {learning_rat: 0.1}\n"), "--out", str(t / "run")],
     "learning_rat"),
    ("recipe: an optimizer the loop does not have", lambda t: [*FIT, "--arch", _spec(t), "--recipe",
                                                               _recipe(t, "recipe: {optimizer: sgd}\n"), "--out",
                                                               str(t / "run")], "recipe.optimizer"),
    ("recipe: not a timm RandAugment string", lambda t: [*FIT, "--arch", _spec(t), "--recipe",
                                                         _recipe(t, "recipe: {randaugment: rand-x9}\n"), "--out",
                                                         str(t / "run")], "recipe.randaugment"),
    ("repeated augmentation zero", lambda t: [*FIT, "--arch", _spec(t), "--repeated-aug", "0", "--out",
                                              str(t / "run")], "--repeated-aug"),
    ("BatchNorm calibration batches negative", lambda t: [*FIT, "--arch", _spec(t), "--bn-batches", "-1", "--out",
                                                          str(t / "run")], "--bn-batches"),
    ("supernet checkpoint missing", lambda t: ["evolve", "--supernet", str(t / "none.pt"), "--flops", "1M", "--out",
                                               str(t / "run")], "none.pt"),
    ("evolve: population zero", lambda t: ["evolve", "--supernet", str(t / "none.pt"), "--flops", "1M",
                                           "--population", "0", "--out", str(t / "run")], "--population"),
    ("evolve: mutation probability above 1", lambda t: ["evolve", "--supernet", str(t / "none.pt"), "--flops", "1M",
                                                        "--mutation-prob", "1.5", "--out", str(t / "run")],
     "--mutation-prob"),
    ("evolve: zero threads", lambda t: ["evolve", "--supernet", str(t / "none.pt"), "--flops", "1M", "--threads", "0",
                                        "--out", str(t / "run")], "--threads"),
    ("finalize: top-k zero", lambda t: ["finalize", "--search", str(t), "--topk", "0", "--out", str(t / "run")],
     "--topk"),
    ("tune: zero samples", lambda t: ["tune", "--arch", _spec(t), "--samples", "0", "--out", str(t / "run")],
     "--samples"),
]


@pytest.mark.parametrize("name, argv, words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_no_output(tmp_path, capsys, name, argv, words):
    args = argv(tmp_path)
    before = set(tmp_path.rglob("*"))
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err and "Traceback" not in err, err
    assert set(tmp_path.rglob("*")) == before  # nothing written, no run folder left behind
