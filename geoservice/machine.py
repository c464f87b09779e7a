"""How the CLI shows results to programs (`--format json|csv`): one JSON document, or the rows as CSV, with stable
snake_case keys (README, "Machine-readable output")."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import shapely
import shapely.geometry

from geoservice.db.connection import redact

if TYPE_CHECKING:  # the stages are imported by the command that shows their results, not at start-up
    from geoservice.basemap import IntegrationSummary
    from geoservice.conflicts import DetectionSummary
    from geoservice.db.lifecycle import Status
    from geoservice.db.read import LayerVersion
    from geoservice.edit import AuditEvent
    from geoservice.governance import BackupSummary, LayerChanges, RestoreSummary
    from geoservice.governance.backup import TableCounts
    from geoservice.ingest import IngestSummary
    from geoservice.report import Statistics
    from geoservice.serve.tile_seed import SeedSummary

Rows = list[dict[str, Any]]


@dataclass(frozen=True)
class Output:
    """A command's result for programs: the JSON document and, for tabular results, the tables for CSV (one table is
    printed as it is; several as one long CSV whose first column, `table`, names each row's table)."""

    document: Any
    tables: dict[str, Rows] | None = None
    columns: tuple[str, ...] = ()  # the first columns of a one-table CSV, printed even when there is no row
    csv_text: str | None = None  # a result with a CSV of its own (the report's statistics)

    def render(self, output_format: str) -> str:
        """The text to print in `output_format` (json or csv)."""
        if output_format == "json":
            return json.dumps(self.document, ensure_ascii=False, indent=2, default=_plain) + "\n"
        if self.csv_text is not None:
            return self.csv_text
        if self.tables is None:
            raise ValueError("this result has no CSV form")
        return to_csv(self.tables, self.columns)


def _plain(value: object) -> object:
    """JSON for the values json does not know: times in ISO 8601, paths, NumPy scalars."""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _cell(value: object) -> object:
    """A CSV cell: empty for None, true/false, lists joined by ';', objects as JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ";".join(str(_cell(v)) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, default=_plain)
    return _plain(value) if isinstance(value, (datetime, date, np.generic, Path)) else value


def to_csv(tables: dict[str, Rows], columns: tuple[str, ...] = ()) -> str:
    """The rows as CSV, `columns` first, then the others in order of first appearance; several tables as one long CSV
    whose first column, `table`, names each row's table."""
    several = len(tables) > 1
    rows = [({"table": name} if several else {}) | row for name, table in tables.items() for row in table]
    columns = list(dict.fromkeys([*(["table"] if several else []), *columns, *(key for row in rows for key in row)]))
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: _cell(value) for key, value in row.items()} for row in rows)
    return out.getvalue()


def rows_output(rows: Rows, columns: tuple[str, ...] = ()) -> Output:
    """A result that is one table: the JSON document is the list of its rows."""
    return Output(rows, {"rows": rows}, columns)


VERSION_COLUMNS = ("layer", "kind", "title", "version", "version_id", "active", "feature_count", "loaded_at", "source_path",
                   "revision", "edited_at")


def versions_output(versions: list[LayerVersion]) -> Output:
    return rows_output([dict(zip(VERSION_COLUMNS, (v.name, v.kind, v.title, v.version, v.version_id, v.is_active,
                                                   v.feature_count, v.loaded_at, v.source_path, v.revision,
                                                   v.edited_at))) for v in versions],
                       VERSION_COLUMNS)


AUDIT_COLUMNS = ("id", "at", "actor", "layer", "version_id", "revision", "feature_id", "action", "before", "after",
                 "comment")


def audit_output(events: list[AuditEvent]) -> Output:
    return rows_output([e.as_dict() for e in events], AUDIT_COLUMNS)


def status_output(status: Status) -> Output:
    document = asdict(status)
    document["url"] = redact(status.url) if status.url else None
    return Output(document)


def ingest_output(summaries: list[IngestSummary], dry_run: bool) -> Output:
    return rows_output([{**s.as_dict(), "dry_run": dry_run, "problem_rows": len(s.problems)} for s in summaries])


def _change_tables(incremental: dict[str, Any] | None, key: str) -> dict[str, Rows]:
    """An incremental run's change tables for CSV: the layers' changes, area gained and lost by `key` and district."""
    if not incremental:
        return {}
    return {"changes": incremental["changes"], f"changed_by_{key}": incremental[f"by_{key}"],
            "changed_by_district": incremental["by_district"]}


def integration_output(summary: IntegrationSummary) -> Output:
    by_difference = [{"difference": name, **values} for name, values in summary.by_difference.items()]
    return Output({"run_id": summary.run_id, **summary.as_dict(), "by_difference": by_difference},
                  {"by_difference": by_difference, **_change_tables(summary.incremental, "difference")})


def detection_output(summary: DetectionSummary) -> Output:
    by_rule = [{"rule": rule, **entry} for rule, entry in summary.by_rule.items()]
    return Output({"run_id": summary.run_id, **summary.as_dict(), "by_rule": by_rule},
                  {"by_rule": by_rule, "by_rule_district": summary.by_rule_district,
                   **_change_tables(summary.incremental, "rule")})


def statistics_output(stats: Statistics) -> Output:
    return Output(stats.as_dict(), csv_text=stats.to_csv())


def changes_output(changes: LayerChanges) -> Output:
    document = changes.as_dict()
    return Output(document, {name: document[name] for name in ("by_class", "by_district", "features")})


def lookup_output(found: dict[str, Any]) -> Output:
    return Output(found)


CHECK_COLUMNS = ("rule_id", "title_zh", "title_en", "severity", "area_m2", "code_a", "layer_b", "feature_b", "source_id_b",
                 "code_b", "district_code", "district_name", "details", "geometry", "crs")


def check_output(found: list[dict[str, Any]]) -> Output:
    """The conflicts, geometry as GeoJSON in the document and as WKT in the CSV (both in the CRS named by `crs`)."""
    as_wkt = [{**c, "geometry": shapely.to_wkt(c["geometry"], rounding_precision=-1)} for c in found]  # full precision
    return Output([{**c, "geometry": shapely.geometry.mapping(c["geometry"])} for c in found], {"conflicts": as_wkt},
                  CHECK_COLUMNS)


EXPOSURE_TABLES = ("by_district", "by_urban_plan_class", "by_land_use_class", "exposed_construction_patches")


def exposure_output(result: dict[str, Any]) -> Output:
    return Output(result, {name: result[name] for name in EXPOSURE_TABLES})


def seeding_output(summary: SeedSummary) -> Output:
    return Output({**asdict(summary), "seconds": round(summary.seconds, 3),
                   "slowest": [{"tile": tile, "seconds": round(seconds, 3)} for seconds, tile in summary.slowest]})


def _table_rows(summary: TableCounts) -> Rows:
    return [asdict(total) for total in summary.totals]


def backup_output(summary: BackupSummary) -> Output:
    tables = _table_rows(summary)
    return Output({"path": summary.path, "seconds": round(summary.seconds, 3), "dump_bytes": summary.dump_bytes,
                   "files": summary.files, "missing_files": summary.missing_files, "rows": summary.rows, "tables": tables},
                  {"tables": tables})


def restore_output(summary: RestoreSummary) -> Output:
    tables = _table_rows(summary)
    return Output({"path": summary.path, "target": summary.target, "seconds": round(summary.seconds, 3),
                   "rows": summary.rows, "tables": tables, "files": summary.files,
                   "pending_migrations": summary.pending_migrations}, {"tables": tables})
