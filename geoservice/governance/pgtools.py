"""Running PostgreSQL's client programs (pg_dump, pg_restore) of the installed cluster against a database URL.

The password goes to the program in PGPASSWORD, never on its command line; the URL it is given has none.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from geoservice.db.packages import find_bin_dir
from geoservice.errors import DatabaseError
from geoservice.settings import Settings


def client_program(settings: Settings, name: str) -> Path:
    """The path of `name` (pg_dump, pg_restore) in the PostgreSQL bin dir the embedded cluster uses."""
    bin_dir = find_bin_dir(settings.database.bin_dir)
    if bin_dir is None or not (bin_dir / name).exists():
        raise DatabaseError(f"{name} not found: install the Debian package 'postgresql' or set database.bin_dir / GEOSERVICE_PG_BIN_DIR")
    return bin_dir / name


def split_password(url: str) -> tuple[str, str | None]:
    """The URL without its password, and the password (for PGPASSWORD)."""
    parts = urlsplit(url.replace("postgresql+psycopg2://", "postgresql://", 1))
    if parts.password is None:
        return urlunsplit(parts), None
    netloc = parts.netloc.replace(f":{parts.password}@", "@", 1)
    return urlunsplit(parts._replace(netloc=netloc)), unquote(parts.password)


def start_client(program: Path, args: list[str], url: str | None) -> subprocess.Popen[str]:
    """Start a client program (with `--dbname=<url without password>` when a URL is given)."""
    env = dict(os.environ)
    if url is not None:
        bare_url, password = split_password(url)
        args = [*args, f"--dbname={bare_url}"]
        if password is not None:
            env["PGPASSWORD"] = password
    return subprocess.Popen([str(program), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd="/")


def wait_client(process: subprocess.Popen[str], program: Path) -> str:
    """Wait for a started client program; its output, or DatabaseError with its first error line."""
    stdout, stderr = process.communicate()
    if process.returncode != 0:
        raise DatabaseError(f"{program.name} failed: {first_error(stderr)}")
    return stdout


def run_client(program: Path, args: list[str], url: str | None = None) -> str:
    """Run a client program to the end; its output, or DatabaseError with its first error line."""
    return wait_client(start_client(program, args, url), program)


def first_error(stderr: str) -> str:
    """The first line of a client program's output that says what went wrong (passwords never appear there)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if re.search(r"error:|FATAL|ERROR", line):
            return line
    return lines[0] if lines else "no message"


def program_version(program: Path) -> str:
    """'pg_dump (PostgreSQL) 15.18 …' -> '15.18 …'."""
    out = subprocess.run([str(program), "--version"], capture_output=True, text=True, check=True).stdout.strip()
    return out.split(") ", 1)[-1]
