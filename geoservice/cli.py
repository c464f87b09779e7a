"""The `geoservice` command: wires the stages together for a person; no logic of its own."""

from __future__ import annotations

import getpass
import os
import secrets
import sys
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from geoservice import __version__, db, machine, review
from geoservice.db.lifecycle import Status
from geoservice.errors import GeoserviceError
from geoservice.progress import RichReporter
from geoservice.settings import GRADES, Settings, load_settings, token_digest
from geoservice.views import (
    show_audit, show_backup, show_case, show_detection, show_exposure, show_ingest_notes, show_ingest_summaries, show_integration,
    show_layer_changes, show_lookup, show_project_check, show_restore, show_seeding, show_statistics, show_versions,
)

F = TypeVar("F", bound=Callable[..., Any])
#: --format choices: a result that is one or more tables, and one that is a document (not rows)
TABULAR, DOCUMENT = ("table", "json", "csv"), ("table", "json")


class _State:
    debug = False


def _echo(message: str) -> None:
    click.echo(message, err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_file", type=click.Path(path_type=Path), envvar="GEOSERVICE_CONFIG",
              help="Configuration file (default: config/geoservice.yaml).")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.version_option(__version__, prog_name="geoservice")
@click.pass_context
def cli(ctx: click.Context, config_file: Path | None, debug: bool) -> None:
    """geoservice: multi-plan integration (多规合一) — ingest, base map, conflicts, OGC API."""
    _State.debug = debug or _State.debug
    ctx.obj = config_file


def output_format(choices: tuple[str, ...] = TABULAR, default: str = "table") -> Callable[[F], F]:
    """The `--format` option of a command that prints a result: a table for people, JSON (and CSV, for tables) for
    programs, the keys listed in README's "Machine-readable output"."""
    return click.option("--format", "output_format", type=click.Choice(choices), default=default, show_default=True,
                        help="table: for people; json: one JSON document" + ("; csv: the rows" if "csv" in choices else "")
                             + " (stable keys: README, Machine-readable output).")


def emit(output_format: str, output: Callable[..., machine.Output], show: Callable[..., None], *result: object) -> None:
    """Print a result: `show(*result)` (rich tables) for `table`, else `output(*result)` as JSON or CSV."""
    if output_format == "table":
        show(*result)
    else:
        click.echo(output(*result).render(output_format), nl=False)


def settings_of(ctx: click.Context) -> Settings:
    """The validated settings for this invocation (loaded once)."""
    root = ctx.find_root()
    if not isinstance(root.obj, Settings):
        root.obj = load_settings(root.obj)
    return root.obj


@cli.group("db")
def db_group() -> None:
    """The database: embedded PostGIS, or GEOSERVICE_DATABASE_URL."""


def _show_status(status: Status) -> None:
    for line in status.lines():
        click.echo(line)


@db_group.command("up")
@output_format(DOCUMENT)
@click.pass_context
def db_up(ctx: click.Context, output_format: str) -> None:
    """Start or reach the database, create PostGIS, apply migrations."""
    settings = settings_of(ctx)
    db.up(settings, _echo)
    status = db.status(settings)
    emit(output_format, machine.status_output, _show_status, status)


@db_group.command("down")
@click.pass_context
def db_down(ctx: click.Context) -> None:
    """Stop the embedded database (an external server is left alone)."""
    was_running = db.down(settings_of(ctx), _echo)
    click.echo("stopped" if was_running else "not running")


@db_group.command("status")
@output_format(DOCUMENT)
@click.pass_context
def db_status(ctx: click.Context, output_format: str) -> None:
    """Where the database is, whether it runs, versions, migrations."""
    status = db.status(settings_of(ctx))
    emit(output_format, machine.status_output, _show_status, status)


@db_group.command("migrate")
@click.pass_context
def db_migrate(ctx: click.Context) -> None:
    """Apply pending migrations from sql/."""
    count = db.run_migrations(settings_of(ctx), _echo)
    click.echo(f"{count} migration(s) applied")


