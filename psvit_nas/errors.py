"""The one error type users see: bad input, reported as a single line."""
from __future__ import annotations


class ConfigError(ValueError):
    """Bad user input. The message names the file, the field and what was expected."""

    def __init__(self, source: str | None, field: str | None = None, message: str | None = None) -> None:
        if message is None:  # re-raised with a finished message (e.g. from a DataLoader worker)
            super().__init__(source)
            return
        where = ": ".join(part for part in (source, field) if part)
        super().__init__(f"{where}: {message}" if where else message)

    def one_line(self) -> str:
        """The message; for an error re-raised from a worker process, its original last line."""
        last = str(self).strip().splitlines()[-1]
        return last.split("ConfigError: ", 1)[-1]
