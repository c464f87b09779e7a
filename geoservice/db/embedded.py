"""The embedded, project-local PostgreSQL cluster: initdb on first use, start/stop, its connection URL."""

from __future__ import annotations

import fcntl
import json
import os
import pwd
import secrets
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from geoservice.db.packages import Echo, apt_install, can_apt_install, find_bin_dir, postgis_installed, server_major
from geoservice.errors import DatabaseError

SUPERUSER = "geoservice"
STATE_FILE = "geoservice.json"
LOG_FILE = "server.log"
MAX_SOCKET_PATH = 100


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as PostgreSQL binds: TIME_WAIT is no obstacle
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass(frozen=True)
class ClusterState:
    """What initdb chose, kept in the data directory: superuser password and the port."""

    password: str
    port: int


class EmbeddedCluster:
    """A PostgreSQL cluster in `data_dir`, run by `server_user` when we are root, listening on 127.0.0.1."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        server_user: str = "postgres",
        bin_dir: Path | None = None,
        auto_install: bool = True,
        echo: Echo = print,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.configured_port = port
        self.server_user = server_user if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        self.configured_bin_dir = bin_dir
        self.auto_install = auto_install
        self.echo = echo

    # -- locating the installation -------------------------------------------------------------
    def bin_dir(self, install: bool = False) -> Path:
        """PostgreSQL's bin dir; with install=True, apt-get installs PostgreSQL when missing (root, Debian)."""
        found = find_bin_dir(self.configured_bin_dir)
        if found is None and install and self.auto_install and can_apt_install():
            self.echo("PostgreSQL server binaries not found: installing the Debian package postgresql")
            apt_install(["postgresql"], self.echo)
            found = find_bin_dir(self.configured_bin_dir)
        if found is None:
            raise DatabaseError(
                "PostgreSQL server binaries (initdb, pg_ctl) not found: install the Debian package 'postgresql' "
                "or set database.bin_dir / GEOSERVICE_PG_BIN_DIR"
            )
        return found

    def ensure_postgis_files(self, bin_dir: Path) -> None:
        """Make sure the PostGIS extension files exist for this server; install them as root on Debian."""
        if postgis_installed(bin_dir):
            return
        package = f"postgresql-{server_major(bin_dir)}-postgis-3"
        if self.auto_install and can_apt_install():
            self.echo(f"PostGIS extension files not found for PostgreSQL {server_major(bin_dir)}: installing {package}")
            apt_install([package], self.echo)
            if postgis_installed(bin_dir):
                return
        raise DatabaseError(f"the PostGIS extension is not installed for {bin_dir.parent}: install the Debian package {package}")

    # -- state ---------------------------------------------------------------------------------
    @property
    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists() and (self.data_dir / STATE_FILE).exists()

    def state(self) -> ClusterState:
        try:
            return ClusterState(**json.loads((self.data_dir / STATE_FILE).read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise DatabaseError(f"{self.data_dir / STATE_FILE}: unreadable cluster state ({exc}); remove {self.data_dir} to start over") from exc

    def _write_state(self, state: ClusterState) -> None:
        path = self.data_dir / STATE_FILE
        path.write_text(json.dumps(state.__dict__))
        os.chmod(path, 0o600)

    def url(self, database: str) -> str:
        """Connection URL of `database` in this cluster (TCP on 127.0.0.1, password auth)."""
        state = self.state()
        return f"postgresql://{SUPERUSER}:{quote(state.password)}@127.0.0.1:{state.port}/{database}"

    @contextmanager
    def lock(self) -> Iterator[None]:
        """An exclusive file lock beside the data dir, so two processes never init or start it at once."""
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with open(self.data_dir.parent / f".{self.data_dir.name}.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- running commands as the server user ---------------------------------------------------
    def _as_server_user(self) -> dict[str, object]:
        if os.geteuid() != 0:
            return {}
        try:
            pwd.getpwnam(self.server_user)
        except KeyError:
            self.echo(f"creating system user {self.server_user} to run the embedded PostgreSQL server")
            subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", self.server_user], check=True)
        return {"user": self.server_user, "group": pwd.getpwnam(self.server_user).pw_gid, "extra_groups": []}

    def _run(self, args: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(args, capture_output=True, text=True, check=False, cwd="/", **self._as_server_user())
        if check and result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().replace("\n", " | ")
            raise DatabaseError(f"{Path(args[0]).name} failed for {self.data_dir}: {detail}")
        return result

    def _give_to_server_user(self, path: Path) -> None:
        if os.geteuid() == 0:
            entry = pwd.getpwnam(self.server_user)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _check_reachable(self) -> None:
        """The server user must be able to reach and write the data dir (every parent traversable)."""
        if os.geteuid() != 0:
            return
        probe = subprocess.run(["test", "-w", str(self.data_dir)], check=False, cwd="/", **self._as_server_user())
        if probe.returncode != 0:
            raise DatabaseError(
                f"the OS user {self.server_user!r} that runs the embedded PostgreSQL cannot reach {self.data_dir}: "
                "set database.data_dir (GEOSERVICE_DATA_DIR) to a folder it can reach"
            )

    # -- lifecycle -----------------------------------------------------------------------------
    def init(self) -> None:
        """initdb on first use (superuser `geoservice`, random password, scram on TCP)."""
        bin_dir = self.bin_dir(install=True)
        self.ensure_postgis_files(bin_dir)
        if self.initialized:
            return
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise DatabaseError(f"{self.data_dir} exists, is not empty and is not a geoservice cluster: move it away or set database.data_dir")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._give_to_server_user(self.data_dir)
        os.chmod(self.data_dir, 0o700)
        self._check_reachable()
        password = secrets.token_urlsafe(24)
        with tempfile.NamedTemporaryFile("w", dir=self.data_dir.parent, prefix=".pw", delete=True) as pwfile:
            pwfile.write(password)
            pwfile.flush()
            self._give_to_server_user(Path(pwfile.name))
            self.echo(f"initdb: creating the embedded PostgreSQL cluster in {self.data_dir}")
            self._run([
                str(bin_dir / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER, f"--pwfile={pwfile.name}",
                "--auth-local=peer", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8",
            ])
        port = self.configured_port or _free_port()
        self._write_state(ClusterState(password=password, port=port))

    def is_running(self) -> bool:
        if not self.initialized:
            return False
        bin_dir = find_bin_dir(self.configured_bin_dir)
        if bin_dir is None:
            return False
        return self._run([str(bin_dir / "pg_ctl"), "status", "-D", str(self.data_dir)], check=False).returncode == 0

    def start(self) -> None:
        """initdb if needed and start the server (no-op when already running)."""
        self.init()
        if self.is_running():
            return
        state = self.state()
        port = self.configured_port or state.port
        if not _port_is_free(port):
            if self.configured_port:
                raise DatabaseError(f"port {port} (database.port) is in use by another program")
            port = _free_port()
        if port != state.port:
            self._write_state(ClusterState(password=state.password, port=port))
        socket_dir = str(self.data_dir) if len(str(self.data_dir)) < MAX_SOCKET_PATH else ""
        options = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories='{socket_dir}'"
        self.echo(f"starting the embedded PostgreSQL on 127.0.0.1:{port}")
        self._run([
            str(self.bin_dir() / "pg_ctl"), "start", "-D", str(self.data_dir), "-w", "-t", "60",
            "-l", str(self.data_dir / LOG_FILE), "-o", options,
        ])

    def stop(self) -> bool:
        """Stop the server if it runs; True when it was running."""
        if not self.is_running():
            return False
        self.echo(f"stopping the embedded PostgreSQL in {self.data_dir}")
        self._run([str(self.bin_dir() / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "60"])
        return True
