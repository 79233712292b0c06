"""Run every bad input of tests/test_bad_input.py and write docs/reliability.md: what each case is, the command,
its exit code and the one line it prints (temporary paths shown as TMP).

    python scripts/bad_inputs.py            # writes docs/reliability.md
"""
import contextlib
import io
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_bad_input import CASES  # noqa: E402  (the table the test suite holds)

from psvit_nas.cli import main  # noqa: E402
from psvit_nas.io import atomic_write_text  # noqa: E402

HEADER = """# Reliability: bad input

Every case below gives **one line and exit code 2**, never a traceback, and leaves no output behind
(`tests/test_bad_input.py` holds the table; `python scripts/bad_inputs.py` rewrote this page from it).
Files with extensions that are not images (`.txt`, `.DS_Store`, ...) inside class folders are skipped, as
torchvision's `ImageFolder` does; a file named like an image that does not decode is an error.

Runs that lose no work (issue 22): a run folder holding a run is refused without `--resume` or `--force`
(train-supernet, train, evolve, finalize, tune, analyze, quickstart; `study` always continues its records);
a second writer is refused and named; SIGTERM or SIGINT checkpoints at the current step and exits 143 / 130;
a checkpoint that cannot be written (a full disk) leaves the previous one intact; under DDP, a rank 0 that
cannot build the image cache stops every rank at once. `scripts/kill_campaign.py` interrupts train-supernet,
evolve and finalize at seeded moments (SIGKILL to the process group, or SIGTERM) and resumes each: on
2026-12-01, 30 of 30 interruptions (`--kills 20 --terms 10`: SIGKILL at 20 seeded moments, SIGTERM at 10,
across the three commands) resumed to the uninterrupted result (weights bit for bit, the same search history,
the same finalize pick and score; the table is in [kill-campaign.md](kill-campaign.md)).
`scripts/data_matrix.py` runs train-supernet and evolve over every data kind (digits, CIFAR-format batches,
an image folder, the Tiny-ImageNet layout) x `--cache auto|on|off` x `--workers 0|2`: on 2026-12-01, 48 of 48
runs ended with exit 0;
`tests/test_data_matrix.py` runs every (data kind, cache mode) pair with both worker counts covered pairwise.

| case | command | exit | what it prints |
|---|---|---:|---|
"""


def run(argv) -> tuple[str, int, str]:
    """(the command, its exit code, its stderr) of one case, in a fresh temporary folder."""
    with tempfile.TemporaryDirectory() as folder:
        args = argv(Path(folder))
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(args)
        clean = (lambda text: text.replace(folder, "TMP").replace(str(ROOT) + "/", ""))
        return clean(" ".join(["psvit-nas", *args])), code, clean(err.getvalue().strip())


def table() -> str:
    rows = []
    for name, argv, _ in CASES:
        command, code, line = run(argv)
        rows.append(f"| {name} | `{command}` | {code} | {line.replace('|', '/')} |")
    return HEADER + "\n".join(rows) + "\n"


if __name__ == "__main__":
    atomic_write_text(ROOT / "docs" / "reliability.md", table())
    print(f"wrote {ROOT / 'docs' / 'reliability.md'} ({len(CASES)} cases)")
