"""A throw-away PostgreSQL server for the tests and `traza bench --store postgresql`: Debian's PostgreSQL 15
binaries (``initdb``, ``pg_ctl``) run on a temporary folder, listening on a free port of 127.0.0.1 and on a
unix socket in that folder, no system service. :meth:`Cluster.database` gives a database dropped after.

PostgreSQL refuses to run as root: as root, the server runs as the ``postgres`` user that Debian's package
creates, on a folder given to it. Without the binaries :class:`Cluster` raises FileNotFoundError saying
what to install (``.ci/run`` installs the ``postgresql`` package when ``initdb`` is missing).

:meth:`Cluster.add_standby` adds a synchronous hot standby (``pg_basebackup -R``, the primary's
``synchronous_standby_names`` naming it, ``synchronous_commit = on``): a commit returns only once the
standby holds it, so :meth:`Cluster.fail_over` (the primary killed, the standby promoted) loses nothing
acknowledged. :meth:`Cluster.multi_url` is the libpq multi-host URL replicas use to follow the primary
(``target_session_attrs=read-write``)."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from gateway.ports import listen_ports

PG_BIN_DIRS = ("/usr/lib/postgresql/15/bin", "/usr/local/bin", "/usr/bin")
NOT_INSTALLED = "Debian's PostgreSQL 15 is not installed (apt-get install postgresql)"


def pg_bin() -> Path | None:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres`` (TRAZA_PG_BIN overrides), or None."""
    dirs = [os.environ["TRAZA_PG_BIN"]] if os.environ.get("TRAZA_PG_BIN") else list(PG_BIN_DIRS)
    for d in dirs:
        p = Path(d)
        if all((p / tool).is_file() and os.access(p / tool, os.X_OK) for tool in ("initdb", "pg_ctl", "postgres")):
            return p
    return None


def free_port() -> int:
    """A port for the server to listen on (:func:`gateway.ports.listen_ports`)."""
    return listen_ports(1)[0]


