"""The error types users see. Each names where the problem is (file, key, row, layer) and what it is."""

from __future__ import annotations


class GeoserviceError(Exception):
    """Base of every error the CLI prints as one line without a traceback."""

    exit_code = 1


class ConfigError(GeoserviceError):
    """A configuration file or environment variable is wrong: names the file and the key."""

    def __init__(self, source: str, key: str | None, problem: str) -> None:
        self.source, self.key, self.problem = source, key, problem
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {problem}")


class DatabaseError(GeoserviceError):
    """The database cannot be reached, created or prepared; says why and what to do."""


class MigrationError(GeoserviceError):
    """A migration file failed or an applied one has changed."""


def rows_text(rows: list[int], limit: int = 10) -> str:
    """'row 5' / 'rows 1, 2, 3 and 17 more' for messages (rows are 1-based source rows)."""
    shown = ", ".join(str(row) for row in rows[:limit])
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return f"{'row' if len(rows) == 1 else 'rows'} {shown}{more}"


class IngestError(GeoserviceError):
    """A source file cannot be loaded: names the file, the rows where it applies, and the problem."""

    def __init__(self, source: str, problem: str, rows: list[int] | None = None) -> None:
        self.source, self.problem, self.rows = source, problem, rows or []
        where = f"{source}: {rows_text(self.rows)}" if self.rows else source
        super().__init__(f"{where}: {problem}")
