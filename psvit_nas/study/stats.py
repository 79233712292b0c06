"""The study's statistics: rank correlations with bootstrap intervals, the noise ceiling, where seed noise
comes from, and what each ranking rewards.

A statistic is a `(value, low, high)` tuple (a 90 % percentile bootstrap interval; `low` and `high` are None
when most resamples tie), or, when it is undefined, a string that says why (`ALL_TIED`, `TOO_FEW`). The report
prints either as it is; nothing here returns NaN.
"""
from __future__ import annotations

from typing import Callable, Sequence, Union

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from ..space import Arch, SearchSpace

ALL_TIED = "undefined (all tied)"
TOO_FEW = "too few architectures"
MIN_ARCHS = 3

Stat = Union[tuple[float, float | None, float | None], str]


def value(stat: Stat) -> float | None:
    """The statistic itself, or None when it is undefined."""
    return None if isinstance(stat, str) else stat[0]


def fmt(stat: Stat) -> str:
    """'0.62 [0.42, 0.79]', '0.62 [interval undefined: most resamples tied]', or why it is undefined."""
    if isinstance(stat, str):
        return stat
    if stat[1] is None:
        return f"{stat[0]:.2f} [interval undefined: most resamples tied]"
    return f"{stat[0]:.2f} [{stat[1]:.2f}, {stat[2]:.2f}]"


def kendall(x: ArrayLike, y: ArrayLike) -> float | np.ndarray:
    """Kendall tau-b (scipy's statistic) of x against y, or of each row of 2-D x and y (the bootstrap's
    resamples at once); NaN, not a warning, where either side is constant."""
    a, b = np.atleast_2d(np.asarray(x, float)), np.atleast_2d(np.asarray(y, float))
    sa, sb = np.sign(a[:, :, None] - a[:, None, :]), np.sign(b[:, :, None] - b[:, None, :])
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = (sa * sb).sum((1, 2)) / np.sqrt((sa * sa).sum((1, 2)) * (sb * sb).sum((1, 2)))
    return tau if np.ndim(x) == 2 else float(tau[0])


def spearman(x: ArrayLike, y: ArrayLike) -> float | np.ndarray:
    """Spearman rho (average ranks for ties) of x against y, or of each row of 2-D x and y; NaN where either
    side is constant."""
    a = stats.rankdata(np.atleast_2d(np.asarray(x, float)), axis=1)
    b = stats.rankdata(np.atleast_2d(np.asarray(y, float)), axis=1)
    a, b = a - a.mean(1, keepdims=True), b - b.mean(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))
    return rho if np.ndim(x) == 2 else float(rho[0])


def interval(x: Sequence[float], y: Sequence[float], fn: Callable[[ArrayLike, ArrayLike], float | np.ndarray],
             resamples: int = 2000) -> Stat:
    """`fn(x, y)` with a 90 % percentile bootstrap interval over paired architectures (`fn` also takes 2-D x and y:
    one statistic per row, as `kendall` and `spearman` do).

    Resamples whose statistic is undefined (all ties) are dropped; with fewer than half left the interval is
    undefined. Fewer than three architectures, or a statistic undefined on the data, give the reason instead.
    """
    xs, ys = np.asarray(x, float), np.asarray(y, float)
    return _bootstrap(len(xs), lambda i: fn(xs[i], ys[i]), resamples)


def paired_difference(a: Sequence[float], b: Sequence[float], y: Sequence[float],
                      fn: Callable[[ArrayLike, ArrayLike], float | np.ndarray], resamples: int = 2000) -> Stat:
    """`fn(a, y) - fn(b, y)`, two rankers' agreement with one truth, with a 90 % bootstrap interval that resamples
    the same architectures for both sides (their shared luck cancels)."""
    xa, xb, ys = (np.asarray(v, float) for v in (a, b, y))
    return _bootstrap(len(ys), lambda i: fn(xa[i], ys[i]) - fn(xb[i], ys[i]), resamples)


def _bootstrap(n: int, stat_of: Callable[[np.ndarray], float | np.ndarray], resamples: int) -> Stat:
    """`stat_of` on all `n` architectures (a 1-D index) with its interval over resamples (a 2-D index, one
    resample per row)."""
    if n < MIN_ARCHS:
        return TOO_FEW
    stat = stat_of(np.arange(n))
    if not np.isfinite(stat):
        return ALL_TIED
    picks = np.random.default_rng(0).integers(0, n, (resamples, n))
    draws = np.asarray(stat_of(picks))  # every resample at once
    draws = draws[np.isfinite(draws)]
    if len(draws) < resamples // 2:
        return stat, None, None
    return stat, float(np.percentile(draws, 5)), float(np.percentile(draws, 95))


def unpack(bits: str) -> np.ndarray:
    """Per-image hits stored as 'hex:count' (see `pack`)."""
    hexed, n = bits.split(":")
    return np.unpackbits(np.frombuffer(bytes.fromhex(hexed), np.uint8))[: int(n)].astype(float)


def pack(hits: np.ndarray) -> str:
    """Per-image hits (booleans) as a hex bit string with their count."""
    return np.packbits(np.asarray(hits, bool)).tobytes().hex() + f":{len(hits)}"


