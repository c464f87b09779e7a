"""Exports made for a grade: refused above it, personal attributes masked below their grade, reopened by GDAL."""

from __future__ import annotations

from pathlib import Path

import pyogrio
import pytest

from geoservice.report.layer_export import LayerExportError, export_layer
from sql_helpers import active, query


def test_export_for_a_grade_is_masked_for_it(demo_settings, tmp_path: Path) -> None:
    stored = {fid: a for fid, a in query(demo_settings, f"SELECT id, attributes FROM {active('projects')} a")}
    internal = export_layer(demo_settings, "projects", tmp_path / "internal.gpkg", "internal")
    assert internal.features == len(stored) and set(internal.masked) == {"FZR", "SFZH", "LXDH"}
    frame = pyogrio.read_dataframe(internal.path)
    assert pyogrio.read_info(internal.path)["crs"] == "EPSG:4548"
    for row in frame.itertuples():
        raw = stored[row.feature_id]
        assert row.FZR == raw["FZR"][0] + "*" * (len(raw["FZR"]) - 1)
        assert row.SFZH == raw["SFZH"][:6] + "*" * 8 + raw["SFZH"][-4:]
        assert row.LXDH == "*" * (len(raw["LXDH"]) - 4) + raw["LXDH"][-4:]
        assert row.XMMC == raw["XMMC"]
    full = export_layer(demo_settings, "projects", tmp_path / "restricted.csv", "restricted")
    assert full.masked == ()
    table = pyogrio.read_dataframe(full.path)
    assert sorted(table["SFZH"]) == sorted(a["SFZH"] for a in stored.values())


def test_export_refused_above_the_grade(demo_settings, tmp_path: Path) -> None:
    with pytest.raises(LayerExportError, match="layer 'projects' is graded internal: an export for grade public"):
        export_layer(demo_settings, "projects", tmp_path / "public.gpkg", "public")
    assert not (tmp_path / "public.gpkg").exists()
    assert export_layer(demo_settings, "districts", tmp_path / "districts.gpkg", "public").features == 6
    with pytest.raises(LayerExportError, match="no such layer"):
        export_layer(demo_settings, "nope", tmp_path / "x.gpkg", "public")
