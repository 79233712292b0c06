"""Which finalize scheme picks the best of a top-k, measured on a study's records (no training).

Every subset of k architectures that have a 15-epoch complete schedule (seed 0, `-e15` records) and two 30-epoch
seeds plays a search's top-k. The schemes read seed 0 only; the truth is seed 1 at 30 epochs, an independent
retraining, so a scheme is not credited for reproducing its own run's noise.

- asha: ASHA as finalize ran it: every architecture read at epoch 15 of its 30-epoch run, the better half goes on
  to the end, the best at 30 wins.
- halving: successive halving over complete schedules: a complete 15-epoch run each, the better half retrained to
  30 epochs, the best at 30 wins.
- full: every architecture trained to 30 epochs (the reference, k retrainings).
- mid / short: one reading only: epoch 15 of the 30-epoch run, or the complete 15-epoch run.

Cost is in 30-epoch retraining equivalents. Prints a table; `--out` also writes it as markdown.

    python scripts/finalize_schemes.py docs/study-settled/records --k 5
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
from pathlib import Path


def load(records: Path) -> dict[str, dict[str, list[float] | float]]:
    """Name -> {mid (epoch 15 of seed 0's 30), short (seed 0's 15-epoch run), final (seed 0 at 30), truth (seed 1)}."""
    out = {}
    for short in sorted(records.glob("retrain-*-seed0-e15.json")):
        name = short.name[len("retrain-"):-len("-seed0-e15.json")]
        seed0, seed1 = records / f"retrain-{name}-seed0.json", records / f"retrain-{name}-seed1.json"
        if not (seed0.is_file() and seed1.is_file()):
            continue
        run = json.loads(seed0.read_text())
        out[name] = {"mid": run["curve"][14], "final": run["val_top1"],
                     "short": json.loads(short.read_text())["val_top1"],
                     "truth": json.loads(seed1.read_text())["val_top1"]}
    return out


def pick(rows: dict[str, dict], scheme: str) -> tuple[str, float]:
    """The architecture a scheme keeps and its cost in full retrainings."""
    names = list(rows)
    survivors = max(1, math.ceil(len(names) / 2))
    if scheme in ("mid", "short"):
        return max(names, key=lambda n: rows[n][scheme]), len(names) / 2
    if scheme == "full":
        return max(names, key=lambda n: rows[n]["final"]), len(names)
    rung = "mid" if scheme == "asha" else "short"
    kept = sorted(names, key=lambda n: -rows[n][rung])[:survivors]
    # asha continues the survivors' runs (half a retraining each to go); halving retrains them from scratch
    cost = len(names) / 2 + survivors * (0.5 if scheme == "asha" else 1.0)
    return max(kept, key=lambda n: rows[n]["final"]), cost


def measure(rows: dict[str, dict], k: int) -> list[dict]:
    table = []
    subsets = list(itertools.combinations(rows, k))
    for scheme in ("asha", "halving", "full", "mid", "short"):
        hits, regret, cost = [], [], 0.0
        for subset in subsets:
            part = {n: rows[n] for n in subset}
            chosen, cost = pick(part, scheme)
            best = max(part.values(), key=lambda r: r["truth"])["truth"]
            hits.append(part[chosen]["truth"] == best)
            regret.append(best - part[chosen]["truth"])
        table.append({"scheme": scheme, "best": statistics.fmean(hits), "regret": statistics.fmean(regret),
                      "cost": cost, "subsets": len(subsets)})
    return table


def markdown(table: list[dict], archs: int, k: int) -> str:
    lines = [f"All {table[0]['subsets']} top-{k} subsets of {archs} architectures; truth: seed 1 at 30 epochs.", "",
             "| scheme | picks the best | mean regret (points) | cost (30-epoch retrainings) |",
             "|---|---:|---:|---:|"]
    lines += [f"| {r['scheme']} | {100 * r['best']:.0f} % | {r['regret']:.2f} | {r['cost']:.2f} |" for r in table]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", type=Path)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rows = load(args.records)
    if len(rows) < args.k:
        raise SystemExit(f"{args.records}: {len(rows)} architectures with 15- and 30-epoch records, need {args.k}")
    text = markdown(measure(rows, args.k), len(rows), args.k)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
