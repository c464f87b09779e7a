"""The read model: what is stored and what is current — layer versions, the active ones, integration and detection
runs — and the names of the schema's tables. Every stage and the server read these through here."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

import psycopg2.extensions
from psycopg2 import sql

SCHEMA = "geoservice"

RunKind = Literal["integration", "detection"]
#: run kind -> its table and the columns it has beyond the common ones (a detection run: its base map and rules)
RUN_TABLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "integration": ("integration_run", ()),
    "detection": ("detection_run", ("integration_run_id", "rules_checksum", "rules")),
}
_RUN_COLUMNS = ("id", "started_at", "finished_at", "is_current", "layer_versions", "base_run_id", "chain")

_VERSIONS_SQL = sql.SQL(
    "SELECT l.name, l.kind, l.title, v.version, v.id, v.feature_count, v.loaded_at, v.is_active, v.source_path, "
    "l.description, l.definition, v.revision, v.edited_at FROM {} l JOIN {} v ON v.layer = l.name WHERE {} "
    "ORDER BY l.name, v.version"
)


def qualified(name: str) -> sql.Identifier:
    """A table, sequence or function of the project's schema, for composed SQL."""
    return sql.Identifier(SCHEMA, name)


def masked_attribute(attribute: str, method: str) -> sql.Composed:
    """A layer attribute's text desensitized (脱敏) in SQL by `method` (name | id_number | phone | hide)."""
    return sql.SQL("{}(attributes ->> {}, {})").format(qualified("mask_value"), sql.Literal(attribute), sql.Literal(method))


@dataclass(frozen=True)
class LayerVersion:
    """One stored version of a layer: the layer (name, kind, title; description and definition as last loaded) and
    the version (number, id — the partition key of `feature` —, feature count, load time, active or not, source; the
    writes made to it since: its revision, 0 when never written, and the last write's time)."""

    name: str
    kind: str
    title: str
    version: int
    version_id: int
    feature_count: int
    loaded_at: datetime
    is_active: bool
    source_path: str
    description: str
    definition: dict[str, Any] = field(compare=False, repr=False)
    revision: int = 0
    edited_at: datetime | None = None


def _versions(cur: psycopg2.extensions.cursor, where: str, params: dict[str, object]) -> list[LayerVersion]:
    cur.execute(_VERSIONS_SQL.format(qualified("layer"), qualified("layer_version"), sql.SQL(where)), params)
    return [LayerVersion(*row) for row in cur.fetchall()]


def active_versions(cur: psycopg2.extensions.cursor) -> list[LayerVersion]:
    """Every stored layer's active version, by name."""
    return _versions(cur, "v.is_active", {})


def layer_versions(cur: psycopg2.extensions.cursor, name: str | None = None) -> list[LayerVersion]:
    """Every version of layer `name` (of every layer when None), by name, oldest first; empty for an unknown layer."""
    return _versions(cur, "%(name)s::text IS NULL OR l.name = %(name)s", {"name": name})


@dataclass(frozen=True)
class RunRule:
    """A rule as a detection run evaluated it."""

    id: str
    type: str
    title_zh: str
    title_en: str
    severity: str


@dataclass(frozen=True)
class Run:
    """One integration or detection run: when, whether it is the current one of its kind, and the layer versions it
    read ({name: {"version": n, "id": version id}}); a detection run also the base map (integration run) it read, the
    checksum of its rules file and its rules in config order. An incremental run names its base run and reads the rows
    its chain's runs stored (`rows_of_run`)."""

    kind: RunKind
    id: int
    started_at: datetime
    finished_at: datetime | None
    is_current: bool
    layer_versions: dict[str, dict[str, int]] = field(compare=False)
    base_run_id: int | None = None
    chain: tuple[int, ...] = ()
    integration_run_id: int | None = None
    rules_checksum: str | None = None
    rules: tuple[RunRule, ...] = ()

    def versions_text(self) -> str:
        """The layer versions read, by name: 'districts v1, landuse v2'."""
        return ", ".join(f"{name} v{v['version']}" for name, v in sorted(self.layer_versions.items()))

    def as_dict(self) -> dict[str, object]:
        """JSON-ready (times in ISO 8601)."""
        return {**asdict(self), "started_at": self.started_at.isoformat(),
                "finished_at": self.finished_at.isoformat() if self.finished_at else None}


