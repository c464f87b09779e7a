"""What the server remembers between pages: where each page ends (for keyset paging) and match counts.

Clients page with `offset` (the `next` links pygeoapi and we write). After serving rows [o, o + n) of a
selection in some order, the sort key of the last row is kept under position o + n; the page at that
offset is then read with `WHERE (key) > (last key)` and no OFFSET, so page 1,000 costs what page 1 does.
A position not remembered (a jump, another process, expiry) starts from the nearest remembered one
before it and skips the rest with OFFSET: slower, never wrong. Entries expire after `ttl` seconds,
so reviewed conflicts (status changes) are seen within that time.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

#: count stored when a selection matched more rows than were counted: numberMatched stays unknown
TOO_MANY = -1


@dataclass
class _Selection:
    created: float
    count: int | None = None
    positions: dict[Hashable, dict[int, tuple[Any, ...]]] = field(default_factory=dict)


class PagingMemory:
    """A bounded, thread-safe LRU of selections (filters of one collection), each with its count and positions."""

    def __init__(self, max_selections: int = 4096, ttl: float = 60.0, max_positions: int = 4096) -> None:
        self.max_selections, self.ttl, self.max_positions = max_selections, ttl, max_positions
        self._entries: OrderedDict[Hashable, _Selection] = OrderedDict()
        self._lock = threading.Lock()

    def _entry(self, selection: Hashable, create: bool) -> _Selection | None:
        now = time.monotonic()
        entry = self._entries.get(selection)
        if entry is not None and now - entry.created > self.ttl:
            del self._entries[selection]
            entry = None
        if entry is None and create:
            entry = self._entries[selection] = _Selection(now)
            while len(self._entries) > self.max_selections:
                self._entries.popitem(last=False)
        if entry is not None:
            self._entries.move_to_end(selection)
        return entry

    def count(self, selection: Hashable) -> int | None:
        """The remembered number of matches (TOO_MANY when above the counting limit), or None."""
        with self._lock:
            entry = self._entry(selection, create=False)
            return entry.count if entry else None

    def remember_count(self, selection: Hashable, count: int) -> None:
        with self._lock:
            self._entry(selection, create=True).count = count

    def start(self, selection: Hashable, order: Hashable, offset: int) -> tuple[int, tuple[Any, ...] | None]:
        """The nearest remembered position at or before `offset` and the sort key of the row before it."""
        with self._lock:
            entry = self._entry(selection, create=False)
            known = entry.positions.get(order) if entry else None
            if not known or offset <= 0:
                return 0, None
            if offset in known:
                return offset, known[offset]
            positions = sorted(known)
            index = bisect.bisect_right(positions, offset) - 1
            return (positions[index], known[positions[index]]) if index >= 0 else (0, None)

    def remember_position(self, selection: Hashable, order: Hashable, position: int, key: tuple[Any, ...]) -> None:
        """After a page ending at `position` (rows before it: `position`), its last row's sort key."""
        with self._lock:
            known = self._entry(selection, create=True).positions.setdefault(order, {})
            known[position] = key
            if len(known) > self.max_positions:
                del known[min(known)]
