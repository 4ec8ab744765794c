"""A bad ROOMCAST_REDIS_URL or ROOMCAST_DATABASE_URL stops `roomcast serve` before it
serves: one line naming the setting, exit status 2, within 5 s (issue 18, "Bad
settings give tracebacks"). Malformed URLs are refused without the network; a host
that does not resolve or a port that refuses answers at once. With
ROOMCAST_STARTUP_CHECK=false a Redis that is down at startup is waited for: the
server serves, alive but not ready, and connects when Redis comes, as after an
outage (docs/operations.md, "Startup checks")."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from .. import forkserver
from ..conftest import free_port, launch, require, server_env
from ..redis_server import RedisServer, redis_available

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

BOUND = 5.0
"""Seconds the issue allows from the command to its exit."""
UNRESOLVABLE = "nonexistent.invalid"  # RFC 2606: never resolves
REFUSED = 1  # a loopback port nothing listens on


def serve(tmp_path: Path, **settings: object) -> tuple[int, list[str], float]:
    """`python -m roomcast serve` with ``settings`` (at log level info, as by default),
    forked like every test server (tests/forkserver.py) or started afresh: its exit
    status, every line it printed (stdout and stderr), and the seconds from its start
    to its end (forked: without the imports, which the fresh-process test counts)."""
    env = server_env(log_level="info", **settings)
    command = [sys.executable, "-m", "roomcast", "serve", "--port", str(free_port())]
    out = tmp_path / "serve.log"
    with out.open("wb") as sink:
        process = forkserver.popen(command, env, tmp_path, out) or subprocess.Popen(
            command, env=env, cwd=tmp_path, stdout=sink, stderr=sink
        )
    started = time.monotonic()
    try:
        code = process.wait(20)
    finally:
        if process.poll() is None:
            process.kill()
    return code, out.read_text(errors="replace").splitlines(), time.monotonic() - started


def assert_refused(result: tuple[int, list[str], float], setting: str, *words: str) -> None:
    code, lines, seconds = result
    assert len(lines) == 1, "\n".join(lines)
    assert lines[0].startswith(f"roomcast: {setting}: "), lines[0]
    for word in words:
        assert word in lines[0], lines[0]
    assert code == 2
    assert seconds < BOUND, seconds


@pytest.mark.parametrize(
    ("settings", "setting", "words"),
    [
        ({"redis_url": "reddis://127.0.0.1:6379"}, "ROOMCAST_REDIS_URL", ["scheme"]),
        ({"redis_url": "redis://127.0.0.1:99999"}, "ROOMCAST_REDIS_URL", ["port"]),
        ({"redis_url": "redis://127.0.0.1:6379/0?db=x"}, "ROOMCAST_REDIS_URL", ["'db'"]),
        ({"redis_url": f"redis://{UNRESOLVABLE}:6379"}, "ROOMCAST_REDIS_URL",
         [f"Redis at {UNRESOLVABLE}:6379 cannot be reached", "ROOMCAST_STARTUP_CHECK=false"]),
        ({"redis_url": f"redis://127.0.0.1:{REFUSED}"}, "ROOMCAST_REDIS_URL",
         [f"Redis at 127.0.0.1:{REFUSED} cannot be reached", "111"]),
        ({"redis_url": f"redis://127.0.0.1:{REFUSED}", "redis_cluster": "true"},
         "ROOMCAST_REDIS_URL", [f"Redis at 127.0.0.1:{REFUSED} cannot be reached", "111"]),
        ({"redis_sentinels": f"127.0.0.1:{REFUSED},{UNRESOLVABLE}:26379"},
         "ROOMCAST_REDIS_SENTINELS", ["no sentinel answered", f"127.0.0.1:{REFUSED}"]),
        ({"database_url": "sqlite+aiosqlite:////nonexistent-dir/x.db"}, "ROOMCAST_DATABASE_URL",
         ["the database cannot be reached", "unable to open database file"]),
        ({"database_url": f"postgresql+asyncpg://app:pw@127.0.0.1:{REFUSED}/db"},
         "ROOMCAST_DATABASE_URL", ["the database cannot be reached", "Connect call failed"]),
        ({"database_url": f"postgresql+asyncpg://app@{UNRESOLVABLE}/db"},
         "ROOMCAST_DATABASE_URL", ["the database cannot be reached"]),
        ({"database_url": "postgresql+asyncpg://app@127.0.0.1:99999/db"},
         "ROOMCAST_DATABASE_URL", ["the port must be"]),
        ({"database_url": "postgresql+nodriver://app@127.0.0.1/db"}, "ROOMCAST_DATABASE_URL",
         ["no SQLAlchemy dialect or driver"]),
    ],
    ids=[
        "redis-scheme", "redis-port", "redis-option", "redis-unresolvable", "redis-refused",
        "cluster-refused", "sentinels-down", "sqlite-no-folder", "postgres-refused",
        "postgres-unresolvable", "postgres-port", "database-driver",
    ],
)  # fmt: skip
def test_a_service_url_serve_cannot_use_is_one_line_naming_it_and_exit_2(
    tmp_path: Path, settings: dict[str, str], setting: str, words: list[str]
) -> None:
    assert_refused(serve(tmp_path, **settings), setting, *words)


@pytest.mark.parametrize(
    ("settings", "setting"),
    [
        ({"redis_url": f"redis://127.0.0.1:{REFUSED}"}, "ROOMCAST_REDIS_URL"),
        ({"database_url": "sqlite+aiosqlite:////nonexistent-dir/x.db"}, "ROOMCAST_DATABASE_URL"),
    ],
    ids=["redis", "database"],
)
def test_a_fresh_process_prints_only_that_line_on_stderr_within_5_s(
    tmp_path: Path, settings: dict[str, str], setting: str
) -> None:
    """The console script's own process, imports and all, with stderr on its own."""
    command = [str(Path(sys.executable).parent / "roomcast"), "serve", "--port", "0"]
    started = time.monotonic()
    result = subprocess.run(
        command, env=server_env(log_level="info", **settings), cwd=tmp_path,
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    seconds = time.monotonic() - started
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"roomcast: {setting}: ")
    assert result.returncode == 2
    assert seconds < BOUND, seconds


