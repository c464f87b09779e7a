"""Editing layers the way a bureau revises them (features added, removed, reshaped, recoded) as new versions, and
comparing an incremental run with a full run of the same inputs."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely
from shapely import affinity
from sql_helpers import query

from geoservice.db import transaction
from geoservice.db.read import read_run, rows_of_run
from geoservice.ingest import ingest_layer
from geoservice.ingest.definition import Definition, Source
from geoservice.settings import Settings

RTOL = 1e-9
PATCH_VALUES = ("area_m2", "piece_m2", "red_line_m2", "farmland_m2", "dev_boundary_m2")


class Layers:
    """Every layer of a database as an editable table (its source file read once), published as new versions from
    GeoPackages written by the same writer, so that unchanged features stay byte for byte the same."""

    def __init__(self, settings: Settings, definitions: list[Definition], folder: Path, encodings: dict[str, str]):
        self.settings, self.folder = settings, folder
        self.definitions = {d.layer.name: d for d in definitions}
        self.frames = {}
        for name, definition in self.definitions.items():
            layer = definition.layer.source.layer
            self.frames[name] = pyogrio.read_dataframe(definition.source_path, layer=layer,
                                                       encoding=encodings.get(name))
        self.published = Counter()
        self.added = 0  # features added so far (their ids)

    def publish(self, name: str) -> None:
        """Ingest the layer's table as its new active version."""
        self.published[name] += 1
        definition = self.definitions[name]
        path = self.folder / f"{name}-{self.published[name]}.gpkg"
        pyogrio.write_dataframe(self.frames[name], path, layer=name)
        layer = definition.layer.model_copy(update={"source": Source(path=path, layer=name), "encoding": "UTF-8"})
        ingest_layer(self.settings, Definition(file=definition.file, layer=layer))

    def publish_all(self) -> None:
        for name in self.definitions:
            self.publish(name)

    # --- edits ----------------------------------------------------------------------------------------------------

    def reshape(self, name: str, rows: list[int], factor: float = 0.8) -> None:
        frame = self.frames[name]
        frame.loc[frame.index[rows], "geometry"] = [affinity.scale(g, factor, factor) for g in frame.geometry.iloc[rows]]

    def recode(self, name: str, rows: list[int], field: str) -> None:
        frame = self.frames[name]
        codes = sorted(set(frame[field]))
        frame.loc[frame.index[rows], field] = [codes[(codes.index(c) + 1) % len(codes)] for c in frame[field].iloc[rows]]

    def remove(self, name: str, rows: list[int]) -> None:
        frame = self.frames[name]
        self.frames[name] = frame.drop(index=frame.index[rows]).reset_index(drop=True)

    def add(self, name: str, rows: list[int], id_field: str, dx: float) -> None:
        """Copies of `rows` moved by `dx` (in the layer's CRS units) with new ids."""
        frame = self.frames[name]
        new = frame.iloc[rows].copy()
        new["geometry"] = [affinity.translate(g, dx, dx / 2) for g in new.geometry]
        new[id_field] = [f"NEW{self.added + i}" for i in range(len(new))]
        self.added += len(new)
        self.frames[name] = pd.concat([frame, new], ignore_index=True)

    def move_border(self, name: str, giver: int, taker: int, fraction: float = 0.2) -> None:
        """Give part of district `giver` (a box over its lower-left `fraction`) to district `taker`."""
        frame = self.frames[name]
        a, b = frame.geometry.iloc[giver], frame.geometry.iloc[taker]
        x0, y0, x1, y1 = a.bounds
        cut = shapely.box(x0, y0, x0 + (x1 - x0) * fraction, y0 + (y1 - y0) * fraction)
        frame.loc[frame.index[giver], "geometry"] = shapely.difference(a, cut)
        frame.loc[frame.index[taker], "geometry"] = shapely.union(b, shapely.intersection(a, cut))

    def rows_crossing(self, name: str, other: str, count: int) -> list[int]:
        """Rows of layer `name` that meet two features of layer `other` (e.g. a district boundary)."""
        frame, zones = self.frames[name], self.frames[other].to_crs(self.frames[name].crs)
        tree = shapely.STRtree(np.asarray(zones.geometry))
        left, _ = tree.query(np.asarray(frame.geometry), predicate="intersects")
        crossing = np.flatnonzero(np.bincount(left, minlength=len(frame)) >= 2)
        return crossing[:count].tolist()


# --- comparing runs ---------------------------------------------------------------------------------------------


def run_rows(settings: Settings, kind: str, run_id: int, select: str) -> list[tuple]:
    """`select` of every row of a run (its chain's rows it holds)."""
    with transaction(settings) as conn, conn.cursor() as cur:
        run = read_run(cur, kind, run_id)
        table = "basemap_patch" if kind == "integration" else "conflict"
        cur.execute(f"SELECT {select} FROM geoservice.{table} WHERE " + rows_of_run(run).as_string(cur))
        return cur.fetchall()


def keyed(settings: Settings, kind: str, run_id: int, select: str, width: int) -> dict[tuple, list[tuple]]:
    """A run's rows by their first `width` columns (several rows may share them: identical pieces of overlapping
    features), each key's other columns sorted."""
    out: dict[tuple, list[tuple]] = {}
    for row in run_rows(settings, kind, run_id, select):
        out.setdefault(row[:width], []).append(row[width:])
    return {key: sorted(values) for key, values in out.items()}


def assert_same_base_maps(settings: Settings, want_run: int, got_run: int) -> int:
    """The two runs hold the same patches: both plans' codes, difference class, district, in the lines, the same
    geometry (its WKB), and areas and line overlaps to 1e-9. The number of patches."""
    select = ("land_code, plan_code, difference, district_code, district_name, in_red_line, in_farmland, "
              "in_dev_boundary, md5(ST_AsBinary(geom)), " + ", ".join(PATCH_VALUES))

    want, got = (keyed(settings, "integration", run, select, 9) for run in (want_run, got_run))
    assert sorted(got.keys(), key=repr) == sorted(want.keys(), key=repr)
    for key, rows in want.items():
        assert len(got[key]) == len(rows), key
        for values, other in zip(rows, got[key]):
            for a, b in zip(other, values):
                assert a == pytest.approx(b, rel=RTOL, abs=RTOL * values[0]), key
    return sum(map(len, want.values()))


def assert_same_conflicts(settings: Settings, want_run: int, got_run: int) -> int:
    """The two runs hold the same conflicts: rule, district, both codes and layers, the same geometry, area to 1e-9.
    The number of conflicts."""
    select = "rule_id, district_code, layer_a, code_a, layer_b, code_b, md5(ST_AsBinary(geom)), area_m2"

    want, got = (keyed(settings, "detection", run, select, 7) for run in (want_run, got_run))
    assert sorted(got.keys(), key=repr) == sorted(want.keys(), key=repr)
    for key, rows in want.items():
        assert len(got[key]) == len(rows), key
        for values, other in zip(rows, got[key]):
            assert other[0] == pytest.approx(values[0], rel=RTOL), key
    return sum(map(len, want.values()))


def current_id(settings: Settings, kind: str) -> int:
    return query(settings, f"SELECT id FROM geoservice.{kind}_run WHERE is_current")[0][0]
