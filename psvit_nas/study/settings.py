"""The study's settings: every option of `psvit-nas study`, with its default."""
from __future__ import annotations

from dataclasses import dataclass, fields

# what a study runs, in this order (`--stages`): supernet fitness, the ground truth, the searches, what follows
# them, the first supernet's variants, the schedule probe, and the rankers beyond weight sharing
STAGES = ("fitness", "retrain", "search", "after-search", "variants", "probe", "rankers")


@dataclass(frozen=True)
class StudySettings:
    config: str                       # search space YAML
    data: str                         # digits, cifar10/100 or a Tiny-ImageNet-layout folder
    out: str                          # records (commit them), study.json
    work: str                         # run folders and checkpoints
    results: str                      # the markdown report (its plot beside it)
    classes: int = 30                 # first N classes of a Tiny-ImageNet folder
    spread: int = 12
    window: int = 8
    budget: str | None = None         # window centre in MACs (default: median of uniform paths)
    extra: tuple[str, ...] = ()       # NAME=ARCH joining the window group (e.g. layers=all-layer)
    family: tuple[int, ...] = ()      # depths of the hand-designed layer family (baselines.layer_family)
    seeds: tuple[int, ...] = (0, 1)
    named_seeds: tuple[int, ...] = ()  # the named extras' seeds, a superset of `seeds` (default: `seeds`)
    epochs: int = 5                   # retraining epochs per architecture
    supernet_epochs: int = 15         # uniform-path epochs' worth of compute
    score_every: int = 0              # uniform-path epochs of compute between the supernet checkpoints scored
    samplers: tuple[str, ...] = ("uniform", "fair", "sandwich", "flops")
    distill_weight: float = 0.5
    holdout: int = 1500               # training images held out for fitness
    gt_holdout: int = 0               # training images per class moved to the ground truth's evaluation set
    population: int = 20
    generations: int = 5
    batch_size: int = 64
    lr: float = 2e-3                  # supernet learning rate
    retrain_lr: float = 1e-3
    seed: int = 0                     # which architectures are drawn
    finalize_topk: int = 5
    tune_samples: int = 6
    probe_archs: int = 6
    probe_epochs: int = 15
    est_images_per_s: float = 350     # one trial's speed, for the time estimate
    goals: str = "settled"            # the goals the report opens with (`goals.GOALS`; ranking: the earlier studies)
    stages: tuple[str, ...] = STAGES

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]