def test_several_workers_are_checked_once_before_any_is_spawned(tmp_path: Path) -> None:
    code, lines, seconds = serve(tmp_path, workers=2, redis_url=f"redis://127.0.0.1:{REFUSED}")
    assert_refused(
        (code, lines, seconds),
        "ROOMCAST_REDIS_URL",
        f"Redis at 127.0.0.1:{REFUSED} cannot be reached",
    )
    assert not any("Started parent process" in line for line in lines)


def test_without_the_check_a_server_waits_for_redis_alive_but_not_ready(
    tmp_path: Path,
) -> None:
    require(redis_available(), "redis-server (apt-get install redis-server)")
    port, redis_port = free_port(), free_port()
    server = launch(
        [sys.executable, "-m", "roomcast", "serve", "--port", str(port)],
        port=port,
        env=server_env(
            startup_check="false",
            redis_url=f"redis://127.0.0.1:{redis_port}",
            redis_timeout=0.5,
            redis_backoff_cap=0.2,
        ),
        cwd=tmp_path,
        log_path=tmp_path / "server.log",
    )
    redis = RedisServer(tmp_path / "redis", redis_port)
    try:
        with httpx.Client(base_url=server.http, timeout=5) as http:
            assert http.get("/healthz").json() == {"status": "ok"}  # liveness: the process
            ready = http.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["broker"] is False
            assert ready.json()["degraded"] == ["main"]
            assert "redis pub/sub connect to main failed" in server.log()
            time.sleep(1)  # several attempts (backoff up to 0.2 s), each refused
            assert http.get("/readyz").status_code == 503
            redis.start()  # where the setting points: the next attempt connects
            assert wait_ready(http), server.log()
            published = http.post("/rooms/chat:up/messages", json={"data": "here"})
            assert published.status_code == 201, published.text
    finally:
        server.stop()
        redis.stop()


def wait_ready(http: httpx.Client, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if http.get("/readyz").status_code == 200:
            return True
        time.sleep(0.1)
    return False
