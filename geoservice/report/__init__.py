"""Reports of detection runs: the conflict ledger (冲突台账), statistics, exports (GPKG, CSV, XLSX), an HTML page, PNGs."""

from geoservice.report.exports import export_ledger, write_ledger
from geoservice.report.html import html_report, render_html
from geoservice.report.ledger import Ledger, NoSuchRunError, read_ledger
from geoservice.report.statistics import Statistics, compute_statistics, statistics
from geoservice.report.write import report_folder, write_all

__all__ = [
    "Ledger", "NoSuchRunError", "Statistics", "compute_statistics", "export_ledger", "html_report",
    "read_ledger", "render_html", "report_folder", "statistics", "write_all", "write_ledger",
]
