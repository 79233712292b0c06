"""The study's report: a markdown file that opens with the goals, each met or missed by the numbers, then the
rankings with their intervals, what each ranking rewards, the architectures, the searches, the schedule probe
and the learning curves, with its plots beside it."""
from __future__ import annotations

import statistics
from pathlib import Path

from ..io import atomic_write_text
from ..rankers import FINETUNE_STEPS
from ..space import format_macs
from .goals import GOALS, best_ranker
from .jobs import VARIANT_LABELS
from .plots import curves_plot, progress_plot, scatter
from .results import other_rankers, rankers
from .settings import StudySettings
from .stats import fmt


def write_results(path: Path, result: dict, a: StudySettings, command: str) -> None:
    """The markdown report of `result` (see `results.analyse`: all it reads, with the study's settings `a`) and
    its plots, beside it."""
    budget = result["plan"]["budget"]
    lines = header_section(result, a, command)
    lines += goals_section(result, a)
    for scope, entry in result["ranking"].items():
        lines += ranking_section(scope, entry, a, budget)
    lines += variants_section(result, a)
    lines += rankers_section(result, a, budget)
    lines += composition_section(result["composition"], a.samplers)
    lines += archs_section(result, a, path.with_suffix(".png"))
    lines += winners_section(result["winners"], budget)
    lines += search_pays_section(result.get("search_pays"), budget)
    lines += named_section(result.get("named"))
    lines += probe_section(result["schedule_probe"], a)
    lines += progress_section(result, path.with_name(path.stem + "-supernet.png"))
    lines += curves_section(result, path.with_name(path.stem + "-curves.png"))
    lines += partial_section(result.get("partial_training"), a)
    lines += after_search_section(result["after_search"], a)
    atomic_write_text(path, "\n".join(lines))


def header_section(result: dict, a: StudySettings, command: str) -> list[str]:
    """How far the study is, the command that continues it, and what was trained and measured how."""
    plan = result["plan"]
    data_text = f"the first {a.classes} classes of `{a.data}`" if Path(a.data).is_dir() else f"`{a.data}`"
    out = Path(a.out).resolve()
    where = out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out
    return ["# Search quality on real images", "",
            f"Written by `psvit-nas study` from its records in `{where}/records`: "
            f"**{plan['done']} of {plan['jobs']} jobs done**; rerun the command to continue:", "",
            "```bash", command, "```", "",
            f"Data: {data_text}; space `{plan['space']}`; every architecture "
            f"retrained from scratch for {a.epochs} epochs (batch {a.batch_size}, lr {a.retrain_lr}) with seeds "
            f"{', '.join(map(str, result['seeds']))}"
            + (f" and scored on the validation images plus {a.gt_holdout} training images per class that its "
               "training left out (none of them a fitness image)" if a.gt_holdout else "")
            + f"; supernets trained at equal compute ({a.supernet_epochs} uniform-path epochs' worth of images"
            + (f"; sandwich students' loss {a.distill_weight:g} distillation, the rest labels" if "sandwich" in
               a.samplers else "") + f"), {a.holdout} training images held out for fitness. Intervals "
            "are 90 % percentile bootstrap intervals over architectures.", ""]


def ranking_section(scope: str, entry: dict, a, budget: float) -> list[str]:
    """How each supernet and MACs/params alone rank one group, against the seed noise's ceiling."""
    title = "across the space" if scope == "all" else f"inside the window ({format_macs(budget)} MACs +-10 %)"
    lines = [f"## Ranking {title}: {entry['archs']} architectures", ""]
    if entry["self_tau"]:
        noise = entry["ceiling"]
        lines += [f"Ground truth, seed against seed: **Kendall tau {fmt(entry['self_tau'])}**. At this seed "
                  f"noise a perfect ranker would reach about **tau {fmt(noise['ceiling'])}** against the seeds' "
                  "mean: the noise ceiling of every tau below (`noise_ceiling` in `psvit_nas/study/stats.py`; "
                  f"the same model predicts a seed-against-seed tau of {fmt(noise['self'])}).", ""]
    if (ev := entry["evaluation"]) and ev["observed"] > 0:
        share = ev["from_images"] / ev["observed"]
        verdict = "More evaluation images, not more seeds or epochs, is what would reduce it" if share > 0.5 \
            else ("The larger part is training noise: more seeds per architecture or a longer schedule would "
                  "reduce it")
        lines += [f"Where the seed noise comes from ({ev['archs']} architectures with stored per-image hits): "
                  f"the two seeds disagree on {100 * ev['disagree']:.0f} % of the {ev['images']} evaluation "
                  f"images, so sampling those images alone gives their top-1 difference a variance of "
                  f"{ev['from_images']:.2f} points², against {ev['observed']:.2f} measured ({100 * share:.0f} %). "
                  f"{verdict}.", ""]
    lines += ["| ranked by | Kendall tau | Spearman rho |", "|---|---|---|"]
    for name in [*a.samplers, "macs", "params"]:
        if name in entry:
            label = f"supernet fitness ({name})" if name in a.samplers else f"{name} alone"
            lines.append(f"| {label} | {fmt(entry[name]['tau'])} | {fmt(entry[name]['rho'])} |")
    return lines + [""]


