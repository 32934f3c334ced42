"""The local PostgreSQL: a private cluster in ``<home>/pg/data`` on its own port, TimescaleDB when installed.

``initdb`` refuses to run as root, so when the stack is started by root every server command runs as the
``postgres`` OS user (``runuser -u postgres --``) and the ``pg`` folder is handed to that user. The cluster
listens on ``pg_host:pg_port`` and on a unix socket inside the home; the superuser connects through the socket
(trust), the application role ``pg_user`` over TCP with its password.
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import shutil
import subprocess
from pathlib import Path

import psycopg
from psycopg import sql

from ops.stack import proc
from ops.stack.errors import CorruptDataError, MissingToolError, StackError, StartError
from ops.stack.layout import Layout
from topics.settings import Settings

logger = logging.getLogger(__name__)

OS_USER = "postgres"
SUPERUSER = "postgres"
CONF_NAME = "orderflow.conf"
INCLUDE_LINE = f"include_if_exists = '{CONF_NAME}'\n"
SOCKET_PATH_MAX = 107
MODE_TIMESCALE = "timescaledb"
MODE_PLAIN = "plain PostgreSQL"


def find_bin(settings: Settings) -> Path:
    """The folder holding initdb, pg_ctl and postgres: ORDERFLOW_PG_BIN, pg_config --bindir, or the newest
    /usr/lib/postgresql/*/bin."""
    candidates: list[Path] = []
    if settings.pg_bin:
        candidates.append(Path(settings.pg_bin))
    else:
        pg_config = shutil.which("pg_config")
        if pg_config:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
            candidates.append(Path(out.stdout.strip()))
        versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
        candidates += versions
    for folder in candidates:
        if all((folder / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return folder
    where = settings.pg_bin or "pg_config --bindir and /usr/lib/postgresql/*/bin"
    raise MissingToolError(
        f"the PostgreSQL server programs (initdb, pg_ctl, postgres) are not in {where}",
        "run `bash ops/bootstrap.sh` (or `apt-get install postgresql-15`), or set ORDERFLOW_PG_BIN to their folder",
    )


def _version_key(path: Path) -> tuple[int, str]:
    name = path.parent.name
    return (int(name), name) if name.isdigit() else (0, name)


def server_major(bindir: Path) -> str:
    """The major version of the server binaries, e.g. '15'."""
    out = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, text=True).stdout
    match = re.search(r"(\d+)(?:\.\d+)?", out)
    if not match:
        raise MissingToolError(f"cannot tell the version of {bindir / 'postgres'}: {out.strip()!r}",
                               "check the PostgreSQL installation or ORDERFLOW_PG_BIN")
    return match.group(1)


def timescaledb_installed(bindir: Path) -> bool:
    """True if the timescaledb extension is installed for these binaries (control file and library)."""
    pg_config = bindir / "pg_config"
    if not pg_config.is_file():
        pg_config = Path(shutil.which("pg_config") or "/nonexistent")
    if not pg_config.is_file():
        return False
    out = subprocess.run([str(pg_config), "--sharedir", "--pkglibdir"], capture_output=True, text=True)
    lines = out.stdout.split()
    if len(lines) != 2:
        return False
    share, pkglib = Path(lines[0]), Path(lines[1])
    return (share / "extension" / "timescaledb.control").is_file() and any(pkglib.glob("timescaledb*.so"))


def timescaledb_enabled(settings: Settings, bindir: Path) -> bool:
    """True if the cluster is to load TimescaleDB: installed, and not turned off by ORDERFLOW_PG_TIMESCALEDB=off."""
    return settings.pg_timescaledb != "off" and timescaledb_installed(bindir)


def as_server_user(cmd: list[str]) -> list[str]:
    """``cmd`` run as the postgres OS user when we are root (initdb and postgres refuse root)."""
    return ["runuser", "-u", OS_USER, "--", *cmd] if os.geteuid() == 0 else cmd


def _server_uid() -> tuple[int, int]:
    try:
        entry = pwd.getpwnam(OS_USER)
    except KeyError:
        raise MissingToolError(
            f"running as root, the cluster must run as the '{OS_USER}' OS user, which does not exist",
            "install postgresql-15 (it creates the user) or `useradd --system postgres`; or run as a normal user",
        ) from None
    return entry.pw_uid, entry.pw_gid


