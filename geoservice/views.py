"""How the CLI shows results to a person: rich tables on stdout."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from geoservice.progress import person_console

if TYPE_CHECKING:  # the stages are imported by the command that shows their results, not at start-up
    from geoservice.basemap import IntegrationSummary
    from geoservice.conflicts import DetectionSummary
    from geoservice.governance import AreaChange, BackupSummary, LayerChanges, RestoreSummary, TableTotal
    from geoservice.db.read import LayerVersion
    from geoservice.edit import AuditEvent
    from geoservice.ingest import IngestSummary
    from geoservice.report import Statistics
    from geoservice.review import Case, CaseEvent
    from geoservice.serve.tile_seed import SeedSummary

PROBLEMS_SHOWN = 5


def show_ingest_summaries(summaries: list[IngestSummary], dry_run: bool) -> None:
    """One row per layer: rows read, kept, repaired, rejected, seconds, rows/s."""
    table = Table(title="ingest (dry run: nothing stored)" if dry_run else "ingest")
    for column in ("layer", "version", "read", "kept", "repaired", "rejected", "s", "rows/s"):
        table.add_column(column, justify="left" if column == "layer" else "right")
    for s in summaries:
        table.add_row(s.layer, "-" if s.version is None else str(s.version), str(s.rows_read), str(s.kept),
                      str(s.repaired), str(s.rejected), f"{s.seconds:.2f}", f"{s.rows_per_second:,.0f}")
    person_console().print(table)


def show_ingest_notes(summaries: list[IngestSummary], errors: Console) -> None:
    """Each layer's file, encoding and CRS, then its first problems and the problem report, on `errors` (stderr)."""
    for s in summaries:
        dropped = f", Z/M coordinates dropped from {s.z_m_dropped} row(s)" if s.z_m_dropped else ""
        errors.print(f"{s.layer}: {s.file}, encoding {s.encoding}, CRS {s.crs}{dropped}", markup=False, highlight=False)
    for s in summaries:
        for problem in s.problems[:PROBLEMS_SHOWN]:
            errors.print(f"{s.file}: row {problem.row}: {problem.status}: {problem.problem}", markup=False, highlight=False)
        if s.report:
            more = f" ({len(s.problems) - PROBLEMS_SHOWN} more)" if len(s.problems) > PROBLEMS_SHOWN else ""
            errors.print(f"{s.layer}: problem report{more}: {s.report}", markup=False, highlight=False)


def show_versions(rows: list[LayerVersion]) -> None:
    """Layers and their versions, the active one marked."""
    table = Table(title="layers")
    for column in ("layer", "kind", "version", "active", "features", "loaded at", "revision", "edited at", "source"):
        table.add_column(column)
    for row in rows:
        table.add_row(row.name, row.kind, str(row.version), "*" if row.is_active else "", str(row.feature_count),
                      row.loaded_at.strftime("%Y-%m-%d %H:%M:%S"), str(row.revision),
                      row.edited_at.strftime("%Y-%m-%d %H:%M:%S") if row.edited_at else "", row.source_path)
    person_console().print(table)


def show_audit(events: list[AuditEvent]) -> None:
    """The audit trail, oldest first: what each write or decision changed."""
    table = Table(title="audit")
    for column in ("id", "at", "actor", "layer", "feature", "action", "revision", "change"):
        table.add_column(column)
    for event in events:
        table.add_row(str(event.id), event.at.strftime("%Y-%m-%d %H:%M:%S"), event.actor, event.layer,
                      str(event.feature_id), event.action, "" if event.revision is None else str(event.revision),
                      _audit_change(event))
    person_console().print(table)


def _audit_change(event: AuditEvent) -> str:
    """A write's changed values (the geometry as 'geometry'), or a status change, in a few words."""
    if event.action == "status":
        return f"{event.before['status']} → {event.after['status']}" + (f": {event.comment}" if event.comment else "")
    before, after = event.before or {}, event.after or {}
    keys = dict.fromkeys([*before, *after])
    return ", ".join(key for key in keys if key not in ("id", "revision") and before.get(key) != after.get(key))


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
    console = person_console()
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
    _show_distributed(console, summary.distributed)
    _show_incremental(console, summary.incremental, "patches", "difference")