@cli.command("ingest")
@click.argument("definitions", nargs=-1, type=click.Path(path_type=Path))
@click.option("--all", "all_layers", is_flag=True, help="Every layers/*.yaml.")
@click.option("--dry-run", is_flag=True, help="Validate and report; store nothing.")
@click.option("--strict", is_flag=True, help="Fail the load when any row is repaired or rejected.")
@output_format()
@click.pass_context
def ingest_command(ctx: click.Context, definitions: tuple[Path, ...], all_layers: bool, dry_run: bool, strict: bool,
                   output_format: str) -> None:
    """Load layer files (layers/*.yaml) as new active versions."""
    from geoservice import ingest
    settings = settings_of(ctx)
    if all_layers == bool(definitions):
        raise click.UsageError("give layer definition files, or --all")
    loaded = ingest.load_definitions(settings.path(settings.paths.layers)) if all_layers else [
        ingest.load_definition(path) for path in definitions]
    if not dry_run:
        db.up(settings, _echo)
    reporter = RichReporter()
    summaries = [ingest.ingest_layer(settings, d, dry_run=dry_run, strict=strict, reporter=reporter) for d in loaded]
    emit(output_format, machine.ingest_output, show_ingest_summaries, summaries, dry_run)
    show_ingest_notes(summaries, reporter.console)


@click.command("layers")
@click.argument("name")
@output_format()
@click.pass_context
def layer_versions(ctx: click.Context, name: str, output_format: str) -> None:
    """The versions of layer NAME."""
    from geoservice import ingest
    versions = ingest.list_versions(settings_of(ctx), name)
    if not versions:
        raise GeoserviceError(f"no stored layer {name!r} (`geoservice layers` lists them)")
    if ctx.get_parameter_source("output_format") is ParameterSource.DEFAULT:  # `layers --format json NAME`
        output_format = ctx.parent.params.get("output_format", output_format)
    emit(output_format, machine.versions_output, show_versions, versions)


class _LayersGroup(click.Group):
    """`layers [NAME]` and `layers activate NAME VERSION`: a first word that names no subcommand is a layer's NAME."""

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None, list[str]]:
        if args[0] not in self.commands:
            return args[0], layer_versions, args
        return super().resolve_command(ctx, args)


@cli.group("layers", cls=_LayersGroup, invoke_without_command=True, subcommand_metavar="[NAME | activate NAME VERSION]")
@output_format()
@click.pass_context
def layers_group(ctx: click.Context, output_format: str) -> None:
    """List stored layers and versions (`layers NAME`: one layer's); `layers activate NAME VERSION` rolls back."""
    from geoservice import ingest
    if ctx.invoked_subcommand is None:
        versions = ingest.list_versions(settings_of(ctx))
        emit(output_format, machine.versions_output, show_versions, versions)


@layers_group.command("activate")
@click.argument("name")
@click.argument("version", type=int)
@click.pass_context
def layers_activate(ctx: click.Context, name: str, version: int) -> None:
    """Make VERSION of layer NAME the active one."""
    from geoservice import ingest
    ingest.activate_version(settings_of(ctx), name, version)
    click.echo(f"{name}: version {version} is active")


SCHEDULER_HELP = ("Run as spatial tiles on this Dask scheduler (tcp://host:8786), or local:N for N worker processes "
                  "here (default: compute.scheduler, GEOSERVICE_SCHEDULER; none: in this process).")


def _scheduler(settings: Settings, value: str | None) -> str | None:
    """The --scheduler option, checked as the setting is."""
    if value is None:
        return None
    from pydantic import ValidationError

    from geoservice.settings import ComputeSettings
    try:
        return ComputeSettings(scheduler=value).scheduler
    except ValidationError as exc:
        raise click.BadParameter(exc.errors()[0]["msg"].removeprefix("Value error, "), param_hint="--scheduler") from None


