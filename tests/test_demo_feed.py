"""``roomcast demo-feed`` against real servers: what it publishes, credentials, and an
outage it rides out (the server stopped and started again on the same port)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from roomcast.auth.tokens import issue_token

from .conftest import ServerProcess, start_server
from .test_layers import PKG, imports_of

ServerFactory = Callable[..., ServerProcess]

SECRET = "demo-feed-test-secret-of-at-least-32-bytes"
API_KEY = "demo-feed-key-0123456789"
FIELDS = {"cpu", "rps", "p99_ms", "queue"}


def demo_feed(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "roomcast", "demo-feed", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=clean_env(env),
    )


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMCAST_")}
    env.update(extra or {})
    return env


HTTP = httpx.Client(timeout=5)
"""One client for every history read (polled): making one costs ~60 ms of CPU."""


def history(server: ServerProcess, room: str, **headers: str) -> list[dict[str, Any]]:
    response = HTTP.get(
        f"{server.http}/rooms/{room}/messages", params={"limit": 1000}, headers=headers
    )
    assert response.status_code == 200, response.text
    events: list[dict[str, Any]] = response.json()["events"]
    return events


def assert_metrics(data: Any) -> None:
    assert isinstance(data, dict)
    assert set(data) == FIELDS
    assert isinstance(data["cpu"], int | float)
    assert 0 <= data["cpu"] <= 100
    assert isinstance(data["rps"], int)
    assert data["rps"] >= 0
    assert isinstance(data["p99_ms"], int | float)
    assert data["p99_ms"] > 0
    assert round(data["p99_ms"], 1) == data["p99_ms"]
    assert isinstance(data["queue"], int)
    assert data["queue"] >= 0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server on the defaults (auth=off, no API keys): anyone may publish."""
    process = start_server(tmp_path_factory.mktemp("demo-feed"))
    yield process
    process.stop(signal.SIGKILL)


def test_count_publishes_that_many_metrics_and_exits_0(server: ServerProcess) -> None:
    result = demo_feed("--url", server.http, "--count", "3", "--interval", "0.05", "--seed", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"demo-feed: publishing to feed:demo every 0.05 s at {server.http} (3 each, Ctrl-C stops)\n"
    )
    assert result.stderr == ""
    events = history(server, "feed:demo")
    assert len(events) == 3
    for event in events:
        assert event["sender"] == "api"
        assert_metrics(event["data"])
    assert [e["offset"] for e in events] == [1, 2, 3]


