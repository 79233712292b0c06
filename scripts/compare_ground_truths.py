"""Two ground truths side by side (issue 33): the 30-class studies against the 100-class one, on the architectures
both retrained, matched by architecture string.

    python scripts/compare_ground_truths.py --a docs/study-settled/records docs/study-pareto/records \
        --b docs/study-100/records --labels "30 classes" "100 classes" --space search_spaces/tiny_imagenet.yaml

For each ground truth: seed-against-seed tau and the noise ceiling, the accuracy spread, tau of MACs and of every
ranker its records hold (supernet fitness at each checkpoint, proxies, fine-tuning) against the seeds' mean, each
ranker on the architectures it scored; then tau between the two truths. Only the first two seeds of each architecture count (the studies' common design).
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
from psvit_nas.study.stats import fmt, interval, kendall, noise_ceiling  # noqa: E402

SEEDS = (0, 1)
RETRAIN = re.compile(r"retrain-(.+)-seed(\d+)\.json")  # a full-schedule retraining (no -eN suffix)


def ground_truth(folders: list[Path]) -> dict[str, list[float]]:
    """Architecture string -> top-1 of seeds 0 and 1, for every architecture retrained with both."""
    seeds: dict[str, dict[int, float]] = {}
    for folder in folders:
        for path in sorted(folder.glob("retrain-*.json")):
            if (m := RETRAIN.fullmatch(path.name)) and int(m.group(2)) in SEEDS:
                record = json.loads(path.read_text())
                seeds.setdefault(record["arch"], {})[int(m.group(2))] = record["val_top1"]
    return {arch: [s[k] for k in SEEDS] for arch, s in seeds.items() if all(k in s for k in SEEDS)}


def rankers(folders: list[Path]) -> dict[str, dict[str, float]]:
    """Ranker name -> architecture string -> score, from the scoring records (higher ranks higher)."""
    out: dict[str, dict[str, float]] = {}
    for folder in folders:
        for path in sorted(folder.glob("*.json")):
            name, record = path.stem, json.loads(path.read_text())
            if name.startswith(("fitness-", "finetune-")):
                out[name] = {a: v["top1"] for a, v in record.items() if isinstance(v, dict) and "top1" in v}
            elif name.startswith("proxy-"):
                out[name] = {a: v["score"] for a, v in record.items() if isinstance(v, dict)}
    return out


def _natural(name: str) -> list:
    """fitness-uniform-ep20 before fitness-uniform-ep100."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def measure(truth: dict[str, list[float]], scores: dict[str, dict[str, float]], archs: list[str],
            space: SearchSpace) -> dict[str, str]:
    """Each statistic of one ground truth on `archs`, formatted with its interval."""
    seeds = [truth[a] for a in archs]
    means = [statistics.fmean(s) for s in seeds]
    out = {"architectures": str(len(archs)),
           "seed against seed": fmt(interval([s[0] for s in seeds], [s[1] for s in seeds], kendall)),
           "noise ceiling": fmt(noise_ceiling(seeds)["ceiling"]),
           "accuracy spread (min-max of means)": f"{min(means):.2f}-{max(means):.2f}",
           "macs": fmt(interval([space.cost_table.macs(Arch.parse(a)) for a in archs], means, kendall))}
    for name, score in sorted(scores.items(), key=lambda kv: _natural(kv[0])):  # a ranker on the architectures it scored, named with their count
        scored = [(score[a], m) for a, m in zip(archs, means) if a in score]
        if len(scored) >= 3:
            out[f"{name} ({len(scored)} architectures)"] = fmt(interval(*zip(*scored), kendall))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--a", nargs="+", type=Path, required=True, help="records folders of the first ground truth")
    p.add_argument("--b", nargs="+", type=Path, required=True, help="records folders of the second")
    p.add_argument("--labels", nargs=2, default=["A", "B"])
    p.add_argument("--space", default="search_spaces/tiny_imagenet.yaml")
    args = p.parse_args()
    space = SearchSpace.from_yaml(args.space)
    truths = [ground_truth(args.a), ground_truth(args.b)]
    archs = sorted(set(truths[0]) & set(truths[1]), key=lambda a: space.cost_table.macs(Arch.parse(a)))
    if len(archs) < 3:
        sys.exit(f"compare_ground_truths: only {len(archs)} architectures have seeds {SEEDS} in both; nothing "
                 "to compare yet")
    sides = [measure(t, rankers(f), archs, space) for t, f in zip(truths, (args.a, args.b))]
    print(f"| Kendall tau against the seeds' mean, {len(archs)} architectures both retrained | "
          f"{args.labels[0]} | {args.labels[1]} |\n|---|---|---|")
    for key in dict.fromkeys([*sides[0], *sides[1]]):
        print(f"| {key} | {sides[0].get(key, '')} | {sides[1].get(key, '')} |")
    means = [[statistics.fmean(t[a]) for a in archs] for t in truths]
    print(f"\nThe two ground truths against each other (seeds' means): tau {fmt(interval(*means, kendall))}")


if __name__ == "__main__":
    main()