FULL_HELP = "Recompute everything, even where an incremental run from the current one would do."


@cli.command("integrate")
@click.option("--scheduler", help=SCHEDULER_HELP)
@click.option("--full", is_flag=True, help=FULL_HELP)
@output_format()
@click.pass_context
def integrate_command(ctx: click.Context, scheduler: str | None, full: bool, output_format: str) -> None:
    """Build the base map (一张图) from the active plan layers (incremental after a change)."""
    from geoservice import basemap
    settings = settings_of(ctx)
    scheduler = _scheduler(settings, scheduler)
    db.up(settings, _echo)
    summary = basemap.integrate(settings, RichReporter(), scheduler, full)
    emit(output_format, machine.integration_output, show_integration, summary)


@cli.command("detect")
@click.option("--rule", "rule_ids", multiple=True, help="Only this rule (repeatable); default: every enabled rule.")
@click.option("--scheduler", help=SCHEDULER_HELP)
@click.option("--full", is_flag=True, help=FULL_HELP)
@output_format()
@click.pass_context
def detect_command(ctx: click.Context, rule_ids: tuple[str, ...], scheduler: str | None, full: bool,
                   output_format: str) -> None:
    """Detect conflicts with the rules in config/rules.yaml; store a new detection run (incremental after a change)."""
    settings = settings_of(ctx)
    scheduler = _scheduler(settings, scheduler)
    db.up(settings, _echo)
    summary = review.detect(settings, list(rule_ids) or None, RichReporter(), scheduler=scheduler, full=full)
    emit(output_format, machine.detection_output, show_detection, summary)


@cli.command("serve")
@click.option("--host", help="Address to listen on (default: server.host).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port (default: server.port).")
@click.option("--write-config", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the pygeoapi configuration of a grade and its OpenAPI document (PATH stem + -openapi.json), "
                   "then exit.")
@click.option("--grade", type=click.Choice(GRADES), default="public", show_default=True,
              help="With --write-config: what a caller of this grade may read.")
@click.pass_context
def serve_command(ctx: click.Context, host: str | None, port: int | None, write_config: Path | None, grade: str) -> None:
    """Serve the layers, the base map and the conflicts as OGC API – Features, Tiles and Processes (pygeoapi)."""
    from geoservice import serve
    settings = serve.with_address(settings_of(ctx), host, port)
    db.up(settings, _echo)
    if write_config:
        for line in serve.written_config_lines(serve.write_pygeoapi_config(settings, write_config, grade)):
            click.echo(line)
        return
    serve.run(settings, lambda collections: [click.echo(line) for line in serve.serving_lines(settings, collections)])


@cli.command("report")
@click.option("--run", "run_id", type=int, help="Detection run id (default: the current run).")
@output_format()
@click.option("--export", "export_path", type=click.Path(path_type=Path),
              help="Write the ledger instead: a .gpkg, .csv or .xlsx file, or a folder for all three.")
@click.option("--english", is_flag=True, help="English column headers in the export (default: Chinese).")
@click.option("--all", "write_everything", is_flag=True,
              help="Write the ledger exports, the HTML report and PNG pictures under the output folder.")
@click.pass_context
def report_command(ctx: click.Context, run_id: int | None, output_format: str, export_path: Path | None, english: bool,
                   write_everything: bool) -> None:
    """Statistics of a detection run's conflict ledger (冲突台账); exports and pictures."""
    from geoservice import report
    settings = settings_of(ctx)
    db.up(settings, _echo)
    if export_path or write_everything:
        written = report.export_ledger(settings, export_path, run_id, english) if export_path else report.write_all(settings, run_id)
        for path in written:
            click.echo(str(path))
        return
    stats = report.statistics(settings, run_id)
    emit(output_format, machine.statistics_output, show_statistics, stats)


