"""Measured latency tables: one entry per (stage, choice) cell plus the stem, pooling steps and head.

The shape is cost.py's: an architecture's predicted latency is a sum of table entries, so
the search can check a latency budget as cheaply as a MACs budget. Each entry is timed on
the device it is meant for, after warm-up, as the median of repeated runs. The plain sum
misses what only the whole model pays (the Python calls between parts, caches that parts
timed alone find warm), so `build_table` scales the sum by the median ratio of measured to
summed latency on calibration architectures, then checks the prediction on other ones.
"""
from __future__ import annotations

import json
import platform
import random
import re
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .errors import ConfigError
from .io import atomic_write_text
from .limits import Limit
from .space import Arch, SearchSpace


def parse_latency(text: str | float, field_name: str = "--latency") -> float:
    """'25ms', '0.8s', '1500us' or a plain number of milliseconds -> milliseconds."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*(ms|s|us|µs)?\s*", str(text))
    if not match or float(match.group(1)) <= 0:
        raise ConfigError(None, field_name, f"cannot parse latency {text!r}; expected a positive number with an "
                          "optional unit ms, s or us, such as 25ms")
    return float(match.group(1)) * {None: 1.0, "ms": 1.0, "s": 1e3, "us": 1e-3, "µs": 1e-3}[match.group(2)]


def format_ms(ms: float) -> str:
    return f"{ms:.3g} ms"


def time_call(fn: Callable[[], Any], device: str, warmup: int = 3, repeats: int = 15) -> float:
    """Median wall time of `fn()` in milliseconds, after `warmup` calls (CUDA synchronised)."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