def _show_incremental(console: Console, incremental: dict | None, rows: str, key: str) -> None:
    """What an incremental run changed: the layers' changed features, what it recomputed, area gained and lost."""
    if not incremental:
        return
    layers = "; ".join(f"{c['layer']} v{c['old_version']}→v{c['new_version']}: {c['removed']} features out, "
                       f"{c['added']} in" for c in incremental["changes"])
    console.print(f"incremental from run {incremental['from_run']} ({layers})", markup=False, highlight=False)
    if rows == "patches":
        console.print(f"recomputed {incremental['region_km2']:,.2f} km² from {incremental['features_read']:,} features: "
                      f"{incremental['patches_dropped']:,} patches replaced by {incremental['patches_added']:,}",
                      markup=False, highlight=False)
    else:
        for rule, done in incremental["rules"].items():
            console.print(f"rule {rule}: recomputed {done['region_km2']:,.2f} km², {done['dropped']:,} conflicts replaced "
                          f"by {done['added']:,}", markup=False, highlight=False)
        if "cases" in incremental:
            cases = incremental["cases"]
            console.print(f"review cases: {cases['carried']} carried, {cases['changed']} changed, {cases['new']} new, "
                          f"{cases['gone']} gone", markup=False, highlight=False)
    for name in (f"by_{key}", "by_district"):
        column = key if name != "by_district" else "district"
        table = Table(title=f"area gained and lost {name.replace('_', ' ')} (m²)")
        for title in (column, "gained", "lost", "net"):
            table.add_column(title, justify="left" if title == column else "right")
        for row in incremental[name]:
            table.add_row(str(row[column]), *(f"{row[k]:,.1f}" for k in ("gained_m2", "lost_m2", "net_m2")))
        console.print(table)


def _show_distributed(console: Console, distributed: dict | None) -> None:
    if distributed:
        console.print(f"on Dask ({distributed['scheduler']}): {distributed['tiles']} tiles on "
                      f"{distributed['worker_threads']} worker threads, {distributed['features_read']:,} features read",
                      markup=False, highlight=False)


def show_detection(summary: DetectionSummary) -> None:
    """Conflicts by rule (count, ha, seconds) and by rule × district."""
    console = person_console()
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
    _show_distributed(console, summary.distributed)
    _show_incremental(console, summary.incremental, "conflicts", "rule")


NUMERIC_COLUMNS = {"count", "patches", "ha", "district ha", "planned ha", "sum ha", "union ha", "% of district"}


def _hectares(value: object) -> str:
    return "" if value is None else f"{value:,.2f}"


def _percent(value: object) -> str:
    return "" if value is None else f"{value:.2f}%"


def show_statistics(stats: Statistics) -> None:
    """A run's statistics: by rule, by rule × district, by district (shares), plan differences, review status."""
    console = person_console()
    run = stats.run
    console.print(f"detection run {run.id}{' (current)' if run.is_current else ''}, base map run {run.integration_run_id}",
                  markup=False, highlight=False)
    tables = [
        ("conflicts by rule", ("rule", "title", "count", "ha"),
         [(r["rule"], r["title_zh"], str(r["count"]), _hectares(r["ha"])) for r in stats.by_rule]),
        ("conflicts by rule and district", ("rule", "district", "count", "ha", "% of district"),
         [(r["rule"], r["district"] or "(none)", str(r["count"]), _hectares(r["ha"]), _percent(r["share_pct"]))
          for r in stats.by_rule_district]),
        ("districts", ("district", "code", "district ha", "planned ha", "count", "sum ha", "union ha", "% of district"),
         [(r["district"] or "(none)", r["district_code"], _hectares(r["district_ha"]), _hectares(r["planned_ha"]),
           str(r["count"]), _hectares(r["ha"]), _hectares(r["union_ha"]), _percent(r["share_pct"])) for r in stats.by_district]),
        ("base map by plan difference and district", ("class", "district", "patches", "ha", "% of district"),
         [(DIFFERENCE_TITLES.get(r["difference"], r["difference"]), r["district"] or "(none)", str(r["count"]),
           _hectares(r["ha"]), _percent(r["share_pct"])) for r in stats.by_difference]),
        ("review status", ("status", "count", "ha"),
         [(r["status"], str(r["count"]), _hectares(r["ha"])) for r in stats.by_status]),
        ("in this run", ("presence", "count", "ha"),
         [(r["presence"], str(r["count"]), _hectares(r["ha"])) for r in stats.by_presence]),
    ]
    for title, columns, rows in tables:
        table = Table(title=title)
        for column in columns:
            table.add_column(column, justify="right" if column in NUMERIC_COLUMNS else "left")
        for row in rows:
            table.add_row(*row)
        console.print(table)


def show_case(case: Case, events: list[CaseEvent]) -> None:
    """A conflict's case (status, opinion, reviewer, runs) and its audit trail."""
    console = person_console()
    where = f"{case.layer_a} {case.key_a}" + (f" × {case.layer_b} {case.key_b}" if case.layer_b else "")
    console.print(f"case {case.id}: {case.rule_id}, {where}, district {case.district_code or '(none)'}; "
                  f"runs {case.first_run_id}–{case.last_run_id}", markup=False, highlight=False)
    reviewed = f" by {case.reviewer} at {case.reviewed_at:%Y-%m-%d %H:%M:%S}" if case.reviewed_at else ""
    console.print(f"status: {case.status}{reviewed}" + (f"; opinion: {case.opinion}" if case.opinion else ""),
                  markup=False, highlight=False)
    table = Table(title="history")
    for column in ("when", "who", "from", "to", "comment", "conflict"):
        table.add_column(column)
    for event in events:
        table.add_row(f"{event.changed_at:%Y-%m-%d %H:%M:%S}", event.reviewer, event.from_status, event.to_status,
                      event.comment, str(event.conflict_id or ""))
    console.print(table)


