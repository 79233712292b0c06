"""Few-shot supernets against a study's ground truth (issue 21): score the study's architectures with the
sub-supernets of `psvit-nas few-shot` (each by the part its split assigns) and print Kendall tau against the
retrained means, with 90 % bootstrap intervals, beside the one-shot supernet and MACs alone.

    psvit-nas few-shot --supernet runs/study-gt150/supernet-uniform/last.pt --split count:identity:2 \\
        --epochs 7 --out runs/fewshot-gt150
    python scripts/fewshot_study.py --records docs/study-gt150/records \\
        --supernet runs/study-gt150/supernet-uniform/last.pt --fewshot runs/fewshot-gt150

The records' `fitness-uniform` and `fitness-uniform-x2` (a supernet trained twice as long, the compute the
one-shot supernet plus the parts had) are the baselines; the few-shot scores go to FEWSHOT/scores.json.
"""
import argparse
import json
import re
import statistics
import sys
from pathlib import Path

from psvit_nas.rankers import FewShotRanker
from psvit_nas.rankers import Evaluator, fitness_set_for
from psvit_nas.space import Arch
from psvit_nas.study.stats import fmt, interval, kendall
from psvit_nas.train import load_supernet


def ground_truth(records: Path, seeds: int) -> dict[str, tuple[str, float]]:
    """arch -> (group, mean retrained top-1 over its seeds), from the study's main-schedule records, for the
    architectures with at least `seeds` seeds."""
    accs: dict[str, list[float]] = {}
    groups: dict[str, str] = {}
    for path in sorted(records.glob("retrain-*-seed*.json")):
        if not (m := re.fullmatch(r"retrain-(spread|window)\d+-seed\d+\.json", path.name)):
            continue
        record = json.loads(path.read_text())
        accs.setdefault(record["arch"], []).append(record["val_top1"])
        groups[record["arch"]] = m.group(1)
    return {a: (groups[a], statistics.fmean(v)) for a, v in accs.items() if len(v) >= seeds}


def fewshot_scores(supernet: str, folder: Path, archs: list[str]) -> dict[str, float]:
    path = folder / "scores.json"
    scores = json.loads(path.read_text()) if path.is_file() else {}
    if missing := [a for a in archs if a not in scores]:
        net, state = load_supernet(supernet)
        batches, calib = fitness_set_for(state, supernet, None, None, None, 10).load(net.space)
        ranker = FewShotRanker(Evaluator(net, batches, calib), folder)
        for arch in missing:
            scores[arch] = ranker(Arch.parse(arch))
            print(f"part {ranker.part(Arch.parse(arch))}: {scores[arch]:.2f}  {arch}", file=sys.stderr)
        path.write_text(json.dumps(scores, indent=1))
    return scores


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", required=True)
    p.add_argument("--supernet", required=True)
    p.add_argument("--fewshot", required=True)
    p.add_argument("--fitness-records", help="where the one-shot supernets' fitness records are (default: "
                   "--records; another study's when this one has no supernet of its own yet)")
    p.add_argument("--min-seeds", type=int, default=2, help="architectures with at least this many seeds")
    args = p.parse_args()
    records, folder = Path(args.records), Path(args.fewshot)
    fitness = Path(args.fitness_records or args.records)
    truth = ground_truth(records, args.min_seeds)
    net, _ = load_supernet(args.supernet)
    rankers = {name: {a: v["top1"] for a, v in json.loads((fitness / f"{name}.json").read_text()).items()}
               for name in ("fitness-uniform", "fitness-uniform-x2") if (fitness / f"{name}.json").is_file()}
    rankers["fewshot"] = fewshot_scores(args.supernet, folder, list(truth))
    rankers["macs"] = {a: float(net.space.cost_table.macs(Arch.parse(a))) for a in truth}
    print(f"{len(truth)} architectures with {args.min_seeds}+ seeds; split {_manifest(folder)}\n")
    print("| ranked by | tau across the space | tau inside the window |\n|---|---|---|")
    for name, scores in rankers.items():
        cells = []
        for groups in (("spread", "window"), ("window",)):
            archs = [a for a in truth if truth[a][0] in groups and a in scores]
            cells.append(fmt(interval([scores[a] for a in archs], [truth[a][1] for a in archs], kendall)))
        print(f"| {name} | {cells[0]} | {cells[1]} |")


def _manifest(folder: Path) -> str:
    import yaml

    m = yaml.safe_load((folder / "fewshot.yaml").read_text())
    return f"{m['split']}, {m['parts']} parts x {m['epochs_per_part']} epochs"


if __name__ == "__main__":
    main()
