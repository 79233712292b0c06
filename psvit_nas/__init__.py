"""psvit-nas: one-shot neural architecture search for PSViT-style vision transformers."""
from .cost import Cost, count_cost
from .errors import ConfigError
from .limits import Limit, budget
from .model import PSViT
from .space import Arch, ArchSpec, SearchSpace, format_macs, parse_budget
from .supernet import Supernet

__all__ = ["Arch", "ArchSpec", "ConfigError", "Cost", "Limit", "PSViT", "SearchSpace", "Supernet", "budget",
           "count_cost", "format_macs", "parse_budget"]
__version__ = "0.1.0"
