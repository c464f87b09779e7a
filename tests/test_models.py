"""The declarative models (geoservice.db.models) against the schema the migrations create, and the README's queries
through them against the read model."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from geoalchemy2 import Geometry
from sqlalchemy import Column, Table
from sqlalchemy.dialects import postgresql

from geoservice.db import models
from sql_helpers import query

ROOT = Path(__file__).resolve().parent.parent

#: every column of the schema's tables (partitions are their parent's), with its type as PostgreSQL formats it
COLUMNS_SQL = """
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull, a.attgenerated <> '',
       pg_get_expr(d.adbin, d.adrelid)
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE n.nspname = 'geoservice' AND c.relkind IN ('r', 'p') AND NOT c.relispartition AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY c.relname, a.attnum
"""

#: primary keys and foreign keys: (table, kind, columns, referenced table and columns)
KEYS_SQL = """
SELECT c.relname, k.contype, array(SELECT attname FROM unnest(k.conkey) WITH ORDINALITY u(n, i)
                                   JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.n ORDER BY u.i),
       coalesce(r.relname, ''),
       array(SELECT attname FROM unnest(k.confkey) WITH ORDINALITY u(n, i)
             JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = u.n ORDER BY u.i)
FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_class r ON r.oid = k.confrelid
WHERE n.nspname = 'geoservice' AND NOT c.relispartition AND k.contype IN ('p', 'f') AND k.conparentid = 0
"""

DIALECT = postgresql.dialect()


def _expression(text: str | None) -> str | None:
    """A default or generated expression without casts and schema, lower case: as comparable on both sides."""
    return None if text is None else re.sub(r"::[a-z ]+|geoservice\.", "", text.lower())


def _model_default(table: Table, column: Column) -> str | None:
    if column.computed is not None:
        return _expression(str(column.computed.sqltext))
    if column.server_default is not None:
        return _expression(str(column.server_default.arg))
    if column is table.autoincrement_column:  # bigserial
        return f"nextval('{table.name}_{column.name}_seq')"
    return None


def _model_columns() -> set[tuple[str, str, str, bool, bool, str | None]]:
    return {(table.name, column.name, column.type.compile(dialect=DIALECT).lower(), column.nullable,
             column.computed is not None, _model_default(table, column))
            for table in models.Base.metadata.tables.values() for column in table.columns}


def test_models_match_the_migrated_schema(settings) -> None:
    """Every table of the schema has a model, and every model's columns (name, type with geometry type and SRID,
    nullability, generated or not, default) and keys are what the migrations created."""
    models.use_working_srid(settings.working_srid)
    stored = {(table, name, kind.lower(), nullable, generated, _expression(default))
              for table, name, kind, nullable, generated, default in query(settings, COLUMNS_SQL)}
    declared = _model_columns()
    assert {t for t, *_ in stored} == {table.name for table in models.Base.metadata.tables.values()}
    assert declared - stored == set() and stored - declared == set()
    assert ("feature", "geom", f"geometry(multipolygon,{settings.working_srid})", False, False, None) in declared

    stored_keys = {(table, kind, tuple(columns), target, tuple(target_columns))
                   for table, kind, columns, target, target_columns in query(settings, KEYS_SQL)}
    declared_keys = set()
    for table in models.Base.metadata.tables.values():
        declared_keys.add((table.name, "p", tuple(c.name for c in table.primary_key.columns), "", ()))
        for key in table.foreign_key_constraints:
            declared_keys.add((table.name, "f", tuple(key.column_keys), key.referred_table.name,
                               tuple(e.column.name for e in key.elements)))
    assert declared_keys == stored_keys


def test_geometry_columns_register_the_working_srid(settings) -> None:
    """PostGIS's own catalogue (geometry_columns) agrees with the models' geometry type and SRID."""
    stored = set(query(settings, "SELECT f_table_name, f_geometry_column, type, srid FROM geometry_columns "
                                 "WHERE f_table_schema = 'geoservice'"))
    declared = {(table.name, column.name, column.type.geometry_type, column.type.srid)
                for table in models.Base.metadata.tables.values() for column in table.columns
                if isinstance(column.type, Geometry)}
    assert declared == {row for row in stored if row[0] in {t for t, *_ in declared}}
    assert {t for t, *_ in declared} == {"feature", "feature_history", "basemap_patch", "conflict"}


def readme_queries() -> str:
    """The Python block of the README's query API section."""
    section = (ROOT / "README.md").read_text(encoding="utf-8").split("\n## Python query API\n", 1)[1].split("\n## ", 1)[0]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_readme_queries_agree_with_the_read_model(demo_settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's three queries, run as written on the demo database, give what the point lookup, the report's
    statistics and SQL give."""
    from geoservice import queries, report
    from geoservice.db import transaction

    monkeypatch.setattr("geoservice.settings.load_settings", lambda *_: demo_settings)
    found: dict[str, object] = {}
    exec(compile(readme_queries(), "README.md", "exec"), found)  # noqa: S102 - the README's own example

    with transaction(demo_settings) as conn, conn.cursor() as cur:
        looked_up = queries.lookup_point(cur, demo_settings, found["lon"], found["lat"])
    patch = found["patch"]
    assert (patch.id, patch.run_id, patch.land_code, patch.plan_code, patch.district_name) == (
        looked_up["patch"]["id"], looked_up["patch"]["run_id"], looked_up["patch"]["land_use"]["code"],
        looked_up["patch"]["urban_plan"]["code"], looked_up["district"]["name"])

    stats = {row["rule"]: (row["count"], row["ha"]) for row in report.statistics(demo_settings).by_rule if row["count"]}
    assert {rule: (count, pytest.approx(m2 / 1e4, abs=1e-4)) for rule, count, m2 in found["by_rule"]} == stats

    x, y = looked_up["point"]["working"]
    expected = query(demo_settings, """
        WITH pt AS (SELECT ST_SetSRID(ST_MakePoint(%s, %s), %s) AS g)
        SELECT v.layer, f.source_id, ST_Distance(f.geom, pt.g)
        FROM geoservice.feature f JOIN geoservice.layer_version v ON v.id = f.version_id
        JOIN geoservice.layer l ON l.name = v.layer CROSS JOIN pt
        WHERE v.is_active AND l.kind IN ('red_line', 'basic_farmland') AND ST_DWithin(f.geom, pt.g, 2000)
        ORDER BY 3, 1, 2""", x, y, demo_settings.working_srid)
    assert expected and [(layer, source_id) for layer, source_id, _ in found["near"]] == [(l, s) for l, s, _ in expected]
    assert [d for *_, d in found["near"]] == pytest.approx([d for *_, d in expected])
