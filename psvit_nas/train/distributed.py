"""The process group under torchrun, and preemption: SIGTERM / SIGINT noted and agreed on by every rank."""
from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @classmethod
    def from_env(cls) -> "Dist":
        """Join the torchrun process group if there is one (NCCL on GPU, gloo on CPU)."""
        cuda = torch.cuda.is_available()
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls(device=torch.device("cuda" if cuda else "cpu"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if not dist.is_initialized():
            dist.init_process_group("nccl" if cuda else "gloo")
        device = torch.device(f"cuda:{local}") if cuda else torch.device("cpu")
        if cuda:
            torch.cuda.set_device(device)
        return cls(dist.get_rank(), world, device)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def gather(self, value: Any) -> list[Any]:
        if self.world == 1:
            return [value]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, value)
        return out


class Preempted(RuntimeError):
    """SIGTERM or SIGINT ended training after the current step, which was checkpointed; `code` is the exit
    status a shell gives that signal (143, 130)."""

    def __init__(self, signum: int, checkpoint: Path, step: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name} after step {step}, checkpointed in {checkpoint}; "
                         "add --resume to continue exactly")
        self.code = 128 + signum


class Signals:
    """SIGTERM and SIGINT, noted instead of killing the process, for the `with` block (main thread only:
    elsewhere, e.g. in a Ray Tune trial's thread, signals keep their handlers)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> "Signals":
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self.previous[signum] = signal.signal(signum, self._note)
        return self

    def _note(self, signum: int, frame: Any) -> None:
        self.signum = signum

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def agreed(self, env: Dist) -> int | None:
        """The signal any rank received (every rank stops at the same step)."""
        if env.world == 1:
            return self.signum
        flag = torch.tensor([self.signum or 0], device=env.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag.item()) or None
