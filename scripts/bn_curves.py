"""Validation with and without re-estimated BatchNorm statistics: one architecture trained twice with the same
seed, `--bn-batches 0` (the running statistics) and `--bn-batches N`. The weights train identically (the
suite checks it), so the two learning curves differ only by the statistics each validation reads.

    python scripts/bn_curves.py --arch spread8.yaml --data runs/study-settled/data-30classes-gt150 \\
        --epochs 10 --out runs/bn-curves

Prints per-epoch validation top-1 of both runs, and each curve's mean absolute epoch-to-epoch change. Each run
folder is resumable (rerun the same command).
"""
import argparse
import json
import statistics
from pathlib import Path

from psvit_nas.cli import main


def curve(folder: Path) -> list[float]:
    return [json.loads(line)["val_top1"] for line in (folder / "metrics.jsonl").read_text().splitlines()]


def run(args: argparse.Namespace, bn: int) -> list[float]:
    """Train (or finish training) the run with `--bn-batches bn`; its learning curve."""
    folder = Path(args.out) / f"bn{bn}"
    done = (folder / "metrics.jsonl").is_file() and len(curve(folder)) == args.epochs
    if not done:
        resume = ["--resume"] if (folder / "last.pt").is_file() else []
        code = main(["train", "--arch", args.arch, "--data", args.data, "--out", str(folder), "--epochs",
                     str(args.epochs), "--bn-batches", str(bn), "--seed", str(args.seed), *resume])
        if code:
            raise SystemExit(code)
    return curve(folder)


def jitter(values: list[float]) -> float:
    """Mean absolute change of validation top-1 from one epoch to the next (points)."""
    return statistics.fmean(abs(b - a) for a, b in zip(values, values[1:]))


def main_(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", required=True, help="architecture spec YAML (one with Re-Attention cells)")
    p.add_argument("--data", required=True)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--bn-batches", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="folder for the two runs, bn0/ and bnN/")
    args = p.parse_args(argv)
    stale, fresh = run(args, 0), run(args, args.bn_batches)
    print(f"| epoch | running statistics | re-estimated on {args.bn_batches} batches |\n|---:|---:|---:|")
    for epoch, (a, b) in enumerate(zip(stale, fresh), 1):
        print(f"| {epoch} | {a:.2f} | {b:.2f} |")
    print(f"| mean absolute change per epoch | {jitter(stale):.2f} | {jitter(fresh):.2f} |")


if __name__ == "__main__":
    main_()
