"""Settings: validation errors name the file (or environment variable) and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from geoservice.errors import ConfigError
from geoservice.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent


def write_config(tmp_path: Path, text: str) -> Path:
    (tmp_path / "config").mkdir()
    path = tmp_path / "config" / "geoservice.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_project_config_loads_with_defaults() -> None:
    settings = load_settings(ROOT / "config" / "geoservice.yaml", environ={})
    assert settings.working_crs == "EPSG:4548"
    assert settings.working_srid == 4548
    assert settings.root == ROOT
    assert settings.path(settings.paths.layers) == ROOT / "layers"
    assert "OGC:CRS84" in settings.serving_crs


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    path = write_config(tmp_path, "database:\n  prot: 5432\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    message = str(caught.value)
    assert message == f"{path}: database.prot: unknown key"
    assert "\n" not in message


def test_unknown_top_level_key(tmp_path: Path) -> None:
    path = write_config(tmp_path, "workin_crs: EPSG:4548\n")
    with pytest.raises(ConfigError, match=r"workin_crs: unknown key"):
        load_settings(path, environ={})


def test_geographic_working_crs_refused(tmp_path: Path) -> None:
    path = write_config(tmp_path, "working_crs: EPSG:4490\n")
    with pytest.raises(ConfigError, match=r"working_crs: EPSG:4490 is not a projected CRS in metres"):
        load_settings(path, environ={})


def test_bad_value_type_names_key(tmp_path: Path) -> None:
    path = write_config(tmp_path, "server:\n  port: eighty\n")
    with pytest.raises(ConfigError, match=r"server.port: Input should be a valid integer"):
        load_settings(path, environ={})


def test_unknown_serving_crs(tmp_path: Path) -> None:
    path = write_config(tmp_path, "serving_crs: [EPSG:4548, EPSG:99999999]\n")
    with pytest.raises(ConfigError, match=r"serving_crs: unknown CRS 'EPSG:99999999'"):
        load_settings(path, environ={})


def test_environment_overrides_and_is_named_when_wrong(tmp_path: Path) -> None:
    path = write_config(tmp_path, "working_crs: EPSG:4548\n")
    settings = load_settings(path, environ={"GEOSERVICE_WORKING_CRS": "EPSG:4549", "GEOSERVICE_DB_PORT": "6543"})
    assert settings.working_srid == 4549
    assert settings.database.port == 6543
    with pytest.raises(ConfigError, match=r"^environment variable GEOSERVICE_DB_PORT: database.port: "):
        load_settings(path, environ={"GEOSERVICE_DB_PORT": "not-a-port"})


def test_database_url_must_be_postgres(tmp_path: Path) -> None:
    path = write_config(tmp_path, "{}\n")
    with pytest.raises(ConfigError, match=r"GEOSERVICE_DATABASE_URL: database.url: must be a postgresql:// URL"):
        load_settings(path, environ={"GEOSERVICE_DATABASE_URL": "mysql://x@y/z"})


def test_invalid_yaml_and_missing_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, "database: [unclosed\n")
    with pytest.raises(ConfigError, match=r"not valid YAML"):
        load_settings(path, environ={})
    with pytest.raises(ConfigError, match=r"configuration file not found"):
        load_settings(tmp_path / "nope.yaml", environ={})


def test_tile_settings_are_checked(tmp_path: Path) -> None:
    path = write_config(tmp_path, "server:\n  tiles: {cache_mb: 64, min_zoom: {basemap: 8}}\n")
    tiles = load_settings(path, environ={}).server.tiles
    assert (tiles.cache_mb, tiles.min_zoom, tiles.max_zoom) == (64, {"basemap": 8}, 22)
    for text, problem in (("{cache_mb: -1}", r"server.tiles.cache_mb: Input should be greater"),
                          ("{min_zoom: {basemap: 30}}", r"server.tiles.min_zoom: basemap: 30 is not a zoom level"),
                          ("{cache_size: 1}", r"server.tiles.cache_size: unknown key")):
        (tmp_path / "config" / "geoservice.yaml").write_text(f"server:\n  tiles: {text}\n", encoding="utf-8")
        with pytest.raises(ConfigError, match=problem):
            load_settings(path, environ={})
