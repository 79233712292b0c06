"""`Supernet`: every choice of every cell, with independent weights; runs one path at a time."""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .model import PSViT, Trunk, init_weights
from .choices import make_cell
from .space import Arch, SearchSpace


class Supernet(Trunk):
    """Weight-sharing supernet. The architecture is an argument: `supernet(x, arch)` is re-entrant."""

    def __init__(self, space: SearchSpace, drop_path_rate: float = 0.0) -> None:
        super().__init__(space, drop_path_rate)
        self.stages = nn.ModuleList(
            nn.ModuleList(nn.ModuleDict({c: make_cell(c, self._cell_args(s, i)) for c in stage.choices})
                          for i in range(stage.cells))
            for s, stage in enumerate(space.stages))
        self.stages.apply(init_weights)

    def forward_features(self, x: Tensor, arch: Arch) -> Tensor:
        """Tokens after the final norm, through the path `arch`."""
        self.space.validate(arch)
        checkpointed = self.grad_checkpointing and self.training and torch.is_grad_enabled()
        x = self.stem(x)
        for s, (stage, choices) in enumerate(zip(self.stages, arch.stages)):
            if s:
                x = self.pools[s - 1](x)
            for cells, choice in zip(stage, choices):
                x = checkpoint(cells[choice], x, use_reentrant=False) if checkpointed else cells[choice](x)
        return self.norm(x)

    def forward(self, x: Tensor, arch: Arch) -> Tensor:
        return self.forward_head(self.forward_features(x, arch))

    def path_state_dict(self, arch: Arch) -> dict[str, Tensor]:
        """The weights of one path, keyed as in the `PSViT` of that arch."""
        self.space.validate(arch)
        out = {}
        for key, value in self.state_dict().items():
            parts = key.split(".")
            if parts[0] == "stages":
                if arch.stages[int(parts[1])][int(parts[2])] != parts[3]:
                    continue
                key = ".".join(parts[:3] + parts[4:])
            out[key] = value
        return out

    @torch.no_grad()
    def export(self, arch: Arch) -> PSViT:
        """A standalone `PSViT` holding a copy of this path's weights (and only those)."""
        model = PSViT(self.space.spec(arch))
        model.load_state_dict(self.path_state_dict(arch))
        return model.train(self.training)