@cli.command("review")
@click.argument("conflict_id", type=int)
@click.option("--status", type=click.Choice(review.STATUSES), help="The new status; without it, show the case and its history.")
@click.option("--comment", default="", help="The opinion (处理意见); required for resolved and waived.")
@click.option("--reviewer", default=getpass.getuser, show_default="the login name", help="Who decides.")
@click.pass_context
def review_command(ctx: click.Context, conflict_id: int, status: str | None, comment: str, reviewer: str) -> None:
    """Show or change the review status of conflict CONFLICT_ID (its 图斑编号 in the ledger, of any run)."""
    settings = settings_of(ctx)
    db.up(settings, _echo)
    if status is None and comment:
        raise click.UsageError("--comment goes with --status")
    if status is not None:
        review.set_status(settings, conflict_id, status, comment, reviewer)
    show_case(review.get_case(settings, conflict_id), review.history(settings, conflict_id))


@cli.command("audit")
@click.option("--since", type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]),
              help="Only events at or after this time (UTC).")
@click.option("--collection", "layer", help="Only the events of this layer.")
@output_format()
@click.pass_context
def audit_command(ctx: click.Context, since: datetime | None, layer: str | None, output_format: str) -> None:
    """The audit trail of feature writes and submission decisions: who, when, what, before and after."""
    from geoservice.edit import audit_events
    settings = settings_of(ctx)
    db.up(settings, _echo)
    with db.transaction(settings) as conn, conn.cursor() as cur:
        events = audit_events(cur, since.replace(tzinfo=UTC) if since else None, layer)
    emit(output_format, machine.audit_output, show_audit, events)


@cli.command("export")
@click.argument("layer")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--grade", type=click.Choice(GRADES), required=True,
              help="Who the export is for: refused above this grade, personal attributes masked below theirs.")
@click.pass_context
def export_command(ctx: click.Context, layer: str, path: Path, grade: str) -> None:
    """Export the active version of LAYER to PATH (.gpkg or .csv) as a caller of a grade sees it."""
    from geoservice.report.layer_export import export_layer
    settings = settings_of(ctx)
    db.up(settings, _echo)
    written = export_layer(settings, layer, path, grade)
    masked = f"; masked for {grade}: {', '.join(written.masked)}" if written.masked else ""
    click.echo(f"wrote {written.path}: {written.features:,} features{masked}")


@cli.command("token")
@click.argument("name")
@click.option("--grade", type=click.Choice(GRADES), default="internal", show_default=True,
              help="The highest sensitivity grade the token reads.")
@click.option("--scope", "scopes", type=click.Choice(["review", "edit"]), multiple=True,
              help="Extra rights: review (change conflict and submission status over HTTP), edit (write features).")
def token_command(name: str, grade: str, scopes: tuple[str, ...]) -> None:
    """Make a new API token NAME: prints the token once and the settings entry holding only its SHA-256 digest."""
    token = secrets.token_urlsafe(32)
    click.echo(f"token (give it to the caller; it is not stored): {token}")
    click.echo("add to config/geoservice.yaml under access.tokens:")
    click.echo(f"    {name}: {{sha256: {token_digest(token)}, grade: {grade}, scopes: [{', '.join(scopes)}]}}")
    click.echo(f"or set GEOSERVICE_TOKENS=\"{name}:{grade}:{'+'.join(scopes)}:{token}\"")


@cli.command("lookup")
@click.argument("x", type=float)
@click.argument("y", type=float)
@click.option("--crs", default=None, help="CRS of x, y (x = longitude/easting); default OGC:CRS84. GCJ02 (AMap, Tencent) "
              "and BD09 (Baidu) too, within China.")
