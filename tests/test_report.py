"""Reports on the demo data: statistics against independent SQL, export round trips through GDAL, the HTML page
rendered in headless Chromium, the PNG pictures, and the `report` command."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import warnings
from pathlib import Path

import numpy as np
import openpyxl
import pyogrio
import pytest
from PIL import Image
from sql_helpers import active, query
from system_tools import chromium

from geoservice.cli import main
from geoservice.errors import GeoserviceError
from geoservice.report import export_ledger, html_report, images, read_ledger, statistics, write_all
from geoservice.report.labels import LEDGER_COLUMNS, POINT_COLUMNS
from geoservice.report.statistics import CSV_COLUMNS
from geoservice.report.svg import CHART_BACKGROUND, DISTRICT_FILL, MAP_BACKGROUND, PALETTE

RUN = "(SELECT id FROM geoservice.detection_run WHERE is_current)"
CURRENT = f"(SELECT * FROM geoservice.conflict WHERE run_id = {RUN})"
DISTRICT_HA = f"(SELECT source_id, ST_Area(geom) / 1e4 AS ha FROM {active('districts')} d)"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")


def by_key(rows: list[dict], *keys: str) -> dict[tuple, dict]:
    return {tuple(row[k] for k in keys): row for row in rows}


@pytest.fixture(scope="module")
def written(demo_settings, tmp_path_factory) -> dict[str, Path]:
    """write_all (what `geoservice demo` calls) into an output folder of this module's own."""
    output = tmp_path_factory.mktemp("output")
    settings = demo_settings.model_copy(update={"paths": demo_settings.paths.model_copy(update={"output": output})})
    paths = write_all(settings)
    assert all(path.is_file() and path.stat().st_size > 0 for path in paths)
    assert all(path.parent == output / "reports" / f"run-{read_ledger(demo_settings).run.id}" for path in paths)
    return {path.suffix if path.suffix != ".png" else path.name: path for path in paths}


def test_statistics_by_rule_and_district(demo_settings) -> None:
    stats = statistics(demo_settings)
    want = query(demo_settings, f"""
        SELECT c.rule_id, c.district_code, count(*), sum(c.area_m2) / 1e4, sum(c.area_m2) / 1e4 / d.ha * 100
        FROM {CURRENT} c LEFT JOIN {DISTRICT_HA} d ON d.source_id = c.district_code GROUP BY c.rule_id, c.district_code, d.ha""")
    got = by_key(stats.by_rule_district, "rule", "district_code")
    assert len(want) > 20 and len(got) == len(want)
    for rule, district, count, ha, share in want:
        row = got[(rule, district or "")]
        assert row["count"] == count
        assert row["ha"] == pytest.approx(ha, abs=1e-4)
        assert row["share_pct"] == pytest.approx(share, abs=1e-4)
    totals = {r: (n, ha) for r, n, ha in query(
        demo_settings, f"SELECT rule_id, count(*), sum(area_m2) / 1e4 FROM {CURRENT} c GROUP BY 1")}
    assert {row["rule"] for row in stats.by_rule} >= set(totals)
    for row in stats.by_rule:
        count, ha = totals.get(row["rule"], (0, 0.0))
        assert (row["count"], row["ha"]) == (count, pytest.approx(ha, abs=1e-4))


def test_statistics_by_district_share_of_area(demo_settings) -> None:
    stats = statistics(demo_settings)
    want = query(demo_settings, f"""
        SELECT d.source_id, d.ha, (SELECT sum(area_m2) / 1e4 FROM geoservice.basemap_patch p
                                   WHERE p.run_id = (SELECT integration_run_id FROM geoservice.detection_run WHERE is_current)
                                     AND p.district_code = d.source_id),
               count(c.id), coalesce(sum(c.area_m2), 0) / 1e4, coalesce(ST_Area(ST_Union(c.geom)), 0) / 1e4
        FROM {DISTRICT_HA} d LEFT JOIN {CURRENT} c ON c.district_code = d.source_id GROUP BY d.source_id, d.ha""")
    got = by_key(stats.by_district, "district_code")
    assert len(want) == 6 and set(got) == {(row[0],) for row in want}
    for code, district_ha, planned_ha, count, ha, union_ha in want:
        row = got[(code,)]
        assert row["district_ha"] == pytest.approx(district_ha, rel=1e-6)
        assert row["planned_ha"] == pytest.approx(planned_ha, rel=1e-6)
        assert (row["count"], row["ha"]) == (count, pytest.approx(ha, abs=1e-4))
        assert row["union_ha"] == pytest.approx(union_ha, rel=1e-6, abs=1e-3)  # GEOS versions differ (see DESIGN.md)
        assert row["share_pct"] == pytest.approx(union_ha / district_ha * 100, abs=1e-4)  # rounded to 4 places
        assert row["union_ha"] <= row["ha"] + 1e-6


