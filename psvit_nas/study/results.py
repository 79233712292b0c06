"""The study's result, read from its records: one row per architecture (MACs, params, each seed's accuracy,
each ranker's score), rank correlations across the space and inside the window, the noise ceiling, what each
ranking rewards, the searches' winners, the schedule probe. Written to OUT/study.json."""
from __future__ import annotations

import statistics
from typing import Any, Callable

from ..rankers import PROXIES
from ..rankers.calibrated import predicted_by_the_others
from ..space import Arch
from .jobs import (VARIANTS, FinalizeJob, FinetuneJob, FitnessJob, ProxyJob, RetrainJob, SearchJob, SupernetJob,
                   TuneJob)
from .plan import SEARCHES, Plan
from .stats import (MIN_ARCHS, composition, difference, evaluation_share, interval, kendall, noise_ceiling,
                    paired_difference, seed_variance, spearman, unpack)

PARTIAL_EPOCHS = (1, 2, 3, 5, 10, 15, 20, 25)


def rankers(samplers: tuple[str, ...]) -> list[tuple[str, Callable[[dict], float | None]]]:
    """(name, score of a row) for every way the study ranks architectures by their supernet: each sampler's
    fitness, then the first sampler's variants (VARIANT_LABELS); a higher score means a better rank."""
    first = samplers[0]
    out = [(s, lambda r, s=s: r.get(f"fitness_{s}")) for s in samplers]
    out.append((f"{first}-loss", lambda r: -r[f"loss_{first}"] if f"loss_{first}" in r else None))
    return out + [(f"{first}-{v}", lambda r, v=v: r.get(f"fitness_{first}-{v}")) for v in VARIANTS if v]


def other_rankers() -> list[tuple[str, Callable[[dict], float | None]]]:
    """(name, score of a row) for the rankers beyond the supernets' top-1 (`rankers`): each proxy, the
    fine-tune ranker by its held-out top-1 and by its summed training loss, and the calibrated regression."""
    out = [(p, lambda r, p=p: r.get(f"proxy_{p}")) for p in PROXIES]
    return out + [("finetune", lambda r: r.get("finetune_top1")),
                  ("finetune-loss", lambda r: -r["finetune_loss"] if "finetune_loss" in r else None),
                  ("calibrated", lambda r: r.get("calibrated"))]


def _rows(plan: Plan) -> tuple[list[dict[str, Any]], dict[str, list]]:
    """One row per architecture whose every seed is retrained; per-image hits where every seed stored them."""
    s, records = plan.settings, plan.records
    fitness = [FitnessJob(sampler) for sampler in s.samplers] + \
        [FitnessJob(s.samplers[0], variant=v) for v in VARIANTS if v]
    scores = {job.key: records.get(job) or {} for job in fitness}
    proxies = {p: records.get(ProxyJob(p)) or {} for p in PROXIES}
    finetune = records.get(FinetuneJob(s.samplers[0])) or {}
    rows, hits = [], {}
    for a in plan.archs:
        accs = [records.get(plan.retrain(a.name, seed, a.arch)) for seed in s.seeds]
        if any(r is None for r in accs):
            continue
        if all("val_correct" in r for r in accs):
            hits[str(a.arch)] = [unpack(r["val_correct"]) for r in accs]
        cost = plan.space.cost_table(a.arch)
        row = {"group": a.group, "arch": str(a.arch), "macs": cost.macs, "params": cost.params,
               "seeds": [r["val_top1"] for r in accs]}
        row["mean"] = statistics.fmean(row["seeds"])
        row["all_seeds"] = row["seeds"] + [r["val_top1"] for seed in plan.seeds_of(a) if seed not in s.seeds
                                           if (r := records.get(plan.retrain(a.name, seed, a.arch)))]
        for key, scored in scores.items():
            if (value := scored.get(str(a.arch))) is not None:
                row[key.replace("fitness-", "fitness_", 1)] = value["top1"]
                row[key.replace("fitness-", "loss_", 1)] = value["loss"]
        row.update({f"proxy_{p}": scored[str(a.arch)]["score"] for p, scored in proxies.items()
                    if str(a.arch) in scored})
        if (value := finetune.get(str(a.arch))) is not None:
            row["finetune_top1"], row["finetune_loss"] = value["top1"], value["loss"]
        if a.named:
            row["name"] = a.name
        rows.append(row)
    return rows, hits


