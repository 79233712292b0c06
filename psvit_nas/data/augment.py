"""Augmentation on whole batches on the training device, seeded per step.

Decoded uint8 batches at the stored size come in; normalised float batches at the image
size (and soft targets under mixup/cutmix) go out. Crop, flip and random erasing draw
their parameters per image but run as one tensor operation on the batch; mixup and cutmix
are torchvision's batch transforms. Every draw happens with the RNG seeded by the
step, in a forked RNG state, so a step's augmentation is a pure function of (seed, step,
batch) and a run resumed at any step continues exactly.

DeiT's RandomResizedCrop (bicubic) and RandAugment stay per image (`per_image_transform`): a
batched RandAugment would apply one op sequence to the whole batch and change its semantics.
RandAugment is timm's, the one DeiT trains with (`rand-m9-mstd0.5-inc1`: two of timm's
increasing-severity ops, each with probability 1/2, magnitude 9 of 10 with noise of std 0.5).
They run in the loader's workers, seeded per (epoch, image copy), which keeps resume exact too.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from PIL import ImageOps
from torch import Tensor
from torchvision.transforms import v2

from ..errors import ConfigError
from ..space import SearchSpace

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
DEIT_RANDAUGMENT = "rand-m9-mstd0.5-inc1"
PRESETS = ("auto", "none", "light", "deit")


@dataclass
class Augment:
    """DeiT-style augmentation settings; `preset` picks defaults that suit the image size."""

    random_resized_crop: bool = False
    crop_padding: int = 0
    flip: bool = False
    randaugment: str = ""             # timm's RandAugment config, e.g. rand-m9-mstd0.5-inc1 ("": off)
    random_erasing: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    label_smoothing: float = 0.0

    @classmethod
    def preset(cls, name: str, image_size: int) -> "Augment":
        if name == "auto":
            name = "deit" if image_size >= 160 else "light" if image_size >= 32 else "none"
        if name == "none":
            return cls()
        if name == "light":
            return cls(crop_padding=image_size // 8, flip=True, label_smoothing=0.1)
        if name == "deit":
            return cls(random_resized_crop=True, flip=True, randaugment=DEIT_RANDAUGMENT, random_erasing=0.25,
                       mixup=0.8, cutmix=1.0, label_smoothing=0.1)
        raise ConfigError(None, "--augment", f"expected one of {', '.join(PRESETS)}; got {name!r}")

    def __post_init__(self) -> None:
        if isinstance(self.randaugment, bool):  # the settings of runs written before it took timm's config
            self.randaugment = DEIT_RANDAUGMENT if self.randaugment else ""

    @property
    def per_image(self) -> bool:
        """Whether some operation must run per image (in the loader) rather than on the batch."""
        return self.random_resized_crop or bool(self.randaugment)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def normalize(x: Tensor) -> Tensor:
    """uint8 (or 0-255 float) batch -> float32 normalised (ImageNet statistics for RGB, 0.5 otherwise)."""
    channels = x.shape[1]
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else ((0.5,) * channels, (0.5,) * channels)
    mean_t = torch.tensor(mean, device=x.device).view(1, -1, 1, 1) * 255
    inv_std = 1 / (torch.tensor(std, device=x.device).view(1, -1, 1, 1) * 255)
    return x.float().sub_(mean_t).mul_(inv_std)


def center_crop(x: Tensor, size: int) -> Tensor:
    """The centre `size`² of a (B, C, H, W) batch."""
    top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
    return x[..., top:top + size, left:left + size]


def eval_batch(x: Tensor, image_size: int) -> Tensor:
    """What every evaluation sees: the centre crop of the stored images, normalised."""
    return normalize(center_crop(x, image_size))


def random_crop(x: Tensor, size: int, padding: int = 0, flip: bool = False) -> Tensor:
    """A different random `size`² window of each image (after reflect-padding by `padding`), each flipped
    horizontally with probability 1/2 when `flip`: one gather over the whole batch."""
    if padding:
        x = F.pad(x, (padding,) * 4, mode="reflect")
    batch, channels, height, width = x.shape
    dev = x.device
    top = torch.randint(0, height - size + 1, (batch, 1, 1), device=dev)
    left = torch.randint(0, width - size + 1, (batch, 1, 1), device=dev)
    span = torch.arange(size, device=dev)
    cols = span.expand(batch, 1, size)
    if flip:
        cols = torch.where(torch.rand(batch, 1, 1, device=dev) < 0.5, size - 1 - cols, cols)
    index = (top + span.view(1, -1, 1)) * width + left + cols  # (batch, size, size) flat pixel positions
    return x.flatten(2).gather(2, index.view(batch, 1, -1).expand(-1, channels, -1)).view(batch, channels, size,
                                                                                          size)


def random_erasing(x: Tensor, p: float, scale=(0.02, 1 / 3), ratio=(0.3, 3.3)) -> Tensor:
    """torchvision's RandomErasing (value 0 after normalisation), a box drawn per image."""
    batch, _, height, width = x.shape
    dev = x.device
    area = height * width * torch.empty(batch, device=dev).uniform_(*scale)
    log_ratio = torch.empty(batch, device=dev).uniform_(torch.log(torch.tensor(ratio[0])).item(),
                                                        torch.log(torch.tensor(ratio[1])).item())
    aspect = torch.exp(log_ratio)
    h = torch.sqrt(area * aspect).round().clamp(1, height).long()
    w = torch.sqrt(area / aspect).round().clamp(1, width).long()
    top = (torch.rand(batch, device=dev) * (height - h + 1)).long()
    left = (torch.rand(batch, device=dev) * (width - w + 1)).long()
    apply = torch.rand(batch, device=dev) < p
    rows = torch.arange(height, device=dev).view(1, -1, 1)
    cols = torch.arange(width, device=dev).view(1, 1, -1)
    box = ((rows >= top.view(-1, 1, 1)) & (rows < (top + h).view(-1, 1, 1)) & (cols >= left.view(-1, 1, 1))
           & (cols < (left + w).view(-1, 1, 1)) & apply.view(-1, 1, 1))
    return x.masked_fill(box.unsqueeze(1), 0.0)