def evaluation_share(hits: list[list[np.ndarray]]) -> dict[str, float] | None:
    """How much of the seed-to-seed differences the evaluation images alone explain.

    `hits[arch][seed]` are per-image hits of two seeds. The seeds' difference in top-1 (points) has a
    sampling variance over images of var(hit0 - hit1) / N; its mean over architectures against the mean
    squared difference measured says whether more evaluation images (not more seeds or epochs) would make
    the ground truth reproduce.
    """
    pairs = [h for h in hits if len(h) >= 2]
    if len(pairs) < MIN_ARCHS:
        return None
    observed = float(np.mean([(100 * (h[0].mean() - h[1].mean())) ** 2 for h in pairs]))
    images = float(np.mean([1e4 * np.var(h[0] - h[1], ddof=1) / len(h[0]) for h in pairs]))
    return {"archs": len(pairs), "images": len(pairs[0][0]), "observed": observed, "from_images": images,
            "disagree": float(np.mean([np.mean(h[0] != h[1]) for h in pairs]))}


def seed_variance(rows: list[dict]) -> float | None:
    """The pooled variance (points²) of one retraining's top-1 between seeds, over rows with 2+ seeds (all of a
    row's seeds, `all_seeds`: the study's and a named architecture's --named-seeds)."""
    seeds = [np.asarray(r["all_seeds"], float) for r in rows if len(r["seeds"]) > 1]
    return float(np.mean([s.var(ddof=1) for s in seeds])) if seeds else None


def difference(a: Sequence[float], b: Sequence[float], s2: float) -> tuple[float, float]:
    """Mean of `a`'s seeds less mean of `b`'s, and its standard error given one run's variance `s2`."""
    return float(np.mean(a) - np.mean(b)), float(np.sqrt(s2 / len(a) + s2 / len(b)))


def _summary(taus: list[float]) -> Stat:
    taus = [t for t in taus if np.isfinite(t)]
    if not taus:
        return ALL_TIED
    return float(np.mean(taus)), float(np.percentile(taus, 5)), float(np.percentile(taus, 95))


def noise_ceiling(seeds: list[list[float]], draws: int = 2000) -> dict[str, Stat]:
    """What seed noise alone allows: (mean, 5th, 95th percentile) of the Kendall tau a perfect ranker would
    reach against the seeds' mean ("ceiling"), and of seed against seed ("self", to check the model).

    Model: each seed's accuracy is the true one plus N(0, s2), s2 the pooled variance between seeds; the
    true accuracies are the means shrunk toward their average until their variance is the means' less s2/n.
    When the seed noise is as large as the spread between architectures, the true accuracies all tie and
    both are undefined.
    """
    acc = np.asarray(seeds, float)
    if len(acc) < MIN_ARCHS:
        return {"ceiling": TOO_FEW, "self": TOO_FEW}
    if (model := _noise_model(acc)) is None:
        return {"ceiling": ALL_TIED, "self": ALL_TIED}
    truth, s2 = model
    n, rng = acc.shape[1], np.random.default_rng(0)

    def seed() -> np.ndarray:
        return truth + rng.normal(0, np.sqrt(s2), len(truth))

    return {"ceiling": _summary([kendall(truth, np.mean([seed() for _ in range(n)], axis=0))
                                 for _ in range(draws)]),
            "self": _summary([kendall(seed(), seed()) for _ in range(draws)])}


def _noise_model(acc: np.ndarray) -> tuple[np.ndarray, float] | None:
    """(true accuracies, one run's variance) of `noise_ceiling`'s model; None when the seed noise is as large
    as the spread between architectures."""
    n, mean = acc.shape[1], acc.mean(axis=1)
    s2 = acc.var(axis=1, ddof=1).mean()
    spread = mean.var(ddof=1)
    true_spread = max(spread - s2 / n, 0.0)
    if true_spread == 0:
        return None
    return mean.mean() + (mean - mean.mean()) * np.sqrt(true_spread / spread), float(s2)


def seeds_needed(seeds: list[list[float]], target: float, most: int = 64, draws: int = 500) -> int | None:
    """The fewest seeds per architecture at which two independent k-seed means of `noise_ceiling`'s model agree
    at a mean Kendall tau of `target` or more; None when even `most` seeds do not (or the model is undefined)."""
    acc = np.asarray(seeds, float)
    if len(acc) < MIN_ARCHS or (model := _noise_model(acc)) is None:
        return None
    truth, s2 = model
    rng = np.random.default_rng(0)
    for k in range(1, most + 1):
        a, b = (truth + rng.normal(0, np.sqrt(s2 / k), (draws, len(truth))) for _ in range(2))
        if np.nanmean(kendall(a, b)) >= target:
            return k
    return None


def composition(rows: list[dict], scorers: list[tuple[str, Callable[[dict], float | None]]],
                space: SearchSpace) -> dict[str, dict[str, Stat]]:
    """Kendall tau (with interval) between each choice's number of cells and the seeds' mean, and each ranker's
    score (`scorers`: name, score of a row) where every row has one: what the ground truth and each ranker
    reward."""
    if len(rows) < MIN_ARCHS:
        return {}
    choices = list(dict.fromkeys(c for stage in space.stages for c in stage.choices))
    scores = {"ground truth": [r["mean"] for r in rows]}
    scores.update({name: [score(r) for r in rows] for name, score in scorers if all(score(r) is not None
                                                                                    for r in rows)})
    out = {}
    for choice in choices:
        counts = [sum(c == choice for stage in Arch.parse(r["arch"]).stages for c in stage) for r in rows]
        if len(set(counts)) > 1:
            out[choice] = {name: interval(counts, score, kendall) for name, score in scores.items()}
    return out