@output_format(DOCUMENT, default="json")
@click.pass_context
def lookup_command(ctx: click.Context, x: float, y: float, crs: str | None, output_format: str) -> None:
    """What every plan says at a point: patch, codes, protection lines, district, open conflicts (JSON by default)."""
    from geoservice import queries
    settings = settings_of(ctx)
    with db.transaction(settings) as conn, conn.cursor() as cur:
        found = queries.lookup_point(cur, settings, x, y, crs)
    emit(output_format, machine.lookup_output, show_lookup, found)


@cli.command("check")
@click.argument("project", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--crs", default=None, help="CRS of the file's coordinates (default: the file's); GCJ02 or BD09 for a "
              "file drawn on AMap/Tencent or Baidu. JSON output is in this CRS.")
@click.option("--code", default=None, help="The project's planned 用地用海 code (e.g. 0701).")
@output_format()
@click.pass_context
def check_command(ctx: click.Context, project: Path, crs: str | None, code: str | None, output_format: str) -> None:
    """The conflicts a proposed project (a polygon file) would create under the current rules; nothing is stored."""
    from geoservice import conflicts, queries
    settings = settings_of(ctx)
    geometry, file_crs = queries.read_project_file(project)
    rules = conflicts.load_rules(settings.path(settings.paths.rules))
    with db.transaction(settings) as conn, conn.cursor() as cur:
        found = queries.check_project(cur, settings, rules, geometry, crs or file_crs, code)
    import numpy as np
    target = queries.input_crs(settings, crs or file_crs)  # the pieces in the CRS the project was given in, named
    pieces = target.from_working(settings, np.array([c["geometry"] for c in found], dtype=object))
    found = [{**c, "geometry": piece, "crs": target.name} for c, piece in zip(found, pieces, strict=True)]
    emit(output_format, machine.check_output, show_project_check, found)


@cli.command("exposure")
@click.argument("raster")
@click.option("--threshold", type=float, required=True, help="Cells above this value are exposed.")
@click.option("--band", type=int, default=None, help="Raster band (default: the registered band, else 1).")
@output_format()
@click.pass_context
def exposure_command(ctx: click.Context, raster: str, threshold: float, band: int | None, output_format: str) -> None:
    """Exposed area of the base map under a hazard raster (a registered name, or a GeoTIFF file), by district and class."""
    from geoservice import queries
    settings = settings_of(ctx)
    with db.transaction(settings) as conn, conn.cursor() as cur:
        result = queries.hazard_exposure(cur, settings, raster, threshold, band)
    emit(output_format, machine.exposure_output, show_exposure, result)


@cli.command("backup")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@output_format()
@click.pass_context
def backup_command(ctx: click.Context, path: Path, output_format: str) -> None:
    """Write a backup folder PATH: the database schema (pg_dump), the configuration files, a manifest of checksums."""
    from geoservice import governance
    summary = governance.backup(settings_of(ctx), path, RichReporter())
    emit(output_format, machine.backup_output, show_backup, summary)


@cli.command("restore")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@click.option("--files", "restore_files", is_flag=True, help="Also write the backed-up configuration files back into the project.")
@output_format()
@click.pass_context
def restore_command(ctx: click.Context, path: Path, restore_files: bool, output_format: str) -> None:
    """Restore the backup folder PATH into an empty database (the configured one) and verify it against the manifest."""
    from geoservice import governance
    summary = governance.restore(settings_of(ctx), path, RichReporter(), restore_files)
    emit(output_format, machine.restore_output, show_restore, summary)


@cli.command("diff")
@click.argument("layer")
@click.argument("old_version")
@click.argument("new_version")
@output_format()
@click.option("--export", "export_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the added, removed and changed features to a GeoPackage (PATH.gpkg).")
@click.pass_context
def diff_command(ctx: click.Context, layer: str, old_version: str, new_version: str, output_format: str,
                 export_path: Path | None) -> None:
    """Features added, removed and changed between two versions of LAYER (V, or V@R: version V as it was after its
    revision R, the writes over HTTP); area gained and lost by class and district."""
    from geoservice import governance
    settings = settings_of(ctx)
    db.up(settings, _echo)
    (old, old_revision), (new, new_revision) = map(governance.parse_state, (old_version, new_version))
    changes = governance.layer_changes(settings, layer, old, new, old_revision, new_revision)
    if export_path:
        _echo(f"changed features written to {governance.write_changes_gpkg(settings, changes, export_path)}")
    emit(output_format, machine.changes_output, show_layer_changes, changes)


