"""Recipes as files (DeiT's, exactly) and DeiT's repeated augmentation."""
import pytest
import torch
import yaml

from conftest import ROOT, SPACES
from psvit_nas import SearchSpace
from psvit_nas.cli import main
from psvit_nas.data import Augment, BatchAugment, TrainLoader, load_images, per_image_transform
from psvit_nas.data.augment import TimmRandAugment
from psvit_nas.train import TrainConfig

DEIT_RECIPE = ROOT / "recipes" / "deit.yaml"
DIGITS = SearchSpace.from_yaml(SPACES / "digits.yaml")

# DeiT-Tiny's recipe as published: Touvron et al. 2021, Table 9 (the hyperparameters), facebookresearch/deit
# main.py (min_lr 1e-5, lr scaled as lr x global batch / 512, the RandAugment string) and its README (DeiT-Tiny
# on 4 processes of 256 images: a global batch of 1024)
DEIT = {"epochs": 300, "global_batch": 1024, "lr": 5e-4 * 1024 / 512, "min_lr": 1e-5, "weight_decay": 0.05,
        "warmup_epochs": 5, "clip_grad": None, "label_smoothing": 0.1, "mixup": 0.8, "cutmix": 1.0,
        "randaugment": "rand-m9-mstd0.5-inc1", "random_erasing": 0.25, "drop_path": 0.1, "repeated_aug": 3,
        "random_resized_crop": True, "flip": True}


def _resolved(capsys, *options: str) -> dict:
    assert main(["train", "--arch", str(SPACES / "deit_tiny.yaml"), "--data", "imagenet", "--out", "unused",
                 "--print-config", *options]) == 0
    return yaml.safe_load(capsys.readouterr().out)


def test_the_deit_recipe_resolves_to_deits_published_values_field_by_field(capsys):
    resolved = _resolved(capsys, "--recipe", str(DEIT_RECIPE))
    train, augment = resolved["train"], resolved["train"]["augment"]
    cfg = TrainConfig(**train)
    processes = DEIT["global_batch"] // cfg.batch_size
    got = {"epochs": cfg.epochs, "global_batch": cfg.batch_size * processes, "lr": cfg.scaled_lr(processes),
           "min_lr": cfg.min_lr, "weight_decay": cfg.weight_decay, "warmup_epochs": cfg.warmup_epochs,
           "clip_grad": cfg.clip_grad, "drop_path": resolved["model"]["drop_path"], "repeated_aug": cfg.repeated_aug,
           **{k: augment[k] for k in ("label_smoothing", "mixup", "cutmix", "randaugment", "random_erasing",
                                      "random_resized_crop", "flip")}}
    assert got == pytest.approx(DEIT)
    recipe = yaml.safe_load(DEIT_RECIPE.read_text())["recipe"]
    assert (recipe["optimizer"], recipe["schedule"]) == ("adamw", "cosine")  # what the loop does


def test_deits_randaugment_string_builds_timms_randaugment_with_its_parameters():
    ops = TimmRandAugment(DEIT["randaugment"], 224).ops
    assert ops.num_layers == 2 and len(ops.ops) == 15  # timm's increasing-severity op set
    assert {(op.prob, op.magnitude, op.magnitude_std) for op in ops.ops} == {(0.5, 9, 0.5)}
    x = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    out = [TimmRandAugment(DEIT["randaugment"], 32)(x) for _ in range(8)]
    assert all(o.dtype == torch.uint8 and o.shape == x.shape for o in out)
    assert any(not torch.equal(o, x) for o in out)


def test_options_given_win_over_the_recipe_even_at_their_default(capsys):
    resolved = _resolved(capsys, "--recipe", str(DEIT_RECIPE), "--epochs", "2", "--repeated-aug", "1",
                         "--drop-path", "0")
    assert resolved["train"]["epochs"] == 2 and resolved["train"]["repeated_aug"] == 1
    assert resolved["model"]["drop_path"] == 0 and resolved["train"]["weight_decay"] == 0.05


def _digits_loader(repeats: int, rank: int = 0, world: int = 1) -> TrainLoader:
    train = load_images("digits", "train", DIGITS)
    aug = Augment.preset("deit", DIGITS.image_size)
    aug.mixup = aug.cutmix = aug.random_erasing = 0.0  # hard labels; all randomness drawn per image copy
    return TrainLoader(train, 16, BatchAugment(aug, DIGITS, 0), torch.device("cpu"), seed=3, rank=rank, world=world,
                       per_image=per_image_transform(aug, DIGITS), repeats=repeats)


def test_repeated_augmentation_repeats_each_image_on_consecutive_ranks_at_the_same_epoch_length():
    plain, once = _digits_loader(1), _digits_loader(3)
    assert len(once) == len(plain)  # DeiT's RASampler keeps the epoch's length
    order = once.order(4)
    triples = order.view(-1, 3)
    assert (triples == triples[:, :1]).all() and len(set(triples[:, 0].tolist())) == len(triples)
    ranks = [_digits_loader(3, r, 2).order(4) for r in range(2)]
    interleaved = torch.stack(ranks, 1).flatten()  # rank r holds every second image of the repeated order
    assert torch.equal(interleaved, order[:len(interleaved)])


def test_each_copy_is_augmented_apart_and_an_epoch_resumes_exactly():
    loader = _digits_loader(3)
    x, y = next(loader.epoch(0))
    triples = y[:15].view(5, 3)  # a batch of 16: five whole triples
    assert (triples == triples[:, :1]).all()
    apart = [not torch.equal(x[k], x[k + 1]) for k in range(0, 15, 3)]  # the same image, its own augmentation
    assert sum(apart) >= 4
    full = list(_digits_loader(3).epoch(1))
    tail = list(_digits_loader(3).epoch(1, start=3))
    for (a, b), (c, d) in zip(full[3:], tail, strict=True):
        assert torch.equal(a, c) and torch.equal(b, d)


def test_train_with_the_deit_recipe_on_digits_end_to_end(tmp_path):
    arch = tmp_path / "arch.yaml"
    assert main(["sample", "--config", str(SPACES / "digits.yaml"), "--seed", "1", "--out", str(arch)]) == 0
    out = tmp_path / "run"
    assert main(["train", "--arch", str(arch), "--data", "digits", "--out", str(out), "--recipe", str(DEIT_RECIPE),
                 "--epochs", "1", "--batch-size", "64", "--warmup-epochs", "0.5", "--workers", "0"]) == 0
    config = yaml.safe_load((out / "config.yaml").read_text())["train"]
    assert config["repeated_aug"] == 3 and config["augment"]["randaugment"] == DEIT["randaugment"]
    assert (out / "last.pt").is_file()
