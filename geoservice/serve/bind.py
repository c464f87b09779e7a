"""Bound parameters for composed SQL: every user value becomes a named placeholder, never SQL text."""

from __future__ import annotations

from typing import Any

from psycopg2 import sql


class Bindings:
    """Collects values for one statement; `add` returns the placeholder that stands for a value."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def add(self, value: Any, cast: str | None = None) -> sql.Composable:
        name = f"p{len(self.values)}"
        self.values[name] = value
        placeholder = sql.Placeholder(name)
        return sql.SQL("{}::{}").format(placeholder, sql.SQL(cast)) if cast else placeholder
