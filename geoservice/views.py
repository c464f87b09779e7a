"""How the CLI shows results to a person: rich tables on stdout."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from geoservice.ingest import IngestSummary, VersionRow

PROBLEMS_SHOWN = 5


def show_ingest_summaries(summaries: list[IngestSummary], dry_run: bool, errors: Console) -> None:
    """One row per layer: rows read, kept, repaired, rejected, seconds, rows/s; then the first problems."""
    table = Table(title="ingest (dry run: nothing stored)" if dry_run else "ingest")
    for column in ("layer", "version", "read", "kept", "repaired", "rejected", "s", "rows/s"):
        table.add_column(column, justify="left" if column == "layer" else "right")
    for s in summaries:
        table.add_row(s.layer, "-" if s.version is None else str(s.version), str(s.rows_read), str(s.kept),
                      str(s.repaired), str(s.rejected), f"{s.seconds:.2f}", f"{s.rows_per_second:,.0f}")
    Console().print(table)
    for s in summaries:
        errors.print(f"{s.layer}: {s.file}, encoding {s.encoding}, CRS {s.crs}", markup=False, highlight=False)
    for s in summaries:
        for problem in s.problems[:PROBLEMS_SHOWN]:
            errors.print(f"{s.file}: row {problem.row}: {problem.status}: {problem.problem}", markup=False, highlight=False)
        if s.report:
            more = f" ({len(s.problems) - PROBLEMS_SHOWN} more)" if len(s.problems) > PROBLEMS_SHOWN else ""
            errors.print(f"{s.layer}: problem report{more}: {s.report}", markup=False, highlight=False)


def show_versions(rows: list[VersionRow]) -> None:
    """Layers and their versions, the active one marked."""
    table = Table(title="layers")
    for column in ("layer", "kind", "version", "active", "features", "loaded at", "source"):
        table.add_column(column)
    for row in rows:
        table.add_row(row.layer, row.kind, str(row.version), "*" if row.is_active else "", str(row.feature_count),
                      row.loaded_at.strftime("%Y-%m-%d %H:%M:%S"), row.source_path)
    Console().print(table)
