"""Ledger exports: GeoPackage (geometry in the working CRS + attributes), CSV (UTF-8 with BOM, for Excel) and XLSX
(the ledger and the statistics, one sheet each), headed in Chinese as bureaus do, or in English."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyogrio.raw
import shapely
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter

from geoservice.errors import GeoserviceError
from geoservice.report.labels import LEDGER_COLUMNS, POINT_COLUMNS, Column, ledger_table
from geoservice.report.ledger import Ledger, read_ledger
from geoservice.report.statistics import Statistics, compute_statistics
from geoservice.settings import Settings

FORMATS = (".gpkg", ".csv", ".xlsx")
GPKG_LAYER = "conflict_ledger"

#: statistics sheets: table -> (sheet title zh, en), columns (key, header zh, header en)
STATISTICS_SHEETS: dict[str, tuple[tuple[str, str], tuple[tuple[str, str, str], ...]]] = {
    "by_rule": (("按冲突类型统计", "By rule"), (
        ("rule", "规则编号", "Rule"), ("title_zh", "冲突类型", "Title (zh)"), ("title_en", "Conflict type", "Title"),
        ("severity", "严重程度", "Severity"), ("count", "图斑数", "Count"), ("ha", "面积(公顷)", "Area (ha)"))),
    "by_rule_district": (("按冲突类型和区县统计", "By rule and district"), (
        ("rule", "规则编号", "Rule"), ("district_code", "区县代码", "District code"), ("district", "所属区县", "District"),
        ("count", "图斑数", "Count"), ("ha", "面积(公顷)", "Area (ha)"),
        ("share_pct", "占区县面积(%)", "Share of district (%)"))),
    "by_district": (("按区县统计", "By district"), (
        ("district_code", "区县代码", "District code"), ("district", "所属区县", "District"),
        ("district_ha", "区县面积(公顷)", "District area (ha)"), ("planned_ha", "规划覆盖面积(公顷)", "Planned area (ha)"),
        ("count", "图斑数", "Count"), ("ha", "冲突面积合计(公顷)", "Conflict area, sum (ha)"),
        ("union_ha", "冲突用地面积(公顷)", "Conflict area, union (ha)"), ("share_pct", "占区县面积(%)", "Share of district (%)"),
        ("planned_share_pct", "占规划覆盖面积(%)", "Share of planned area (%)"))),
    "by_difference": (("两规差异统计", "Plan differences"), (
        ("difference", "差异类型", "Difference class"), ("district_code", "区县代码", "District code"),
        ("district", "所属区县", "District"), ("count", "图斑数", "Patches"), ("ha", "面积(公顷)", "Area (ha)"),
        ("share_pct", "占区县面积(%)", "Share of district (%)"))),
}


def _fields(table: pd.DataFrame, columns: list[Column]) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    """Column arrays for GDAL, with null masks for integer columns."""
    data, masks = [], []
    for column, name in zip(columns, table.columns):
        series = table[name]
        if column.kind == "int":
            data.append(series.fillna(0).to_numpy(dtype=np.int64))
            masks.append(series.isna().to_numpy())
        elif column.kind == "float":
            data.append(series.to_numpy(dtype=np.float64))
            masks.append(None)
        else:
            data.append(series.astype(object).to_numpy())
            masks.append(None)
    return data, masks


def write_gpkg(ledger: Ledger, path: Path, english: bool) -> Path:
    """The ledger as a GeoPackage layer `conflict_ledger`: MultiPolygons in the working CRS, one field per column."""
    columns = [c for c in LEDGER_COLUMNS if c.key not in POINT_COLUMNS]
    table = ledger_table(ledger, english, with_point=False)
    data, masks = _fields(table, columns)
    path.unlink(missing_ok=True)
    pyogrio.raw.write(path, shapely.to_wkb(ledger.geometries), data, list(table.columns), field_mask=masks,
                      layer=GPKG_LAYER, driver="GPKG", geometry_type="MultiPolygon", crs=ledger.crs)
    return path


def write_csv(ledger: Ledger, path: Path, english: bool) -> Path:
    """The ledger as CSV, UTF-8 with a byte-order mark (Excel then reads the Chinese right); X/Y in the working CRS."""
    ledger_table(ledger, english).to_csv(path, index=False, encoding="utf-8-sig", lineterminator="\r\n")
    return path


def _sheet(workbook: Workbook, title: str, headers: list[str], rows: list[list[object]], widths: list[int]) -> None:
    sheet = workbook.create_sheet(title)
    sheet.freeze_panes = "A2"
    for index, width in enumerate(widths, start=1):
        sheet.column_dimensions[get_column_letter(index)].width = width
    bold = Font(bold=True)
    header_cells = []
    for header in headers:
        cell = WriteOnlyCell(sheet, value=header)
        cell.font = bold
        header_cells.append(cell)
    sheet.append(header_cells)
    for row in rows:
        sheet.append(row)


def _plain_rows(frame: pd.DataFrame) -> list[list[object]]:
    """Rows of Python values, missing values as empty cells."""
    values = frame.astype(object)
    return values.where(values.notna(), None).to_numpy().tolist()


def write_xlsx(ledger: Ledger, stats: Statistics, path: Path, english: bool) -> Path:
    """The ledger and its statistics as an Excel workbook: the ledger sheet first, then one sheet per statistics table."""
    workbook = Workbook(write_only=True)
    table = ledger_table(ledger, english)
    widths = [max(8, min(40, 2 * len(str(h)) + 4)) for h in table.columns]
    _sheet(workbook, "Conflict ledger" if english else "冲突台账", list(table.columns), _plain_rows(table), widths)
    for name, (titles, columns) in STATISTICS_SHEETS.items():
        frame = pd.DataFrame(getattr(stats, name), columns=[key for key, _, _ in columns])
        headers = [en if english else zh for _, zh, en in columns]
        _sheet(workbook, titles[int(english)], headers, _plain_rows(frame), [max(10, 2 * len(h) + 2) for h in headers])
    workbook.save(path)
    return path


def write_ledger(ledger: Ledger, target: Path, english: bool = False, stats: Statistics | None = None) -> list[Path]:
    """Write the ledger to `target`: a .gpkg, .csv or .xlsx file, or a folder that gets all three."""
    target = Path(target)
    if target.suffix.lower() in FORMATS:
        paths = [target]
    elif target.suffix:
        raise GeoserviceError(f"{target}: unknown export format {target.suffix!r} (use .gpkg, .csv, .xlsx or a folder)")
    else:
        stem = f"conflict_ledger_run{ledger.run.id}{'_en' if english else ''}"
        paths = [target / f"{stem}{suffix}" for suffix in FORMATS]
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    for path in paths:
        suffix = path.suffix.lower()
        if suffix == ".gpkg":
            write_gpkg(ledger, path, english)
        elif suffix == ".csv":
            write_csv(ledger, path, english)
        else:
            write_xlsx(ledger, stats or compute_statistics(ledger), path, english)
    return paths


def export_ledger(settings: Settings, target: Path, run_id: int | None = None, english: bool = False) -> list[Path]:
    """Export a detection run's ledger (default: the current run) to a file or a folder; the paths written."""
    return write_ledger(read_ledger(settings, run_id), target, english)