def show_project_check(found: list[dict[str, object]]) -> None:
    """The conflicts a submitted project would create, one row each."""
    console = person_console()
    if not found:
        console.print("no conflict: the project fits every rule", markup=False, highlight=False)
        return
    table = Table(title=f"the project would create {len(found)} conflict(s)")
    for column in ("rule", "title", "severity", "m²", "other feature", "district"):
        table.add_column(column, justify="right" if column == "m²" else "left")
    for c in found:
        other = f"{c['layer_b']} {c['source_id_b'] or c['feature_b']}" if c["layer_b"] else "-"
        table.add_row(str(c["rule_id"]), str(c["title_zh"]), str(c["severity"]), f"{c['area_m2']:,.1f}", other,
                      str(c["district_name"] or "-"))
    console.print(table)


def _class_text(plan: dict[str, object] | None) -> str:
    return "-" if plan is None else f"{plan['code'] or '(unclassified)'} {plan['name_zh'] or ''}".rstrip()


def show_lookup(found: dict[str, object]) -> None:
    """What every plan says at a point: the base-map patch and its codes, district, protection lines, open conflicts."""
    point, patch = found["point"], found["patch"]
    table = Table(title=f"at ({point['x']}, {point['y']}) {point['crs']}")
    table.add_column("")
    table.add_column("value")
    table.add_row("base-map patch", f"{patch['id']} (run {patch['run_id']}), {patch['area_m2']:,.1f} m², "
                  f"{DIFFERENCE_TITLES.get(patch['difference'], patch['difference'])}")
    table.add_row("land-use plan", _class_text(patch["land_use"]))
    table.add_row("urban plan", _class_text(patch["urban_plan"]))
    district = found["district"]
    table.add_row("district", "-" if district is None else f"{district['name']} ({district['code']})")
    for line in found["protection_lines"]:
        feature = line["source_id"] or line["feature_id"]
        table.add_row(line["kind"], f"{line['layer']} {feature} {line['name'] or ''}".rstrip())
    for c in found["conflicts"]:
        table.add_row("open conflict",
                      f"{c['id']} {c['rule_id']} {c['title_zh']} ({c['severity']}), {c['area_m2']:,.1f} m²")
    person_console().print(table)


def show_exposure(result: dict[str, object]) -> None:
    """Exposed area by district and by planned class, and the most exposed construction patches."""
    console = person_console()
    console.print(f"{result['raster']} band {result['band']} above {result['threshold']}: "
                  f"{result['exposed_ha']:,.2f} ha exposed over {result['patches_examined']} base-map patches",
                  markup=False, highlight=False)
    for title, rows, key in (("by district", result["by_district"], "district_name"),
                             ("by urban-plan class", result["by_urban_plan_class"], "name")):
        table = Table(title=f"exposure {title}")
        for column in ("", "exposed ha", "area ha", "share"):
            table.add_column(column, justify="left" if column == "" else "right")
        for row in rows:
            if row["exposed_m2"] > 0:
                label = row[key] or row.get("code") or "-"
                table.add_row(str(label), f"{row['exposed_ha']:,.2f}", f"{row['area_m2'] / 1e4:,.2f}", f"{row['share']:.1%}")
        console.print(table)
    patches = result["exposed_construction_patches"]
    console.print(f"exposed planned-construction patches: {len(patches)}", markup=False, highlight=False)


def _table_totals(title: str, totals: list[TableTotal]) -> Table:
    table = Table(title=title)
    for column in ("table", "partitions", "rows"):
        table.add_column(column, justify="left" if column == "table" else "right")
    for total in totals:
        table.add_row(total.table, str(total.partitions or ""), f"{total.rows:,}")
    return table


def _tables_text(totals: list[TableTotal]) -> str:
    return f"{len(totals)} tables ({sum(t.partitions for t in totals)} partitions)"


def show_backup(summary: BackupSummary) -> None:
    """Where the backup went, what it holds: the dump, the project files, rows per table."""
    console = person_console()
    console.print(f"backup written to {summary.path} in {summary.seconds:.1f} s: database.dump "
                  f"{summary.dump_bytes / 1e6:,.1f} MB, {len(summary.files)} project files, {_tables_text(summary.totals)}, "
                  f"{summary.rows:,} rows", markup=False, highlight=False, soft_wrap=True)
    console.print(_table_totals("rows backed up (checksummed in manifest.json)", summary.totals))
    for origin in summary.missing_files:
        console.print(f"not backed up (named by the configuration, not found): {origin}", markup=False, highlight=False, soft_wrap=True)


