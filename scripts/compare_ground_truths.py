"""Two ground truths side by side (issue 33): the 30-class studies against the 100-class one, on the architectures
both retrained, matched by architecture string.

    python scripts/compare_ground_truths.py --a docs/study-settled/records docs/study-pareto/records \
        --b docs/study-100/records --labels "30 classes" "100 classes" --space search_spaces/tiny_imagenet.yaml

For each ground truth: seed-against-seed tau and the noise ceiling, the accuracy spread, tau of MACs and of every
ranker its records hold (the supernet at each checkpoint, raw and debiased, fine-tuning, proxies, and the calibrated
ridge on the last checkpoint's fitness, leave-one-out) against the seeds' mean, each ranker on the architectures it
scored; the best raw and the best debiased checkpoint's lead over MACs (picked with the truth, so optimistic); then
tau between the two truths. Checkpoints are named by their order, their share of the supernet's schedule in the
cell. Only the first two seeds of each architecture count (the studies' common design); with --min-seeds 1 (a study
still running) architectures with one seed join the rankers' taus, and seed against seed and the noise ceiling are
measured on those with both, their count in the cell.
Intervals are 90 % bootstrap intervals over architectures (`psvit_nas.study.stats`). Prints a markdown table.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from psvit_nas.space import Arch, SearchSpace  # noqa: E402
from psvit_nas.rankers.calibrated import predicted_by_the_others  # noqa: E402
from psvit_nas.rankers.debiased import SizeTrend  # noqa: E402
from psvit_nas.study.stats import fmt, interval, kendall, noise_ceiling, paired_difference  # noqa: E402

SEEDS = (0, 1)
RETRAIN = re.compile(r"retrain-(.+)-seed(\d+)\.json")  # a full-schedule retraining (no -eN suffix)


def ground_truth(folders: list[Path], min_seeds: int = len(SEEDS)) -> dict[str, list[float]]:
    """Architecture string -> top-1 of its seeds among SEEDS, for every architecture retrained with `min_seeds`."""
    seeds: dict[str, dict[int, float]] = {}
    for folder in folders:
        for path in sorted(folder.glob("retrain-*.json")):
            if (m := RETRAIN.fullmatch(path.name)) and int(m.group(2)) in SEEDS:
                record = json.loads(path.read_text())
                seeds.setdefault(record["arch"], {})[int(m.group(2))] = record["val_top1"]
    return {arch: [s[k] for k in SEEDS if k in s] for arch, s in seeds.items() if len(s) >= min_seeds}


def checkpoints(folders: list[Path], sampler: str) -> list[tuple[int, int, dict[str, float]]]:
    """(epochs, the schedule's epochs, arch -> supernet top-1) per checkpoint of the `sampler` supernet, in
    training order (the last is `fitness-<sampler>.json`)."""
    found = []
    for folder in folders:
        if not (supernet := folder / f"supernet-{sampler}.json").is_file():
            continue
        final = int(json.loads(supernet.read_text())["epochs"])
        for path in folder.glob(f"fitness-{sampler}*.json"):
            if match := re.fullmatch(rf"fitness-{sampler}(?:-ep(\d+))?\.json", path.name):
                record = json.loads(path.read_text())
                found.append((int(match[1]) if match[1] else final, final,
                              {a: v["top1"] for a, v in record.items() if isinstance(v, dict) and "top1" in v}))
    return sorted(found, key=lambda c: c[0])


def spread_archs(folders: list[Path]) -> set[str]:
    """The retrained `spread` architectures: the space's uniformly sampled paths, the debiased ranker's reference."""
    return {json.loads(p.read_text())["arch"] for f in folders for p in f.glob("retrain-spread*-seed0.json")}


def rankers(folders: list[Path], sampler: str, space: SearchSpace) -> dict[str, tuple[dict[str, float], str]]:
    """Ranker name -> (architecture string -> score, a note for its cell), higher ranking higher: the supernet
    at each checkpoint raw and debiased (its trend with MACs fitted on the spread paths), fine-tuning, proxies."""
    out: dict[str, tuple[dict[str, float], str]] = {}
    reference, macs = spread_archs(folders), lambda a: space.cost_table.macs(Arch.parse(a))
    marks = checkpoints(folders, sampler)
    for i, (epochs, final, scores) in enumerate(marks, 1):
        which, note = ("last checkpoint" if i == len(marks) else f"checkpoint {i}"), f" ({100 * epochs / final:.0f} %)"
        ref = [a for a in scores if a in reference]
        trend = SizeTrend.fit([macs(a) for a in ref], [scores[a] for a in ref])
        out[f"supernet, {which}"] = scores, note
        out[f"debiased supernet, {which}"] = {a: trend(macs(a), f) for a, f in scores.items()}, note
    for folder in folders:
        for path in sorted(folder.glob("*.json")):
            name, record = path.stem, json.loads(path.read_text())
            if name == f"finetune-{sampler}":
                out[name] = {a: v["top1"] for a, v in record.items() if isinstance(v, dict) and "top1" in v}, ""
            elif name.startswith("proxy-"):
                out[name] = {a: v["score"] for a, v in record.items() if isinstance(v, dict)}, ""
    return out


def calibrated(fitness: dict[str, float], truth: dict[str, float], space: SearchSpace) -> dict[str, float]:
    """Architecture -> its truth as the calibrated ranker predicts it from the supernet's `fitness` and the rest of
    `rankers.calibrated.features`, fitted on every other architecture of `truth` (leave-one-out)."""
    archs = [a for a in truth if a in fitness]
    predicted = predicted_by_the_others(space, archs, [fitness[a] for a in archs], [truth[a] for a in archs])
    return dict(zip(archs, predicted))


def measure(truth: dict[str, list[float]], scores: dict[str, tuple[dict[str, float], str]], archs: list[str],
            space: SearchSpace) -> dict[str, str]:
    """Each statistic of one ground truth on `archs`, formatted with its interval; then the supernet's best raw and
    best debiased checkpoint (picked with the truth, so optimistic) against MACs, paired over the same architectures."""
    seeds = [truth[a] for a in archs]
    means = [statistics.fmean(s) for s in seeds]
    macs = [space.cost_table.macs(Arch.parse(a)) for a in archs]
    pairs = [s for s in seeds if len(s) == len(SEEDS)]
    on = "" if len(pairs) == len(seeds) else f", {len(pairs)} archs with both seeds"
    out = {"architectures": str(len(archs)),
           "seed against seed": fmt(interval([s[0] for s in pairs], [s[1] for s in pairs], kendall)) + on,
           "noise ceiling": fmt(noise_ceiling(pairs)["ceiling"]) + on,
           "accuracy spread (min-max of means)": f"{min(means):.2f}-{max(means):.2f}",
           "macs": fmt(interval(macs, means, kendall))}
    if last := scores.get("supernet, last checkpoint"):
        scores = {**scores, "calibrated (leave-one-out)": (calibrated(last[0], dict(zip(archs, means)), space), "")}
    best: dict[str, tuple[float, str, list[int], list[float]]] = {}  # raw and debiased: the best checkpoint of each
    for name, (score, note) in scores.items():  # each ranker on the architectures it scored, with their count
        scored = [i for i, a in enumerate(archs) if a in score]
        if len(scored) < 3:
            continue
        x, y = [score[archs[i]] for i in scored], [means[i] for i in scored]
        out[name] = f"{fmt(interval(x, y, kendall))}{note}, {len(scored)} archs"
        kind = name.split(",")[0]
        if kind.endswith("supernet") and (kind not in best or kendall(x, y) > best[kind][0]):
            best[kind] = (float(kendall(x, y)), name + note, scored, x)
    for kind, (_, name, scored, x) in best.items():
        gain = paired_difference(x, [macs[i] for i in scored], [means[i] for i in scored], kendall)
        out[f"best {kind} checkpoint - macs (paired)"] = f"{fmt(gain)} ({name})"
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--a", nargs="+", type=Path, required=True, help="records folders of the first ground truth")
    p.add_argument("--b", nargs="+", type=Path, required=True, help="records folders of the second")
    p.add_argument("--labels", nargs=2, default=["A", "B"])
    p.add_argument("--space", default="search_spaces/tiny_imagenet.yaml")
    p.add_argument("--sampler", default="uniform", help="whose supernet and fine-tuning to read")
    p.add_argument("--min-seeds", type=int, choices=(1, 2), default=2, help="seeds an architecture needs to count "
                   "(1: a study still running; its truth is then the mean of the seeds it has)")
    args = p.parse_args()
    space = SearchSpace.from_yaml(args.space)
    truths = [ground_truth(args.a, args.min_seeds), ground_truth(args.b, args.min_seeds)]
    archs = sorted(set(truths[0]) & set(truths[1]), key=lambda a: space.cost_table.macs(Arch.parse(a)))
    if len(archs) < 3:
        sys.exit(f"compare_ground_truths: only {len(archs)} architectures have {args.min_seeds} of seeds {SEEDS} in "
                 "both; nothing to compare yet")
    sides = [measure(t, rankers(f, args.sampler, space), archs, space) for t, f in zip(truths, (args.a, args.b))]
    print(f"| Kendall tau against the seeds' mean, {len(archs)} architectures both retrained "
          f"(at least {args.min_seeds} seed{'s' * (args.min_seeds > 1)} each) | "
          f"{args.labels[0]} | {args.labels[1]} |\n|---|---|---|")
    for key in dict.fromkeys([*sides[0], *sides[1]]):
        print(f"| {key} | {sides[0].get(key, '')} | {sides[1].get(key, '')} |")
    means = [[statistics.fmean(t[a]) for a in archs] for t in truths]
    print(f"\nThe two ground truths against each other (seeds' means): tau {fmt(interval(*means, kendall))}")


if __name__ == "__main__":
    main()
