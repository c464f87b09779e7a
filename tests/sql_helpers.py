"""Small helpers for tests that check results against independent SQL."""

from __future__ import annotations

from geoservice.db.connection import connect_url


def query(settings, sql: str, *params) -> list[tuple]:
    """All rows of one statement on the settings' database."""
    conn = connect_url(settings.database.url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        conn.close()


ACTIVE = ("(SELECT f.* FROM geoservice.feature f JOIN geoservice.layer_version v ON v.id = f.version_id "
          "WHERE v.is_active AND v.layer = '{}')")


def active(layer: str) -> str:
    """A subquery of the active features of a layer (layer names in tests are constants)."""
    return ACTIVE.format(layer)
