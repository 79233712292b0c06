"""On-disk fitness cache keyed by (supernet checkpoint digest, fitness set, arch): no arch is scored twice."""
from __future__ import annotations

import json
from pathlib import Path

from ..space import Arch


class FitnessCache:
    """An append-only JSON-lines file, one line flushed per result; other keys' entries are ignored."""

    def __init__(self, path: str | Path, key: str) -> None:
        self.path, self.key = Path(path), key
        self.values: dict[str, float] = {}
        if self.path.is_file():
            text = self.path.read_text()
            if text and not text.endswith("\n"):  # end a line cut short by a kill
                with open(self.path, "a") as fh:
                    fh.write("\n")
            for line in text.splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:  # a line cut short by a kill
                    continue
                if entry.get("key") == key:
                    self.values[entry["arch"]] = entry["fitness"]

    def __contains__(self, arch: Arch) -> bool:
        return str(arch) in self.values

    def __getitem__(self, arch: Arch) -> float:
        return self.values[str(arch)]

    def record(self, arch: Arch, fitness: float) -> None:
        self.values[str(arch)] = fitness
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as fh:
            fh.write(json.dumps({"key": self.key, "arch": str(arch), "fitness": fitness}) + "\n")