def archs_section(result: dict, a, plot: Path) -> list[str]:
    """Every architecture with all seeds retrained: cost, fitness per supernet, top-1 per seed; the scatter."""
    lines = ["## Architectures", "", "| group | MACs | params | " + " | ".join(f"fitness {s}" for s in a.samplers)
             + " | " + " | ".join(f"seed {s}" for s in result["seeds"]) + " | arch |",
             "|---|---:|---:|" + "---:|" * (len(a.samplers) + len(result["seeds"])) + "---|"]
    if not result["rows"]:
        lines.append(f"| no architecture has all {len(result['seeds'])} seeds retrained yet |")
    for r in sorted(result["rows"], key=lambda r: r["macs"]):
        fits = " | ".join(f"{r[f'fitness_{s}']:.2f}" if f"fitness_{s}" in r else "" for s in a.samplers)
        group = f"{r['group']} (`{r['name']}`)" if r.get("name") else r["group"]
        lines.append(f"| {group} | {format_macs(r['macs'])} | {r['params'] / 1e6:.3f}M | {fits} | "
                     + " | ".join(f"{v:.2f}" for v in r["seeds"]) + f" | `{r['arch'].replace('|', '/')}` |")
    lines.append("")
    if scatter(result, a.samplers[0], plot):  # one plot per results file
        lines += [f"![ranking]({plot.name})", ""]
    return lines


def winners_section(winners: dict, budget: float) -> list[str]:
    """The searches' winners, retrained with every seed."""
    if not winners:
        return []
    lines = [f"## Evolution against random search ({format_macs(budget)} MACs, equal evaluations)", "",
             "| strategy | fitness | MACs | retrained (each seed) | mean | arch |", "|---|---:|---:|---|---:|---|"]
    for k, w in winners.items():
        lines.append(f"| {k} | {w['fitness']:.2f} | {format_macs(w['macs'])} | "
                     f"{', '.join(f'{v:.2f}' for v in w['seeds'])} | {statistics.fmean(w['seeds']):.2f} | "
                     f"`{w['arch'].replace('|', '/')}` |")
    return lines + [""]


def search_pays_section(pays: dict | None, budget: float) -> list[str]:
    """The delivered architecture against the obvious models, each difference with its standard error."""
    if not pays:
        return []
    d = pays["delivered"]
    lines = [f"## Does the search pay? ({format_macs(budget)} MACs)", "",
             "What the search delivers (evolution, then `finalize` of its top candidates) less each obvious model: "
             "the mean of its seeds less theirs; the standard error takes one retraining's variance pooled over "
             f"every architecture of the study ({pays['seed_variance']:.2f} points²).", "",
             "| model | MACs | val top-1 (each seed) | mean | delivered less it | SE | beyond 2 SE | arch |",
             "|---|---:|---|---:|---:|---:|---|---|",
             f"| {d['label']} (delivered) | {format_macs(d['macs'])} | {', '.join(f'{v:.2f}' for v in d['seeds'])} "
             f"| {d['mean']:.2f} | | | | `{d['arch'].replace('|', '/')}` |"]
    for r in pays["others"]:
        lines.append(f"| {r['label']} | {format_macs(r['macs'])} | {', '.join(f'{v:.2f}' for v in r['seeds'])} | "
                     f"{r['mean']:.2f} | {r['diff']:+.2f} | {r['se']:.2f} | {_beyond(r)} | "
                     f"`{r['arch'].replace('|', '/')}` |")
    return lines + [""]


