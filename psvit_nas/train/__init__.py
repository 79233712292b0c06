"""Training: the loop shared by SPOS supernet training and standalone training (`loop`), its settings
(`config`), checkpoints and the weight loading every command uses (`checkpoint`), the optimizer and schedule
(`optim`), and the distributed setup and preemption (`distributed`)."""
from .checkpoint import SupernetCheckpoint, load_checkpoint, load_supernet, load_weights, read_supernet, save_checkpoint
from .config import TrainConfig
from .distributed import Dist, Preempted
from .loop import NonFiniteLoss, compile_cells, fit, fit_on
from .optim import param_groups, warmup_cosine

__all__ = ["Dist", "NonFiniteLoss", "Preempted", "TrainConfig", "compile_cells", "fit", "fit_on",
           "load_checkpoint", "load_supernet", "load_weights", "param_groups", "read_supernet", "save_checkpoint",
           "SupernetCheckpoint", "warmup_cosine"]
