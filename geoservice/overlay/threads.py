"""Chunked execution of vectorized Shapely/NumPy work on a thread pool (GEOS releases the GIL)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from itertools import pairwise
from typing import Any

import numpy as np

#: Below this many items per chunk the per-call overhead starts to show.
MIN_CHUNK = 512
#: Chunks per thread: small enough pieces that a slow chunk does not leave the other threads idle.
CHUNKS_PER_THREAD = 6


def thread_count(threads: int | None) -> int:
    """`threads`, or the number of CPUs when None; at least 1."""
    if threads is None:
        return os.cpu_count() or 1
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    return int(threads)


def chunk_bounds(n: int, threads: int, min_chunk: int = MIN_CHUNK) -> list[tuple[int, int]]:
    """Split range(n) into contiguous (start, stop) chunks sized for `threads` workers."""
    if n == 0:
        return []
    count = max(1, min(threads * CHUNKS_PER_THREAD, -(-n // min_chunk)))
    if threads == 1:
        count = 1
    edges = np.linspace(0, n, count + 1).astype(np.int64)
    return [(int(a), int(b)) for a, b in pairwise(edges) if b > a]


class Pool:
    """A thread pool that runs inline when one thread is asked for (no executor overhead)."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="overlay") if threads > 1 else None

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        """Schedule fn(*args); with one thread it runs now and the future is already done."""
        if self._executor is not None:
            return self._executor.submit(fn, *args)
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # noqa: BLE001 — handed to the caller through the future, as an executor does
            future.set_exception(exc)
        return future

    def map_chunks(self, fn: Callable[[int, int], Any], n: int, min_chunk: int = MIN_CHUNK) -> list[Any]:
        """[fn(start, stop) for each chunk of range(n)], run on the pool, in chunk order."""
        futures = [self.submit(fn, a, b) for a, b in chunk_bounds(n, self.threads, min_chunk)]
        return [f.result() for f in futures]

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)


@contextmanager
def pool(threads: int | None) -> Iterator[Pool]:
    """A `Pool` of `threads` workers (None: one per CPU), shut down on exit."""
    p = Pool(thread_count(threads))
    try:
        yield p
    finally:
        p.close()


def concat(parts: Sequence[np.ndarray], dtype: Any) -> np.ndarray:
    """np.concatenate that also accepts an empty list."""
    if not parts:
        return np.empty(0, dtype=dtype)
    return np.concatenate(parts)
