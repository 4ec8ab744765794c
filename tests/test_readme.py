"""The README's quick start, run as a newcomer runs it: in a fresh clone, in order, each
command as written (serve, then demo-feed and bench against it), every one exiting 0.

Two commands are not run as written: the install (``python3 -m venv .venv && ...``),
for which the clone gets this test run's virtualenv as its ``.venv``, and
``./scripts/test``, the suite this test belongs to. The server's port comes from
``ROOMCAST_PORT`` (a free one), which every quick-start command follows, so the
commands need no change.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from roomcast.testing import free_port

from .conftest import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

README = ROOT / "README.md"
INSTALL = "python3 -m venv .venv"
TEST_SUITE = "./scripts/test"


def quick_start_commands(text: str) -> list[str]:
    """The command lines of the ```sh blocks of the README's "Quick start" section."""
    section = text.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", section, re.DOTALL):
        for line in block.splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                commands.append(line.strip())
    return commands


def kind(command: str) -> str:
    if command.startswith(INSTALL):
        return "install"
    if command == TEST_SUITE:
        return "tests"
    words = command.split()
    if words[0] == ".venv/bin/roomcast" and len(words) > 1:
        return words[1]
    return command


def test_the_quick_start_has_the_commands_this_test_runs() -> None:
    kinds = [kind(c) for c in quick_start_commands(README.read_text())]
    assert kinds[:2] == ["install", "serve"]
    assert {"demo-feed", "bench", "tests"} <= set(kinds)
    assert kinds.index("demo-feed") > 1
    assert kinds.index("bench") > 1


def fresh_clone(dest: Path) -> Path:
    """A clone of this repository with the working tree's README, and this run's
    virtualenv as its ``.venv`` (what the install command would make)."""
    if (ROOT / ".git").exists() and shutil.which("git"):
        subprocess.run(
            ["git", "clone", "-q", "--depth", "1", f"file://{ROOT}", str(dest)],
            check=True,
            timeout=60,
        )
    else:
        dest.mkdir()
    shutil.copyfile(README, dest / "README.md")
    venv = Path(sys.prefix)
    assert (venv / "bin" / "roomcast").exists(), f"no roomcast command in {venv}"
    (dest / ".venv").symlink_to(venv, target_is_directory=True)
    return dest


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    with httpx.Client(timeout=1) as http:
        while time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            try:
                if http.get(f"{url}/healthz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
    pytest.fail(f"the server did not start:\n{log.read_text()}")


def test_the_quick_start_commands_run_in_order_in_a_fresh_clone(tmp_path: Path) -> None:
    clone = fresh_clone(tmp_path / "roomcast")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMCAST_")}
    env.pop("PYTHONPATH", None)
    env["ROOMCAST_PORT"] = str(port)
    url = f"http://127.0.0.1:{port}"
    server: subprocess.Popen[bytes] | None = None
    server_log = tmp_path / "serve.log"
    ran = []
    try:
        for command in quick_start_commands((clone / "README.md").read_text()):
            what = kind(command)
            if what in ("install", "tests"):
                continue
            if what == "serve":
                with server_log.open("wb") as out:
                    server = subprocess.Popen(
                        ["bash", "-c", command], cwd=clone, env=env, stdout=out,
                        stderr=subprocess.STDOUT, start_new_session=True,
                    )  # fmt: skip
                wait_ready(url, server, server_log)
                ran.append(what)
                continue
            assert server is not None, f"{command!r} comes before the server starts"
            result = subprocess.run(
                ["bash", "-c", command], cwd=clone, env=env, capture_output=True,
                text=True, timeout=120,
            )  # fmt: skip
            assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
            ran.append(what)
            if what == "demo-feed":
                assert f"at {url} " in result.stdout  # it found the server on ROOMCAST_PORT
        assert server is not None
        os.killpg(server.pid, signal.SIGINT)  # Ctrl-C in the server's terminal
        assert server.wait(30) == 0, server_log.read_text()
    finally:
        if server is not None and server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)
    assert ran[0] == "serve"
    assert {"demo-feed", "bench"} <= set(ran)
    log = server_log.read_text()
    assert f"roomcast is serving {url}" in log
    assert f"{url}/dashboard" in log
    assert "Traceback" not in log
