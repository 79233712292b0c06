"""Where candidates are scored: in this process, or by Ray actors that each hold the supernet once."""
from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import torch

from ..cluster import start_ray
from ..space import Arch, SearchSpace
from ..supernet import Supernet
from ..rankers.fitness import Batches, Evaluator

OnResult = Callable[[Arch, float], None]


class LocalBackend:
    """Scores candidates one after another in this process."""

    def __init__(self, evaluator: Evaluator) -> None:
        self.evaluator = evaluator

    def map(self, archs: Sequence[Arch], on_result: OnResult | None = None) -> list[float]:
        scores = []
        for arch in archs:
            scores.append(self.evaluator(arch))
            if on_result:
                on_result(arch, scores[-1])
        return scores

    def close(self) -> None:
        pass


class _Worker:
    """A Ray actor: rebuilds the supernet once from weights in the object store, then scores archs."""

    def __init__(self, space: dict[str, Any], weights: dict[str, torch.Tensor], batches: Batches, calib: Batches,
                 device: str, threads: int) -> None:
        torch.set_num_threads(threads)
        net = Supernet(SearchSpace.from_dict(space))
        net.load_state_dict(weights)
        self.evaluator = Evaluator(net, batches, calib, device)

    def score(self, arch: str) -> float:
        return self.evaluator(Arch.parse(arch))

    def pid(self) -> int:
        return os.getpid()


class RayBackend:
    """Scores candidates in parallel on Ray actors: one per GPU, or one per CPU worker slot.

    The supernet weights and the fitness images go into the object store once; an actor that
    dies is replaced and its candidates are retried.
    """

    def __init__(self, supernet: Supernet, batches: Batches, calib: Batches, address: str | None = None,
                 workers: int | None = None, max_retries: int = 3) -> None:
        import ray

        self.ray = ray
        start_ray(address)
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        self.workers = workers or gpus or max(1, int(resources.get("CPU", 1)))
        self.options = {"num_gpus": 1, "num_cpus": 1} if gpus else {"num_cpus": 1}
        self.device = "cuda" if gpus else "cpu"
        self.refs = (supernet.space.to_dict(), ray.put({k: v.cpu() for k, v in supernet.state_dict().items()}),
                     ray.put(batches), ray.put(calib))
        self.remote = ray.remote(_Worker)
        self.actors = [self._spawn() for _ in range(self.workers)]
        self.max_retries = max_retries

    def _spawn(self):
        space, weights, batches, calib = self.refs
        return self.remote.options(**self.options).remote(space, weights, batches, calib, self.device, 1)

    def map(self, archs: Sequence[Arch], on_result: OnResult | None = None) -> list[float]:
        ray = self.ray
        scores: list[float | None] = [None] * len(archs)
        queue = list(range(len(archs)))
        retries = [0] * len(archs)
        running: dict[Any, tuple[int, int]] = {}  # object ref -> (arch index, actor slot)
        idle = list(range(len(self.actors)))
        while queue or running:
            while queue and idle:
                i, slot = queue.pop(0), idle.pop(0)
                running[self.actors[slot].score.remote(str(archs[i]))] = (i, slot)
            done, _ = ray.wait(list(running), num_returns=1)
            i, slot = running.pop(done[0])
            try:
                scores[i] = ray.get(done[0])
                if on_result:
                    on_result(archs[i], scores[i])
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError):
                retries[i] += 1
                if retries[i] > self.max_retries:
                    raise
                self.actors[slot] = self._spawn()  # replace the dead actor, retry its candidate
                queue.insert(0, i)
            idle.append(slot)
        return [float(s) for s in scores]

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)
