"""One `evolve` run: load the supernet and fitness images, search, and write the run folder."""
from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Sequence

import yaml
from tqdm import tqdm

from ..data import CacheConfig
from ..errors import ConfigError
from ..io import atomic_write_text
from ..latency import LatencyTable
from ..limits import Budget
from ..space import Arch, SearchSpace, format_macs
from ..supernet import Supernet
from ..train import SupernetCheckpoint, read_supernet
from .backends import LocalBackend, RayBackend
from .cache import FitnessCache
from .loop import Search, SearchConfig
from ..io import file_digest
from ..rankers.fitness import Evaluator, FitnessSet
from ..rankers import FINETUNE_STEPS, SUPERNET_RANKERS, make_ranker
from ..rankers.debiased import SizeTrend, reference_paths, size_trend
from .report import plot_pareto, plot_progress, summary


def evolve(supernet: SupernetCheckpoint | str, cfg: SearchConfig, fitness: FitnessSet, out: str | Path, backend: str = "local",
           ray_address: str | None = None, workers: int | None = None, resume: bool = False,
           on_generation: Callable[[int], None] | None = None, cache: CacheConfig | None = None,
           latency: LatencyTable | None = None, ranker: str = "debiased", records: str | None = None,
           finetune_steps: int = FINETUNE_STEPS, fewshot: str | None = None) -> Search:
    """Search `supernet` (read once, or its checkpoint's path) under `cfg`'s budgets (MACs, and latency predicted by `latency`),
    scoring candidates with `ranker` (`rankers.RANKERS`); write best.yaml, history and plots to `out`."""
    out = Path(out)
    supernet = supernet if isinstance(supernet, SupernetCheckpoint) else read_supernet(supernet)
    net, supernet_path = supernet.net, supernet.path
    space = net.space
    limits = _check(space, cfg, latency, supernet_path, backend, ranker)
    batches, calib = fitness.load(space, cache)
    scorer = make_ranker(ranker, Evaluator(net, batches, calib), lambda: calib, records, finetune_steps, fewshot)
    cache = FitnessCache(out / "cache.jsonl", _cache_key(supernet.digest, fitness, ranker, records, fewshot))
    runner = LocalBackend(scorer) if backend == "local" else RayBackend(net, batches, calib, ray_address, workers)
    trend = _size_trend(space, runner) if ranker == "debiased" else None
    atomic_write_text(out / "config.yaml", yaml.safe_dump(
        {"command": " ".join(sys.argv), "supernet": str(supernet_path), "backend": backend, "fitness": ranker,
         "records": records, "fewshot": fewshot, "search": asdict(cfg),
         "latency_table": latency.source if latency else None, "fitness_set": fitness.to_dict(),
         "size_trend": asdict(trend) if trend else None, "space": space.to_dict()}, sort_keys=False))
    bar = tqdm(total=cfg.evaluations, desc=f"{cfg.strategy} (evaluations)", disable=not sys.stderr.isatty(),
               dynamic_ncols=True)

    def on_result(arch: Arch, value: float) -> None:
        cache.record(arch, trend(space.cost_table.macs(arch), value) if trend else value)
        bar.update(1)

    evaluation_s = 0.0

    def score(archs: Sequence[Arch]) -> list[float]:
        nonlocal evaluation_s
        missing = [a for a in archs if a not in cache]
        bar.update(len(archs) - len(missing))
        start = time.perf_counter()
        runner.map(missing, on_result)
        evaluation_s += time.perf_counter() - start
        return [cache[a] for a in archs]

    def generation_done(generation: int) -> None:
        bar.set_postfix(generation=f"{generation + 1}/{cfg.generations}", best=f"{search.best.fitness:.2f}")
        if on_generation:
            on_generation(generation)

    search = Search(space, cfg, score, out, generation_done, latency, limits)
    start = time.perf_counter()
    try:
        search.run(resume)
    finally:
        bar.close()
        runner.close()
    search.timing = {"search_s": time.perf_counter() - start, "evaluation_s": evaluation_s}
    _write_results(search, net, fitness, supernet_path, out, ranker, trend)
    return search