def test_each_room_gets_count_messages_of_its_own(server: ServerProcess) -> None:
    result = demo_feed(
        "--url", server.http, "--room", "feed:a", "--room", "feed:b", "--count", "4",
        "--interval", "0.02", "--seed", "7",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    a = [e["data"] for e in history(server, "feed:a")]
    b = [e["data"] for e in history(server, "feed:b")]
    assert len(a) == len(b) == 4
    for data in a + b:
        assert_metrics(data)
    assert a != b
    assert len({tuple(sorted(d.items())) for d in a}) > 1  # the numbers move


def test_without_url_it_publishes_to_the_server_of_roomcast_host_and_port(
    server: ServerProcess,
) -> None:
    env = {"ROOMCAST_HOST": "0.0.0.0", "ROOMCAST_PORT": str(server.port)}
    result = demo_feed("--room", "feed:port", "--count", "2", "--interval", "0.02", env=env)
    assert result.returncode == 0, result.stderr
    assert f" at http://127.0.0.1:{server.port} " in result.stdout
    assert len(history(server, "feed:port")) == 2


def test_the_same_seed_publishes_the_same_numbers(server: ServerProcess) -> None:
    args = ("--url", server.http, "--room", "feed:seeded", "--count", "3", "--interval", "0.01")
    for seed in ("5", "5", "6"):
        assert demo_feed(*args, "--seed", seed).returncode == 0
    data = [e["data"] for e in history(server, "feed:seeded")]
    assert len(data) == 9
    assert data[0:3] == data[3:6]
    assert data[6:9] != data[0:3]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--interval", "0"), "--interval: the duration must be positive"),
        (("--count", "0"), "--count: must be at least 1"),
        (("--room", "no spaces"), "--room: not a room name"),
        (("--url", "127.0.0.1:8000"), "--url must be an http:// or https:// URL"),
    ],
)
def test_bad_flags_exit_2(args: tuple[str, ...], message: str) -> None:
    result = demo_feed(*args, "--count", "1") if "--count" not in args else demo_feed(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_credentials_when_the_server_requires_them(server_factory: ServerFactory) -> None:
    secured = server_factory(auth="jwt", jwt_secret=SECRET, api_keys=API_KEY)
    base = ("--url", secured.http, "--count", "2", "--interval", "0.01", "--room", "feed:jwt")

    missing = demo_feed(*base)
    assert missing.returncode == 2
    assert "401 Unauthorized" in missing.stderr
    assert "credentials required to publish or administer" in missing.stderr
    assert "Traceback" not in missing.stderr

    wrong = demo_feed(*base, "--api-key", "not-the-key")
    assert wrong.returncode == 2
    assert "401 Unauthorized: unknown API key" in wrong.stderr

    read_only = issue_token(SECRET, "viewer", ttl=60, rooms=["feed:*"], publish=[])
    refused = demo_feed(*base, "--token", read_only)
    assert refused.returncode == 2
    assert "403 Forbidden: not allowed to publish or administer" in refused.stderr

    assert demo_feed(*base, "--api-key", API_KEY).returncode == 0
    assert demo_feed(*base, env={"ROOMCAST_DEMO_API_KEY": API_KEY}).returncode == 0
    publisher = issue_token(SECRET, "feeder", ttl=60, rooms=[], publish=["feed:*"])
    assert demo_feed(*base, env={"ROOMCAST_DEMO_TOKEN": publisher}).returncode == 0

    events = history(secured, "feed:jwt", **{"X-API-Key": API_KEY})
    assert len(events) == 6
    assert [e["sender"] for e in events] == ["api"] * 4 + ["feeder"] * 2
    for event in events:
        assert_metrics(event["data"])


def wait_for_messages(server: ServerProcess, at_least: int, timeout: float) -> int:
    """How many messages feed:demo holds once it holds ``at_least`` (fails at the deadline)."""
    deadline = time.monotonic() + timeout
    count = 0
    while time.monotonic() < deadline:
        count = len(history(server, "feed:demo"))
        if count >= at_least:
            return count
        time.sleep(0.05)
    pytest.fail(f"feed:demo holds {count} messages after {timeout} s, not {at_least}")


def test_it_rides_out_a_server_restart_on_the_same_port(
    tmp_path: Path, server_factory: ServerFactory
) -> None:
    first = server_factory()
    out, err = tmp_path / "feed.out", tmp_path / "feed.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        feed = subprocess.Popen(
            [sys.executable, "-m", "roomcast", "demo-feed", "--url", first.http,
             "--interval", "0.1", "--seed", "3"],
            stdout=stdout,
            stderr=stderr,
            env=clean_env(),
        )  # fmt: skip
    try:
        wait_for_messages(first, 2, timeout=10)
        first.stop()
        time.sleep(0.5)  # publishes fail meanwhile: nothing listens on the port
        assert feed.poll() is None, err.read_text()
        second = server_factory(listen_port=first.port)
        before = wait_for_messages(second, 1, timeout=10)  # back within the 5 s backoff cap
        after = wait_for_messages(second, before + 3, timeout=5)  # and publishing again
        assert after > before
        assert feed.poll() is None
        for event in history(second, "feed:demo"):
            assert_metrics(event["data"])
    finally:
        feed.terminate()  # SIGTERM stops it as Ctrl-C does
        code = feed.wait(10)
    assert code == 0
    lines = err.read_text().splitlines()
    assert lines, "the outage is reported on stderr"
    assert "unreachable" in lines[0] or "503" in lines[0]
    assert len(lines) <= 4, lines  # one line per kind of failure, not one per retry
    assert "publishing again" in lines[-1]
    assert out.read_text().startswith("demo-feed: publishing to feed:demo every 0.1 s")


def test_demofeed_imports_only_the_standard_library_httpx_and_protocol() -> None:
    allowed_third_party = {"httpx"}
    problems = []
    for module, line in imports_of(PKG / "demofeed.py"):
        top, _, rest = module.partition(".")
        if top == "roomcast":
            if not rest.startswith("protocol"):
                problems.append(f"demofeed.py:{line} imports {module}")
        elif top not in sys.stdlib_module_names and top not in allowed_third_party:
            problems.append(f"demofeed.py:{line} imports {module}")
    assert problems == []
