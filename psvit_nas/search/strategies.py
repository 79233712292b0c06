"""Search strategies, one class each behind one interface (as NNI keeps strategies apart from evaluators):
from the evaluated population, the candidates to evaluate next (`propose`) and who survives once they are
scored (`survivors`). Selection is DEAP's; its individuals are plain classes here, so importing this module
registers nothing in DEAP's global `creator`."""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from deap import base, tools

from ..space import Arch

if TYPE_CHECKING:
    from .evolution import Search


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


def individuals(search: "Search", archs: Sequence[Arch], with_cost: bool = False) -> list[Individual]:
    """The evaluated `archs` as DEAP individuals: fitness alone, or (fitness, cost) for Pareto selection."""
    return [Individual(a, AccuracyAndCost((search.fitness[str(a)], search.cost_of(a))) if with_cost
                       else Accuracy((search.fitness[str(a)],))) for a in archs]


class Strategy:
    """How a search goes from one evaluated generation to the next."""

    name = ""

    def propose(self, search: "Search", population: list[Arch]) -> list[Arch]:
        """The next generation, evaluated by the search before `survivors` sees it."""
        raise NotImplementedError

    def survivors(self, search: "Search", population: list[Arch]) -> list[Arch]:
        return population


class Evolution(Strategy):
    """SPOS's genetic algorithm: the top-k by fitness (DEAP's selBest) and their mutated or crossed children."""

    name = "evolution"

    def propose(self, search: "Search", population: list[Arch]) -> list[Arch]:
        cfg = search.cfg
        parents = [ind.arch for ind in tools.selBest(individuals(search, population), cfg.topk)]
        return parents + search.unique(parents, cfg.population - cfg.topk, lambda: search.vary(parents))


class RandomSearch(Strategy):
    """Fresh constrained samples, as many evaluations as the genetic algorithm."""

    name = "random"

    def propose(self, search: "Search", population: list[Arch]) -> list[Arch]:
        return search.unique([], search.cfg.population - search.cfg.topk, search.sample)


class NSGA2(Strategy):
    """NSGA-II over (fitness, cost): the population and its children, cut back by DEAP's selNSGA2."""

    name = "nsga2"

    def propose(self, search: "Search", population: list[Arch]) -> list[Arch]:
        offspring = search.cfg.population - search.cfg.topk  # as many evaluations as the GA
        return population + search.unique(population, offspring, lambda: search.vary(population))

    def survivors(self, search: "Search", population: list[Arch]) -> list[Arch]:
        chosen = tools.selNSGA2(individuals(search, population, with_cost=True), search.cfg.population)
        return [ind.arch for ind in chosen]


STRATEGIES: dict[str, type[Strategy]] = {s.name: s for s in (Evolution, RandomSearch, NSGA2)}
