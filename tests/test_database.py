"""The embedded database: up/down/status idempotent, safe under concurrent `db up`, clear when PostGIS is missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from geoservice import db
from geoservice.db.connection import connect_url
from geoservice.db.embedded import EmbeddedCluster
from geoservice.db.packages import find_bin_dir, server_major
from geoservice.errors import DatabaseError

ROOT = Path(__file__).resolve().parent.parent


def quiet(_: str) -> None:
    """Progress messages are not asserted here."""


def test_up_twice_status_down_twice(cluster_settings) -> None:
    before = db.status(cluster_settings)
    assert (before.running, before.problem) == (False, "not initialized")
    url = db.up(cluster_settings, quiet)
    assert db.up(cluster_settings, quiet) == url  # second up: same server, nothing redone
    status = db.status(cluster_settings)
    assert status.running and status.mode == "embedded"
    assert status.postgis_version and status.postgis_version.startswith("3.")
    assert status.migrations_pending == [] and status.migrations_applied
    conn = connect_url(url)
    with conn.cursor() as cur:
        cur.execute("SELECT ST_Area(ST_MakeEnvelope(0, 0, 10, 20, 4548))")
        assert cur.fetchone()[0] == 200.0
    conn.close()
    assert db.down(cluster_settings, quiet) is True
    assert db.down(cluster_settings, quiet) is False
    assert db.status(cluster_settings).problem == "stopped"
    assert db.up(cluster_settings, quiet) == url  # restarts on the same port with the same data


def test_two_concurrent_db_up_processes(cluster_settings) -> None:
    env = {**os.environ, "GEOSERVICE_DATA_DIR": str(cluster_settings.database.data_dir)}
    env.pop("GEOSERVICE_DATABASE_URL", None)
    command = [sys.executable, "-m", "geoservice", "--config", str(ROOT / "config" / "geoservice.yaml"), "db", "up"]
    procs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [proc.communicate(timeout=180) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], results
    stderr = "".join(err for _, err in results)
    assert stderr.count("initdb: creating") == 1
    assert stderr.count("applying migration 0001_init.sql") == 1
    assert "running: yes" in results[0][0] and "running: yes" in results[1][0]


def test_missing_postgis_names_the_package(tmp_path: Path) -> None:
    real = find_bin_dir(None)
    assert real is not None
    fake_bin = tmp_path / "pg" / "bin"
    fake_bin.mkdir(parents=True)
    for tool in ("initdb", "postgres", "pg_ctl"):
        (fake_bin / tool).symlink_to(real / tool)
    share = tmp_path / "share"
    (share / "extension").mkdir(parents=True)
    (fake_bin / "pg_config").write_text(f"#!/bin/sh\necho {share}\n")
    (fake_bin / "pg_config").chmod(0o755)
    cluster = EmbeddedCluster(tmp_path / "data", bin_dir=fake_bin, auto_install=False, echo=quiet)
    package = f"postgresql-{server_major(real)}-postgis-3"
    with pytest.raises(DatabaseError, match=rf"PostGIS extension is not installed .*install the Debian package {package}$"):
        cluster.init()
    assert not (tmp_path / "data").exists()


def test_missing_postgresql_names_the_package(tmp_path: Path) -> None:
    cluster = EmbeddedCluster(tmp_path / "data", bin_dir=tmp_path / "nothing", auto_install=False, echo=quiet)
    with pytest.raises(DatabaseError, match=r"install the Debian package 'postgresql'"):
        cluster.init()


def test_unreachable_server_is_one_clear_error(settings) -> None:
    url = "postgresql://u:secret@127.0.0.1:1/x"
    dead = settings.model_copy(update={"database": settings.database.model_copy(update={"url": url})})
    problem = db.status(dead).problem
    assert problem and problem.startswith("cannot connect to postgresql://u:***@127.0.0.1:1/x")
    with pytest.raises(DatabaseError) as caught:
        connect_url(url)
    assert "secret" not in str(caught.value) and "127.0.0.1:1" in str(caught.value)
