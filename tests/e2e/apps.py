"""ASGI apps of tests/e2e (a host app that mounts roomcast, a protocol stub) run
as real uvicorn processes, started like conftest's ``roomcast serve`` servers: a
free loopback port, a process group of its own, ready once a health path answers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from ..conftest import ROOT, ServerProcess, free_port

AppFactory = Callable[..., ServerProcess]


def start_app(tmp_path: Path, target: str, ready: str, **settings: object) -> ServerProcess:
    """``python -m uvicorn <target>`` (``module:attribute``, importable from the
    repository root) with ROOMCAST_* ``settings``; returns once GET ``ready`` is 200."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMCAST_")}
    env.update({f"ROOMCAST_{k.upper()}": str(v) for k, v in settings.items()})
    env.setdefault("ROOMCAST_LOG_LEVEL", "warning")
    env.setdefault("ROOMCAST_PUBLISH_RATE", "0")
    log_path = tmp_path / f"app-{port}.log"
    command = [sys.executable, "-m", "uvicorn", target, "--app-dir", str(ROOT),
               "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]  # fmt: skip
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command,
            env=env,
            cwd=tmp_path,  # its SQLite file lands here
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, which stop() ends
        )
    server = ServerProcess(process, port, log_path)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{target} exited early:\n{server.log()}")
        try:
            if httpx.get(f"{server.http}{ready}", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    server.stop(signal.SIGKILL)
    raise RuntimeError(f"{target} did not start:\n{server.log()}")


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
