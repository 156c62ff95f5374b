"""Runs a real Tryton server as a separate process for the sandbox and the tests.

Tryton is GPL: nothing here imports trytond. The server and ``trytond-admin`` are run as
subprocesses from the venv's bin folder; we only talk to them over JSON-RPC. Initialising a
database takes 20-60 s, so it is done once per (trytond version, modules, setup version, backend)
and cached as a template; every sandbox database is a cheap clone of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from quote2cash.connectors.tryton.client import TrytonClient
from quote2cash.private_files import PRIVATE_UMASK, open_private
from quote2cash.sandbox.tryton import setup_data
from quote2cash.sandbox.tryton.setup_data import API_USER_LOGIN, SandboxSetup

__all__ = [
    "DEFAULT_PG_DSN",
    "MODULES",
    "Backend",
    "TemplateInfo",
    "TrytonEndpoint",
    "TrytonSandbox",
    "TrytonSandboxError",
    "default_cache_dir",
]

logger = logging.getLogger(__name__)

Backend = Literal["sqlite", "postgresql"]
MODULES: Final = ("sale_subscription", "account_invoice_defer")
DEFAULT_PG_DSN: Final = "postgresql://postgres@127.0.0.1:5432/"
ADMIN_LOGIN: Final = "admin"
STATE_FILE: Final = "sandbox.json"
_T = TypeVar("_T")


class TrytonSandboxError(RuntimeError):
    """The sandbox ERP could not be built, started or stopped; the message says which step."""


def default_cache_dir() -> Path:
    """``$Q2C_CACHE_DIR/tryton`` if set, else ``~/.cache/quote2cash/tryton``."""
    root = os.environ.get("Q2C_CACHE_DIR")
    base = Path(root) if root else Path.home() / ".cache" / "quote2cash"
    return base / "tryton"


@dataclass(frozen=True)
class TrytonEndpoint:
    """Where a running sandbox ERP answers and who may log in; passwords are kept out of repr."""

    base_url: str
    database: str
    username: str
    password: str = field(repr=False)
    admin_username: str
    admin_password: str = field(repr=False)
    setup: SandboxSetup = field(repr=False)
    backend: Backend = "sqlite"

    def client(self, *, admin: bool = False, **options: Any) -> TrytonClient:
        """A JSON-RPC client for this database as the hub's API user (or admin).

        Concurrency defaults to 1 on SQLite (it cannot take parallel writes) and 4 on PostgreSQL.
        """
        options.setdefault("max_concurrency", 1 if self.backend == "sqlite" else 4)
        return TrytonClient(
            self.base_url,
            self.database,
            self.admin_username if admin else self.username,
            self.admin_password if admin else self.password,
            **options,
        )


@dataclass(frozen=True)
class TemplateInfo:
    """A built template: where it is, what it holds and how long building it took."""

    key: str
    backend: Backend
    location: str
    build_seconds: float
    admin_password: str = field(repr=False)
    api_password: str = field(repr=False)
    setup: SandboxSetup = field(repr=False)


def _bin_dir() -> Path:
    return Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _run_async(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run a coroutine from sync code, even when the caller already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def runner() -> None:
        try:
            box["result"] = asyncio.run(coro)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=runner, name="tryton-sandbox-setup")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    result: _T = box["result"]
    return result


def _write_private(path: Path, text: str) -> None:
    """Write a file readable by its owner only (0600) from the first byte."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _remove_sqlite_files(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            Path(f"{path}{suffix}").unlink()


class _ServerProcess:
    """One ``trytond`` process in its own process group, answering on a loopback port."""

    def __init__(self, process: subprocess.Popen[bytes], base_url: str, log_path: Path) -> None:
        self.process = process
        self.base_url = base_url
        self.log_path = log_path

    def stop(self, timeout: float = 10.0) -> None:
        _stop_process_group(self.process.pid, timeout, self.process)


