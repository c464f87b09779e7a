"""Database access: the embedded local PostGIS, connections, migrations, and the read model (db.read)."""

from geoservice.db.connection import connect_url, database_url, transaction
from geoservice.db.lifecycle import create_scratch_database, down, drop_database, run_migrations, status, up
from geoservice.db.read import SCHEMA

__all__ = [
    "SCHEMA", "connect_url", "create_scratch_database", "database_url", "down",
    "drop_database", "run_migrations", "status", "transaction", "up",
]
