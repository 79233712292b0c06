"""The `psvit-nas` command: one module per command group (quickstart, space, train, models, search, retrain,
study, deploy)."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from ..errors import ConfigError
from . import deploy, models, quickstart, retrain, search, space, study, train
from .common import COMMANDS


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("psvit-nas")
    except PackageNotFoundError:  # run from a source tree that was not installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="psvit-nas", description="Neural architecture search for PSViT "
                                     "vision transformers (FLOPs are multiply-accumulates, MACs).")
    parser.add_argument("--version", action="version", version=f"psvit-nas {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (quickstart, space, train, models, search, retrain, study, deploy):
        group.add_parsers(sub)
    return parser


def _say(line: str) -> None:
    """One line on stderr in one write, so that the lines of DDP ranks sharing a pipe never run together."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    from ..train import NonFiniteLoss, Preempted
    from ..tune.trials import TrialsFailed

    try:
        COMMANDS[args.command](args)
    except ConfigError as err:
        _say(f"psvit-nas {args.command}: error: {err.one_line()}")
        return 2
    except Preempted as err:  # SIGTERM (Slurm, Kubernetes, spot instances) or Ctrl-C: checkpointed
        _say(f"psvit-nas {args.command}: {err}")
        return err.code
    except (NonFiniteLoss, TrialsFailed) as err:
        _say(f"psvit-nas {args.command}: error: {err}")
        return 1
    return 0


__all__ = ["build_parser", "main"]
