"""ASGI apps of tests/e2e (a host app that mounts roomcast, a protocol stub) run
as real uvicorn processes, started like conftest's ``roomcast serve`` servers: a
free loopback port, a process group of its own, ready once a health path answers."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .. import contract
from ..conftest import ROOT, ServerProcess, free_port, launch, server_env

AppFactory = Callable[..., ServerProcess]
PROTOCOL_STUB = "tests.e2e.stub_server:app"
"""Sends whatever frames a test asks for: not checked against the AsyncAPI document."""


def start_app(tmp_path: Path, target: str, ready: str, **settings: object) -> ServerProcess:
    """``python -m uvicorn <target>`` (``module:attribute``, importable from the
    repository root) with ROOMCAST_* ``settings``; returns once GET ``ready`` is 200."""
    port = free_port()
    if target == PROTOCOL_STUB and (tap := contract.current()) is not None:
        tap.not_roomcast(port)
    command = [sys.executable, "-m", "uvicorn", target, "--app-dir", str(ROOT),
               "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]  # fmt: skip
    return launch(
        command,
        port=port,
        env=server_env(**settings),
        cwd=tmp_path,  # its SQLite file lands here
        log_path=tmp_path / f"app-{port}.log",
        ready=ready,
    )


@pytest.fixture
def app_factory(tmp_path: Path) -> Iterator[AppFactory]:
    """Start apps with ``start_app``; each is killed when the test ends."""
    started: list[ServerProcess] = []

    def factory(target: str, ready: str, **settings: object) -> ServerProcess:
        server = start_app(tmp_path, target, ready, **settings)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop(signal.SIGKILL)