def _stop_process_group(
    pid: int, timeout: float, process: subprocess.Popen[bytes] | None = None
) -> None:
    """SIGTERM the group, wait up to ``timeout``, then SIGKILL it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None:
            if process.poll() is not None:
                break
        else:
            # A child of this process stays a zombie (still "alive") until it is reaped.
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            if not _alive(pid):
                break
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    if process is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=timeout)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class TrytonSandbox:
    """A Tryton ERP on loopback with the sandbox's two legal entities, item master and API user.

    ``with TrytonSandbox() as erp:`` starts a server on a fresh clone of the cached template and
    yields its ``TrytonEndpoint``; leaving the block stops the server and drops the database.
    """

    def __init__(
        self,
        workdir: str | Path | None = None,
        *,
        backend: Backend = "sqlite",
        pg_dsn: str = DEFAULT_PG_DSN,
        cache_dir: str | Path | None = None,
        database: str | None = None,
        bin_dir: str | Path | None = None,
        startup_timeout: float = 60.0,
        init_timeout: float = 600.0,
        keep_database: bool = False,
    ) -> None:
        if backend not in ("sqlite", "postgresql"):
            raise ValueError(f"backend must be 'sqlite' or 'postgresql', not {backend!r}")
        self.backend: Backend = backend
        self.pg_dsn = pg_dsn
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.bin_dir = Path(bin_dir) if bin_dir else _bin_dir()
        self.startup_timeout = startup_timeout
        self.init_timeout = init_timeout
        self.keep_database = keep_database
        self._owns_workdir = workdir is None
        self._workdir = Path(workdir).resolve() if workdir else None
        self.database = database or f"q2c_{uuid.uuid4().hex[:12]}"
        self.template: TemplateInfo | None = None
        self.endpoint: TrytonEndpoint | None = None
        self._server: _ServerProcess | None = None
        self._databases: list[str] = []
        self.clone_seconds: float | None = None
        self.startup_seconds: float | None = None

    @property
    def workdir(self) -> Path:
        """Where the config, log and SQLite databases live; a private temp folder by default."""
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="q2c-tryton-"))
        return self._workdir

    # --- template ---

    def template_key(self) -> str:
        """Changes whenever the built template could differ: versions, modules, setup, backend."""
        versions = {}
        for dist in ("trytond", *(f"trytond_{m}" for m in MODULES)):
            try:
                versions[dist] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                versions[dist] = "missing"
        setup_source = Path(setup_data.__file__).read_bytes()
        material = {
            "versions": versions,
            "modules": sorted(MODULES),
            "setup_version": setup_data.SETUP_VERSION,
            "setup_sha": hashlib.sha256(setup_source).hexdigest(),
            "year": time.gmtime().tm_year,
            "backend": self.backend,
            # a PostgreSQL template is shared server-wide: one per (server, cache folder), so two
            # caches never overwrite each other's template (and its passwords)
            "server": (
                [self._pg_server_id(), str(self.cache_dir.resolve())]
                if self.backend == "postgresql"
                else None
            ),
        }
        digest = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()
        return f"{versions['trytond']}-{digest[:16]}"

    def ensure_template(self) -> TemplateInfo:
        """Build the template unless a matching one is cached; concurrent builders wait."""
        key = self.template_key()
        meta_path = self.cache_dir / f"{key}.{self.backend}.json"
        with _file_lock(self.cache_dir / f"{key}.{self.backend}.lock"):
            info = self._load_template(meta_path)
            if info is None:
                info = self._build_template(key, meta_path)
        self.template = info
        return info

    def _load_template(self, meta_path: Path) -> TemplateInfo | None:
        if not meta_path.exists():
            return None
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        info = TemplateInfo(
            key=meta["key"],
            backend=meta["backend"],
            location=meta["location"],
            build_seconds=float(meta["build_seconds"]),
            admin_password=meta["admin_password"],
            api_password=meta["api_password"],
            setup=SandboxSetup.from_json(meta["setup"]),
        )
        present = (
            Path(info.location).exists()
            if self.backend == "sqlite"
            else self._pg_database_exists(info.location)
        )
        return info if present else None

    def _build_template(self, key: str, meta_path: Path) -> TemplateInfo:
        started = time.monotonic()
        admin_password = secrets.token_urlsafe(24)
        api_password = secrets.token_urlsafe(24)
        build_dir = Path(tempfile.mkdtemp(prefix=f"build-{key}-", dir=self.cache_dir))
        build_db = f"q2c_tpl_build_{uuid.uuid4().hex[:12]}"
        try:
            self._create_empty_database(build_db, build_dir)
            conf = self._write_config(build_dir, _free_port())
            passfile = build_dir / "admin.pass"
            _write_private(passfile, admin_password + "\n")
            self._initialise(build_db, conf, passfile, build_dir / "trytond-admin.log")
            server = self._launch(build_db, conf, build_dir / "trytond.log")
            try:
                setup = _run_async(
                    self._apply_setup(server.base_url, build_db, admin_password, api_password)
                )
            finally:
                server.stop()
            location = self._store_template(key, build_db, build_dir)
        except BaseException:
            if self.backend == "postgresql":
                with contextlib.suppress(psycopg.Error):
                    self._pg_drop(build_db)
            raise
        finally:
            shutil.rmtree(build_dir, ignore_errors=True)
        elapsed = time.monotonic() - started
        info = TemplateInfo(
            key, self.backend, location, elapsed, admin_password, api_password, setup
        )
        meta = {
            "key": key,
            "backend": self.backend,
            "location": location,
            "build_seconds": round(elapsed, 2),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "admin_password": admin_password,
            "api_password": api_password,
            "setup": setup.to_json(),
        }
        tmp_meta = meta_path.with_suffix(".tmp")
        _write_private(tmp_meta, json.dumps(meta, indent=1))
        os.replace(tmp_meta, meta_path)
        message = f"Tryton sandbox template ({self.backend}) built in {elapsed:.1f} s: {location}"
        logger.info(message)
        print(message, file=sys.stderr)
        return info

    def prune_templates(self) -> list[str]:
        """Delete this backend's cached templates other than the current key; returns them."""
        current = self.template_key()
        removed: list[str] = []
        if not self.cache_dir.exists():
            return removed
        for meta_path in sorted(self.cache_dir.glob(f"*.{self.backend}.json")):
            key = meta_path.name.removesuffix(f".{self.backend}.json")
            if key == current:
                continue
            with _file_lock(self.cache_dir / f"{key}.{self.backend}.lock"):
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
                if self.backend == "sqlite":
                    _remove_sqlite_files(Path(meta["location"]))
                elif self._pg_database_exists(meta["location"]):
                    with self._pg_admin() as conn:
                        conn.execute(
                            sql.SQL("ALTER DATABASE {} IS_TEMPLATE false").format(
                                sql.Identifier(meta["location"])
                            )
                        )
                    self._pg_drop(meta["location"])
                meta_path.unlink()
            removed.append(meta["location"])
        return removed

    async def _apply_setup(
        self, base_url: str, database: str, admin_password: str, api_password: str
    ) -> SandboxSetup:
        async with TrytonClient(
            base_url, database, ADMIN_LOGIN, admin_password, timeout=300.0
        ) as erp:
            return await setup_data.build_sandbox_setup(erp, api_password=api_password)

    def _initialise(self, database: str, conf: Path, passfile: Path, log_path: Path) -> None:
        command = [
            str(self.bin_dir / "trytond-admin"),
            "-c",
            str(conf),
            "-d",
            database,
            "--all",
            "-u",
            *MODULES,
            "--activate-dependencies",
            "--email",
            "admin@example.com",
        ]
        env = {**os.environ, "TRYTONPASSFILE": str(passfile)}
        with open_private(log_path, "wb") as log:
            try:
                completed = subprocess.run(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    umask=PRIVATE_UMASK,
                    timeout=self.init_timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise TrytonSandboxError(
                    f"trytond-admin did not finish within {self.init_timeout:.0f} s "
                    f"(log: {log_path})"
                ) from None
        if completed.returncode != 0:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise TrytonSandboxError(
                f"trytond-admin failed with exit code {completed.returncode}:\n{tail}"
            )

    def _store_template(self, key: str, build_db: str, build_dir: Path) -> str:
        if self.backend == "sqlite":
            built = build_dir / f"{build_db}.sqlite"
            with contextlib.closing(sqlite3.connect(built)) as db:
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                db.execute("PRAGMA journal_mode=DELETE")
            target = self.cache_dir / f"{key}.sqlite"
            staged = build_dir / "template.sqlite"
            shutil.copyfile(built, staged)
            os.replace(staged, target)
            return str(target)
        template = f"q2c_tryton_tpl_{key.replace('.', '_').replace('-', '_')}"[:63]
        with self._pg_admin() as conn:
            self._pg_terminate(conn, build_db)
            if self._pg_database_exists(template):
                conn.execute(
                    sql.SQL("ALTER DATABASE {} IS_TEMPLATE false").format(sql.Identifier(template))
                )
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(template)
                    )
                )
            conn.execute(
                sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                    sql.Identifier(build_db), sql.Identifier(template)
                )
            )
            conn.execute(
                sql.SQL("ALTER DATABASE {} IS_TEMPLATE true").format(sql.Identifier(template))
            )
        return template

    # --- databases ---

    def _create_empty_database(self, name: str, folder: Path) -> None:
        if self.backend == "sqlite":
            (folder / f"{name}.sqlite").touch()
            return
        with self._pg_admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def create_database(self, name: str) -> float:
        """Clone the template into a new database ``name``; returns the seconds it took."""
        template = self.template or self.ensure_template()
        started = time.monotonic()
        if self.backend == "sqlite":
            target = self.workdir / f"{name}.sqlite"
            _remove_sqlite_files(target)
            shutil.copyfile(template.location, target)
        else:
            self._pg_clone(template.location, name)
        self._databases.append(name)
        self.clone_seconds = time.monotonic() - started
        return self.clone_seconds

    def drop_database(self, name: str) -> None:
        if self.backend == "sqlite":
            _remove_sqlite_files(self.workdir / f"{name}.sqlite")
        else:
            self._pg_drop(name)
        with contextlib.suppress(ValueError):
            self._databases.remove(name)

    # --- server ---

    def start(self) -> TrytonEndpoint:
        """Clone a fresh database from the template, start ``trytond`` on it and wait for it."""
        if self.endpoint is not None:
            return self.endpoint
        template = self.template or self.ensure_template()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.create_database(self.database)
        started = time.monotonic()
        try:
            self._server = self._launch_with_free_port(self.database)
            self.startup_seconds = time.monotonic() - started
        except BaseException:
            self.drop_database(self.database)
            raise
        self.endpoint = TrytonEndpoint(
            base_url=self._server.base_url,
            database=self.database,
            username=API_USER_LOGIN,
            password=template.api_password,
            admin_username=ADMIN_LOGIN,
            admin_password=template.admin_password,
            setup=template.setup,
            backend=self.backend,
        )
        self._write_state()
        return self.endpoint

    def stop(self) -> None:
        """Stop the server's whole process group, drop the databases made here, tidy the workdir."""
        if self._server is not None:
            self._server.stop()
            self._server = None
        self.endpoint = None
        if not self.keep_database:
            for name in list(self._databases):
                self.drop_database(name)
        if self._workdir is None:
            return
        with contextlib.suppress(FileNotFoundError):
            (self._workdir / STATE_FILE).unlink()
        if self._owns_workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    @property
    def running(self) -> bool:
        return self._server is not None and self._server.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._server.process.pid if self._server is not None else None

    def __enter__(self) -> TrytonEndpoint:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _launch_with_free_port(self, database: str) -> _ServerProcess:
        last_error: TrytonSandboxError | None = None
        for _attempt in range(3):
            conf = self._write_config(self.workdir, _free_port())
            try:
                return self._launch(database, conf, self.workdir / "trytond.log")
            except TrytonSandboxError as exc:
                last_error = exc
        assert last_error is not None
        raise last_error

    def _write_config(self, folder: Path, port: int) -> Path:
        lines = ["[database]"]
        if self.backend == "sqlite":
            lines += ["uri = sqlite://", f"path = {folder}"]
        else:
            lines += [f"uri = {self._trytond_uri()}"]
        lines += ["", "[web]", f"listen = 127.0.0.1:{port}", "", "[queue]", "worker = False", ""]
        conf = folder / "trytond.conf"
        _write_private(conf, "\n".join(lines))
        return conf

    def _launch(self, database: str, conf: Path, log_path: Path) -> _ServerProcess:
        port = _port_of(conf)
        env = {k: v for k, v in os.environ.items() if k != "TRYTONPASSFILE"}
        with open_private(log_path, "ab") as log:
            process = subprocess.Popen(
                [str(self.bin_dir / "trytond"), "-c", str(conf), "-d", database],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                umask=PRIVATE_UMASK,
                start_new_session=True,
            )
        server = _ServerProcess(process, f"http://127.0.0.1:{port}", log_path)
        try:
            self._wait_until_ready(server)
        except BaseException:
            server.stop()
            raise
        return server

    def _wait_until_ready(self, server: _ServerProcess) -> None:
        """Poll the server (not a fixed sleep) until it answers or the deadline passes."""
        deadline = time.monotonic() + self.startup_timeout
        body = json.dumps({"id": 0, "method": "common.server.version", "params": []}).encode()
        delay = 0.05
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                tail = server.log_path.read_text(errors="replace")[-1500:]
                raise TrytonSandboxError(
                    f"trytond exited with code {server.process.returncode} while starting:\n{tail}"
                )
            request = urllib.request.Request(  # noqa: S310 (our own loopback URL)
                f"{server.base_url}/rpc/",
                data=body,
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            try:
                with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)
        raise TrytonSandboxError(
            f"trytond did not answer at {server.base_url} within {self.startup_timeout:.0f} s"
        )

    def _write_state(self) -> None:
        assert self._server is not None and self.endpoint is not None
        state = {
            "pid": self._server.process.pid,
            "base_url": self.endpoint.base_url,
            "database": self.endpoint.database,
            "backend": self.backend,
            "pg_dsn": self.pg_dsn if self.backend == "postgresql" else None,
            "username": self.endpoint.username,
            "password": self.endpoint.password,
            "admin_username": self.endpoint.admin_username,
            "admin_password": self.endpoint.admin_password,
            "template_key": self.template.key if self.template else None,
            "setup": self.endpoint.setup.to_json(),
        }
        _write_private(self.workdir / STATE_FILE, json.dumps(state, indent=1))

    # --- PostgreSQL ---

    def _pg_admin(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.pg_dsn, dbname="postgres", autocommit=True, connect_timeout=10)

    def _pg_server_id(self) -> str:
        parts = urlsplit(self.pg_dsn)
        return f"{parts.hostname}:{parts.port or 5432}"

    def _trytond_uri(self) -> str:
        parts = urlsplit(self.pg_dsn)
        return urlunsplit((parts.scheme or "postgresql", parts.netloc, "/", "", ""))

    def _pg_database_exists(self, name: str) -> bool:
        with self._pg_admin() as conn:
            row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        return row is not None

    @staticmethod
    def _pg_terminate(conn: psycopg.Connection[Any], name: str) -> None:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )

    def _pg_clone(self, template: str, name: str) -> None:
        """``CREATE DATABASE .. TEMPLATE``, retried while another clone holds the template."""
        deadline = time.monotonic() + 30
        with self._pg_admin() as conn:
            while True:
                try:
                    conn.execute(
                        sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                            sql.Identifier(name), sql.Identifier(template)
                        )
                    )
                    return
                except psycopg.errors.ObjectInUse:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)

    def _pg_drop(self, name: str) -> None:
        with self._pg_admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _port_of(conf: Path) -> int:
    for line in conf.read_text(encoding="utf-8").splitlines():
        if line.startswith("listen = "):
            return int(line.rsplit(":", 1)[1])
    raise TrytonSandboxError(f"no [web] listen line in {conf}")


