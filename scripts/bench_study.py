"""The study's retrainings one after another at all threads against parallel Ray Tune trials, side by side.

The same `--archs` architectures (spread over the space's MACs range) are retrained for `--epochs` epochs twice
through `psvit-nas study`'s runner: once with `--threads` threads per trial (one trial at a time when that is every
CPU), once with 1 thread per trial (as many trials at once as CPUs). Prints a table of wall time, images/s and
the speed-up; run it on an otherwise idle machine.

    python scripts/bench_study.py --data ../shared/data/tiny-imagenet-100 --classes 30 --archs 8 --epochs 3
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from psvit_nas.data import load_split
from psvit_nas.study import Study, StudySettings
from psvit_nas.study.runner import run_trials

ROOT = Path(__file__).resolve().parents[1]


def timed_run(args: argparse.Namespace, threads: int, folder: Path) -> tuple[float, int]:
    """Wall seconds and images trained for the study's retrainings at `threads` threads per trial."""
    settings = StudySettings(config=args.config, data=args.data, out=str(folder / "out"), work=str(folder / "work"),
                             results=str(folder / "results.md"), classes=args.classes, spread=args.archs, window=0,
                             seeds=(0,), epochs=args.epochs, probe_archs=0)
    study = Study(settings, threads=threads)
    jobs = study.ground_truth_jobs()
    images = len(load_split(study.setup.gt_data, "train", study.space)) * args.epochs * len(jobs)
    start = time.perf_counter()
    run_trials(jobs, study.setup, on_done=lambda job: print(f"  {job.key} done", flush=True))
    return time.perf_counter() - start, images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "tiny-imagenet-100"))
    parser.add_argument("--config", default=str(ROOT / "search_spaces" / "tiny_imagenet.yaml"))
    parser.add_argument("--classes", type=int, default=30)
    parser.add_argument("--archs", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="threads of the sequential run")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-study-") as tmp:
        for label, threads in ((f"sequential, {args.threads} threads per trial", args.threads),
                               ("parallel trials, 1 thread each", 1)):
            print(label, flush=True)
            seconds, images = timed_run(args, threads, Path(tmp) / str(threads))
            rows.append((label, seconds, images))
    base = rows[0][1]
    print(f"\n{args.archs} retrainings x {args.epochs} epochs, {args.classes} classes, {os.cpu_count()} CPUs\n")
    print("| run | wall (min) | images/s | speed-up |\n|---|---:|---:|---:|")
    for label, seconds, images in rows:
        print(f"| {label} | {seconds / 60:.1f} | {images / seconds:.0f} | {base / seconds:.2f}x |")


if __name__ == "__main__":
    main()
