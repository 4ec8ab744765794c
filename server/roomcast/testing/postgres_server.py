"""A real PostgreSQL server on a free loopback port, in a private folder.

Needs PostgreSQL's server binaries (``initdb``, ``pg_ctl``, ``psql``; Debian:
``apt-get install postgresql``, version 15 is what roomcast's own tests use).
They are looked for under ``/usr/lib/postgresql/*/bin`` (newest first), then on
``PATH``. Check :func:`postgres_available` first and skip (or fail, in CI)
without them. Nothing is downloaded or installed here.

``initdb`` refuses to run as root, so as root every server command runs as the
``postgres`` user through ``runuser``, in a folder that user owns; as anyone
else they run as the caller. The folder is made with :func:`tempfile.mkdtemp`,
not under pytest's ``tmp_path``: pytest's folders are private to their owner
and the ``postgres`` user could not enter them.

A host's fixture, one server for the session and a fresh database per test::

    @pytest.fixture(scope="session")
    def postgres():
        if not postgres_available():
            pytest.skip("PostgreSQL is not installed")
        with PostgresServer() as server:
            yield server

    @pytest.fixture
    def database_url(postgres):
        return postgres.url(postgres.create_database())
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType

from .ports import free_port

__all__ = ["PostgresServer", "postgres_available", "postgres_bin"]

USER = "app"


def postgres_bin() -> Path | None:
    """The folder holding ``initdb``, ``pg_ctl`` and ``psql`` (newest Debian cluster
    version first, then ``PATH``), or ``None``."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    candidates = [Path(p).parent for p in reversed(found)]
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for folder in candidates:
        if all((folder / tool).exists() for tool in ("initdb", "pg_ctl", "psql")):
            return folder
    return None


def postgres_available() -> bool:
    """Whether the binaries are there (and, as root, ``runuser`` to run them)."""
    if postgres_bin() is None:
        return False
    return os.geteuid() != 0 or shutil.which("runuser") is not None


class PostgresServer:
    """``initdb`` + ``pg_ctl start`` in a private folder, superuser ``app``, trust auth.

    :meth:`start` returns once the server accepts connections. The caller must
    call :meth:`cleanup` (or use ``with``), which stops the server and deletes its
    folder: the postmaster is not a child that dies with the test process.
    :meth:`stop` with ``mode="immediate"`` is a crash (nothing committed is lost:
    fsync is off but the WAL is written); :meth:`start` again resumes the same data.
    """

    def __init__(self, port: int | None = None) -> None:
        binaries = postgres_bin()
        if binaries is None:
            raise RuntimeError("PostgreSQL binaries not found (apt-get install postgresql)")
        self.bin = binaries
        self.port = port or free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="roomcast-pg-"))
        self.data = self.folder / "data"
        self.log_path = self.folder / "postgres.log"
        self.initialized = False

    def url(self, database: str = "postgres") -> str:
        """A SQLAlchemy URL (asyncpg driver), for ``Settings(database_url=...)``."""
        return f"postgresql+asyncpg://{USER}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        command = list(args)
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        # Output to a file, never a pipe: the postmaster inherits it and would keep
        # a pipe open, so reading one would wait for the server to exit.
        with (self.folder / "commands.log").open("a") as out:
            return subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=timeout,
                check=False,
            )

    def _check(self, result: subprocess.CompletedProcess[str], what: str) -> None:
        if result.returncode != 0:
            log = (self.folder / "commands.log").read_text(errors="replace")
            server_log = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
            raise RuntimeError(f"{what} failed ({result.returncode}):\n{log}\n{server_log}")

    def start(self) -> PostgresServer:
        """``initdb`` (the first time), then ``pg_ctl start``; waits at most 30 s."""
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        if not self.initialized:
            result = self._run(
                str(self.bin / "initdb"),
                "-D", str(self.data),
                "-A", "trust",
                "-U", USER,
                "--no-sync",
                "-E", "UTF8",
                "--locale", "C",
            )  # fmt: skip
            self._check(result, "initdb")
            self.initialized = True
        # fsync=off still writes the WAL at each commit: an immediate stop (a crash)
        # loses nothing; only a machine crash could.
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        result = self._run(
            str(self.bin / "pg_ctl"),
            "-D", str(self.data),
            "-l", str(self.log_path),
            "-w", "-t", "30",
            "-o", options,
            "start",
        )  # fmt: skip
        self._check(result, "pg_ctl start")
        return self

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl -m MODE stop``: ``fast`` for a clean end, ``immediate`` for a crash."""
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        """A clean stop, then start on the same port with the same data."""
        self.stop()
        self.start()

    def cleanup(self) -> None:
        """Stop the server and delete its folder."""
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run one statement with ``psql``; its unaligned output. Raises on an error."""
        result = subprocess.run(
            [
                str(self.bin / "psql"),
                "-h", "127.0.0.1",
                "-p", str(self.port),
                "-U", USER,
                "-d", database,
                "-v", "ON_ERROR_STOP=1",
                "-At", "-c", sql,
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"psql {sql!r} failed: {result.stderr}")
        return result.stdout.strip()

    def create_database(self, name: str | None = None) -> str:
        """A new empty database (a random ``t_...`` name by default); its name."""
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        self.psql(f'CREATE DATABASE "{name}"')
        return name

    def wait_ready(self, timeout: float = 20) -> None:
        """Wait until ``SELECT 1`` succeeds (after a restart by other means)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.psql("SELECT 1")
                return
            except RuntimeError:
                time.sleep(0.05)
        raise RuntimeError(f"postgres on port {self.port} is not ready")

    def __enter__(self) -> PostgresServer:
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()