def named_section(named: dict | None) -> list[str]:
    """The named architectures (`--extra`) against the first one named, each difference with its standard
    error."""
    if not named:
        return []
    base = named["baseline"]
    lines = [f"## Named architectures against `{base['name']}`", "",
             f"Each named architecture's seeds' mean less `{base['name']}`'s ({base['mean']:.2f}); the standard "
             f"error takes one retraining's variance pooled over every architecture of the study "
             f"({named['seed_variance']:.2f} points²).", "",
             "| name | MACs | val top-1 (each seed) | mean | difference | SE | beyond 2 SE |",
             "|---|---:|---|---:|---:|---:|---|",
             f"| `{base['name']}` (baseline) | {format_macs(base['macs'])} | "
             f"{', '.join(f'{v:.2f}' for v in base['seeds'])} | {base['mean']:.2f} | | | |"]
    for r in named["others"]:
        lines.append(f"| `{r['name']}` | {format_macs(r['macs'])} | {', '.join(f'{v:.2f}' for v in r['seeds'])} | "
                     f"{r['mean']:.2f} | {r['diff']:+.2f} | {r['se']:.2f} | {_beyond(r)} |")
    return lines + [""]


def _beyond(r: dict) -> str:
    """Whether a difference lies beyond twice its standard error, and which way."""
    return ("better" if r["diff"] > 0 else "worse") if abs(r["diff"]) > 2 * r["se"] else "no"


def goals_section(result: dict, a) -> list[str]:
    """The goals of the issue the study answers (`--goals`), each met or missed by the numbers below it."""
    goals = GOALS[a.goals]
    rows = goals.judge(result, a)
    if not rows:
        return []
    return [f"## Goals (issue {goals.issue})", "", "| goal | measured | |", "|---|---|---|",
            *(f"| {goal} | {measured} | {'met' if ok else '**missed**'} |" for goal, measured, ok in rows), ""]


def variants_section(result: dict, a) -> list[str]:
    """The report: what else moves tau, on the first sampler's supernet."""
    first, ranking = a.samplers[0], result["ranking"]

    def cell(scope: str, name: str) -> str:
        return fmt(ranking[scope][name]["tau"]) if name in ranking.get(scope, {}) else ""

    names = [n for n, _ in rankers(a.samplers)[len(a.samplers):] if any(n in e for e in ranking.values())]
    if not names:
        return []
    lines = [f"## What else moves the ranking ({first} supernet)", "",
             f"The same {first} supernet scored another way, or trained twice as long; Kendall tau against the "
             "seeds' mean, with 90 % intervals.", "",
             "| change | tau across the space | tau inside the window |", "|---|---|---|",
             f"| none (as searched: top-1 on all {a.holdout} held-out images, BatchNorm recalibrated) | "
             + " | ".join(cell(scope, first) for scope in ("all", "window")) + " |"]
    for name in names:
        lines.append(f"| {VARIANT_LABELS[name.split('-', 1)[1]]} | "
                     + " | ".join(cell(scope, name) for scope in ("all", "window")) + " |")
    return lines + [""]


RANKER_LABELS = {"synflow": "synflow at initialisation", "naswot": "NASWOT at initialisation",
                 "grad_norm": "gradient norm at initialisation", "snip": "SNIP at initialisation",
                 "dss": "TF-TAS DSS at initialisation",
                 "finetune": f"{FINETUNE_STEPS} steps from inherited weights, then held-out top-1",
                 "finetune-loss": f"{FINETUNE_STEPS} steps from inherited weights, summed training loss",
                 "calibrated": "ridge on fitness, MACs, params and choice counts (leave-one-out)"}


def rankers_section(result: dict, a, budget: float) -> list[str]:
    """The rankers beyond weight sharing against the ground truth, their cost, and issue 21's goal."""
    ranking, seconds = result["ranking"], result.get("ranker_seconds", {})
    names = [n for n, _ in other_rankers() if any(n in e for e in ranking.values())]
    if not names:
        return []

    def cell(scope: str, name: str) -> str:
        return fmt(ranking[scope][name]["tau"]) if name in ranking.get(scope, {}) else ""

    lines = ["## Rankers beyond weight sharing", "",
             "Kendall tau against the seeds' mean, with 90 % intervals; seconds per architecture on one CPU "
             "thread as the study measured them (`psvit-nas evolve --fitness NAME` searches with any of them).", "",
             f"| ranker | seconds per architecture | tau across the space | tau inside the window "
             f"({format_macs(budget)} MACs +-10 %) |", "|---|---:|---|---|"]
    fixed = {"macs": "MACs alone", a.samplers[0]: f"supernet fitness ({a.samplers[0]})"}
    for name in [*fixed, *names]:
        label = fixed[name] if name in fixed else f"`{name}`: {RANKER_LABELS[name]}"
        cost = seconds.get(name.split("-")[0])
        lines.append(f"| {label} | {f'{cost:.2f}' if cost is not None else ''} | {cell('all', name)} | "
                     f"{cell('window', name)} |")
    return lines + ["", *_best_ranker(ranking, [a.samplers[0], *names]), ""]


