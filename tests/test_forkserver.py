"""tests/forkserver.py: a forked `roomcast serve` is the process a fresh one would be,
as far as the tests can tell (its output, exit status, session, environment and
folder), and behaves as a Popen for ServerProcess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from . import forkserver
from .conftest import server_env, start_server

SERVE = [sys.executable, "-m", "roomcast", "serve", "--port", "0"]


def forked(
    command: list[str], env: dict[str, str], cwd: Path, log: Path
) -> subprocess.Popen[bytes]:
    if not forkserver.enabled():
        pytest.skip("ROOMCAST_TEST_FORKSERVER=0: nothing is forked")
    log.touch()
    process = forkserver.popen(command, env, cwd, log)
    assert process is not None, "the fork server did not start"
    return process


@pytest.mark.parametrize(
    "settings",
    [
        {"workers": 2},  # refused by the command: no Redis
        {"redis_url": "http://127.0.0.1/0"},  # refused by the settings
    ],
    ids=["workers", "redis-url"],
)
def test_a_refused_start_prints_and_exits_as_a_fresh_process_does(
    tmp_path: Path, settings: dict[str, object]
) -> None:
    env = server_env(**settings)
    fresh = subprocess.run(SERVE, env=env, cwd=tmp_path, capture_output=True, timeout=30)
    process = forked(SERVE, env, tmp_path, tmp_path / "forked.log")
    assert process.wait(30) == fresh.returncode != 0
    assert (tmp_path / "forked.log").read_bytes() == fresh.stdout + fresh.stderr


def test_a_forked_server_has_its_session_settings_folder_and_signals(tmp_path: Path) -> None:
    if not forkserver.enabled():
        pytest.skip("ROOMCAST_TEST_FORKSERVER=0: nothing is forked")
    server = start_server(
        tmp_path, log_level="info", database_url=f"sqlite+aiosqlite:///{tmp_path}/x.db"
    )
    process = server.process
    assert isinstance(process, forkserver.ForkedProcess)
    try:
        assert os.getsid(process.pid) == process.pid  # killpg(pid) ends it and its workers
        assert Path(f"/proc/{process.pid}/cwd").resolve() == tmp_path.resolve()
        # Its own settings, read at start-up (the fork server has no ROOMCAST_*):
        assert (tmp_path / "x.db").exists()
        assert "Uvicorn running on" in server.log()  # an INFO line: log_level=info
        assert process.poll() is None
        with pytest.raises(subprocess.TimeoutExpired):
            process.wait(0.1)
    finally:
        code = server.stop(signal.SIGTERM)
    assert code == process.returncode
    assert code in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in server.log()
