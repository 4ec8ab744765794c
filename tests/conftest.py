"""Shared test fixtures: real roomcast server processes on free loopback ports."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from roomcast.testing import free_port

from . import contract, forkserver

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


# -- every frame a server sends in these directories is checked against the AsyncAPI document

CONTRACT_DIRS = ("e2e", "testing", "cluster")
"""tests/<dir> whose tests talk to real roomcast servers (tests/contract.py)."""
FRAME_STATS = "ROOMCAST_FRAME_STATS"
"""Set to 1: print how many frames of each message were checked, at the end."""
_frames_seen: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def _server_frames_follow_the_document(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Records every frame the test's clients receive (tests/contract.py) and, when it
    ends, fails it if one is not a message of the AsyncAPI document."""
    path = Path(request.node.path)
    relative = path.relative_to(ROOT / "tests").parts if path.is_relative_to(ROOT / "tests") else ()
    if len(relative) < 2 or relative[0] not in CONTRACT_DIRS:
        yield
        return
    tap = contract.install(monkeypatch)
    yield
    seen, failures = tap.check()
    _frames_seen.update(seen)
    if failures:
        pytest.fail(
            f"{len(failures)} frame(s) the AsyncAPI document does not describe:\n"
            + "\n".join(failures[:20]),
            pytrace=False,
        )


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: the controller adds it up
        workeroutput["frames_seen"] = dict(_frames_seen)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    _frames_seen.update(getattr(node, "workeroutput", {}).get("frames_seen", {}))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not os.environ.get(FRAME_STATS) or not _frames_seen:
        return
    checked = sum(n for name, n in _frames_seen.items() if name != "(undescribed)")
    terminalreporter.write_sep("-", f"frames checked against the AsyncAPI document: {checked}")
    for name, count in sorted(_frames_seen.items()):
        terminalreporter.write_line(f"{name:>20} {count}")


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