def _best_ranker(ranking: dict, names: list[str]) -> list[str]:
    """The sentence that judges the best ranker (`goals.best_ranker`)."""
    if (best := best_ranker(ranking, names)) is None:
        return []
    return [f"Best across the space: **{best['name']}** at tau {best['tau']:.2f}, "
            + ", ".join(f"{m:+.2f} over MACs {'across the space' if s == 'all' else 'inside the window'}"
                        for s, m in best["margins"].items())
            + f". Goal (tau >= 0.7 and MACs + 0.2 in both): **{'met' if best['met'] else 'missed'}**."]


def composition_section(comp: dict[str, dict], samplers: tuple[str, ...]) -> list[str]:
    """The report: which cell choices the ground truth rewards, and which each supernet does."""
    if not comp:
        return []
    names = list(next(iter(comp.values())))
    return ["## What each ranking rewards", "",
            "Kendall tau between an architecture's number of cells of each choice and its ground truth (seeds' "
            "mean) or its supernet fitness, over every architecture; 90 % intervals. A supernet ranks well when "
            "its column follows the ground truth's.", "",
            "| cells of | " + " | ".join(f"fitness ({n})" if n in samplers else n for n in names) + " |",
            "|---|" + "---|" * len(names),
            *(f"| {choice} | " + " | ".join(fmt(taus[n]) for n in names) + " |" for choice, taus in comp.items()), ""]


def probe_section(probe: dict | None, a) -> list[str]:
    """Does the ground truth's order hold at another schedule?"""
    if not probe:
        return []
    longer = "longer" if probe["epochs"] > a.epochs else "shorter"
    mean = all("mean" in r for r in probe["rows"])
    lines = [f"## The ground truth at a {longer} schedule: {probe['epochs']} epochs against {a.epochs}", "",
             f"{len(probe['rows'])} of the spread architectures retrained once more (seed {a.seeds[0]}) for "
             f"{probe['epochs']} epochs, same recipe otherwise.", "",
             f"| arch | MACs | {a.epochs} epochs ({'mean of seeds' if mean else f'seed {a.seeds[0]}'}) | "
             f"{probe['epochs']} epochs | " + " | ".join(f"fitness {s}" for s in a.samplers) + " |",
             "|---|---:|---:|---:|" + "---:|" * len(a.samplers)]
    for r in probe["rows"]:
        lines.append(f"| {r['name']} | {format_macs(r['macs'])} | {r['mean' if mean else 'first_seed']:.2f} | "
                     f"{r['long']:.2f} | "
                     + " | ".join(f"{r[f'fitness_{s}']:.2f}" if f"fitness_{s}" in r else "" for s in a.samplers)
                     + " |")
    lines += ["", f"Kendall tau against the {probe['epochs']}-epoch order (one seed, few architectures: wide "
              "intervals): " + "; ".join(f"{k} {fmt(v)}" for k, v in probe["tau"].items()) + ".", ""]
    return lines


def progress_section(result: dict, path: Path) -> list[str]:
    """Kendall tau of each supernet's fitness against the ground truth as its training goes on."""
    progress = result.get("supernet_progress", {})
    if not progress:
        return []
    lines = ["## The supernets' ranking as they train", "", "Kendall tau of each supernet's fitness (its checkpoint "
             "after that many epochs) against the seeds' mean; 90 % intervals. Compute counts uniform-path epochs' "
             "worth of images: a sampler of k paths per step spends k of them per epoch. The change since the "
             "first checkpoint resamples the same architectures for both (paired bootstrap); the last column is "
             "tau of the fitness against MACs: how much the supernet has come to reward size.", "",
             "| sampler | epoch | compute | tau across the space | since the first checkpoint | tau inside the window "
             "| fitness against MACs |", "|---|---:|---:|---|---|---|---|"]
    for sampler, points in progress.items():
        lines += [f"| {sampler} | {p['epoch']} | {p['compute']} | {fmt(p['all'])} | "
                  f"{fmt(p['change']) if 'change' in p else ''} | {fmt(p['window'])} | {fmt(p['macs'])} |"
                  for p in points]
    progress_plot(progress, path)
    return lines + ["", f"![supernet ranking as it trains]({path.name})", ""]


