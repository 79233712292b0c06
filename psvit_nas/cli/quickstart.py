"""`quickstart`: the whole pipeline on the embedded digits, offline, in one run folder (a few minutes on 2 CPUs)."""
from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from ..errors import ConfigError
from ..io import move_aside
from .common import COMMANDS, command

SPACE = Path(__file__).resolve().parents[2] / "search_spaces" / "digits.yaml"


def _steps(out: Path, budget: str, fast: bool) -> list[tuple[str, list[str]]]:
    """(what it does, the psvit-nas command line) of each step."""
    epochs, trial_epochs = ("2", "2") if fast else ("12", "6")
    population, generations = ("6", "2") if fast else ("16", "5")
    return [
        ("describe the search space", ["space", "--config", str(out / "space.yaml")]),
        ("train the weight-sharing supernet (SPOS)", [
            "train-supernet", "--config", str(out / "space.yaml"), "--data", "digits", "--epochs", epochs,
            "--out", str(out / "supernet")]),
        (f"search it by evolution under {budget} MACs", [
            "evolve", "--supernet", str(out / "supernet" / "last.pt"), "--flops", budget, "--population", population,
            "--generations", generations, "--topk", "3" if fast else "4", "--out", str(out / "search")]),
        ("retrain the top 3 briefly with Ray Tune + ASHA and keep the best", [
            "finalize", "--search", str(out / "search"), "--topk", "3", "--epochs", trial_epochs,
            "--out", str(out / "final")]),
        ("export the winner as ONNX (runs without psvit-nas)", [
            "export", "--arch", str(out / "final" / "final.yaml"), "--weights", "WINNER", "--out",
            str(out / "model.onnx")]),
        ("evaluate it on the validation split", [
            "eval", "--arch", str(out / "final" / "final.yaml"), "--weights", "WINNER", "--data", "digits"]),
    ]


@command("quickstart")
def cmd_quickstart(args: argparse.Namespace) -> None:

    from ..space import ArchSpec, SearchSpace, format_macs
    from . import build_parser

    out = Path(args.out)
    if not SPACE.is_file():
        raise ConfigError(str(SPACE), None, "not found; quickstart runs from a source checkout (pip install -e .)")
    if (out / "supernet").exists():
        if not args.force:
            raise ConfigError(str(out), None, "already holds a quickstart; add --force to start it again (the old "
                              "one is moved aside, not deleted)")
        print(f"moved the earlier quickstart to {move_aside(out)}")
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SPACE, out / "space.yaml")
    space = SearchSpace.from_yaml(out / "space.yaml")
    budget = format_macs(space.median_macs())
    parser, start = build_parser(), time.perf_counter()
    steps = _steps(out, budget, args.fast)
    for i, (what, argv) in enumerate(steps, 1):
        if "WINNER" in argv:
            weights = ArchSpec.from_yaml(out / "final" / "final.yaml").metrics["finalize"]["weights"]
            argv = [weights if a == "WINNER" else a for a in argv]
            steps[i - 1] = (what, argv)
        print(f"\n[{i}/{len(steps)}] {what}: psvit-nas {' '.join(argv)}", flush=True)
        COMMANDS[argv[0]](parser.parse_args(argv))
    print(f"\nquickstart finished in {time.perf_counter() - start:.0f} s; everything is in {out}/:")
    for path in sorted(out.iterdir()):
        print(f"  {path.name}{'/' if path.is_dir() else ''}")
    print("\nEach step by hand (see README.md for the options):")
    for what, argv in steps:
        print(f"  psvit-nas {' '.join(argv)}")
    print(f"  psvit-nas train --arch {out / 'final' / 'final.yaml'} --data digits --epochs 30 --out {out / 'retrain'}"
          "   # retrain the winner fully")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """This group's subcommands and their arguments."""
    p = sub.add_parser("quickstart", help="the whole pipeline on scikit-learn's digits, offline, in one folder")
    p.add_argument("--out", default="runs/quickstart", help="run folder (default: runs/quickstart)")
    p.add_argument("--force", action="store_true", help="start again in a folder that holds a quickstart")
    p.add_argument("--fast", action="store_true", help="fewer epochs and candidates (for tests)")