def test_statistics_by_plan_difference_and_status(demo_settings) -> None:
    stats = statistics(demo_settings)
    want = query(demo_settings, f"""
        SELECT p.difference, coalesce(p.district_code, ''), count(*), sum(p.area_m2) / 1e4, sum(p.area_m2) / 1e4 / d.ha * 100
        FROM geoservice.basemap_patch p LEFT JOIN {DISTRICT_HA} d ON d.source_id = p.district_code
        WHERE p.run_id = (SELECT integration_run_id FROM geoservice.detection_run WHERE is_current)
        GROUP BY 1, 2, d.ha""")
    got = by_key(stats.by_difference, "difference", "district_code")
    assert {w[0] for w in want} >= {"urban_only", "land_only", "both_construction"} and len(got) == len(want)
    for difference, district, count, ha, share in want:
        row = got[(difference, district)]
        assert (row["count"], row["ha"]) == (count, pytest.approx(ha, abs=1e-4))
        assert row["share_pct"] == (pytest.approx(share, abs=1e-4) if share is not None else None)
    statuses = dict(query(demo_settings, f"""
        SELECT k.status, count(*) FROM {CURRENT} c JOIN geoservice.conflict_case k ON k.id = c.case_id GROUP BY 1"""))
    assert {row["status"]: row["count"] for row in stats.by_status} == {s: statuses.get(s, 0) for s in
                                                                         ("open", "confirmed", "resolved", "waived")}


def test_ledger_export_round_trips(demo_settings, written) -> None:
    want = query(demo_settings, f"""
        SELECT c.id, c.area_m2, c.district_name, c.code_a, l.name_zh FROM {CURRENT} c
        LEFT JOIN geoservice.land_class l ON l.code = c.code_a""")
    ids = {row[0] for row in want}
    disappeared = query(demo_settings, f"SELECT count(*) FROM geoservice.disappeared_case WHERE run_id = {RUN}")[0][0]
    headers = [c.zh for c in LEDGER_COLUMNS]

    info = pyogrio.read_info(written[".gpkg"])
    assert info["crs"] == "EPSG:4548" and info["geometry_type"] == "MultiPolygon"
    assert list(info["fields"]) == [c.zh for c in LEDGER_COLUMNS if c.key not in POINT_COLUMNS]
    gpkg = pyogrio.read_dataframe(written[".gpkg"])
    assert len(gpkg) == len(want) + disappeared
    present = gpkg[gpkg["本期情况"] != "已消失"]
    assert set(present["图斑编号"]) == ids
    assert present["面积(公顷)"].sum() == pytest.approx(sum(row[1] for row in want) / 1e4, rel=1e-6)
    assert np.allclose(present.geometry.area / 1e4, present["面积(公顷)"], atol=1e-4)
    assert set(present["所属区县"]) == {row[2] for row in want}
    land = present[present["规则编号"] == "urban_construction_on_land_non_construction"].set_index("图斑编号")["土规用地"]
    names = {row[0]: f"{row[3]} {row[4]}" for row in want}
    assert len(land) > 100 and all(value == names[conflict] for conflict, value in land.items())
    assert set(present["处理状态"]) <= {"待处理", "已确认", "已处理", "已豁免"}

    raw = written[".csv"].read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # BOM: Excel reads the Chinese right
    table = pyogrio.read_dataframe(written[".csv"])
    assert list(table.columns) == headers
    assert set(table["图斑编号"].astype(int)) >= ids and set(table["所属区县"]) >= {row[2] for row in want}
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0] == headers and len(rows) == len(gpkg) + 1

    book = openpyxl.load_workbook(written[".xlsx"], read_only=True)
    assert book.sheetnames[0] == "冲突台账" and "两规差异统计" in book.sheetnames
    sheet_rows = list(book["冲突台账"].iter_rows(values_only=True))
    assert list(sheet_rows[0]) == headers and len(sheet_rows) == len(gpkg) + 1
    assert {row[0] for row in sheet_rows[1:]} >= ids
    assert len(pyogrio.read_dataframe(written[".xlsx"], layer="冲突台账")) == len(gpkg)


def test_english_export_and_formats(demo_settings, tmp_path) -> None:
    (path,) = export_ledger(demo_settings, tmp_path / "ledger.csv", english=True)
    assert pyogrio.read_info(path)["fields"].tolist() == [c.en for c in LEDGER_COLUMNS]
    (path,) = export_ledger(demo_settings, tmp_path / "ledger.gpkg", english=True)
    frame = pyogrio.read_dataframe(path)
    assert {"Conflict type", "Land-use plan class", "Area (ha)", "Review status"} <= set(frame.columns)
    assert frame["Review status"].isin(["open", "confirmed", "resolved", "waived"]).all()
    with pytest.raises(GeoserviceError, match=r"ledger\.shp: unknown export format"):
        export_ledger(demo_settings, tmp_path / "ledger.shp")