def read_state(workdir: str | Path) -> dict[str, Any] | None:
    """The state a detached ``up`` left in ``workdir`` (credentials included: file is 0600)."""
    path = Path(workdir) / STATE_FILE
    if not path.exists():
        return None
    state: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return state


def load_endpoint(workdir: str | Path) -> TrytonEndpoint | None:
    """The endpoint of a detached sandbox ERP recorded in ``workdir`` (for the CLI and demos)."""
    state = read_state(workdir)
    if state is None:
        return None
    return TrytonEndpoint(
        base_url=state["base_url"],
        database=state["database"],
        username=state["username"],
        password=state["password"],
        admin_username=state["admin_username"],
        admin_password=state["admin_password"],
        setup=SandboxSetup.from_json(state["setup"]),
        backend=state["backend"],
    )


def stop_detached(workdir: str | Path, *, timeout: float = 10.0) -> bool:
    """Stop a server started by ``up`` and drop its database; False if none was recorded."""
    state = read_state(workdir)
    if state is None:
        return False
    _stop_process_group(int(state["pid"]), timeout)
    folder = Path(workdir)
    if state["backend"] == "sqlite":
        _remove_sqlite_files(folder / f"{state['database']}.sqlite")
    else:
        sandbox = TrytonSandbox(
            folder, backend="postgresql", pg_dsn=state.get("pg_dsn") or DEFAULT_PG_DSN
        )
        sandbox._pg_drop(state["database"])
    (folder / STATE_FILE).unlink()
    return True


def server_alive(state: dict[str, Any]) -> bool:
    return _alive(int(state["pid"]))
