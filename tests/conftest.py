"""Shared test fixtures: real roomcast server processes on free loopback ports."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from roomcast.testing import free_port

from . import forkserver

if TYPE_CHECKING:
    from .postgres_server import PostgresServer
    from .redis_server import RedisCluster, RedisServer

ROOT = Path(__file__).resolve().parent.parent


def in_ci() -> bool:
    """In CI a missing service fails the test instead of skipping it."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, what: str) -> None:
    """Skip locally, fail in CI, when a service a test needs is missing."""
    if condition:
        return
    if in_ci():
        pytest.fail(f"required service missing in CI: {what}")
    pytest.skip(f"service missing: {what}")


@pytest.fixture(autouse=True)
def _own_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's in-process app gets its own SQLite file, never ./roomcast.db."""
    monkeypatch.setenv("ROOMCAST_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/roomcast.db")


@dataclass
class ServerProcess:
    """A `roomcast serve` child process."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        # Workers of a supervisor that was killed outright outlive it: end the group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.returncode


def server_env(**settings: object) -> dict[str, str]:
    """This process's environment without its ROOMCAST_* variables, plus ``settings``
    as ROOMCAST_* (quiet logs and no publish rate limit unless given)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMCAST_")}
    env.update({f"ROOMCAST_{k.upper()}": str(v) for k, v in settings.items()})
    env.setdefault("ROOMCAST_LOG_LEVEL", "warning")
    # Load tests publish as fast as acks allow; the rate limit has tests of its own.
    env.setdefault("ROOMCAST_PUBLISH_RATE", "0")
    return env


def launch(
    command: list[str],
    *,
    port: int,
    env: dict[str, str],
    cwd: Path,
    log_path: Path,
    ready: str = "/healthz",
    headers: dict[str, str] | None = None,
    timeout: float = 20,
) -> ServerProcess:
    """Start a server process in a process group of its own (which ``stop()`` ends),
    its output in ``log_path``; return once GET ``ready`` answers 200."""
    with log_path.open("wb") as log_file:
        # `python -m ...` is forked from a process that has imported roomcast (forkserver.py).
        process = forkserver.popen(command, env, cwd, log_path) or subprocess.Popen(
            command,
            env=env,
            cwd=cwd,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = ServerProcess(process, port, log_path)
    deadline = time.monotonic() + timeout
    # One client for every probe: making one costs ~60 ms of CPU (its TLS context),
    # which the starting server would wait for on two cores.
    with httpx.Client(timeout=1) as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{command[2:]} exited early:\n{server.log()}")
            try:
                if http.get(f"{server.http}{ready}", headers=headers).status_code == 200:
                    return server
            except httpx.HTTPError:
                pass
            time.sleep(0.02)
    server.stop(signal.SIGKILL)
    raise RuntimeError(f"{command[2:]} did not start:\n{server.log()}")


def start_server(tmp_path: Path, *, listen_port: int = 0, **settings: object) -> ServerProcess:
    """Start `roomcast serve` with ROOMCAST_* settings; wait until /healthz answers.
    ``listen_port`` (default: a free one) lets a test restart a server where it was."""
    port = listen_port or free_port()
    log_path = tmp_path / f"server-{port}.log"
    restarts = 1
    while log_path.exists():  # a restart on the same port keeps the earlier log
        restarts += 1
        log_path = tmp_path / f"server-{port}-{restarts}.log"
    command = [sys.executable, "-m", "roomcast", "serve", "--port", str(port)]
    return launch(command, port=port, env=server_env(**settings), cwd=tmp_path, log_path=log_path)


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def factory(*, listen_port: int = 0, **settings: object) -> ServerProcess:
        server = start_server(tmp_path, listen_port=listen_port, **settings)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop(signal.SIGKILL)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the session; tests isolate themselves by key prefix."""
    from .redis_server import RedisServer, redis_available

    require(redis_available(), "redis-server (apt-get install redis-server)")
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server for one test that may stop, restart or disturb it."""
    from .redis_server import RedisServer, redis_available

    require(redis_available(), "redis-server (apt-get install redis-server)")
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A 3-node Redis Cluster (no replicas) on free loopback ports, for the session."""
    from .redis_server import RedisCluster, redis_available

    require(redis_available(), "redis-server (apt-get install redis-server)")
    cluster = RedisCluster(tmp_path_factory.mktemp("cluster")).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL for the session (TESTING.md's recipe, a free loopback port);
    tests isolate themselves with a database each (``create_database``)."""
    from .postgres_server import PostgresServer, postgres_available

    require(postgres_available(), "PostgreSQL (apt-get install postgresql)")
    server = PostgresServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server for one test that may stop, crash or restart it."""
    from .postgres_server import PostgresServer, postgres_available

    require(postgres_available(), "PostgreSQL (apt-get install postgresql)")
    server = PostgresServer().start()
    yield server
    server.cleanup()