def _ranking(part: list[dict], hits: dict[str, list], seeds: tuple[int, ...], samplers: tuple[str, ...]) -> dict:
    mean = [r["mean"] for r in part]
    paired = len(seeds) > 1
    entry = {"archs": len(part),
             "self_tau": interval([r["seeds"][0] for r in part], [r["seeds"][1] for r in part], kendall)
             if paired else None,
             "ceiling": noise_ceiling([r["seeds"] for r in part]) if paired else None,
             "evaluation": evaluation_share([hits[r["arch"]] for r in part if r["arch"] in hits])}
    scores = {"macs": [r["macs"] for r in part], "params": [r["params"] for r in part]}
    for name, score in rankers(samplers) + other_rankers():
        if all(score(r) is not None for r in part):
            scores[name] = [score(r) for r in part]
    for name, values in scores.items():
        entry[name] = {"tau": interval(values, mean, kendall), "rho": interval(values, mean, spearman)}
    return entry


def analyse(plan: Plan) -> dict[str, Any]:
    """study.json: the rows, the rankings, what each ranking rewards, the winners, the after-search records,
    how far the plan is: plain data, all the report reads."""
    s, records = plan.settings, plan.records
    rows, hits = _rows(plan)
    calibrate(rows, plan.space, s.samplers[0])
    result = {"rows": rows, "seeds": list(s.seeds), "ranking": {}, "ranker_seconds": ranker_seconds(plan)}
    for scope in ("all", "window"):
        part = [r for r in rows if scope == "all" or r["group"] == "window"]
        if len(part) >= 3:
            result["ranking"][scope] = _ranking(part, hits, s.seeds, s.samplers)
    result["composition"] = composition(rows, rankers(s.samplers)[:len(s.samplers)] + other_rankers(), plan.space)
    winners = {}
    for strategy in SEARCHES:
        rec = records.get(SearchJob(strategy))
        accs = [records.get(RetrainJob(f"winner-{strategy}", seed)) for seed in s.seeds]
        if rec and all(accs):
            winners[strategy] = {**rec, "seeds": [r["val_top1"] for r in accs]}
    result["winners"] = winners
    after = {"top1": winners["evolution"]} if "evolution" in winners else {}
    jobs = [job for seed in s.seeds for job in plan.after_retrains(seed)]
    for name in dict.fromkeys(job.name for job in jobs):
        accs = [records.get(job) for job in jobs if job.name == name]
        if all(accs):
            after[name] = {"arch": accs[0]["arch"], "seeds": [r["val_top1"] for r in accs]}
    result["after_search"] = {"retrains": after, "finalize": records.get(FinalizeJob()),
                              "tune": records.get(TuneJob()), "tune_kept_default": plan.tune_kept_default()}
    if pays := search_pays(result, plan):
        result["search_pays"] = pays
    result["schedule_probe"] = schedule_probe(plan, rows)
    if progress := supernet_progress(plan, rows):
        result["supernet_progress"] = progress
    if curves := learning_curves(plan):
        result["curves"] = curves
    if partial := partial_training(plan):
        result["partial_training"] = partial
    if named := named_against_baseline(rows):
        result["named"] = named
    jobs = plan.all_jobs()
    result["plan"] = {"space": plan.space.name, "budget": plan.budget, "jobs": len(jobs),
                      "done": sum(job in records for job in jobs)}
    return result


def calibrate(rows: list[dict], space, first: str) -> None:
    """Each row's `calibrated` score: its seeds' mean as predicted from `rankers.features` (the first sampler's
    fitness, MACs, params, choice counts) by a ridge fitted on every other row (leave-one-out)."""
    part = [r for r in rows if f"fitness_{first}" in r]
    fitness, truth = [r[f"fitness_{first}"] for r in part], [r["mean"] for r in part]
    for row, predicted in zip(part, predicted_by_the_others(space, [r["arch"] for r in part], fitness, truth)):
        row["calibrated"] = predicted


