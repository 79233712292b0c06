"""Kill campaign (issue 22): interrupt train-supernet, evolve and finalize at seeded random moments with SIGKILL
or SIGTERM, rerun each with --resume until it finishes, and compare what it delivers with an uninterrupted run.
Prints a table; exits 1 when any interrupted run differs.

    python scripts/kill_campaign.py --kills 20 --terms 10 --seed 0 --work runs/kill-campaign

On digits: train-supernet (2 epochs, a checkpoint every 5 steps), evolve on its supernet, finalize the search's
top 2. Compared: the supernet's weights (bit-exact), the search's history (every architecture and fitness) and
finalize's pick and score.
"""
import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
DIGITS = str(ROOT / "search_spaces" / "digits.yaml")


def commands(work: Path) -> dict[str, list[str]]:
    """Each command, writing to {out}; evolve and finalize read the reference supernet and search."""
    return {"train-supernet": ["train-supernet", "--config", DIGITS, "--epochs", "2", "--checkpoint-every-steps",
                               "5", "--workers", "0", "--out", "{out}"],
            "evolve": ["evolve", "--supernet", str(work / "ref-train-supernet" / "last.pt"), "--flops", "1.2M",
                       "--population", "8", "--generations", "4", "--topk", "3", "--out", "{out}"],
            "finalize": ["finalize", "--search", str(work / "ref-evolve"), "--topk", "2", "--epochs", "2",
                         "--out", "{out}"]}


def delivered(name: str, out: Path) -> str:
    """A digest of what the command delivers."""
    if name == "train-supernet":
        state = torch.load(out / "last.pt", weights_only=True)["model"]
        return hashlib.sha1(b"".join(t.numpy().tobytes() for t in state.values())).hexdigest()[:12]
    if name == "evolve":
        rows = [(r["arch"], r["fitness"]) for r in map(json.loads, (out / "history.jsonl").read_text().splitlines())]
        return hashlib.sha1(json.dumps(rows).encode()).hexdigest()[:12]
    final = yaml.safe_load((out / "final.yaml").read_text())
    return hashlib.sha1(json.dumps([final["arch"], final["finalize"]["score"]]).encode()).hexdigest()[:12]


def start(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "psvit_nas.cli", *argv], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def interrupted(name: str, argv: list[str], at: float, sig: signal.Signals) -> tuple[str, int]:
    """Run, send `sig` after `at` seconds (SIGKILL to the whole process group, SIGTERM to the command, as a
    scheduler does), then rerun with --resume until it finishes; (what it delivered, runs it took)."""
    proc = start(argv)
    try:
        proc.wait(timeout=at)
    except subprocess.TimeoutExpired:
        if sig == signal.SIGKILL:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        proc.wait()
    runs = 1
    while proc.returncode != 0:
        runs += 1
        if runs > 5:
            raise RuntimeError(f"{name} did not finish after {runs - 1} resumes: {proc.stderr.read()[-500:]}")
        proc = start([*argv, "--resume"])
        proc.wait()
    return delivered(name, Path(argv[argv.index("--out") + 1])), runs


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=20, help="SIGKILL interruptions, spread over the commands")
    p.add_argument("--terms", type=int, default=10, help="SIGTERM interruptions")
    p.add_argument("--seed", type=int, default=0, help="which moments are drawn")
    p.add_argument("--work", default=str(ROOT / "runs" / "kill-campaign"))
    args = p.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    reference, seconds = {}, {}
    for name, argv in commands(work).items():  # in order: each reads the one before
        start_time = time.time()
        subprocess.run([sys.executable, "-m", "psvit_nas.cli", *[a.replace("{out}", str(work / f"ref-{name}"))
                                                                  for a in argv]], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)
        seconds[name], reference[name] = time.time() - start_time, delivered(name, work / f"ref-{name}")
    rng = random.Random(args.seed)
    plan = [signal.SIGKILL] * args.kills + [signal.SIGTERM] * args.terms
    names = list(commands(work))
    print("| # | command | signal | at (s) | runs | same as uninterrupted |\n|---:|---|---|---:|---:|---|")
    failures = 0
    for i, sig in enumerate(plan):
        name = names[i % len(names)]
        at = round(rng.uniform(0.05, 0.95) * seconds[name], 2)
        out = work / f"{name}-{i}"
        argv = [a.replace("{out}", str(out)) for a in commands(work)[name]]
        got, runs = interrupted(name, argv, at, sig)
        same = got == reference[name]
        failures += not same
        print(f"| {i} | {name} | {sig.name} | {at} | {runs} | {'yes' if same else '**no**'} |", flush=True)
        shutil.rmtree(out, ignore_errors=True)
    print(f"\n{len(plan) - failures} of {len(plan)} interrupted runs delivered the uninterrupted result "
          f"(reference times: {', '.join(f'{k} {v:.0f} s' for k, v in seconds.items())})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