def prepare_dirs(settings: Settings, layout: Layout) -> None:
    """Create the pg folders, hand them to the postgres user when root, and check that user can reach them."""
    sock = layout.pg_socket_dir / f".s.PGSQL.{settings.pg_port}"
    if len(str(sock)) > SOCKET_PATH_MAX:
        raise StackError(f"the PostgreSQL socket path {sock} is longer than {SOCKET_PATH_MAX} characters",
                         "set ORDERFLOW_HOME to a shorter folder")
    layout.pg_socket_dir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return
    uid, gid = _server_uid()
    for path in (layout.pg_dir, layout.pg_socket_dir):
        os.chown(path, uid, gid)
    if layout.pg_data.exists():
        os.chown(layout.pg_data, uid, gid)
    if not server_user_can_reach(layout.pg_dir):
        raise StackError(
            f"the '{OS_USER}' OS user cannot reach {layout.pg_dir} (a parent folder is closed to other users)",
            "set ORDERFLOW_HOME to a folder whose parents are world-searchable (chmod o+x), e.g. /var/tmp/orderflow",
        )


def server_user_can_reach(folder: Path) -> bool:
    """True if the OS user the cluster runs as can enter ``folder`` (always true unless we are root)."""
    if os.geteuid() != 0:
        return True
    return subprocess.run(as_server_user(["test", "-x", str(folder)]), capture_output=True).returncode == 0


def check_data(layout: Layout, major: str) -> bool:
    """Validate the data folder; True if it holds a cluster of this major version, False if it is to be made."""
    data = layout.pg_data
    if data.exists() and not data.is_dir():
        raise _corrupt(data, "it is a file, not a folder")
    if not data.exists() or not any(data.iterdir()):
        return False
    version_file = data / "PG_VERSION"
    if not version_file.is_file():
        raise _corrupt(data, "it holds files but no PG_VERSION (not a PostgreSQL data folder)")
    found = version_file.read_text(errors="replace").strip()
    if found != major:
        raise _corrupt(data, f"PG_VERSION says {found[:20]!r}, the server binaries are PostgreSQL {major}")
    return True


def _corrupt(data: Path, reason: str) -> CorruptDataError:
    return CorruptDataError(
        f"the PostgreSQL data folder {data} is not usable: {reason}",
        f"if its data is expendable, delete it (`rm -rf {data}`) and run `orderflow stack up` again; "
        "otherwise restore it or point ORDERFLOW_HOME elsewhere",
    )


