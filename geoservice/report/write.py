"""Everything a run's report has, written at once under the output folder: ledger exports, HTML page, PNG pictures."""

from __future__ import annotations

from pathlib import Path

from geoservice.report.exports import write_ledger
from geoservice.report.html import render_html
from geoservice.report.images import write_images
from geoservice.report.ledger import read_ledger
from geoservice.report.statistics import compute_statistics
from geoservice.settings import Settings

REPORT_PAGE = "report.html"


def report_folder(settings: Settings, run_id: int) -> Path:
    """Where a run's report files go: <paths.output>/reports/run-<id>/."""
    return settings.path(settings.paths.output) / "reports" / f"run-{run_id}"


def write_all(settings: Settings, run_id: int | None = None) -> list[Path]:
    """Write a run's (default: the current one's) ledger (GPKG, CSV, XLSX), HTML report and PNGs; the paths written."""
    ledger = read_ledger(settings, run_id)
    stats = compute_statistics(ledger)
    folder = report_folder(settings, ledger.run.id)
    folder.mkdir(parents=True, exist_ok=True)
    page = folder / REPORT_PAGE
    page.write_text(render_html(ledger, stats), encoding="utf-8")
    return [*write_ledger(ledger, folder, stats=stats), page, *write_images(ledger, stats, folder)]