def test_html_report_is_self_contained(demo_settings) -> None:
    page = html_report(demo_settings)
    count = query(demo_settings, f"SELECT count(*) FROM {CURRENT} c")[0][0]
    assert page.startswith("<!DOCTYPE html>") and page.count('data-conflict="') == count
    for outside in ("http://", "https://", "<script", "<link", "src=", "url("):
        assert outside not in page
    assert page.count('<svg id="chart-') == 2 and "思明区" in page and "冲突台账" in page


def _colour(hex_colour: str) -> np.ndarray:
    return np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])


def _pixels(image: np.ndarray, hex_colour: str) -> np.ndarray:
    return (image == _colour(hex_colour)).all(axis=2)


def _bands(rows: np.ndarray) -> list[tuple[int, int]]:
    """Runs of consecutive True rows: (first, last)."""
    edges = np.flatnonzero(np.diff(np.r_[0, rows.astype(int), 0]))
    return list(zip(edges[::2].tolist(), (edges[1::2] - 1).tolist()))


def _rule_colours_drawn(region: np.ndarray, minimum: int = 20) -> int:
    return sum(int(_pixels(region, colour).sum() >= minimum) for colour in PALETTE)


def test_report_renders_in_chromium(written, tmp_path) -> None:
    shot = tmp_path / "page.png"
    subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars",
                    "--window-size=1200,3400", f"--screenshot={shot}", written[".html"].as_uri()],
                   capture_output=True, timeout=120, check=True)
    image = np.asarray(Image.open(shot).convert("RGB"))

    background = _pixels(image, MAP_BACKGROUND)
    ys, xs = np.nonzero(background)
    assert len(ys) > 10_000, "the map did not draw"
    map_region = image[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    assert _pixels(map_region, DISTRICT_FILL).mean() > 0.2  # district polygons filled
    assert _rule_colours_drawn(map_region) >= 7  # conflicts of most rules visible

    charts = _bands(_pixels(image, CHART_BACKGROUND).sum(axis=1) > 200)
    assert len(charts) == 2, charts
    by_district, by_rule = (image[first:last + 1] for first, last in charts)
    assert _rule_colours_drawn(by_district) >= 7 and _rule_colours_drawn(by_rule) >= 8


def test_png_pictures(written, demo_settings, tmp_path, monkeypatch) -> None:
    for name in ("map.png", "area_by_district.png", "area_by_rule.png"):
        image = np.asarray(Image.open(written[name]).convert("RGB"))
        assert image.shape[0] > 300 and _rule_colours_drawn(image) >= 7, name
    assert images.cjk_font() is not None  # scripts/system-packages.sh installs fonts-wqy-microhei
    ledger = read_ledger(demo_settings)
    monkeypatch.setattr(images, "cjk_font", lambda: None)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*missing from font")
        paths = images.write_images(ledger, statistics(demo_settings), tmp_path)
    assert [p.name for p in paths] == ["map.png", "area_by_district.png", "area_by_rule.png"]


def run_cli(settings, monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """The `geoservice` command in this process (no interpreter start-up): exit code, stdout, stderr."""
    monkeypatch.setenv("GEOSERVICE_DATABASE_URL", settings.database.url)
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_report_command(demo_settings, tmp_path, monkeypatch, capsys) -> None:
    stats = statistics(demo_settings)
    code, out, err = run_cli(demo_settings, monkeypatch, capsys, "report", "--format", "json")
    assert code == 0, err
    printed = json.loads(out)
    assert printed["run"]["id"] == stats.run.id and printed["by_rule_district"] == stats.by_rule_district
    code, out, _ = run_cli(demo_settings, monkeypatch, capsys, "report", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert {row["table"] for row in rows} == {"by_rule", "by_rule_district", "by_district", "by_difference",
                                              "by_status", "by_presence"}
    code, out, _ = run_cli(demo_settings, monkeypatch, capsys, "report")
    assert code == 0 and "思明区" in out and "conflicts by rule and district" in out
    code, out, _ = run_cli(demo_settings, monkeypatch, capsys, "report", "--export", str(tmp_path), "--english")
    assert code == 0 and len(out.split()) == 3 and all(Path(p).exists() for p in out.split())
    code, out, err = run_cli(demo_settings, monkeypatch, capsys, "report", "--run", "999999")
    assert code == 1 and err == "error: detection run 999999: no such run\n"