def _run(cur: psycopg2.extensions.cursor, kind: RunKind, where: str, params: tuple[object, ...]) -> Run | None:
    table, extra = RUN_TABLES[kind]
    columns = (*_RUN_COLUMNS, *extra)
    cur.execute(sql.SQL("SELECT {} FROM {} WHERE {}").format(
        sql.SQL(", ").join(map(sql.Identifier, columns)), qualified(table), sql.SQL(where)), params)
    row = cur.fetchone()
    if row is None:
        return None
    values = dict(zip(columns, row))
    rules = tuple(RunRule(r["id"], r["type"], r["title_zh"], r["title_en"], r["severity"]) for r in values.pop("rules", ()))
    values["chain"] = tuple(values["chain"] or (values["id"],))
    return Run(kind, rules=rules, **values)


def run_summary(cur: psycopg2.extensions.cursor, kind: RunKind, run_id: int) -> dict[str, Any]:
    """What a run recorded of itself (counts, timings; an incremental run's changes); {} for no such run."""
    cur.execute(sql.SQL("SELECT summary FROM {} WHERE id = %s").format(qualified(RUN_TABLES[kind][0])), (run_id,))
    row = cur.fetchone()
    return row[0] if row else {}


def current_run(cur: psycopg2.extensions.cursor, kind: RunKind) -> Run | None:
    """The current run of a kind; None before the first."""
    return _run(cur, kind, "is_current", ())


def read_run(cur: psycopg2.extensions.cursor, kind: RunKind, run_id: int) -> Run | None:
    """A run of a kind by id; None when there is no such run."""
    return _run(cur, kind, "id = %s", (run_id,))


def rows_of_run(run: Run, alias: str | None = None) -> sql.Composed:
    """The condition selecting a run's rows of `basemap_patch` (integration) or `conflict` (detection)."""
    return chain_rows_sql(run.chain, run.id, alias)


def chain_rows_sql(chain: tuple[int, ...], run_id: int, alias: str | None = None) -> sql.Composed:
    """The rows of run `run_id` whose chain is `chain`: stored by a run of the chain and not dropped by a later run up
    to it. The chain is a literal, so PostgreSQL plans only its partitions."""
    def column(name: str) -> sql.Composable:
        return sql.Identifier(alias, name) if alias else sql.Identifier(name)

    return sql.SQL("{run_id} = ANY({chain}::bigint[]) AND ({until} IS NULL OR {until} > {id})").format(
        run_id=column("run_id"), chain=sql.Literal(list(chain)), until=column("until_run"), id=sql.Literal(run_id))


def current_rows_sql(kind: RunKind, alias: str) -> str:
    """`rows_of_run` for the current run as scalar subqueries (its rows in the same round trip as what a statement
    selects: a prepared point lookup)."""
    table = f"{SCHEMA}.{RUN_TABLES[kind][0]}"
    return (f"{alias}.run_id = ANY((SELECT chain FROM {table} WHERE is_current)::bigint[]) AND ({alias}.until_run IS NULL "
            f"OR {alias}.until_run > {current_run_id_sql(kind)})")


def current_run_id_sql(kind: RunKind) -> str:
    """The current run's id (NULL before the first) as a scalar subquery, for a statement that reads it in the same
    round trip as what it selects (a prepared point lookup)."""
    return f"(SELECT id FROM {SCHEMA}.{RUN_TABLES[kind][0]} WHERE is_current)"
