"""The bench's command line: URLs, defaults, what each scenario accepts."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from roomcast.banner import server_url
from roomcast.bench.config import DEFAULT_URL, MIN_PAYLOAD_BYTES, parse_config
from roomcast.bench.coordinator import plan, shares
from roomcast.bench.frames import _data
from roomcast.cli import main


def test_the_websocket_url_is_derived_from_the_base_url() -> None:
    cfg = parse_config(["fanout", "--url", "http://127.0.0.1:8000/"])
    assert (cfg.http_url, cfg.ws_url) == ("http://127.0.0.1:8000", "ws://127.0.0.1:8000/ws")
    cfg = parse_config(["fanout", "--url", "https://example.test/rt"])
    assert cfg.ws_url == "wss://example.test/rt/ws"
    cfg = parse_config(["fanout", "--url", "ws://127.0.0.1:9/ws"])
    assert cfg.http_url == "http://127.0.0.1:9"


def test_defaults() -> None:
    cfg = parse_config(["fanout"])
    assert (cfg.duration, cfg.subscribers, cfg.rate, cfg.window) == (10.0, 1000, 0.0, 16)
    assert (cfg.payload_bytes, cfg.protocol, cfg.room) == (100, "roomcast", "bench")
    assert cfg.processes == min(os.cpu_count() or 1, 1000)
    rooms = parse_config(["rooms", "--rooms", "3", "--members", "4"])
    assert rooms.connections == 12
    assert rooms.rate == 1.0
    assert rooms.room_names() == ["bench.0", "bench.1", "bench.2"]


def test_idle_holds_websockets_or_with_sse_event_streams() -> None:
    assert not parse_config(["idle"]).sse
    assert parse_config(["idle", "--sse"]).sse
    assert parse_config(["idle", "--sse", "--protocol", "broadcast"]).sse
    assert parse_config(["sse"]).sse
    assert not parse_config(["fanout"]).sse


def test_the_client_loop_is_uvloop_when_installed_unless_asked_otherwise() -> None:
    assert parse_config(["fanout"]).loop == "uvloop"  # uvicorn[standard] brings it
    assert parse_config(["fanout", "--loop", "auto"]).as_json()["loop"] == "uvloop"
    assert parse_config(["fanout", "--loop", "asyncio"]).loop == "asyncio"


def test_latency_is_timed_at_the_socket_where_the_client_can_stamp_reads() -> None:
    assert parse_config(["fanout"]).latency_at == "socket"
    assert parse_config(["rooms"]).as_json()["latency_at"] == "socket"
    assert parse_config(["fanout", "--latency-at", "read"]).latency_at == "read"
    # where the kernel's stamps cannot be read, auto times the read
    assert parse_config(["fanout", "--ws-client", "websockets"]).latency_at == "read"
    assert parse_config(["sse"]).latency_at == "read"
    assert parse_config(["fanout", "--protocol", "socketio"]).latency_at == "read"
    assert parse_config(["fanout", "--url", "https://example.org"]).latency_at == "read"
    # scenarios that time no delivery keep the loop's own transport
    assert parse_config(["idle"]).latency_at == "read"
    assert parse_config(["connect"]).latency_at == "read"


@pytest.mark.parametrize(
    "argv",
    [
        ["sse", "--latency-at", "socket"],
        ["fanout", "--ws-client", "websockets", "--latency-at", "socket"],
        ["fanout", "--url", "https://example.org", "--latency-at", "socket"],
    ],
)
def test_socket_timing_where_it_cannot_be_done_is_refused(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_config(argv)
    assert exit_.value.code == 2
    assert "--latency-at socket needs" in capsys.readouterr().err


def test_processes_never_outnumber_connections() -> None:
    assert parse_config(["idle", "--subscribers", "2", "--processes", "8"]).processes == 2


@pytest.mark.parametrize(
    "argv",
    [
        ["rooms", "--protocol", "broadcast"],
        ["sse", "--protocol", "socketio"],
        ["fanout", "--url", "ftp://x"],
        ["fanout", "--room", "bad room"],
        ["fanout", "--subscribers", "0"],
        ["fanout", "--subscribers", "-5"],
        ["fanout", "--payload-bytes", "0"],
        ["fanout", "--payload-bytes", "-1"],
        ["fanout", "--payload-bytes", "51"],
        ["fanout", "--rate", "-1"],
        ["fanout", "--rate", "nan"],
        ["fanout", "--rate", "inf"],
        ["fanout", "--duration", "0"],
        ["fanout", "--duration", "-3"],
        ["fanout", "--warmup", "-1"],
        ["fanout", "--window", "0"],
        ["rooms", "--rooms", "0"],
        ["rooms", "--members", "-1"],
        ["connect", "--concurrency", "0"],
        ["idle", "--processes", "0"],
        ["idle", "--setup-timeout", "0"],
        ["idle", "--server-pid", "0"],
        ["idle", "--sse", "--protocol", "socketio"],
        ["fanout", "--sse"],
        ["nonsense"],
    ],
)
def test_bad_command_lines_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["bench", *argv])
    assert exc.value.code == 2


def test_the_smallest_payload_is_what_every_message_carries() -> None:
    assert parse_config(["fanout", "--payload-bytes", str(MIN_PAYLOAD_BYTES)]).payload_bytes == (
        MIN_PAYLOAD_BYTES
    )
    assert len(_data(time.time(), 1_000_000, "")) == MIN_PAYLOAD_BYTES


def test_without_url_it_is_the_server_of_roomcast_host_and_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ROOMCAST_HOST", "0.0.0.0")
    monkeypatch.setenv("ROOMCAST_PORT", "8123")
    assert parse_config(["fanout"], default_url=server_url).http_url == "http://127.0.0.1:8123"
    given = parse_config(["fanout", "--url", "http://10.0.0.9:1"], default_url=server_url)
    assert given.http_url == "http://10.0.0.9:1"
    assert parse_config(["fanout"]).http_url == DEFAULT_URL  # a caller that names none


def test_settings_it_cannot_use_for_the_default_server_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ROOMCAST_PORT", "eighty")
    with pytest.raises(SystemExit) as exc:
        main(["bench", "fanout"])
    assert exc.value.code == 2
    assert "ROOMCAST_PORT" in capsys.readouterr().err


def test_roomcast_bench_help_reaches_the_bench_parser() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "roomcast", "bench", "fanout", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0
    assert "--payload-bytes" in result.stdout
    assert "--window" in result.stdout


def test_work_is_split_evenly_and_the_publisher_runs_in_worker_0() -> None:
    assert shares(10, 3) == [4, 3, 3]
    specs = plan(parse_config(["fanout", "--subscribers", "5", "--processes", "2"]))
    assert [s.connections for s in specs] == [3, 2]
    assert [s.publisher for s in specs] == [True, False]
    rooms = plan(parse_config(["rooms", "--rooms", "3", "--members", "2", "--processes", "2"]))
    assert [dict(s.subscribers) for s in rooms] == [
        {"bench.0": 2, "bench.1": 1},
        {"bench.1": 1, "bench.2": 2},
    ]
    assert all(s.members and not s.publisher for s in rooms)
