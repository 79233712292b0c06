"""The ranking study's old entry point: `psvit-nas study` with this repository's defaults, so that the commands
at the top of docs/results*.md still work. New studies: `psvit-nas study --help`."""
import sys
from pathlib import Path

from psvit_nas.cli import main
from psvit_nas.cli.study import rerun_args

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = {"--data": str(ROOT.parent / "shared" / "data" / "tiny-imagenet-100"),
            "--config": str(ROOT / "search_spaces" / "tiny_imagenet.yaml"), "--out": str(ROOT / "docs" / "study"),
            "--work": str(ROOT / "runs" / "study"), "--results": str(ROOT / "docs" / "results-5ep.md"),
            "--goals": "ranking"}  # the studies this entry point ran answered issue 9's goals

if __name__ == "__main__":
    argv = sys.argv[1:]
    defaults = [part for option, value in DEFAULTS.items() if option not in argv for part in (option, value)]
    shown = " ".join(["python scripts/study_ranking.py", *rerun_args(argv)])
    sys.exit(main(["study", *argv, *defaults, "--command-line", shown]))
