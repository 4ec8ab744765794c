"""The roomcast command's own checks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from roomcast.cli import check_serve_settings, uvicorn_config_kwargs
from roomcast.logs import log_config
from roomcast.settings import Settings
from roomcast.testing.ports import free_port

from .redis_server import RedisServer


def test_several_workers_on_the_memory_broker_are_refused() -> None:
    with pytest.raises(ValueError, match="Redis"):
        check_serve_settings(Settings(workers=2))
    check_serve_settings(Settings(workers=1))


def test_roomcast_loggers_log_at_the_chosen_level() -> None:
    config = log_config(Settings(log_level="warning"))
    assert config["loggers"]["roomcast"]["level"] == "WARNING"
    assert log_config(Settings(log_level="trace"))["loggers"]["roomcast"]["level"] == "DEBUG"


def test_uvicorn_runs_the_sansio_websocket_engine_with_our_limits() -> None:
    from uvicorn.importer import import_from_string
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

    kwargs = uvicorn_config_kwargs(Settings(ws_max_size=1234))
    protocol = import_from_string(kwargs["ws"])
    assert issubclass(protocol, WebSocketsSansIOProtocol)  # roomcast's direct writer on top
    assert kwargs["ws_max_size"] == 1234


def test_a_bad_setting_exits_2_with_a_one_line_message() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "roomcast", "serve", "--workers", "3"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("roomcast: --workers 3 needs the Redis broker")
    assert "Traceback" not in result.stderr


def test_a_worker_that_fails_to_start_makes_serve_exit_3_not_0(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """``--workers 2`` where the checks before uvicorn pass, then each worker finds its
    database gone, as if it went away in between: a ``sitecustomize`` gives the spawned
    worker processes, and only them, a SQLite file in a folder that does not exist.
    uvicorn's supervisor stops the others and returns; ``roomcast serve`` must end with
    3, or a process manager would take it for a clean stop and not restart it."""
    inject = tmp_path / "inject"
    inject.mkdir()
    gone = f"sqlite+aiosqlite:///{tmp_path}/gone/x.db"
    (inject / "sitecustomize.py").write_text(
        "import os, sys\n"
        "if sys.argv[:1] == ['-c']:  # a multiprocessing spawn child: a uvicorn worker\n"
        f"    os.environ['ROOMCAST_DATABASE_URL'] = {gone!r}\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(inject), os.environ.get("PYTHONPATH")])),
        "ROOMCAST_REDIS_URL": redis_server.url,
        "ROOMCAST_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/ok.db",
        "ROOMCAST_PORT": str(free_port()),
    }
    command = [sys.executable, "-m", "roomcast", "serve", "--workers", "2"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 3, result.stderr[-3000:]
    assert "ROOMCAST_DATABASE_URL: " in result.stderr  # the worker's own error
    assert "a worker failed to start" in result.stderr


def test_several_workers_whose_app_factory_raises_exit_3_instead_of_restarting(
    tmp_path: Path,
) -> None:
    """``roomcast.run("module:factory", factory=True, workers=2)`` where the host's
    factory raises in each worker: uvicorn's supervisor restarted such a worker for
    ever (its exit code was 1); now each worker fails once and the run ends with 3.
    No Redis is reached: the workers fail before their lifespan."""
    (tmp_path / "hostapp.py").write_text(
        "def make():\n    raise RuntimeError('the host factory failed')\n"
    )
    (tmp_path / "serve.py").write_text(
        "import roomcast\n"
        "if __name__ == '__main__':\n"
        "    roomcast.run('hostapp:make', factory=True, workers=2, port="
        f"{free_port()}, settings=roomcast.Settings(redis_url='redis://127.0.0.1:1'))\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])),
    }
    result = subprocess.run(
        [sys.executable, str(tmp_path / "serve.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3, result.stderr[-3000:]
    assert "a worker failed to start" in result.stderr
    failures = result.stderr.count("RuntimeError: the host factory failed")
    assert 1 <= failures <= 2, result.stderr[-3000:]  # once per worker, not a restart loop


def test_db_upgrade_creates_the_schema_and_reports_an_unreachable_database(tmp_path) -> None:
    import sqlite3

    database = tmp_path / "up.db"
    ok = subprocess.run(
        [sys.executable, "-m", "roomcast", "db", "upgrade", "--url", f"sqlite:///{database}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    tables = {row[0] for row in sqlite3.connect(database).execute("select name from sqlite_master")}
    assert {"rooms", "messages"} <= tables
    down = subprocess.run(
        [
            sys.executable,
            "-m",
            "roomcast",
            "db",
            "upgrade",
            "--url",
            "postgresql://x@127.0.0.1:1/x",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert down.returncode == 1
    assert down.stderr.startswith("roomcast: database unavailable")
