"""The conflict ledger (冲突台账) of one detection run, read once: its conflicts with their cases' review state, the
cases that disappeared in it (with their last-seen geometry), and the district boundaries the run used."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import psycopg2.extensions
import shapely
from psycopg2 import sql

from geoservice.db import transaction
from geoservice.db.read import Run, current_run, read_run, rows_of_run
from geoservice.errors import GeoserviceError
from geoservice.settings import Settings

LEDGER_SQL = """
WITH found AS (
    SELECT c.*, false AS disappeared FROM geoservice.conflict c WHERE {rows}
  UNION ALL
    SELECT c.*, true FROM geoservice.disappeared_case d
    CROSS JOIN LATERAL (SELECT max(run_id) AS run_id FROM geoservice.conflict
                        WHERE case_id = d.case_id AND run_id < d.run_id) last
    JOIN geoservice.conflict c ON c.case_id = d.case_id AND c.run_id = last.run_id
    WHERE d.run_id = %(run)s
)
SELECT f.id AS conflict_id, f.case_id, f.rule_id, f.rule_type, f.severity,
       CASE WHEN f.disappeared THEN 'disappeared' WHEN k.first_run_id = %(run)s THEN 'new' ELSE 'recurring' END AS presence,
       f.area_m2, f.layer_a, la.kind AS kind_a, la.title AS title_a, f.source_id_a, f.code_a,
       ca.name_zh AS class_zh_a, ca.name_en AS class_en_a,
       f.layer_b, lb.kind AS kind_b, lb.title AS title_b, f.source_id_b, f.code_b,
       cb.name_zh AS class_zh_b, cb.name_en AS class_en_b,
       coalesce(f.district_code, '') AS district_code, coalesce(f.district_name, '') AS district_name,
       (f.details ->> 'value')::double precision AS measured, (f.details ->> 'threshold')::double precision AS threshold,
       coalesce(k.status, f.status) AS status, coalesce(k.opinion, '') AS opinion, k.reviewer, k.reviewed_at,
       k.first_run_id, ST_AsBinary(f.geom) AS wkb
FROM found f
LEFT JOIN geoservice.conflict_case k ON k.id = f.case_id
LEFT JOIN geoservice.layer la ON la.name = f.layer_a
LEFT JOIN geoservice.layer lb ON lb.name = f.layer_b
LEFT JOIN geoservice.land_class ca ON ca.code = f.code_a
LEFT JOIN geoservice.land_class cb ON cb.code = f.code_b
ORDER BY f.disappeared, f.id
"""
#: the numeric ledger columns (set explicitly so that an empty ledger has them too)
LEDGER_DTYPES = {"conflict_id": "Int64", "case_id": "Int64", "first_run_id": "Int64", "area_m2": float, "measured": float,
                 "threshold": float}


class NoSuchRunError(GeoserviceError):
    """The detection run asked for does not exist (or none has been stored yet)."""


@dataclass
class Districts:
    """The district boundaries a run used: codes (adcode), names, areas (m²) and geometries, aligned."""

    codes: np.ndarray
    names: np.ndarray
    areas: np.ndarray
    geometries: np.ndarray


@dataclass
class Ledger:
    """A run's ledger: one row per conflict, then one per disappeared case; geometries aligned with the rows.

    `districts` are the boundaries the run used; `patches` the base map it used (difference class, district, m²);
    `crs` the working CRS all geometries are in.
    """

    run: Run
    crs: str
    rows: pd.DataFrame
    geometries: np.ndarray
    districts: Districts
    patches: pd.DataFrame

    @property
    def present(self) -> np.ndarray:
        """True for the run's own conflicts (not the disappeared cases)."""
        return (self.rows["presence"] != "disappeared").to_numpy()


def resolve_run(cur: psycopg2.extensions.cursor, run_id: int | None) -> Run:
    """The given detection run, or the current one."""
    run = current_run(cur, "detection") if run_id is None else read_run(cur, "detection", run_id)
    if run is None:
        raise NoSuchRunError(f"detection run {run_id}: no such run" if run_id is not None
                             else "no detection run stored yet: run `geoservice detect` first")
    return run


def read_districts(cur: psycopg2.extensions.cursor, run: Run) -> Districts:
    """The district features of the version the run used (by kind), ordered by code; empty when it used none."""
    cur.execute(
        "SELECT f.source_id, f.name, f.area_m2, ST_AsBinary(f.geom) FROM geoservice.feature f "
        "JOIN geoservice.layer_version v ON v.id = f.version_id JOIN geoservice.layer l ON l.name = v.layer "
        "WHERE l.kind = 'district' AND v.id IN (SELECT (value ->> 'id')::bigint FROM jsonb_each(%s::jsonb)) "
        "ORDER BY f.source_id, f.id", (json.dumps(run.layer_versions),))
    rows = cur.fetchall()
    codes, names, areas, wkb = zip(*rows) if rows else ((), (), (), ())
    return Districts(np.asarray(codes, dtype=object), np.asarray(names, dtype=object), np.asarray(areas, dtype=float),
                     shapely.from_wkb(np.asarray([bytes(w) for w in wkb], dtype=object)))


def read_ledger_rows(cur: psycopg2.extensions.cursor, run: Run) -> tuple[pd.DataFrame, np.ndarray]:
    """The ledger rows of a run and their geometries."""
    cur.execute(sql.SQL(LEDGER_SQL).format(rows=rows_of_run(run, "c")), {"run": run.id})
    names = [d.name for d in cur.description]
    frame = pd.DataFrame.from_records(cur.fetchall(), columns=names).astype(LEDGER_DTYPES)
    geometries = shapely.from_wkb(np.asarray([bytes(w) for w in frame.pop("wkb")], dtype=object))
    return frame, geometries


def read_patches(cur: psycopg2.extensions.cursor, integration_run_id: int | None) -> pd.DataFrame:
    """Difference class, district and area of every base-map patch of an integration run (none: no rows)."""
    run = read_run(cur, "integration", integration_run_id) if integration_run_id is not None else None
    cur.execute(sql.SQL("SELECT difference, coalesce(district_code, ''), coalesce(district_name, ''), area_m2 "
                        "FROM geoservice.basemap_patch WHERE {}").format(rows_of_run(run) if run else sql.SQL("false")))
    columns = ["difference", "district_code", "district_name", "area_m2"]
    return pd.DataFrame.from_records(cur.fetchall(), columns=columns).astype({"area_m2": float})


def read_ledger(settings: Settings, run_id: int | None = None) -> Ledger:
    """The ledger of a detection run (default: the current one), read in one snapshot."""
    with transaction(settings) as conn, conn.cursor() as cur:
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        run = resolve_run(cur, run_id)
        rows, geometries = read_ledger_rows(cur, run)
        return Ledger(run, settings.working_crs, rows, geometries, read_districts(cur, run),
                      read_patches(cur, run.integration_run_id))
