"""Progress reporting for long stages: a rich progress bar for people, silence for tests and pipes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


#: the width of a console that is not a terminal (a pipe, a file): wide enough that no table is cut or wrapped
UNBOUNDED_WIDTH = 100_000


def person_console(stderr: bool = False) -> Console:
    """A console for a person: a terminal's own width; else (a pipe, a file) unbounded, so tables are never truncated."""
    console = Console(stderr=stderr)
    return console if console.is_terminal else Console(stderr=stderr, width=UNBOUNDED_WIDTH)


class Task(Protocol):
    """One bar: advance it by units of work."""

    def advance(self, amount: int) -> None: ...


class Reporter(Protocol):
    """Opens bars and prints lines."""

    def task(self, description: str, total: int | None) -> Iterator[Task]: ...

    def line(self, text: str) -> None: ...


class _SilentTask:
    def advance(self, amount: int) -> None:
        """Nothing to show."""


class SilentReporter:
    """No bars; lines are dropped (tests, libraries)."""

    @contextmanager
    def task(self, description: str, total: int | None) -> Iterator[Task]:
        yield _SilentTask()

    def line(self, text: str) -> None:
        """Dropped."""


class _RichTask:
    def __init__(self, progress: Progress, task_id: int) -> None:
        self._progress, self._id = progress, task_id

    def advance(self, amount: int) -> None:
        self._progress.advance(self._id, amount)


class RichReporter:
    """Progress bars on stderr (only when it is a terminal, unless forced)."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or person_console(stderr=True)

    @contextmanager
    def task(self, description: str, total: int | None) -> Iterator[Task]:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
        with Progress(*columns, console=self.console, transient=False, disable=not self.console.is_terminal) as progress:
            yield _RichTask(progress, progress.add_task(description, total=total))

    def line(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False)
