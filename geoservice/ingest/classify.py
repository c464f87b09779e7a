"""Class codes: crosswalk CSVs (config/classification/) mapping source codes to 用地用海分类 (2023) codes."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from geoservice.db import bulk
from geoservice.errors import ConfigError

UNIFIED = "unified"
UNIFIED_FILE = "unified_2023.csv"


@dataclass(frozen=True)
class LandClass:
    """One 用地用海 (2023) class."""

    code: str
    name_zh: str
    name_en: str


@dataclass(frozen=True)
class Crosswalk:
    """source code -> unified code, read from one CSV."""

    name: str
    mapping: dict[str, str | None]

    def classify(self, codes: pa.Array | np.ndarray) -> tuple[pa.Array, pa.Array, np.ndarray]:
        """(unified codes, original codes as stripped text, unknown mask), vectorized over distinct codes (Arrow).

        Codes are text (numbers through str()), stripped as str.strip() does, a missing code is ''. Unknown codes,
        and known ones the crosswalk maps to no unified class (blank), map to null; only the unknown ones are
        flagged: the caller decides whether that is an error.
        """
        text = pc.utf8_trim(bulk.arrow_text(codes, len(codes)), bulk.PYTHON_WHITESPACE).fill_null("")
        encoded = text.dictionary_encode()
        distinct = encoded.dictionary.to_pylist()
        indices = encoded.indices
        mapped = pa.array([self.mapping.get(code) for code in distinct], pa.string()).take(indices)
        unknown = np.array([code not in self.mapping for code in distinct], dtype=bool)[
            indices.to_numpy(zero_copy_only=False)]
        return mapped, text, unknown


def _read_csv(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [column for column in required if column not in (reader.fieldnames or [])]
            if missing:
                raise ConfigError(str(path), None, f"missing column(s) {', '.join(missing)}")
            return [{k: (v or "").strip() for k, v in row.items()} for row in reader]
    except FileNotFoundError as exc:
        raise ConfigError(str(path), None, "crosswalk file not found") from exc


def load_classes(folder: Path) -> dict[str, LandClass]:
    """The 用地用海 (2023) classes from unified_2023.csv."""
    rows = _read_csv(folder / UNIFIED_FILE, ("code", "name_zh", "name_en"))
    return {row["code"]: LandClass(row["code"], row["name_zh"], row["name_en"]) for row in rows}


def load_crosswalk(folder: Path, name: str) -> Crosswalk:
    """Crosswalk `name` (config/classification/<name>.csv); 'unified' means codes already are 2023 codes."""
    classes = load_classes(folder)
    if name == UNIFIED:
        return Crosswalk(name, {code: code for code in classes})
    path = folder / f"{name}.csv"
    mapping: dict[str, str | None] = {}
    for number, row in enumerate(_read_csv(path, ("source_code", "unified_code")), start=2):
        if row["unified_code"] and row["unified_code"] not in classes:
            raise ConfigError(str(path), f"line {number}", f"unified code {row['unified_code']!r} is not in {UNIFIED_FILE}")
        if row["source_code"] in mapping:
            raise ConfigError(str(path), f"line {number}", f"source code {row['source_code']!r} appears twice")
        mapping[row["source_code"]] = row["unified_code"] or None  # blank: a known code with no unified class
    return Crosswalk(name, mapping)

