"""How the CLI shows results to a person: rich tables on stdout."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from geoservice.basemap import IntegrationSummary
from geoservice.conflicts import DetectionSummary
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


DIFFERENCE_TITLES = {
    "both_construction": "both construction (两规均为建设用地)",
    "urban_only": "urban-plan construction only (城建土非)",
    "land_only": "land-use-plan construction only (土建城非)",
    "both_non_construction": "both non-construction (两规均非建设)",
    "land_plan_only": "only in the land-use plan",
    "urban_plan_only": "only in the urban plan",
}


def show_integration(summary: IntegrationSummary) -> None:
    """The base map run: layers used, patches by plan-difference class, slivers, timings."""
    console = Console()
    used = ", ".join(f"{name} v{v['version']}" for name, v in summary.layer_versions.items())
    console.print(f"base map run {summary.run_id}: {summary.patches} patches from {used}", markup=False, highlight=False)
    table = Table(title="patches by plan difference")
    for column in ("class", "patches", "ha"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for name, values in summary.by_difference.items():
        table.add_row(DIFFERENCE_TITLES[name], str(values["patches"]), f"{values['ha']:,.2f}")
    console.print(table)
    console.print(f"slivers dropped: {summary.slivers_dropped} ({summary.slivers_area_m2:,.1f} m²); "
                  f"{summary.seconds:.1f} s ({', '.join(f'{k} {v:.2f}s' for k, v in summary.timings.items())})",
                  markup=False, highlight=False)


def show_detection(summary: DetectionSummary) -> None:
    """Conflicts by rule (count, ha, seconds) and by rule × district."""
    console = Console()
    table = Table(title=f"conflicts, detection run {summary.run_id}")
    for column in ("rule", "title", "severity", "count", "ha", "s"):
        table.add_column(column, justify="right" if column in ("count", "ha", "s") else "left")
    for rule_id, entry in summary.by_rule.items():
        table.add_row(rule_id, str(entry["title_zh"]), str(entry["severity"]), str(entry["count"]), f"{entry['ha']:,.2f}",
                      f"{entry['seconds']:.2f}")
    console.print(table)
    by_district = Table(title="conflicts by rule and district")
    for column in ("rule", "district", "count", "ha"):
        by_district.add_column(column, justify="right" if column in ("count", "ha") else "left")
    for row in summary.by_rule_district:
        by_district.add_row(str(row["rule"]), str(row["district"]), str(row["count"]), f"{row['ha']:,.2f}")
    console.print(by_district)
    console.print(f"{summary.seconds:.1f} s", markup=False, highlight=False)