def _check(space: SearchSpace, cfg: SearchConfig, latency: LatencyTable | None, supernet_path: str, backend: str,
           ranker: str) -> Budget:
    """The search's limits; one line for a latency table of another space, a budget no architecture fits, or a
    ranker Ray can't run."""
    if latency is not None:
        latency.check_space(space, supernet_path)
    if backend == "ray" and ranker not in SUPERNET_RANKERS:
        raise ConfigError(None, "--backend", f"--fitness {ranker} scores in this process; use --backend local")
    return cfg.budget(space, latency, source=supernet_path)


def _size_trend(space: SearchSpace, runner: LocalBackend | RayBackend) -> SizeTrend:
    """The supernet's fitness against MACs on reference paths, scored first (`rankers.debiased`)."""
    paths = reference_paths(space)
    trend = size_trend(space, paths, runner.map(paths))
    print(f"size trend of the supernet's fitness over {len(paths)} reference paths: {trend.slope:+.2f} points per "
          "e-fold of MACs, taken out of every candidate's fitness (--fitness supernet keeps it)")
    return trend


def _cache_key(supernet_digest: str, fitness: FitnessSet, ranker: str, records: str | None,
               fewshot: str | None) -> str:
    """What a cached fitness depends on: the supernet, the fitness images, the ranker, its records or parts."""
    fitted = [file_digest(p) for p in sorted(Path(records).glob("retrain-*.json"))] if records else []
    fitted += [file_digest(p) for p in sorted(Path(fewshot).glob("part*/last.pt"))] if fewshot else []
    return hashlib.sha1(json.dumps([supernet_digest, fitness.to_dict(), ranker, fitted]).encode()
                        ).hexdigest()[:16]


def _write_results(search: Search, net: Supernet, fitness: FitnessSet, supernet_path: str, out: Path,
                   ranker: str, trend: SizeTrend | None) -> None:
    cfg, best, front = search.cfg, search.best, search.pareto_front()
    cost = search.table(Arch.parse(best.arch))
    budget = {"max_macs": cfg.max_macs, "min_macs": cfg.min_macs}
    extra = {}
    if search.latency:
        table = search.latency
        budget["max_latency_ms"] = cfg.max_latency_ms
        extra = {"latency_ms": best.latency_ms, "latency_table": {
            "path": table.source, "device": table.device, "batch_size": table.batch_size, "threads": table.threads,
            "measured": table.environment.get("measured")}}
    if trend:  # the supernet's own top-1 too, as eval --split search reads it
        extra.update(supernet_top1=trend.undo(cost.macs, best.fitness), size_trend=asdict(trend))
    spec = net.space.spec(Arch.parse(best.arch), fitness=best.fitness, macs=cost.macs, params=cost.params, **extra,
                          budget=budget, strategy=cfg.strategy, ranker=ranker, supernet=str(supernet_path),
                          fitness_set=fitness.to_dict(), command=" ".join(sys.argv))
    spec.to_yaml(out / "best.yaml")
    title = f"{cfg.strategy} on {net.space.name}"
    plot_progress(search.state.history, out / "progress.png", title)
    plot_pareto(search.state.history, front, out / "pareto.png", title,
                cfg.max_latency_ms if search.latency else cfg.max_macs, by_latency=search.latency is not None)
    if cfg.strategy == "nsga2":
        atomic_write_text(out / "pareto.jsonl", "".join(json.dumps(asdict(r)) + "\n" for r in front))
    print(summary(search.state.history, front, best))
    predicted = f"  {best.latency_ms:.3g} ms predicted" if best.latency_ms is not None else ""
    print(f"best: {ranker} fitness {best.fitness:.4g}  {format_macs(best.macs)} MACs{predicted}  "
          f"-> {out / 'best.yaml'}")
    timing = search.timing
    print(f"search took {timing['search_s']:.1f} s, {100 * timing['evaluation_s'] / timing['search_s']:.1f} % of it "
          "scoring candidates")
