"""The goals a study is judged by, in one place: each set of goals named for what it checks, as (goal,
measured, met) rows, and the goal for the best ranker. A statistic that is undefined meets no goal."""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Callable

from .stats import seeds_needed, value

Row = tuple[str, str, bool]


def _num(stat) -> str:
    """A statistic's value, or why it is undefined."""
    return stat if isinstance(stat, str) else f"{stat[0]:.2f}"


def _tau(ranking: dict, scope: str, name: str) -> float:
    v = value(ranking[scope][name]["tau"])
    return -2.0 if v is None else v


def _best(ranking: dict, scope: str, names: tuple[str, ...]) -> str | None:
    scored = [s for s in names if s in ranking.get(scope, {})]
    return max(scored, key=lambda s: _tau(ranking, scope, s)) if scored else None


def _ranker_rows(result: dict, a, across: float, margin: float) -> list[Row]:
    """Across the space: the best sampler's tau >= `across` and >= MACs alone's + `margin`; inside the window:
    above MACs alone's."""
    rows, ranking = [], result["ranking"]
    for scope in ("all", "window"):
        if (name := _best(ranking, scope, a.samplers)) is None:
            continue
        entry, tau, macs = ranking[scope], _tau(ranking, scope, name), _tau(ranking, scope, "macs")
        ceiling = f" (noise ceiling {_num(entry['ceiling']['ceiling'])})" if entry["ceiling"] else ""
        if scope == "all":
            text = f"across the space: supernet tau >= {across:g} and " + \
                (f"at least MACs alone's + {margin:g}" if margin else "above MACs alone's")
            met = tau >= across and (tau >= macs + margin if margin else tau > macs)
        else:
            text, met = "inside the window: supernet tau above MACs alone's", tau > macs
        rows.append((f"{text} (best sampler: {name})", f"{_num(entry[name]['tau'])} against "
                     f"{_num(entry['macs']['tau'])}{ceiling}", value(entry[name]["tau"]) is not None and met))
    return rows


def _self_row(result: dict, threshold: float) -> list[Row]:
    entry = result["ranking"].get("all")
    if not entry or not entry["self_tau"]:
        return []
    met = (value(entry["self_tau"]) or -2) >= threshold
    needed = "" if met else seeds_text(result["rows"], threshold)
    return [(f"ground truth reproduces itself: seed-against-seed tau >= {threshold:g} across the space",
             _num(entry["self_tau"]) + needed, met)]


def seeds_text(rows: list[dict], threshold: float) -> str:
    """What the measured noise says it would take: the seeds per architecture at which two means would agree."""
    k = seeds_needed([r["seeds"] for r in rows if len(r["seeds"]) > 1], threshold)
    return f" (two means of {k} seeds each would agree at tau {threshold:g})" if k else \
        f" (not even two means of 64 seeds each would agree at tau {threshold:g})"


def ranking_goals(result: dict, a) -> list[Row]:
    """A ground truth that reproduces itself, supernets that rank by it, evolution at least as good as random."""
    rows = _self_row(result, 0.7) + _ranker_rows(result, a, 0.7, 0.0)
    winners = result["winners"]
    if set(winners) == {"evolution", "random"}:
        evo, rnd = (statistics.fmean(winners[k]["seeds"]) for k in ("evolution", "random"))
        rows.append(("evolution's retrained winner at least as good as random's", f"{evo:.2f} against {rnd:.2f}",
                     evo >= rnd))
    return rows


def settled_goals(result: dict, a) -> list[Row]:
    """A settled ground truth, supernets that rank by it, and a search that beats the obvious models."""
    rows = []
    if (probe := result.get("schedule_probe")) and (tau := probe["tau"].get(f"{a.epochs} epochs, seed {a.seeds[0]}")):
        rows.append((f"the schedule has settled: the order at {min(probe['epochs'], a.epochs)} epochs against "
                     f"{max(probe['epochs'], a.epochs)}, tau >= 0.8", _num(tau), (value(tau) or -2) >= 0.8))
    rows += _self_row(result, 0.75) + _ranker_rows(result, a, 0.6, 0.2)
    for other in result.get("search_pays", {}).get("others", []):
        if other["role"] in ("random", "baseline"):  # the goal's two: not the top-1, nor other named models
            rows.append((f"the delivered architecture (finalize's pick) beats {other['label']} by more than twice "
                         "the standard error of the difference", f"{other['diff']:+.2f} points, SE {other['se']:.2f}",
                         other["diff"] > 2 * other["se"]))
    return rows


def best_ranker(ranking: dict, names: list[str]) -> dict | None:
    """The best ranker of `names` across the space, its margins over MACs alone in each scope, and whether it
    meets tau >= 0.7 and MACs + 0.2 in both scopes; None when none is scored."""
    everywhere = ranking.get("all", {})
    scored = [(value(everywhere[n]["tau"]), n) for n in names if n in everywhere and value(everywhere[n]["tau"])
              is not None]
    if not scored:
        return None
    best_tau, best = max(scored)
    margins = {scope: value(entry[best]["tau"]) - value(entry["macs"]["tau"]) for scope, entry in ranking.items()
               if best in entry and value(entry[best]["tau"]) is not None and value(entry["macs"]["tau"]) is not None}
    met = best_tau >= 0.7 and len(margins) == 2 and min(margins.values()) >= 0.2
    return {"name": best, "tau": best_tau, "margins": margins, "met": met}


@dataclass(frozen=True)
class Goals:
    """A set of goals: how a result is judged, and the issue that set them (named in the report's heading)."""

    judge: Callable[[dict, object], list[Row]]
    issue: str


GOALS: dict[str, Goals] = {"ranking": Goals(ranking_goals, "9"), "settled": Goals(settled_goals, "19")}
