"""Search: evolution, NSGA-II and random search (DEAP) over a trained supernet and any ranker (`rankers`), locally
or on Ray."""
from .loop import STRATEGIES, Record, Search, SearchConfig
from .run import evolve

__all__ = ["STRATEGIES", "Record", "Search", "SearchConfig", "evolve"]
