"""Row counts and content checksums of the project's tables, computed by PostgreSQL.

A table's checksum is the sum, as an exact numeric, of the first 64 bits of md5(row text) over its rows: independent
of row order (no primary key or sort needed, no whole-table string), and the same wherever the rows are restored
as long as the session prints values the same way (the settings below). Partitions (feature_p<version>,
basemap_patch_p<run>, conflict_p<run>) are tables of their own here; their partitioned parents hold no rows.
"""

from __future__ import annotations

import psycopg2.extensions
from psycopg2 import sql

from geoservice.db.read import SCHEMA, qualified
from geoservice.governance.manifest import TableEntry
from geoservice.progress import Reporter

#: how values are printed while checksumming (row text must not depend on the client's session)
STABLE_OUTPUT = ("SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, YMD'; SET LOCAL IntervalStyle = 'postgres'; "
                 "SET LOCAL extra_float_digits = 1; SET LOCAL bytea_output = 'hex'")

TABLES_SQL = """
SELECT c.relname, parent.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_inherits i ON i.inhrelid = c.oid LEFT JOIN pg_class parent ON parent.oid = i.inhparent
WHERE n.nspname = %s AND c.relkind = 'r'
ORDER BY c.relname
"""

CHECKSUM_SQL = "SELECT count(*), coalesce(sum(('x' || left(md5(t::text), 16))::bit(64)::bigint::numeric), 0)::text FROM {} t"

USER_TABLES_SQL = """
SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1
"""

SEQUENCES_SQL = "SELECT sequencename, coalesce(last_value, 0) FROM pg_sequences WHERE schemaname = %s ORDER BY sequencename"


def table_fingerprints(cur: psycopg2.extensions.cursor, reporter: Reporter) -> dict[str, TableEntry]:
    """'geoservice.<table>' -> fingerprint, for every table of the schema (run inside the transaction to describe)."""
    cur.execute(STABLE_OUTPUT)
    cur.execute(TABLES_SQL, (SCHEMA,))
    tables = cur.fetchall()
    found: dict[str, TableEntry] = {}
    with reporter.task("checksums", len(tables)) as task:
        for name, parent in tables:
            cur.execute(sql.SQL(CHECKSUM_SQL).format(qualified(name)))
            rows, checksum = cur.fetchone()
            found[f"{SCHEMA}.{name}"] = TableEntry(rows=rows, checksum=checksum, partition_of=f"{SCHEMA}.{parent}" if parent else None)
            task.advance(1)
    return found


def sequence_values(cur: psycopg2.extensions.cursor) -> dict[str, int]:
    """'geoservice.<sequence>' -> its last value (0 when never used)."""
    cur.execute(SEQUENCES_SQL, (SCHEMA,))
    return {f"{SCHEMA}.{name}": int(value) for name, value in cur.fetchall()}


def user_tables(cur: psycopg2.extensions.cursor) -> list[str]:
    """'schema.table' of every table and view in the database that no extension (PostGIS) owns; partitions left out."""
    cur.execute(USER_TABLES_SQL)
    return [row[0] for row in cur.fetchall()]
