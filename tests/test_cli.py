"""The roomcast command's own checks."""

from __future__ import annotations

import subprocess
import sys

import pytest

from roomcast.cli import check_serve_settings, uvicorn_config_kwargs
from roomcast.logs import log_config
from roomcast.settings import Settings


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
