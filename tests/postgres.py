"""A throwaway PostgreSQL server for tests and benchmarks: Debian's binaries (package
``postgresql``), a cluster in a new temporary folder, listening on loopback only.

Authentication is ``trust`` (any password is accepted): this is for tests only. PostgreSQL
refuses to run as root, so as root the folder is given to the ``postgres`` user and the
server's programs run as that user (``runuser``). The folder is made with ``tempfile.mkdtemp``,
not under pytest's temporary folders, which only root may enter.

Tests take the session fixture ``postgres_cluster`` (tests/conftest.py); code that cannot be
given a fixture calls :func:`shared_cluster` (one per process, destroyed at exit).
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

USER = "facesys"  # the cluster's superuser
MISSING = "PostgreSQL server binaries not found (apt-get install postgresql)"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine, or the cluster could not be started."""


def find_binaries() -> Path | None:
    """The newest Debian PostgreSQL bin folder holding initdb and pg_ctl, or None."""
    found = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb") if (Path(p).parent / "pg_ctl").exists()]
    return max(found, key=lambda folder: int(folder.parent.name) if folder.parent.name.isdigit() else 0, default=None)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PostgresCluster:
    """A PostgreSQL cluster in a temporary folder. Nothing happens until :meth:`start`, which
    makes it (initdb) the first time; :meth:`stop` and :meth:`start` again keep the same folder
    and port; :meth:`destroy` stops it and deletes the folder."""

    def __init__(self) -> None:
        self.bin = find_binaries()
        self.folder: Path | None = None
        self.port: int | None = None
        self.running = False
        self.created: list[str] = []  # URLs of the databases made by create_database, oldest first
        self._names = itertools.count()

    @property
    def data(self) -> Path:
        assert self.folder is not None, "the cluster was not started"
        return self.folder / "data"

    def _run(self, program: str, *args: str, timeout: float = 120) -> None:
        """Run one of the server's programs (as ``postgres`` when this is root); RuntimeError with its output if it fails."""
        assert self.bin is not None
        command = [str(self.bin / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, cwd=self.folder, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            log = self.folder / "server.log" if self.folder else None
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise PostgresUnavailable(f"{program} failed ({done.returncode}): {done.stdout}{done.stderr}{tail}")

    def _make(self) -> None:
        """initdb a new cluster in a new temporary folder, on a free port."""
        if self.bin is None:
            raise PostgresUnavailable(MISSING)
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailable("PostgreSQL refuses to run as root, and there is no 'postgres' user") from None
        self.folder = Path(tempfile.mkdtemp(prefix="facesys-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres")
        self.port = free_port()
        self._run("initdb", "-D", str(self.data), "--auth=trust", "-U", USER, "-E", "UTF8", "--no-sync", "--no-instructions")

    def start(self) -> None:
        """Start the server (making the cluster first, the first time) and wait until it accepts connections."""
        if self.running:
            return
        if self.folder is None:
            self._make()
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.folder} -c max_connections=300 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run("pg_ctl", "start", "-D", str(self.data), "-l", str(self.folder / "server.log"), "-w", "-t", "60", "-o", options)
        self.running = True

    def stop(self) -> None:
        """Stop the server now (fast shutdown: sessions are disconnected)."""
        if self.running:
            self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w", "-t", "60")
            self.running = False

    def destroy(self) -> None:
        """Stop the server and delete its folder (safe to call twice)."""
        with contextlib.suppress(PostgresUnavailable, subprocess.TimeoutExpired):
            self.stop()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
        self.created.clear()

    def url(self, dbname: str = "postgres", user: str = USER, password: str | None = None) -> str:
        """A URL of database ``dbname`` on this server (over TCP on 127.0.0.1)."""
        secret = f":{password}" if password is not None else ""
        return f"postgresql://{user}{secret}@127.0.0.1:{self.port}/{dbname}"

    def execute(self, statement: str, dbname: str = "postgres") -> None:
        """Run one statement outside a transaction (CREATE DATABASE, CREATE ROLE...)."""
        import psycopg

        with psycopg.connect(self.url(dbname), autocommit=True, connect_timeout=10) as conn:
            conn.execute(statement)

    def create_database(self, owner: str = USER, password: str | None = None) -> str:
        """A new, empty database owned by role ``owner``; returns its URL (as that role, with
        ``password`` in it when given)."""
        name = f"gallery_{os.getpid()}_{next(self._names)}"
        self.execute(f'CREATE DATABASE "{name}" OWNER "{owner}"')
        url = self.url(name, owner, password)
        self.created.append(url)
        return url

    def drop_databases(self, urls: list[str]) -> None:
        """Drop these databases (made by create_database), after closing this process's pools to them."""
        pools = sys.modules.get("facesys.gallery.store.postgres")
        for url in urls:
            if pools is not None:
                pools.close_pools(url)
            if self.running:
                self.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
            self.created.remove(url)


_shared: PostgresCluster | None = None
_shared_error: PostgresUnavailable | None = None
_shared_lock = threading.Lock()


def shared_cluster() -> PostgresCluster:
    """This process's cluster, started on first use and destroyed at exit. PostgresUnavailable
    (each time) when there are no server binaries or it could not be started."""
    global _shared, _shared_error
    with _shared_lock:
        if _shared_error is not None:
            raise _shared_error
        if _shared is None or _shared.folder is None:
            cluster = PostgresCluster()
            try:
                cluster.start()
            except (PostgresUnavailable, OSError, subprocess.SubprocessError) as exc:
                cluster.destroy()
                _shared_error = exc if isinstance(exc, PostgresUnavailable) else PostgresUnavailable(str(exc))
                raise _shared_error from None
            atexit.register(cluster.destroy)
            _shared = cluster
        return _shared


def running_shared_cluster() -> PostgresCluster | None:
    """The shared cluster when it was started (never starts it)."""
    return _shared if _shared is not None and _shared.running else None