def ranker_seconds(plan: Plan) -> dict[str, float]:
    """Mean seconds per architecture of each proxy and of the fine-tune ranker, as their records measured."""
    jobs = [ProxyJob(p) for p in PROXIES] + [FinetuneJob(plan.settings.samplers[0])]
    out = {}
    for job in jobs:
        if record := plan.records.get(job):
            out[job.proxy if isinstance(job, ProxyJob) else "finetune"] = statistics.fmean(v["seconds"] for v in
                                                                                    record.values())
    return out


def learning_curves(plan: Plan) -> dict[str, dict]:
    """Record key -> the group and per-epoch validation top-1 of every retraining that kept its curve."""
    out = {}
    for job, a in [(plan.retrain(a.name, seed, a.arch), a) for a in plan.archs for seed in plan.seeds_of(a)] \
            + list(zip(plan.probe_jobs(), plan.probe)):
        record = plan.records.get(job)
        if record and record.get("curve"):
            out[job.key] = {"group": "extra" if a.named else a.group, "curve": record["curve"]}
    return out


def schedule_probe(plan: Plan, rows: list[dict]) -> dict | None:
    """The probe's architectures at --probe-epochs against the study's schedule (the first seed, and the seeds'
    mean where every seed is in), and how MACs and each supernet rank the probe's order."""
    s = plan.settings
    by_arch = {r["arch"]: r for r in rows}
    probe = []
    for job, a in zip(plan.probe_jobs(), plan.probe):
        rec, first = plan.records.get(job), plan.records.get(plan.retrain(a.name, s.seeds[0], a.arch))
        if rec and first:
            cost = plan.space.cost_table(a.arch)
            row = by_arch.get(str(a.arch), {"group": a.group, "arch": str(a.arch), "macs": cost.macs,
                                            "params": cost.params})
            probe.append({"name": a.name, **row, "long": rec["val_top1"], "first_seed": first["val_top1"]})
    if len(probe) < 3:
        return None
    long = [r["long"] for r in probe]
    tau = {f"{s.epochs} epochs, seed {s.seeds[0]}": [r["first_seed"] for r in probe]}
    if all("mean" in r for r in probe):
        tau["short (mean of seeds)" if s.probe_epochs > s.epochs else f"{s.epochs} epochs (mean of seeds)"] = \
            [r["mean"] for r in probe]
    tau["macs"] = [r["macs"] for r in probe]
    tau.update({f"supernet fitness ({x})": [r.get(f"fitness_{x}") for r in probe] for x in s.samplers})
    return {"epochs": s.probe_epochs, "rows": probe,
            "tau": {k: interval(v, long, kendall) for k, v in tau.items() if None not in v}}


def supernet_progress(plan: Plan, rows: list[dict]) -> dict[str, list[dict]]:
    """Sampler -> one point per scored supernet checkpoint and the last (`--score-every`): Kendall tau of its
    fitness against the seeds' mean across the space and inside the window, the change across the space since
    the first checkpoint (paired bootstrap over architectures), and tau of its fitness against MACs: what
    training longer buys, and what the supernet comes to reward. `compute` counts uniform-path epochs' worth
    of images, the x-axis on which samplers of more paths per step compare."""
    from .jobs import supernet_epochs

    out = {}
    for sampler in plan.settings.samplers:
        epochs = plan.scored_epochs(sampler)
        if not epochs:
            continue
        paths, last = supernet_epochs(plan.settings, plan.space, SupernetJob(sampler))
        points, first = [], None
        for epoch in [*epochs, last]:
            scores = plan.records.get(FitnessJob(sampler, epochs=epoch if epoch != last else None))
            if scores:
                first = first or scores
                points.append({"epoch": epoch, "compute": epoch * paths, **_progress_point(scores, first, rows)})
        if points:
            out[sampler] = points
    return out


def _progress_point(scores: dict, first: dict, rows: list[dict]) -> dict:
    """`supernet_progress`'s statistics of one checkpoint's fitness records (`first`: the first checkpoint's)."""
    point = {}
    for scope in ("all", "window"):
        part = [r for r in rows if (scope == "all" or r["group"] == "window") and r["arch"] in scores]
        point[scope] = interval([scores[r["arch"]]["top1"] for r in part], [r["mean"] for r in part], kendall)
    fitness = [scores[r["arch"]]["top1"] for r in rows if r["arch"] in scores]
    point["macs"] = interval(fitness, [r["macs"] for r in rows if r["arch"] in scores], kendall)
    if scores is not first:  # the first checkpoint has no change to report
        part = [r for r in rows if r["arch"] in scores and r["arch"] in first]
        point["change"] = paired_difference([scores[r["arch"]]["top1"] for r in part],
                                            [first[r["arch"]]["top1"] for r in part], [r["mean"] for r in part],
                                            kendall)
    return point