def batch_mixer(aug: Augment, num_classes: int) -> Callable | None:
    """Mixup / CutMix on whole batches (soft targets), or None."""
    mixers = [mix(alpha=alpha, num_classes=num_classes)
              for mix, alpha in ((v2.MixUp, aug.mixup), (v2.CutMix, aug.cutmix)) if alpha > 0]
    return v2.RandomChoice(mixers) if mixers else None


def per_image_transform(aug: Augment, space: SearchSpace) -> Callable | None:
    """The per-image part of the DeiT preset (RandomResizedCrop, flip, RandAugment) on uint8 tensors, or None."""
    if not aug.per_image:
        return None
    size = space.image_size
    ops: list = [v2.RandomResizedCrop(size, interpolation=v2.InterpolationMode.BICUBIC, antialias=True)
                 if aug.random_resized_crop else v2.CenterCrop(size)]
    if aug.flip:
        ops.append(v2.RandomHorizontalFlip())
    if aug.randaugment:
        ops.append(TimmRandAugment(aug.randaugment, size, space.in_chans))
    return v2.Compose(ops)


def _posterize(img, bits: int, **_):
    """timm's posterize, with 0 bits (magnitude 10, which the magnitude noise reaches) a black image as
    Pillow before 10 gave it; newer Pillow refuses 0 bits."""
    if bits >= 8:
        return img
    return img.point(lambda _: 0) if bits < 1 else ImageOps.posterize(img, bits)


def check_randaugment(config: str, source: str | None, field: str) -> None:
    """One line naming `field` (of `source`) when `config` is not a timm RandAugment config string."""
    try:
        TimmRandAugment(config, 224)
    except Exception as err:  # timm raises AssertionError, KeyError or ValueError on a bad string
        raise ConfigError(source, field, f"{config!r} is not a timm RandAugment config such as "
                          f"{DEIT_RANDAUGMENT} ({err.__class__.__name__}: {err})") from None


class TimmRandAugment:
    """timm's RandAugment on a uint8 (C, H, W) tensor, through PIL as timm runs it, with DeiT's settings:
    translations up to 45 % of the image, bicubic, the ImageNet mean as fill."""

    def __init__(self, config: str, image_size: int, channels: int = 3) -> None:
        from timm.data import rand_augment_transform
        from timm.data.transforms import str_to_pil_interp

        mean = tuple(round(255 * m) for m in IMAGENET_MEAN) if channels == 3 else 128
        hparams = {"translate_const": int(image_size * 0.45), "img_mean": mean,
                   "interpolation": str_to_pil_interp("bicubic")}
        self.ops = rand_augment_transform(config, hparams)
        for op in self.ops.ops:
            if op.aug_fn.__name__ == "posterize":
                op.aug_fn = _posterize

    def __call__(self, x: Tensor) -> Tensor:
        return v2.functional.pil_to_tensor(self.ops(v2.functional.to_pil_image(x)))


class BatchAugment:
    """The training batch transform: uint8 batch at the stored size -> normalised, augmented float batch."""

    def __init__(self, aug: Augment, space: SearchSpace, seed: int) -> None:
        self.aug, self.size, self.seed = aug, space.image_size, seed
        self.mixer = batch_mixer(aug, space.num_classes)

    def __call__(self, x: Tensor, y: Tensor, step: int) -> tuple[Tensor, Tensor]:
        aug = self.aug
        seed = self.seed * 1_000_003 + step
        cuda = x.device.type == "cuda"
        with torch.random.fork_rng(devices=[x.device] if cuda else []):
            torch.default_generator.manual_seed(seed)  # this device's generator only: seeding all is slower
            if cuda:
                torch.cuda.manual_seed(seed)
            if not aug.per_image:  # else crop and flip were done per image
                if not aug.crop_padding:
                    x = center_crop(x, self.size)
                if aug.crop_padding or aug.flip:
                    x = random_crop(x, self.size, aug.crop_padding, aug.flip)
            x = normalize(x)
            if aug.random_erasing:
                x = random_erasing(x, aug.random_erasing)
            if self.mixer is not None:
                x, y = self.mixer(x, y)
        return x, y
