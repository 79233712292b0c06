"""Rankers: what scores a search's candidates, higher meaning better; one callable per ranker (arch -> score).

- `supernet`: top-1 with inherited weights on the fitness images (`fitness.Evaluator`).
- `debiased` (the default): that top-1 less the supernet's own trend with MACs (`debiased`); `make_ranker`
  gives the supernet's top-1, and the search takes the trend out, fitted on reference paths it scores first.
- a training-free proxy (`proxies.PROXIES`) of the architecture at a seeded initialisation, on one fitness batch.
- `finetune`: a few SGD steps from the inherited weights (`finetune`).
- `calibrated`: predicted retrained accuracy from cheap features, fitted on a study's records (`calibrated`).
- `fewshot`: each architecture scored by the sub-supernet of its part of a split (`fewshot`).
"""
from __future__ import annotations

from typing import Callable

from ..errors import ConfigError
from ..space import Arch
from .calibrated import CalibratedRanker, retrained
from .fewshot import FewShotRanker
from .finetune import FINETUNE_STEPS, FinetuneRanker
from .fitness import Batches, Evaluator, FitnessSet, fitness_set_for, inherited_model
from .proxies import PROXIES, ProxyRanker

RANKERS = ("supernet", "debiased", *PROXIES, "finetune", "calibrated", "fewshot")
SUPERNET_RANKERS = ("supernet", "debiased")  # score with the supernet's inherited weights alone (Ray can too)


def make_ranker(name: str, evaluator: Evaluator, train: Callable[[], Batches], records: str | None = None,
                steps: int = FINETUNE_STEPS, fewshot: str | None = None) -> Callable[[Arch], float]:
    """The ranker called `name` over one supernet's evaluator; `train()` gives its training batches, `records`
    a study's records (calibrated), `fewshot` a folder of sub-supernets (fewshot)."""
    space = evaluator.supernet.space
    if name not in RANKERS:
        raise ConfigError(None, "--fitness", f"unknown ranker {name!r}; expected one of {list(RANKERS)}")
    if bool(fewshot) != (name == "fewshot"):
        raise ConfigError(None, "--fewshot", "--fitness fewshot needs --fewshot DIR (from psvit-nas few-shot)"
                          if fewshot is None else f"only --fitness fewshot reads --fewshot, not {name}")
    if name == "fewshot":
        return FewShotRanker(evaluator, fewshot)
    if name == "calibrated":
        if not records:
            raise ConfigError(None, "--records", "--fitness calibrated needs a study's records folder to fit on "
                              "(--records STUDY/records)")
        return CalibratedRanker(evaluator, space, retrained(records, space))
    if records:
        raise ConfigError(None, "--records", f"only --fitness calibrated reads records, not {name}")
    if name in SUPERNET_RANKERS:
        return evaluator
    if name == "finetune":
        batches = train()
        if not len(batches):
            raise ConfigError(None, "--bn-batches", "--fitness finetune trains on the calibration batches; "
                              "give --bn-batches 1 or more")
        if steps < 1:
            raise ConfigError(None, "--finetune-steps", f"expected 1 or more, got {steps}")
        return FinetuneRanker(evaluator, batches, steps)
    return ProxyRanker(space, name, next(iter(evaluator.batches)))


__all__ = ["FINETUNE_STEPS", "PROXIES", "RANKERS", "SUPERNET_RANKERS", "CalibratedRanker", "Evaluator",
           "FewShotRanker", "FinetuneRanker", "FitnessSet", "ProxyRanker", "fitness_set_for", "inherited_model", "make_ranker"]