@cli.group("tiles")
def tiles_group() -> None:
    """The vector tiles' cache."""


@tiles_group.command("seed")
@click.option("--zoom", "zooms", default="8-13", show_default=True, help="A zoom or a range, e.g. 10 or 8-13.")
@click.option("--collection", "collections", multiple=True,
              help="Seed this collection's own tiles (repeatable); default: the dataset tiles the /map viewer starts with.")
@click.option("--grade", type=click.Choice(GRADES), default="public", show_default=True, help="Whose view to seed.")
@click.option("--grid", "grid_id", default="WebMercatorQuad", show_default=True, help="The tile matrix set.")
@output_format(DOCUMENT)
@click.pass_context
def tiles_seed(ctx: click.Context, zooms: str, collections: tuple[str, ...], grade: str, grid_id: str,
               output_format: str) -> None:
    """Pre-build tiles into the server's cache (a running server serves them at once)."""
    from geoservice.serve.tile_seed import seed_tiles
    first, _, last = zooms.partition("-")
    if not (first.isdigit() and (last or first).isdigit()) or int(first) > int(last or first):
        raise click.BadParameter(f"{zooms!r} is not a zoom or a range like 8-13", param_hint="--zoom")
    settings = settings_of(ctx)
    db.up(settings, _echo)
    summary = seed_tiles(settings, range(int(first), int(last or first) + 1), grade, collections, grid_id, RichReporter())
    emit(output_format, machine.seeding_output, show_seeding, summary)


@cli.command("demo")
@click.option("--serve/--no-serve", "and_serve", default=True, help="End by serving the results (default) or stop.")
@click.pass_context
def demo(ctx: click.Context, and_serve: bool) -> None:
    """The main job on the demo data: database up, ingest every layer, build the base map, detect conflicts,
    write the conflict ledger and report, then serve everything (OGC API) until Ctrl-C."""
    from geoservice import basemap, ingest, report, serve
    settings = settings_of(ctx)
    db.up(settings, _echo)
    reporter = RichReporter()
    definitions = ingest.load_definitions(settings.path(settings.paths.layers))
    summaries = [ingest.ingest_layer(settings, d, reporter=reporter) for d in definitions]
    show_ingest_summaries(summaries, False)
    show_ingest_notes(summaries, reporter.console)
    show_integration(basemap.integrate(settings, reporter))
    show_detection(review.detect(settings, None, reporter))
    written = report.write_all(settings)
    click.echo(f"conflict ledger and report: {written[0].parent}")
    for path in written:
        click.echo(f"  {path.name}")
    if and_serve:
        settings, token = serve.with_session_token(settings)
        lines = [f"full view: sign in at {settings.server.base_url}/login with the token {token} (any user name; "
                 "valid while this server runs)"] if token else []
        serve.run(settings, lambda collections: [click.echo(line) for line in [*serve.serving_lines(settings, collections),
                                                                                *lines]])


def main(argv: list[str] | None = None) -> int:
    """Entry point: one clear line and a non-zero exit for every error; tracebacks only with --debug."""
    _State.debug = "--debug" in (argv if argv is not None else sys.argv[1:]) or bool(os.environ.get("GEOSERVICE_DEBUG"))
    try:
        cli.main(args=argv, prog_name="geoservice", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except GeoserviceError as exc:
        if _State.debug:
            traceback.print_exc()
        click.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - the last line of defence for a person at a terminal
        if _State.debug:
            traceback.print_exc()
        click.echo(f"error: unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback)", err=True)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
