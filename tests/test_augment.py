import torch

from conftest import SPACES
from psvit_nas import SearchSpace
from psvit_nas.data import (Augment, BatchAugment, CacheConfig, TrainLoader, load_images, per_image_transform,
                            random_crop, random_erasing)

TINY = SearchSpace.from_yaml(SPACES / "tiny_imagenet.yaml")


def _batch(n=16, size=64):
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8), torch.randint(0, 10, (n,))


def test_batch_augmentation_is_a_function_of_seed_and_step():
    x, y = _batch()
    aug = Augment(crop_padding=8, flip=True, random_erasing=0.5, mixup=0.8, cutmix=1.0)
    augment = BatchAugment(aug, TINY, seed=3)
    rng = torch.get_rng_state()
    a, b, c = augment(x, y, 5), augment(x, y, 5), augment(x, y, 6)
    assert torch.equal(torch.get_rng_state(), rng)  # the global RNG is left alone
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    assert a[0].dtype == torch.float32 and a[0].shape == (16, 3, 64, 64) and a[1].shape == (16, TINY.num_classes)
    assert torch.allclose(a[1].sum(1), torch.ones(16))


def test_random_crop_takes_a_different_window_of_each_image():
    x = torch.arange(8 * 10 * 10, dtype=torch.float32).view(8, 1, 10, 10)
    torch.manual_seed(0)
    out = random_crop(x, 6, padding=0)
    offsets = set()
    for b in range(8):
        start = int(out[b, 0, 0, 0]) - b * 100
        top, left = divmod(start, 10)
        assert torch.equal(out[b, 0], x[b, 0, top:top + 6, left:left + 6])
        offsets.add((top, left))
    assert len(offsets) > 1


def test_random_erasing_erases_one_box_per_chosen_image():
    x = torch.ones(32, 3, 16, 16)
    torch.manual_seed(0)
    assert torch.equal(random_erasing(x, 0.0), x)
    out = random_erasing(x, 1.0)
    erased = (out == 0).all(1)  # (B, H, W): all channels erased together
    areas = erased.flatten(1).sum(1).float() / 256
    assert (areas > 0).all() and (areas <= 1 / 3 + 0.05).all() and areas.std() > 0
    rows, cols = erased.any(2), erased.any(1)
    assert torch.equal(erased, rows[:, :, None] & cols[:, None, :])  # a rectangle


def _loader(dataset, aug, workers=0):
    return TrainLoader(dataset, 8, BatchAugment(aug, TINY, 1), torch.device("cpu"), seed=1,
                       per_image=per_image_transform(aug, TINY), workers=workers)


def test_an_epoch_resumed_at_any_step_gives_the_same_batches(tiny_imagenet_dir, tmp_path):
    val = load_images(str(tiny_imagenet_dir), "val", TINY, cache=CacheConfig(dir=str(tmp_path)))
    subset = torch.utils.data.Subset(val, range(0, 500, 7))
    for aug in (Augment.preset("light", 64), Augment.preset("deit", 64)):  # batched; per image (RandAugment)
        full = list(_loader(subset, aug).epoch(2))
        assert len(full) == len(subset) // 8
        tail = list(_loader(subset, aug, workers=1 if aug.per_image else 0).epoch(2, start=5))
        for (x, y), (xt, yt) in zip(full[5:], tail, strict=True):
            assert torch.equal(x, xt) and torch.equal(y, yt)
        other = list(_loader(subset, aug).epoch(3))
        assert not torch.equal(full[0][0], other[0][0])


def test_random_crop_flips_about_half_of_the_images():
    x = torch.arange(64 * 8, dtype=torch.float32).view(64, 1, 1, 8).expand(64, 1, 8, 8).contiguous()
    torch.manual_seed(0)
    out = random_crop(x, 8, padding=0, flip=True)
    flipped = [torch.equal(out[b], x[b].flip(-1)) for b in range(64)]
    kept = [torch.equal(out[b], x[b]) for b in range(64)]
    assert all(f or k for f, k in zip(flipped, kept)) and 16 < sum(flipped) < 48
