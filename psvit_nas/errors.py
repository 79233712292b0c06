"""The one error type users see: bad input, reported as a single line."""


class ConfigError(ValueError):
    """Bad user input. The message names the file, the field and what was expected."""

    def __init__(self, source: str | None, field: str | None, message: str) -> None:
        where = ": ".join(part for part in (source, field) if part)
        super().__init__(f"{where}: {message}" if where else message)
