"""The CLI: one clear error line and a non-zero exit; tracebacks only with --debug."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "geoservice", *args], capture_output=True, text=True, cwd=ROOT,
        env={**os.environ, **(env or {})}, timeout=120,
    )


def test_wrong_config_key_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "config" / "geoservice.yaml"
    config.parent.mkdir()
    config.write_text("database:\n  prot: 1\n")
    result = run("--config", str(config), "db", "status")
    assert result.returncode == 1
    assert result.stderr == f"error: {config}: database.prot: unknown key\n"
    assert result.stdout == ""


def test_debug_shows_traceback(tmp_path: Path) -> None:
    config = tmp_path / "geoservice.yaml"
    config.write_text("bogus: 1\n")
    result = run("--debug", "--config", str(config), "db", "status")
    assert result.returncode == 1
    assert "Traceback" in result.stderr and result.stderr.rstrip().endswith("bogus: unknown key")


def test_usage_error_exit_code() -> None:
    result = run("db", "sideways")
    assert result.returncode == 2
    assert "No such command 'sideways'" in result.stderr


def test_db_status_against_session_database(settings) -> None:
    result = run("db", "status", env={"GEOSERVICE_DATABASE_URL": settings.database.url})
    assert result.returncode == 0, result.stderr
    assert "mode: external" in result.stdout and "running: yes" in result.stdout
    assert "PostGIS: 3." in result.stdout and "pending: 0" in result.stdout
    assert settings.database.url.split("@")[0].split(":")[-1] not in result.stdout  # password never printed


def test_db_migrate_is_idempotent(settings) -> None:
    result = run("db", "migrate", env={"GEOSERVICE_DATABASE_URL": settings.database.url})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0 migration(s) applied"
