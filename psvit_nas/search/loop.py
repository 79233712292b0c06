"""The search loop over generations, whatever the strategy: its settings, its history, its saved state.

The strategy (`strategies`) makes every candidate, each inside the budget (constrained sampling, then
variation with rejection and a retry cap, then repair), and chooses each generation. Fitness values come
through `score`, which the caller backs with an on-disk cache, so no arch is evaluated twice. State (the
loop's and the strategy's) is saved after every generation; a resumed search reaches the same result as an
uninterrupted one.
"""
from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from deap import tools

from ..errors import ConfigError
from ..io import atomic_write_text
from ..latency import LatencyTable
from ..limits import Budget, budget
from ..space import Arch, SearchSpace
from .strategies import STRATEGIES, Evaluated, individuals


@dataclass
class SearchConfig:
    strategy: str = "evolution"
    population: int = 50
    generations: int = 20
    topk: int = 10
    mutation_prob: float = 0.1
    max_macs: float | None = None
    min_macs: float | None = None
    max_latency_ms: float | None = None
    seed: int = 0
    retries: int = 50

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ConfigError(None, "--strategy", f"expected one of {list(STRATEGIES)}, got {self.strategy!r}")
        if not 0 < self.topk < self.population:
            raise ConfigError(None, "--topk", f"expected 0 < topk < population ({self.population}), got {self.topk}")

    def budget(self, space: SearchSpace, latency: LatencyTable | None = None, source: str | None = None) -> Budget:
        """The search's limits (MACs, and latency predicted by `latency`), checked against `space` once."""
        if self.max_latency_ms is not None and latency is None:
            raise ConfigError(None, "--latency", "a latency budget needs --latency-table")
        others = [latency.limit(self.max_latency_ms)] if self.max_latency_ms is not None else []
        return budget(space, self.max_macs, self.min_macs, *others, source=source)

    @property
    def evaluations(self) -> int:
        """Candidates per run: the GA's count, which random search and NSGA-II match."""
        return self.population + (self.generations - 1) * (self.population - self.topk)


@dataclass
class Record:
    generation: int
    arch: str
    fitness: float
    macs: int
    params: int
    latency_ms: float | None = None  # predicted, when the search has a latency table


@dataclass
class SearchState:
    generation: int = -1
    population: list[str] = field(default_factory=list)
    strategy: dict[str, Any] = field(default_factory=dict)  # the strategy's state_dict: its random state
    history: list[Record] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)


Score = Callable[[Sequence[Arch]], list[float]]


class Search:
    """One search run in `out`: `run()` returns the history; `best` and `pareto_front()` read it."""

    def __init__(self, space: SearchSpace, cfg: SearchConfig, score: Score, out: str | Path,
                 on_generation: Callable[[int], None] | None = None, latency: LatencyTable | None = None,
                 limits: Budget | None = None) -> None:
        if latency is not None and limits is None:
            latency.check_space(space)
        self.latency = latency
        self._predicted = latency.limit() if latency else None  # built once: the search loop calls it per arch
        self.limits = cfg.budget(space, latency) if limits is None else limits  # `evolve` has built them
        self.space, self.cfg, self.score, self.out = space, cfg, score, Path(out)
        self.on_generation = on_generation
        self.table = space.cost_table
        self.strategy = STRATEGIES[cfg.strategy](space, cfg, self.limits)
        self.state = SearchState(config=self._config())
        self.fitness: dict[str, float] = {}
        self.timing: dict[str, float] = {}

    # ----- the run ----------------------------------------------------------------------
    def run(self, resume: bool = False) -> list[Record]:
        if resume and (self.out / "search_state.json").is_file():
            self._load()
        elif resume:  # stopped before its first generation was saved: nothing to continue
            print(f"psvit-nas: no saved search in {self.out} yet; starting from the first generation",
                  file=sys.stderr)
        population = [Arch.parse(a) for a in self.state.population]
        for generation in range(self.state.generation + 1, self.cfg.generations):
            population = self.strategy.initial(self.evaluated) if generation == 0 else \
                self.strategy.propose(self.evaluated, population)
            self._evaluate(population, generation)
            population = self.strategy.survivors(self.evaluated, population)
            self.state.generation, self.state.population = generation, [str(a) for a in population]
            self._save()
            if self.on_generation:
                self.on_generation(generation)
        return self.state.history

    # ----- what the strategy reads -------------------------------------------------------
    @property
    def evaluated(self) -> Evaluated:
        return Evaluated(self.fitness, self.cost_of)

    def cost_of(self, arch: Arch) -> float:
        """The cost NSGA-II and the Pareto front trade accuracy against: predicted latency if known, else MACs."""
        return self._predicted.value(arch) if self._predicted else self.table.macs(arch)

    def _evaluate(self, archs: Sequence[Arch], generation: int) -> None:
        new = list(dict.fromkeys(a for a in archs if str(a) not in self.fitness))
        for arch, value in zip(new, self.score(new)):
            self.fitness[str(arch)] = value
            cost = self.table(arch)
            latency = self._predicted.value(arch) if self._predicted else None
            self.state.history.append(Record(generation, str(arch), value, cost.macs, cost.params, latency))

    # ----- results ------------------------------------------------------------------------
    @property
    def best(self) -> Record:
        """The fittest evaluated arch (ties: the cheaper, then the earlier)."""
        return max(self.state.history, key=lambda r: (r.fitness, -r.macs))

    def pareto_front(self) -> list[Record]:
        """Accuracy-vs-cost (latency or MACs) non-dominated records of everything evaluated (DEAP)."""
        archs = [Arch.parse(r.arch) for r in self.state.history]
        front = tools.sortNondominated(individuals(self.evaluated, archs, with_cost=True), len(archs),
                                       first_front_only=True)[0]
        keep = {ind[0] for ind in front}
        return sorted((r for r in self.state.history if r.arch in keep),
                      key=lambda r: self.cost_of(Arch.parse(r.arch)))

    # ----- state --------------------------------------------------------------------------
    def _config(self) -> dict[str, Any]:
        """What a resumed search must share with the saved one: the settings and the space."""
        table = {k: v for k, v in asdict(self.latency).items() if k not in ("validation", "source")} \
            if self.latency else None
        return {**asdict(self.cfg), "space": self.space.to_dict(), "latency_table": table}

    def _save(self) -> None:
        self.state.strategy = self.strategy.state_dict()
        data = asdict(self.state)
        atomic_write_text(self.out / "search_state.json", json.dumps(data))
        atomic_write_text(self.out / "history.jsonl", "".join(json.dumps(asdict(r)) + "\n"
                                                              for r in self.state.history))

    def _load(self) -> None:
        path = self.out / "search_state.json"
        data = json.loads(path.read_text())
        config = self._config()
        changed = sorted(k for k in set(data["config"]) | set(config) if data["config"].get(k) != config.get(k))
        if changed:  # a setting absent from an older state counts as unset
            raise ConfigError(str(path), ", ".join(changed),
                              "differs from this command's settings; resume with the same settings")
        strategy = data.get("strategy") or {"rng": data["rng"]}  # a state saved before strategies held theirs
        self.strategy.load_state_dict(strategy)
        self.state = SearchState(data["generation"], data["population"], strategy,
                                 [Record(**r) for r in data["history"]], data["config"])
        self.fitness = {r.arch: r.fitness for r in self.state.history}
