"""Search: evolution, NSGA-II and random search (DEAP) over a trained supernet, locally or on Ray."""
from .evolution import STRATEGIES, Record, Search, SearchConfig
from .fitness import Evaluator, FitnessSet, fitness_set_for, inherited_model
from .run import evolve

__all__ = ["STRATEGIES", "Record", "Search", "SearchConfig", "Evaluator", "FitnessSet", "fitness_set_for",
           "inherited_model", "evolve"]