def curves_section(result: dict, path: Path) -> list[str]:
    """Every retraining's validation top-1 after each epoch (records that keep their curve)."""
    runs = result.get("curves", {})
    if not runs:
        return []
    curves_plot(runs, path)
    return ["## Learning curves", "", f"Validation top-1 after every epoch of {len(runs)} retrainings (blue: "
            "spread, orange: window, bold: named extras).", "", f"![learning curves]({path.name})", ""]


def partial_section(partial: dict | None, a) -> list[str]:
    """How early in the schedule a retraining's order shows (what an ASHA rung can see)."""
    if not partial:
        return []
    first, second = partial["seeds"]
    lines = [f"## How early the order shows: after k of {a.epochs} epochs", "",
             f"Kendall tau of seed {first}'s validation top-1 after k epochs (inside the {a.epochs}-epoch schedule, "
             "its learning rate not yet annealed: what an ASHA rung sees) against the final top-1 of the same run "
             f"and of seed {second}, over {partial['archs']} architectures; 90 % intervals. At k = {a.epochs} the "
             "second column is the seed-against-seed tau.", "",
             f"| k | against the same run | against seed {second} |", "|---:|---|---|"]
    lines += [f"| {p['epoch']} | {fmt(p['same_run'])} | {fmt(p['other_seed'])} |" for p in partial["points"]]
    if partial.get("stale_bn"):
        lines += ["", f"{partial['stale_bn']} of these runs have Re-Attention cells and were trained before "
                  "validation re-estimated BatchNorm statistics (`--bn-batches`): their mid-schedule readings are "
                  "of running statistics that lag the weights while the learning rate is high: noise that a rung "
                  "of a run trained today does not read."]
    return lines + [""]


def after_search_section(after: dict, a) -> list[str]:
    """The report: finalize's pick against the search's top-1, the tuned recipe against the default."""
    final, tuned, retrains = after["finalize"], after["tune"], after["retrains"]
    if not final:
        return ["## After the search: `finalize` and `tune`", "",
                "Not run at this scale yet (they follow the searches). A 10-class run of this script: "
                "[results-after-search.md](results-after-search.md).", ""]
    lines = [f"## After the search: `finalize` and `tune` (Ray Tune, ASHA, {a.epochs}-epoch trials)", "",
             f"`finalize` retrained the evolution search's top {a.finalize_topk} from scratch on the supernet's "
             f"training images and scored them on its held-out ones; it picked search #{final['search_rank']} "
             f"(`{final['arch'].replace('|', '/')}`).", "",
             "| search # | search fitness | held-out top-1 after retraining | epochs (ASHA) |", "|---:|---:|---:|---:|"]
    for t in final["trials"]:
        lines.append(f"| {t['search_rank']} | {t['search_fitness']:.2f} | {t['score']:.2f} | {t['epochs']} |")
    lines.append("")
    if tuned:
        recipe = ", ".join(f"{k} {v:g}" for k, v in tuned["recipe"].items())
        lines += [f"`tune` tried {tuned['trials']} recipes on that architecture (the default first): best held-out "
                  f"top-1 {tuned['score']:.2f}" + (f" ({tuned['score_at_default_epochs']:.2f} at epoch "
                  f"{tuned['default_epochs']})" if tuned.get("score_at_default_epochs") is not None else "")
                  + f" against the default's {tuned['default_score']:.2f} ({tuned['default_epochs']} epochs); "
                  f"recipe: {recipe}." + (" It kept the default recipe, so finalize's pick's retrainings stand for "
                                          "the tuned one (retraining it again would repeat them to the bit)."
                                          if after.get("tune_kept_default") else ""), ""]
    if retrains:
        lines += ["Each retrained fully (validation top-1, each seed):", "", "| model | val top-1 (each seed) | mean |"
                  " arch |", "|---|---|---:|---|"]
        label = {"top1": "search top-1, default recipe", "finalized": "finalize's pick, default recipe",
                 "tuned": "finalize's pick, tuned recipe"}
        for name, r in retrains.items():
            lines.append(f"| {label[name]} | {', '.join(f'{v:.2f}' for v in r['seeds'])} | "
                         f"{statistics.fmean(r['seeds']):.2f} | `{r['arch'].replace('|', '/')}` |")
        lines.append("")
    return lines
