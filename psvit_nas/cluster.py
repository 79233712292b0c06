"""Starting Ray the way every psvit-nas command wants it: quiet, no dashboard, and trials at normal priority."""
from __future__ import annotations

import contextlib
import os
from typing import Callable, Iterator


def start_ray(address: str | None = None) -> bool:
    """Connect to `address` (e.g. auto) or start a local Ray; False when this process already had Ray running.

    Ray lowers its workers' priority (nice 15) by default, which starves trials beside any other process on the
    machine; psvit-nas's workers are the work itself, so they run at normal priority."""
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_worker_niceness", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
             configure_logging=False)
    return True


@contextlib.contextmanager
def ray_session(address: str | None = None, lazy: bool = False) -> Iterator[Callable[[], None]]:
    """Ray for the length of a `with` block, shut down after it if this block started it. With `lazy`, Ray
    starts only when the function the block receives is first called (nothing to run: no start-up cost)."""
    import ray

    started = False

    def need() -> None:
        nonlocal started
        started = start_ray(address) or started

    if not lazy:
        need()
    try:
        yield need
    finally:
        if started:
            ray.shutdown()
