"""Finding PostgreSQL binaries and PostGIS files, and installing them on Debian when allowed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from geoservice.errors import DatabaseError

Echo = Callable[[str], None]
DEBIAN_PG_ROOT = Path("/usr/lib/postgresql")


def _major(bin_dir: Path) -> int:
    match = re.search(r"(\d+)", bin_dir.parent.name)
    return int(match.group(1)) if match else 0


def find_bin_dir(configured: Path | None) -> Path | None:
    """The configured bin dir, else the newest Debian /usr/lib/postgresql/N/bin, else `pg_config --bindir`."""
    if configured is not None:
        return configured if (configured / "initdb").exists() else None
    candidates = sorted((p for p in DEBIAN_PG_ROOT.glob("*/bin") if (p / "initdb").exists()), key=_major)
    if candidates:
        return candidates[-1]
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False).stdout.strip()
        if out and (Path(out) / "initdb").exists():
            return Path(out)
    return None


def server_major(bin_dir: Path) -> int:
    """Major version of the server in bin_dir (from `postgres --version`)."""
    out = subprocess.run([str(bin_dir / "postgres"), "--version"], capture_output=True, text=True, check=True).stdout
    return int(re.search(r"\)\s*(\d+)", out).group(1))


def postgis_installed(bin_dir: Path) -> bool:
    """Whether the PostGIS extension control file is in this PostgreSQL's share directory."""
    sharedir = subprocess.run(
        [str(bin_dir / "pg_config"), "--sharedir"], capture_output=True, text=True, check=False
    ).stdout.strip()
    if not sharedir:
        sharedir = f"/usr/share/postgresql/{server_major(bin_dir)}"
    return (Path(sharedir) / "extension" / "postgis.control").exists()


def can_apt_install() -> bool:
    """True when running as root on a machine with apt-get."""
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def apt_install(packages: list[str], echo: Echo) -> None:
    """apt-get update + install, printing what is done; DatabaseError naming the packages on failure."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", *packages]):
        echo("running: " + " ".join(command))
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise DatabaseError(f"{' '.join(command)} failed: {' | '.join(tail)}; install {' '.join(packages)} by hand")