def show_restore(summary: RestoreSummary) -> None:
    """What was restored where, that it matched the manifest, and how the project's files compare with the backup's."""
    console = person_console()
    console.print(f"restored {summary.path} into {summary.target} in {summary.seconds:.1f} s: {_tables_text(summary.totals)}, "
                  f"{summary.rows:,} rows; row counts and checksums match the manifest", markup=False, highlight=False, soft_wrap=True)
    console.print(_table_totals("rows restored", summary.totals))
    states = summary.files
    same = sum(state == "unchanged" for state in states.values())
    console.print(f"project files: {same} of {len(states)} the same as in the backup", markup=False, highlight=False, soft_wrap=True)
    for origin, state in states.items():
        if state in ("differs", "missing"):
            console.print(f"  {origin}: {'differs from' if state == 'differs' else 'missing, it is in'} the backup "
                          "(`restore --files` writes the backup's copy)", markup=False, highlight=False, soft_wrap=True)
        elif state == "restored":
            console.print(f"  {origin}: written from the backup", markup=False, highlight=False, soft_wrap=True)
    if summary.pending_migrations:
        pending = ", ".join(f"{v:04d}" for v in summary.pending_migrations)
        console.print(f"migrations newer than the backup: {pending} (applied by the next `geoservice db up` or `db migrate`)",
                      markup=False, highlight=False, soft_wrap=True)


CHANGES_SHOWN = 20


def _area_table(title: str, rows: list[AreaChange]) -> Table:
    table = Table(title=title)
    for column in ("code", "name", "gained m²", "lost m²", "net m²", "gained ha", "lost ha", "net ha"):
        table.add_column(column, justify="left" if column in ("code", "name") else "right")
    for row in rows:
        table.add_row(row.code or "-", row.name, f"{row.gained_m2:,.1f}", f"{row.lost_m2:,.1f}", f"{row.net_m2:,.1f}",
                      f"{row.gained_m2 / 1e4:,.4f}", f"{row.lost_m2 / 1e4:,.4f}", f"{row.net_m2 / 1e4:,.4f}")
    return table


def show_layer_changes(changes: LayerChanges) -> None:
    """Counts of added, removed and changed features; area gained and lost by class and by district; the first changes."""
    console = person_console()
    counts = changes.counts
    old = f"{changes.old_version}" + ("" if changes.old_revision is None else f"@{changes.old_revision}")
    new = f"{changes.new_version}" + ("" if changes.new_revision is None else f"@{changes.new_revision}")
    console.print(f"{changes.layer}: version {old} ({changes.old_features} features) → version "
                  f"{new} ({changes.new_features}): added {counts['added']}, removed {counts['removed']}, "
                  f"changed {counts['changed']}, unchanged {changes.unchanged} (paired by source id {changes.matched_by_id}, "
                  f"by geometry {changes.matched_by_geometry})", markup=False, highlight=False, soft_wrap=True)
    console.print(_area_table("area gained and lost by unified class", changes.by_class))
    console.print(_area_table(f"area gained and lost by district ({changes.district_layer or 'no district layer'})",
                              changes.by_district))
    table = Table(title="changed features")
    for column in ("change", "source id", "feature", "what", "old code", "new code", "m²"):
        table.add_column(column, justify="right" if column == "m²" else "left")
    for f in changes.features[:CHANGES_SHOWN]:
        feature = " → ".join(str(fid) for fid in (f.old_id, f.new_id) if fid is not None)
        area = f.new_area_m2 if f.new_area_m2 is not None else f.old_area_m2
        table.add_row(f.change, f.source_id or "-", feature, ", ".join(f.what), f.old_code or "", f.new_code or "", f"{area:,.1f}")
    console.print(table)
    if len(changes.features) > CHANGES_SHOWN:
        console.print(f"{len(changes.features) - CHANGES_SHOWN} more: --format json or --export PATH.gpkg lists them all",
                      markup=False, highlight=False, soft_wrap=True)


def show_seeding(summary: SeedSummary) -> None:
    """Tiles built and already cached, their size, and the slowest."""
    slowest = ", ".join(f"{tile} {seconds:.2f} s" for seconds, tile in summary.slowest) or "none"
    Console(soft_wrap=True).print(
        f"tiles seeded: {summary.built:,} built ({summary.empty:,} empty, {summary.bytes / 2**20:,.1f} MB), "
        f"{summary.cached:,} already cached, in {summary.seconds:.1f} s; slowest: {slowest}", markup=False, highlight=False)