@dataclass
class LatencyTable:
    """Per-part latency (ms) of one space on one device at one batch size and thread count."""

    space: dict[str, Any]
    device: str
    batch_size: int
    threads: int
    cells: list[dict[str, float]]
    fixed: dict[str, float]
    scale: float = 1.0
    environment: dict[str, str] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)
    source: str | None = field(default=None, compare=False, repr=False)

    def predict(self, arch: Arch) -> float:
        """Predicted end-to-end latency of `arch` in ms."""
        return self.limit().value(arch)

    def plain_sum(self, arch: Arch) -> float:
        """The sum of `arch`'s entries, before calibration."""
        return self.predict(arch) / self.scale

    def limit(self, high: float | None = None, low: float | None = None) -> Limit:
        """The table as a search `Limit` on predicted latency (the fit folded into its entries)."""
        cells = tuple({c: self.scale * v for c, v in t.items()} for t in self.cells)
        fixed = self.scale * sum(self.fixed.values())
        return Limit("latency", "--latency", cells, fixed, high, low, format_ms)

    def check_space(self, space: SearchSpace, source: str | None = None) -> None:
        """Refuse a table measured for another space."""
        if self.space != space.to_dict():
            raise ConfigError(self.source, "space", f"table measured for space {self.space.get('name')!r}, not for "
                              f"the space {space.name!r} of {source or 'this run'}; measure one with psvit-nas latency")

    def save(self, path: str | Path) -> None:
        data = {k: v for k, v in asdict(self).items() if k != "source"}
        atomic_write_text(path, json.dumps(data, indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "LatencyTable":
        path = Path(path)
        if not path.is_file():
            raise ConfigError(str(path), None, "latency table not found; measure one with psvit-nas latency")
        try:
            data = json.loads(path.read_text())
            table = cls(**data, source=str(path))
            SearchSpace.from_dict(table.space)
            stages = table.space["stages"]
            if len(table.cells) != len(stages) or any(set(t) != set(st["choices"]) for t, st in
                                                       zip(table.cells, stages)):
                raise ValueError("cells do not match the space's choices")
        except (ValueError, TypeError, KeyError) as err:
            raise ConfigError(str(path), "cells" if "cells" in str(err) else None,
                              f"not a psvit-nas latency table ({str(err).splitlines()[0]})") from None
        return table


def environment(device: str, threads: int) -> dict[str, str]:
    info = {"python": sys.version.split()[0], "torch": torch.__version__, "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "threads": str(threads),
            "measured": time.strftime("%Y-%m-%d %H:%M:%S")}
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


class _Head(nn.Module):
    def __init__(self, trunk: nn.Module) -> None:
        super().__init__()
        self.trunk = trunk

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk.forward_head(self.trunk.norm(x))


def _parts(space: SearchSpace, batch: int, device: str):
    """(name, module, input, copies) for every part of the space, in table order.

    A cell is timed as a whole stage of that choice (`cells` copies with their own weights, divided
    by `cells`): timed alone, one cell's weights stay in the CPU cache from run to run, which the
    cells of a real model, each with its own weights, do not.
    """
    from .model import Trunk
    from .choices import CellArgs, make_cell

    trunk = Trunk(space).to(device).eval()
    widths = [st.width for st in space.stages]
    tokens = lambda s: torch.randn(batch, space.tokens(s), widths[s], device=device)  # noqa: E731
    yield "stem", trunk.stem, torch.randn(batch, space.in_chans, space.image_size, space.image_size, device=device), 1
    for s in range(1, len(space.stages)):
        yield f"pool{s + 1}", trunk.pools[s - 1], tokens(s - 1), 1
    yield "head", _Head(trunk), tokens(len(space.stages) - 1), 1
    for s, st in enumerate(space.stages):
        for choice in st.choices:
            args = CellArgs(st.width, st.heads, st.mlp_ratio, space.token_shapes[s], space.has_cls)
            stage = nn.Sequential(*(make_cell(choice, args) for _ in range(st.cells)))
            yield (s, choice), stage.to(device).eval(), tokens(s), st.cells


def measure_arch(space: SearchSpace, arch: Arch, batch: int, device: str, repeats: int = 15) -> float:
    """Measured end-to-end latency (ms) of `arch`'s standalone model."""
    from .model import PSViT

    model = PSViT.from_spec(space.spec(arch)).to(device).eval()
    x = torch.randn(batch, space.in_chans, space.image_size, space.image_size, device=device)
    with torch.inference_mode():
        return time_call(lambda: model(x), device, repeats=repeats)


def error_stats(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
    """Share of predictions within +-10 %, and the median and 90th-percentile relative error."""
    err = np.abs(np.asarray(predicted) / np.asarray(measured) - 1)
    return {"within_10pct": float((err <= 0.10).mean()), "median_error": float(np.median(err)),
            "p90_error": float(np.percentile(err, 90)), "archs": len(err)}


def build_table(space: SearchSpace, device: str = "cpu", batch_size: int = 1, threads: int | None = None,
                calibrate: int = 20, validate: int = 50, repeats: int = 15, seed: int = 0,
                progress: bool = True) -> LatencyTable:
    """Measure every part of `space`, fit the sum to `calibrate` archs, check it on `validate` others."""
    threads = threads or torch.get_num_threads()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        cells: list[dict[str, float]] = [{} for _ in space.stages]
        fixed: dict[str, float] = {}
        parts = list(_parts(space, batch_size, device))
        with torch.inference_mode():
            for name, module, x, copies in tqdm(parts, desc="latency table (parts)", disable=not progress):
                ms = time_call(lambda: module(x), device, repeats=repeats) / copies
                if isinstance(name, tuple):
                    cells[name[0]][name[1]] = ms
                else:
                    fixed[name] = ms
        table = LatencyTable(space.to_dict(), device, batch_size, threads, cells, fixed,
                             environment=environment(device, threads))
        rng = random.Random(seed)
        archs = [space.sample(rng) for _ in range(calibrate + validate)]
        measured = [measure_arch(space, a, batch_size, device, repeats)
                    for a in tqdm(archs, desc="latency table (whole models)", disable=not progress)]
        sums = np.array([table.plain_sum(a) for a in archs])
        if calibrate:  # one robust factor: the median ratio of measured to summed latency
            table.scale = float(np.median(np.asarray(measured[:calibrate]) / sums[:calibrate]))
        held_out = slice(calibrate, None)
        if validate:
            table.validation = {
                "predicted": error_stats([table.predict(a) for a in archs[held_out]], measured[held_out]),
                "plain_sum": error_stats(sums[held_out], measured[held_out]),
                "calibration_archs": calibrate,
                "archs": [{"arch": str(a), "measured_ms": m, "predicted_ms": table.predict(a)}
                          for a, m in zip(archs[held_out], measured[held_out])]}
        return table
    finally:
        torch.set_num_threads(previous)
