"""Unified 用地用海分类 (2023) codes: which count as construction land, which match a code list."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def _per_distinct(codes: np.ndarray, test: Callable[[str], bool]) -> np.ndarray:
    """Apply `test` once per distinct code (there are few) and spread the answers back over the rows."""
    text = np.array([code if isinstance(code, str) else "" for code in np.asarray(codes, dtype=object).tolist()], dtype=object)
    if len(text) == 0:
        return np.zeros(0, bool)
    distinct, inverse = np.unique(text.astype(str), return_inverse=True)
    return np.array([bool(code) and test(code) for code in distinct.tolist()], dtype=bool)[inverse.reshape(-1)]


def is_construction(codes: np.ndarray, construction_codes: list[str]) -> np.ndarray:
    """True where a unified code's level-1 class counts as construction land (None/'' never does)."""
    level1 = set(construction_codes)
    return _per_distinct(codes, lambda code: code[:2] in level1)


def matches_codes(codes: np.ndarray, wanted: list[str]) -> np.ndarray:
    """True where a code equals one of `wanted` or starts with it (a level-1 code matches its level-2 codes)."""
    prefixes = tuple(wanted)
    return _per_distinct(codes, lambda code: code.startswith(prefixes)) if prefixes else np.zeros(len(codes), bool)


def is_classified(codes: np.ndarray) -> np.ndarray:
    """True where a row has a unified code."""
    return _per_distinct(codes, lambda code: True)