def partial_training(plan: Plan) -> dict | None:
    """How early a retraining's order shows: Kendall tau of the first seed's validation top-1 after k epochs
    (a rung of ASHA inside the full schedule, learning rate not annealed) against the final top-1 of the same
    run (what ASHA's pick is judged by) and of the second seed (what the architecture is worth, free of that
    run's noise), over every architecture whose two first seeds kept their curves."""
    s = plan.settings
    if len(s.seeds) < 2:
        return None
    runs = []
    for a in plan.archs:
        recs = [plan.records.get(plan.retrain(a.name, seed, a.arch)) for seed in s.seeds[:2]]
        if all(r and len(r.get("curve", ())) == s.epochs for r in recs):
            runs.append(recs)
    if len(runs) < MIN_ARCHS:
        return None
    points = []
    for k in [e for e in PARTIAL_EPOCHS if e < s.epochs] + [s.epochs]:
        early = [first["curve"][k - 1] for first, _ in runs]
        points.append({"epoch": k, "same_run": interval(early, [first["val_top1"] for first, _ in runs], kendall),
                       "other_seed": interval(early, [second["val_top1"] for _, second in runs], kendall)})
    stale = sum(not first.get("bn_batches") and "reattn" in first["arch"] for first, _ in runs)
    return {"archs": len(runs), "seeds": list(s.seeds[:2]), "points": points, "stale_bn": stale}


def _named(rows: list[dict]) -> list[dict]:
    """The named architectures (`--extra`) with all their seeds (`--named-seeds`); the first is the baseline."""
    return [{**r, "seeds": r["all_seeds"]} for r in rows if r.get("name")]


def search_pays(result: dict, plan: Plan) -> dict | None:
    """Does the search pay: the delivered architecture (finalize's pick, default recipe) less the search's top-1,
    random search's winner and each named architecture, each difference of the seeds' means with its standard
    error, one retraining's variance pooled over every architecture of the study. Each carries its `role`:
    top1, random, baseline (the first named: the obvious model) or named."""
    delivered = result["after_search"]["retrains"].get("finalized")
    s2 = seed_variance(result["rows"])
    if not delivered or s2 is None:
        return None
    winners = result["winners"]
    others = [(label, role, winners[k]) for label, role, k in (("the search's top-1", "top1", "evolution"),
                                                               ("random search's winner", "random", "random"))
              if k in winners]
    others += [(f"`{r['name']}`", "baseline" if i == 0 else "named", r) for i, r in enumerate(_named(result["rows"]))]

    def entry(label: str, model: dict) -> dict:
        macs = plan.space.cost_table(Arch.parse(model["arch"])).macs
        return {"label": label, "arch": model["arch"], "macs": macs, "seeds": model["seeds"],
                "mean": statistics.fmean(model["seeds"])}

    return {"delivered": entry("finalize's pick", delivered), "seed_variance": s2,
            "others": [{**entry(label, m), "role": role,
                        **dict(zip(("diff", "se"), difference(delivered["seeds"], m["seeds"], s2)))}
                       for label, role, m in others]}


def named_against_baseline(rows: list[dict]) -> dict | None:
    """Each named architecture (`--extra`) against the first one named (the baseline): the difference of the
    means of all their seeds (`--named-seeds`) and its standard error, one run's variance pooled over every
    architecture of the study."""
    named = _named(rows)
    s2 = seed_variance(rows)
    if len(named) < 2 or s2 is None:
        return None
    base = named[0]

    def entry(r: dict) -> dict:
        return {"name": r["name"], "arch": r["arch"], "macs": r["macs"], "seeds": r["seeds"],
                "mean": statistics.fmean(r["seeds"])}

    out = [{**entry(r), **dict(zip(("diff", "se"), difference(r["seeds"], base["seeds"], s2)))}
           for r in named[1:]]
    return {"baseline": entry(base), "seed_variance": s2, "others": out}
