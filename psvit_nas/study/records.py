"""The study's records: one JSON file per finished job in OUT/records, written atomically. A job with a record
is never run again, so a killed study loses no finished work and a rerun does only what is missing."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TYPE_CHECKING

from ..io import atomic_write_text

if TYPE_CHECKING:
    from .jobs import Job


class Records:
    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def path(self, job: "Job") -> Path:
        return self.folder / f"{job.key}.json"

    def get(self, job: "Job") -> dict[str, Any] | None:
        path = self.path(job)
        return json.loads(path.read_text()) if path.is_file() else None

    def put(self, job: "Job", record: dict[str, Any]) -> dict[str, Any]:
        atomic_write_text(self.path(job), json.dumps(record, indent=1))
        return record

    def __contains__(self, job: "Job") -> bool:
        return self.path(job).is_file()