class Cluster:
    """A running PostgreSQL server on a temporary folder; :meth:`stop` stops it and removes the folder.
    ``fsync`` off by default: the tests check what the store does, not the disk (a crash of the test
    machine loses nothing that matters)."""

    def __init__(self, *, fsync: bool = False) -> None:
        bindir = pg_bin()
        if bindir is None:
            raise FileNotFoundError(NOT_INSTALLED)
        self.bin = bindir
        self.user: str | None = None
        if os.geteuid() == 0:
            try:
                self.user = pwd.getpwnam("postgres").pw_name
            except KeyError:
                raise FileNotFoundError("the postgres user is missing (apt-get install postgresql creates it)") from None
        # outside pytest's tmp folders, which only root can enter
        self.root = Path(tempfile.mkdtemp(prefix="traza-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root
        if self.user is not None:
            pw = pwd.getpwnam(self.user)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self.port = 0
        self.superuser = "traza"
        self._run([str(self.bin / "initdb"), "-D", str(self.data), "-U", self.superuser, "--auth=trust",
                   "-E", "UTF8", "--locale=C", "--no-sync"])
        conf = [
            "listen_addresses = '127.0.0.1'",
            f"unix_socket_directories = '{self.socket_dir}'",
            f"fsync = {'on' if fsync else 'off'}",
            "full_page_writes = off" if not fsync else "full_page_writes = on",
            "max_connections = 200",
            "shared_buffers = 32MB",
            "log_min_messages = warning",
            # streaming replication to a standby (add_standby); harmless without one
            "wal_level = replica",
            "max_wal_senders = 5",
            "hot_standby = on",
            "synchronous_commit = on",
            "wal_keep_size = '64MB'",
        ]
        with (self.data / "postgresql.conf").open("a", encoding="utf-8") as f:
            f.write("\n".join(conf) + "\n")
        self.standby: Path | None = None
        self.standby_port = 0
        self.primary_alive = True
        self._start()

    def _run(self, argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, user=self.user, capture_output=True, text=True, check=check,  # noqa: S603 - the PostgreSQL binaries found by pg_bin()
                              cwd=self.root, timeout=120)

    def _start(self) -> None:
        last = ""
        for _ in range(5):  # the free port may be taken between choosing it and binding it
            self.port = free_port()
            r = self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"),
                           "-o", f"-p {self.port}", "-w", "-t", "60", "start"], check=False)
            if r.returncode == 0:
                return
            last = r.stderr + (self.root / "server.log").read_text(errors="replace")[-2000:]
            time.sleep(0.2)
        raise RuntimeError(f"PostgreSQL did not start in {self.data}: {last}")

    @property
    def admin_url(self) -> str:
        return self.url("postgres")

    def url(self, dbname: str) -> str:
        return f"postgresql://{self.superuser}@127.0.0.1:{self.port}/{dbname}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql)

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; its URL."""
        name = name or f"t_{uuid.uuid4().hex[:16]}"
        self._admin(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def tables(self, url: str) -> set[str]:
        """The tables of the database at ``url``."""
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            return {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    @contextlib.contextmanager
    def database(self) -> Iterator[str]:
        url = self.create_database()
        try:
            yield url
        finally:
            self.drop_database(url)

    # --- a synchronous standby and failover ---------------------------------------------------------------

    def add_standby(self, name: str = "standby1") -> None:
        """A hot standby of this cluster on a free port, streaming synchronously: from now on a commit on
        the primary returns once the standby has flushed it."""
        if self.standby is not None:
            raise RuntimeError("this cluster has a standby already")
        data = self.root / "standby"
        self._run([str(self.bin / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.superuser,
                   "-D", str(data), "-R", "-X", "stream", "--no-sync", "-c", "fast"])
        with (data / "postgresql.auto.conf").open("a", encoding="utf-8") as f:  # name it for synchronous_standby_names
            f.write(f"primary_conninfo = 'host=127.0.0.1 port={self.port} user={self.superuser} "
                    f"application_name={name}'\n")
        self.standby = data
        last = ""
        for _ in range(5):
            self.standby_port = free_port()
            r = self._run([str(self.bin / "pg_ctl"), "-D", str(data), "-l", str(self.root / "standby.log"),
                           "-o", f"-p {self.standby_port}", "-w", "-t", "60", "start"], check=False)
            if r.returncode == 0:
                break
            last = r.stderr
            time.sleep(0.2)
        else:
            raise RuntimeError(f"the standby did not start: {last}")
        self._admin(f"ALTER SYSTEM SET synchronous_standby_names = '{name}'")
        self._admin("SELECT pg_reload_conf()")
        import psycopg

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with psycopg.connect(self.admin_url, autocommit=True) as conn:
                row = conn.execute("SELECT sync_state FROM pg_stat_replication WHERE application_name = %s",
                                   (name,)).fetchone()
            if row is not None and row[0] == "sync":
                return
            time.sleep(0.1)
        raise RuntimeError(f"standby {name} is not synchronous after 60 s")

    def multi_url(self, dbname: str) -> str:
        """The libpq multi-host URL of ``dbname`` on the primary and the standby: a connection goes to
        whichever accepts writes (the primary, or the standby once promoted)."""
        if self.standby is None:
            raise RuntimeError("no standby: add_standby() first")
        return (f"postgresql://{self.superuser}@127.0.0.1:{self.port},127.0.0.1:{self.standby_port}/{dbname}"
                "?target_session_attrs=read-write")

    def kill_primary(self) -> None:
        """The primary dies (``pg_ctl stop -m immediate``: no checkpoint, its connections cut)."""
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"], check=False)
        self.primary_alive = False

    def promote(self) -> None:
        """The standby becomes the primary (``pg_ctl promote``, waiting until it accepts writes)."""
        assert self.standby is not None
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.standby), "-w", "-t", "60", "promote"])

    def fail_over(self) -> None:
        """Kill the primary and promote the synchronous standby."""
        self.kill_primary()
        self.promote()

    def stop(self) -> None:
        for data in (self.data, self.standby):
            if data is not None and data.exists():
                self._run([str(self.bin / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], check=False)
        shutil.rmtree(self.root, ignore_errors=True)
