"""How long to train the supernet, and how to read it, without the ground truth: measured on a study's records.

For each supernet checkpoint of the study (`fitness-<sampler>-epN.json` records, the last one without `-epN`):
- raw: τ of the supernet's fitness against the retrained truth (the study's mean top-1 over seeds);
- fitness ~ MACs: τ of the fitness against MACs, which needs no ground truth;
- debiased: τ of the fitness less its trend with log MACs (`rankers.debiased.SizeTrend`), the trend fitted on
  the `spread` group only, the study's uniformly sampled paths, as the ranker fits it on its reference paths;
- and the two readings' difference (a paired bootstrap over the same architectures).
Then the checkpoint a user without the ground truth would pick by each rule. All τ with 90 % intervals.

    python scripts/supernet_schedule.py docs/study-settled --out docs/supernet-schedule.md
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from psvit_nas.rankers.debiased import SizeTrend
from psvit_nas.study.stats import fmt, interval, kendall, paired_difference, value


def checkpoints(study: Path, sampler: str) -> list[tuple[int, dict]]:
    """(epochs, {arch: fitness record}) per checkpoint, in training order; the final one from supernet.json."""
    final = int(json.loads((study / "records" / f"supernet-{sampler}.json").read_text())["epochs"])
    found = []
    for path in (study / "records").glob(f"fitness-{sampler}*.json"):
        match = re.fullmatch(rf"fitness-{sampler}(?:-ep(\d+))?\.json", path.name)
        if match:
            found.append((int(match[1]) if match[1] else final, json.loads(path.read_text())))
    return sorted(found, key=lambda c: c[0])


def measure(study: Path, sampler: str) -> list[dict]:
    rows = json.loads((study / "study.json").read_text())["rows"]
    archs = [r["arch"] for r in rows]
    truth, macs = [r["mean"] for r in rows], [r["macs"] for r in rows]
    reference = [i for i, r in enumerate(rows) if r["group"] == "spread"]
    out = []
    for epochs, fitness in checkpoints(study, sampler):
        raw = [fitness[a]["top1"] for a in archs]
        trend = SizeTrend.fit([macs[i] for i in reference], [raw[i] for i in reference])
        debiased = [trend(m, f) for m, f in zip(macs, raw)]
        out.append({"epochs": epochs, "raw": interval(raw, truth, kendall), "macs": interval(raw, macs, kendall),
                    "debiased": interval(debiased, truth, kendall), "slope": trend.slope,
                    "gain": paired_difference(debiased, raw, truth, kendall)})
    return out


def table(points: list[dict], study: Path) -> str:
    lines = [f"Supernet checkpoints of `{study}`, {len(json.loads((study / 'study.json').read_text())['rows'])} "
             "architectures; τ with 90 % bootstrap intervals.", "",
             "| epochs' worth of images | τ raw fitness vs truth | τ fitness vs MACs (no truth needed) | slope "
             "(points per e-fold of MACs) | τ debiased vs truth | debiased − raw |", "|---|---|---|---|---|---|"]
    for p in points:
        lines.append(f"| {p['epochs']} | {fmt(p['raw'])} | {fmt(p['macs'])} | {p['slope']:.2f} | "
                     f"{fmt(p['debiased'])} | {fmt(p['gain'])} |")
    least = min(points, key=lambda p: value(p["macs"]))
    lines += ["", "Rules that need no ground truth, and the τ they end with:", "",
              f"- the last checkpoint, raw fitness (what a user gets today): {fmt(points[-1]['raw'])}",
              f"- the last checkpoint, debiased fitness: {fmt(points[-1]['debiased'])}",
              f"- the checkpoint whose fitness follows MACs least ({least['epochs']} epochs), raw fitness: "
              f"{fmt(least['raw'])}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path, help="a study folder (records/ and study.json)")
    parser.add_argument("--sampler", default="uniform")
    parser.add_argument("--out", type=Path, help="also write the table as markdown here")
    args = parser.parse_args()
    text = table(measure(args.study, args.sampler), args.study)
    print(text, end="")
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
