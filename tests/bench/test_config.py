"""The bench's command line: URLs, defaults, what each scenario accepts."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from roomcast.bench.config import parse_config
from roomcast.bench.coordinator import plan, shares
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
        ["nonsense"],
    ],
)
def test_bad_command_lines_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["bench", *argv])
    assert exc.value.code == 2


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