def initdb(bindir: Path, layout: Layout) -> None:
    """Create the cluster: UTF-8, C locale, socket connections trusted, TCP connections by password."""
    cmd = [str(bindir / "initdb"), "-D", str(layout.pg_data), "-U", SUPERUSER, "-E", "UTF8", "--no-locale",
           "--auth-local=trust", "--auth-host=scram-sha-256"]
    out = subprocess.run(as_server_user(cmd), capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        detail = " ".join((out.stdout + out.stderr).strip().splitlines()[-3:])
        raise StartError(f"initdb failed in {layout.pg_data}: {detail}", "fix the cause above and run again")
    logger.info("created PostgreSQL cluster in %s", layout.pg_data)


def server_conf(settings: Settings, layout: Layout, timescale: bool) -> str:
    """The settings the stack owns, kept in ``orderflow.conf`` which ``postgresql.conf`` includes."""
    lines = [
        "# Written by `orderflow stack up` from the ORDERFLOW_* settings; edits are overwritten.",
        f"listen_addresses = '{settings.pg_host}'",
        f"port = {settings.pg_port}",
        f"unix_socket_directories = '{layout.pg_socket_dir}'",
        "max_connections = 100",
        "password_encryption = 'scram-sha-256'",
    ]
    if timescale:
        # Every TimescaleDB policy job runs in a background worker, and `orderflow db migrate` adds up to 24 (4
        # refresh, 8 compression, 12 retention), all due at once: with the server's default 8 worker processes
        # they fail to launch ("failed to start a background worker") and wait for the scheduler's next try.
        # 24 jobs at a time + 8 parallel query workers + the launcher and one scheduler per database.
        lines += ["shared_preload_libraries = 'timescaledb'", "timescaledb.telemetry_level = off",
                  "timescaledb.max_background_workers = 24", "max_worker_processes = 40"]
    return "\n".join(lines) + "\n"


def write_conf(settings: Settings, layout: Layout, timescale: bool) -> None:
    conf = layout.pg_data / CONF_NAME
    conf.write_text(server_conf(settings, layout, timescale))
    main = layout.pg_data / "postgresql.conf"
    if INCLUDE_LINE not in main.read_text():
        with main.open("a") as f:
            f.write("\n" + INCLUDE_LINE)
    if os.geteuid() == 0:
        uid, gid = _server_uid()
        os.chown(conf, uid, gid)


def running_pid(layout: Layout) -> int | None:
    """The postmaster's PID if ``postmaster.pid`` names a living server of this data folder."""
    pid = proc.read_pid(layout.pg_pid)
    return pid if proc.is_ours(pid, "postgres", str(layout.pg_data)) else None


def start(bindir: Path, settings: Settings, layout: Layout, timescale: bool) -> int:
    """Create the cluster if needed, write its settings and start it; returns the postmaster PID."""
    prepare_dirs(settings, layout)
    if not check_data(layout, server_major(bindir)):
        initdb(bindir, layout)
    write_conf(settings, layout, timescale)
    cmd = [str(bindir / "pg_ctl"), "start", "-D", str(layout.pg_data), "-l", str(layout.pg_log), "-w", "-t", "120",
           "-s"]
    out = subprocess.run(as_server_user(cmd), capture_output=True, text=True, timeout=300)
    pid = running_pid(layout)
    if out.returncode != 0 or pid is None:
        raise StartError(f"PostgreSQL did not start; last lines of {layout.pg_log}:\n" + proc.tail(layout.pg_log, 10),
                         "fix the cause above, then run `orderflow stack up` again")
    return pid


def admin_connect(settings: Settings, layout: Layout, dbname: str = "postgres") -> psycopg.Connection:
    return psycopg.connect(host=str(layout.pg_socket_dir), port=settings.pg_port, user=SUPERUSER, dbname=dbname,
                           autocommit=True, connect_timeout=10)


def ensure_database(settings: Settings, layout: Layout, timescale: bool) -> str:
    """Create (or update) the application role and database, and the extension if installed; returns the mode."""
    with admin_connect(settings, layout) as conn:
        role, db = sql.Identifier(settings.pg_user), sql.Identifier(settings.pg_database)
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (settings.pg_user,)).fetchone()
        verb = sql.SQL("ALTER") if exists else sql.SQL("CREATE")
        conn.execute(sql.SQL("{} ROLE {} LOGIN PASSWORD {}").format(verb, role, sql.Literal(settings.pg_password)))
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (settings.pg_database,)).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(db, role))
            logger.info("created database %s owned by %s", settings.pg_database, settings.pg_user)
    if not timescale:
        return MODE_PLAIN
    with admin_connect(settings, layout, settings.pg_database) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    return MODE_TIMESCALE


def health(settings: Settings) -> tuple[str, str]:
    """(health, mode) seen through the application's own DSN: whether it answers, and if TimescaleDB is on."""
    try:
        with psycopg.connect(settings.pg_dsn, connect_timeout=3) as conn:
            row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    except psycopg.Error as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return f"not answering ({first})", "unknown"
    return "ok", f"{MODE_TIMESCALE} {row[0]}" if row else MODE_PLAIN


def stop(bindir: Path | None, layout: Layout) -> str:
    """Stop the cluster of this home (fast shutdown) if its postmaster runs; what happened, in words."""
    pid = running_pid(layout)
    if pid is None:
        return "not running"
    if bindir is not None:
        cmd = [str(bindir / "pg_ctl"), "stop", "-D", str(layout.pg_data), "-m", "fast", "-w", "-t", "60", "-s"]
        subprocess.run(as_server_user(cmd), capture_output=True, text=True, timeout=120)
    if proc.wait_gone(pid, 5.0):
        return f"stopped (pid {pid})"
    polite = proc.terminate(pid, timeout=30.0)
    return f"stopped (pid {pid})" if polite else f"killed (pid {pid})"
