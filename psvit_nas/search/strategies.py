"""Search strategies, one class each behind one interface (as NNI keeps strategies apart from evaluators).

A strategy owns how candidates are made: fresh samples inside the budget (`sample`), children of parents
(`vary`), its random state (`state_dict`); and from what has been evaluated, which candidates to evaluate next
(`propose`) and who survives once they are scored (`survivors`). It sees the evaluations only as an `Evaluated`,
never the search loop. Selection is DEAP's; its individuals are plain classes here, so importing this module
registers nothing in DEAP's global `creator`."""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from deap import base, tools

from ..limits import Budget, fits
from ..space import Arch, SearchSpace

if TYPE_CHECKING:
    from .loop import SearchConfig


class Accuracy(base.Fitness):
    weights = (1.0,)


class AccuracyAndCost(base.Fitness):
    weights = (1.0, -1.0)


class Individual(list):
    """A DEAP individual: [arch string], with its fitness."""

    def __init__(self, arch: Arch, fitness: base.Fitness) -> None:
        super().__init__([str(arch)])
        self.fitness = fitness

    @property
    def arch(self) -> Arch:
        return Arch.parse(self[0])


@dataclass(frozen=True)
class Evaluated:
    """What a strategy may read of a search: the fitness of every arch evaluated so far (by its string) and
    the cost that Pareto selection trades it against."""

    fitness: Mapping[str, float]
    cost: Callable[[Arch], float]


def individuals(evaluated: Evaluated, archs: Sequence[Arch], with_cost: bool = False) -> list[Individual]:
    """The evaluated `archs` as DEAP individuals: fitness alone, or (fitness, cost) for Pareto selection."""
    return [Individual(a, AccuracyAndCost((evaluated.fitness[str(a)], evaluated.cost(a))) if with_cost
                       else Accuracy((evaluated.fitness[str(a)],))) for a in archs]


class Strategy:
    """How a search makes candidates inside its budget and goes from one evaluated generation to the next."""

    name = ""

    def __init__(self, space: SearchSpace, cfg: SearchConfig, limits: Budget) -> None:
        self.space, self.cfg, self.limits = space, cfg, limits
        self.rng = random.Random(cfg.seed)

    # ----- making candidates --------------------------------------------------------------
    def sample(self) -> Arch:
        """A uniformly sampled arch inside the budget."""
        return self.space.sample(self.rng, self.limits)

    def vary(self, parents: Sequence[Arch]) -> Arch:
        """A mutated parent or a uniform-crossover child, inside the budget (rejection, then repair)."""
        cfg = self.cfg
        for _ in range(cfg.retries):
            if self.rng.random() < 0.5:
                child = self.space.mutate(self.rng.choice(parents), self.rng, cfg.mutation_prob)
            else:
                child = self.space.crossover(*self.rng.sample(list(parents), 2), self.rng)[0]
            if fits(self.limits, child):
                return child
        return self.space.repair(child, self.rng, self.limits)

    def unique(self, evaluated: Evaluated, existing: Sequence[Arch], count: int,
               make: Callable[[], Arch]) -> list[Arch]:
        """`count` new archs not in `existing` nor already evaluated (duplicates allowed after many tries)."""
        seen = set(existing) | {Arch.parse(a) for a in evaluated.fitness}
        out: list[Arch] = []
        for _ in range(count):
            arch = make()
            for _ in range(self.cfg.retries):
                if arch not in seen:
                    break
                arch = make()
            seen.add(arch)
            out.append(arch)
        return out

    # ----- generations --------------------------------------------------------------------
    def initial(self, evaluated: Evaluated) -> list[Arch]:
        """The first generation: a population of fresh samples."""
        return self.unique(evaluated, [], self.cfg.population, self.sample)

    def propose(self, evaluated: Evaluated, population: list[Arch]) -> list[Arch]:
        """The next generation, evaluated by the search before `survivors` sees it."""
        raise NotImplementedError

    def survivors(self, evaluated: Evaluated, population: list[Arch]) -> list[Arch]:
        return population

    # ----- state --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.getstate()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        version, internal, gauss = state["rng"]  # JSON turned the state's tuples into lists
        self.rng.setstate((version, tuple(internal), gauss))


class Evolution(Strategy):
    """SPOS's genetic algorithm: the top-k by fitness (DEAP's selBest) and their mutated or crossed children."""

    name = "evolution"

    def propose(self, evaluated: Evaluated, population: list[Arch]) -> list[Arch]:
        cfg = self.cfg
        parents = [ind.arch for ind in tools.selBest(individuals(evaluated, population), cfg.topk)]
        return parents + self.unique(evaluated, parents, cfg.population - cfg.topk, lambda: self.vary(parents))


class RandomSearch(Strategy):
    """Fresh constrained samples, as many evaluations as the genetic algorithm."""

    name = "random"

    def propose(self, evaluated: Evaluated, population: list[Arch]) -> list[Arch]:
        return self.unique(evaluated, [], self.cfg.population - self.cfg.topk, self.sample)


class NSGA2(Strategy):
    """NSGA-II over (fitness, cost): the population and its children, cut back by DEAP's selNSGA2."""

    name = "nsga2"

    def propose(self, evaluated: Evaluated, population: list[Arch]) -> list[Arch]:
        offspring = self.cfg.population - self.cfg.topk  # as many evaluations as the GA
        return population + self.unique(evaluated, population, offspring, lambda: self.vary(population))

    def survivors(self, evaluated: Evaluated, population: list[Arch]) -> list[Arch]:
        chosen = tools.selNSGA2(individuals(evaluated, population, with_cost=True), self.cfg.population)
        return [ind.arch for ind in chosen]


STRATEGIES: dict[str, type[Strategy]] = {s.name: s for s in (Evolution, RandomSearch, NSGA2)}
