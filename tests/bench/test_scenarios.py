"""Every scenario, run briefly through `roomcast bench` against real servers.

Each run writes its JSON and the test checks it: deliveries happened, none was lost,
duplicated or reordered, percentiles are ordered, connect statistics are there. No
assertion is about speed.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from roomcast.cli import main

from ..conftest import ROOT, ServerProcess, free_port, start_server
from .relay import Relay

pytestmark = pytest.mark.e2e

# Presence off (every join would be announced to every subscriber), no publish limit
# (the fixture's default), outboxes far larger than a short run can fill.
BENCH_SERVER = {"presence": "false", "outbox_max_messages": 100_000}
QUICK = ["--duration", "1", "--warmup", "0", "--processes", "1", "--grace", "5"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = start_server(tmp_path_factory.mktemp("bench-server"), **BENCH_SERVER)
    yield process
    process.stop(signal.SIGKILL)


def bench(tmp_path: Path, *argv: str) -> tuple[int, dict[str, Any]]:
    out = tmp_path / f"bench-{time.monotonic_ns()}.json"
    code = main(["bench", *argv, "--json", str(out)])
    return code, json.loads(out.read_text())


def assert_delivered_intact(report: dict[str, Any]) -> None:
    assert report["deliveries"] > 0
    assert report["messages_acked"] > 0
    assert report["lost"] == report["duplicated"] == report["out_of_order"] == 0
    assert report["errors"] == 0
    assert report["closed"] == {}
    latency = report["latency_ms"]
    assert 0 <= latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["p999"]
    assert latency["p999"] <= latency["max"]
    assert latency["count"] > 0
    assert_connect_stats(report)


def assert_connect_stats(report: dict[str, Any]) -> None:
    connect = report["connect"]
    assert connect["failed"] == 0
    assert connect["connections"] == report["connections"] > 0
    assert connect["handshakes_per_s"] > 0
    assert 0 < connect["p50"] <= connect["p99"] <= connect["max"]


def test_fanout_delivers_every_message_to_every_subscriber(
    server: ServerProcess, tmp_path: Path
) -> None:
    code, report = bench(
        tmp_path, "fanout", "--url", server.http, "--subscribers", "20", *QUICK,
        "--room", "fanout", "--server-pid", str(server.process.pid),
    )  # fmt: skip
    assert code == 0, report["warnings"]
    assert_delivered_intact(report)
    assert report["scenario"] == "fanout"
    assert report["connections"] == 20
    assert report["targets"]["fanout"] == report["messages_acked"]
    start, stop = report["window"]  # wall clock, the span duration_s measures
    assert abs(report["clock_step_s"]) < 0.25  # nobody set the clock meanwhile
    assert stop - start == pytest.approx(report["duration_s"], abs=0.01)
    assert start < time.time()
    # every subscriber got every acknowledged message
    assert report["deliveries_total"] >= 20 * report["messages_acked"]
    assert report["server"]["cpu"] is not None
    assert report["config"]["loop"] == "uvloop"  # the default: the raw client on uvloop
    assert report["config"]["latency_at"] == "socket"  # ... timed by the kernel's stamps
    assert isinstance(report["client_saturated"], bool)
    assert 0 <= report["client_cpu"] <= 1.5


def test_fanout_at_a_fixed_rate_over_two_processes_with_the_websockets_client(
    server: ServerProcess, tmp_path: Path
) -> None:
    code, report = bench(
        tmp_path, "fanout", "--url", server.http, "--subscribers", "10", "--rate", "100",
        "--duration", "1", "--warmup", "0.2", "--processes", "2", "--ws-client", "websockets",
        "--room", "fanout-rate", "--loop", "asyncio",
    )  # fmt: skip
    assert code == 0, report["warnings"]
    assert report["config"]["loop"] == "asyncio"
    assert report["config"]["latency_at"] == "read"  # websockets' reads are not stamped
    assert_delivered_intact(report)
    assert report["messages_published"] <= 100 * 1.2 + 1  # paced, not as fast as possible
    assert len(report["client_cpu_by_process"]) == 2


def test_rooms_members_publish_and_receive_in_their_own_rooms(
    server: ServerProcess, tmp_path: Path
) -> None:
    code, report = bench(
        tmp_path, "rooms", "--url", server.http, "--rooms", "4", "--members", "3",
        "--rate", "20", *QUICK, "--room", "rooms",
    )  # fmt: skip
    assert code == 0, report["warnings"]
    assert_delivered_intact(report)
    assert report["connections"] == 12
    assert sorted(report["targets"]) == ["rooms.0", "rooms.1", "rooms.2", "rooms.3"]


def test_connect_storm_reports_handshakes_and_latency(
    server: ServerProcess, tmp_path: Path
) -> None:
    code, report = bench(
        tmp_path, "connect", "--url", server.http, "--subscribers", "40",
        "--concurrency", "8", "--processes", "1", "--server-pid", str(server.process.pid),
    )  # fmt: skip
    assert code == 0, report["warnings"]
    assert_connect_stats(report)
    assert report["connect"]["connections"] == 40
    assert report["server"]["cpu_us_per_connect"] is not None


def test_idle_connections_cost_server_memory(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    fresh = server_factory(**BENCH_SERVER)  # a fresh server: no memory freed by earlier runs
    code, report = bench(
        tmp_path, "idle", "--url", fresh.http, "--subscribers", "200", "--duration", "1",
        "--processes", "1", "--server-pid", str(fresh.process.pid),
    )  # fmt: skip
    assert code == 0, report["warnings"]
    assert_connect_stats(report)
    assert report["closed"] == {}
    assert report["rss_per_connection"] > 0
    assert report["server"]["rss_after"] > report["server"]["rss_before"]


def test_idle_sse_streams_cost_server_memory(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    fresh = server_factory(**BENCH_SERVER)
    code, report = bench(
        tmp_path, "idle", "--sse", "--url", fresh.http, "--subscribers", "100",
        "--duration", "1", "--processes", "1", "--server-pid", str(fresh.process.pid),
    )  # fmt: skip
    assert code == 0, report["warnings"]
    assert report["config"]["sse"] is True
    assert_connect_stats(report)
    assert report["closed"] == {}
    assert report["rss_per_connection"] > 0


def test_sse_subscribers_receive_every_message(server: ServerProcess, tmp_path: Path) -> None:
    code, report = bench(
        tmp_path, "sse", "--url", server.http, "--subscribers", "20", *QUICK, "--room", "sse",
    )  # fmt: skip
    assert code == 0, report["warnings"]
    assert_delivered_intact(report)


@pytest.fixture
def tutorial() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "benchmarks" / "peers" / "tutorial.py"), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 20
    while True:
        assert process.poll() is None, "tutorial.py exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "tutorial.py did not start"
            time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(10)


def test_broadcast_protocol_drives_the_fastapi_tutorial_server(
    tutorial: str, tmp_path: Path
) -> None:
    code, report = bench(
        tmp_path, "fanout", "--protocol", "broadcast", "--url", tutorial,
        "--subscribers", "20", *QUICK,
    )  # fmt: skip
    assert code == 0, report["warnings"]
    assert_delivered_intact(report)
    assert report["protocol"] == "broadcast"


def test_a_lost_a_duplicated_and_a_reordered_delivery_fail_the_run_with_exit_3(
    tmp_path: Path,
) -> None:
    held: list[str] = []

    def damage(conn: int, offset: int, frame: str) -> list[str]:
        # connection 0 is the publisher; 1..3 are subscribers
        if conn == 1 and offset == 5:
            return []  # lost
        if conn == 2 and offset == 6:
            return [frame, frame]  # duplicated
        if conn == 3 and offset == 7:
            held.append(frame)
            return []
        if conn == 3 and offset == 8:
            return [frame, *held]  # 7 after 8: out of order
        return [frame]

    with Relay(damage) as relay:
        code, report = bench(
            tmp_path, "fanout", "--protocol", "broadcast", "--url",
            f"http://127.0.0.1:{relay.port}", "--subscribers", "3", "--rate", "50",
            "--window", "1", *QUICK, "--grace", "1",
        )  # fmt: skip
    assert report["messages_acked"] >= 10
    assert (report["lost"], report["duplicated"], report["out_of_order"]) == (1, 1, 1)
    assert report["incomplete_subscribers"] == 1
    assert code == 3
    assert any(w.startswith("DELIVERY CHECK FAILED") for w in report["warnings"])


def test_a_server_that_is_not_there_fails_the_run_at_once_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, report = bench(
        tmp_path, "fanout", "--url", url, "--subscribers", "1000", "--processes", "2",
    )  # fmt: skip
    assert code == 1
    assert report["exit_code"] == 1
    assert report["connections"] == 0
    assert report["failure"].startswith(f"cannot connect to {url}: connection refused")
    assert capsys.readouterr().err.splitlines() == [f"roomcast bench: {report['failure']}"]


def test_a_run_that_opens_no_connection_says_so_in_one_line(
    server: ServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = bench(
        tmp_path, "idle", "--url", f"{server.http}/not-roomcast", "--subscribers", "3",
        "--duration", "0", "--processes", "1", "--setup-timeout", "5",
    )  # fmt: skip
    assert code == 1
    assert report["connect"]["failed"] == 3
    assert report["error_kinds"] == {"handshake": 3}
    out, err = capsys.readouterr()
    assert err.splitlines() == [
        f"roomcast bench: no connection to ws://127.0.0.1:{server.port}/not-roomcast/ws "
        f"opened (0 of 3): {next(iter(report['error_samples'].values()))}"
    ]
    assert "deliveries/s" not in out  # no table of zeros


def test_a_rate_limited_publisher_slows_under_the_limit_instead_of_being_closed(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    limited = server_factory(
        publish_rate=40, publish_burst=10, max_rate_breaches=20, **BENCH_SERVER
    )
    code, report = bench(
        tmp_path, "fanout", "--url", limited.http, "--subscribers", "3", "--duration", "1.5",
        "--warmup", "0.5", "--processes", "1", "--room", "limited",
    )  # fmt: skip
    assert code == 0, report["warnings"]
    assert report["server_publish_limit"] == 40
    assert report["publisher_paced_to"] == 36
    assert report["messages_refused"] >= 1
    assert report["closed"] == {}
    assert report["lost"] == report["duplicated"] == report["out_of_order"] == 0
    assert report["publish_rate"] <= 40
    assert any("ROOMCAST_PUBLISH_RATE=0" in w for w in report["warnings"])


def test_socketio_without_its_package_explains_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "socketio", None)  # makes `import socketio` fail
    code = main(["bench", "fanout", "--protocol", "socketio", "--url", "http://127.0.0.1:1"])
    assert code == 2
    assert "roomcast[bench]" in capsys.readouterr().out
