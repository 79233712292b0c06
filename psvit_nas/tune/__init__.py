"""Ray Tune after the search: retrain the top-k to find the real winner (`finalize`), and search the retraining
recipe (`tune_recipe`). Trials score on held-out training images, never on the validation set."""
from .finalize import finalize, top_archs
from .recipe_search import default_recipe, tune_recipe
from .trials import TrialSetup, run_experiment

__all__ = ["TrialSetup", "default_recipe", "finalize", "run_experiment", "top_archs", "tune_recipe"]
