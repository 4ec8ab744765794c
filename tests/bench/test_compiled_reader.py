"""benchmarks/reader/reader.c, the compiled load client, built with the machine's C
compiler and run against real servers: roomcast (connect, subscribe, publish replies),
a relaying server (barrier frames, echoes as acknowledgements), and servers that
damage, refuse or close, so that each of its checks is seen to fail. Nothing here is
about speed."""

from __future__ import annotations

import base64
import hashlib
import importlib
import shutil
import signal
import socket
import socketserver
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from ..conftest import ROOT, ServerProcess, free_port, require, start_server
from .relay import Relay

pytestmark = pytest.mark.e2e

BENCH_SERVER = {"presence": "false", "outbox_max_messages": 100_000}
QUICK = ["--duration", "1", "--warmup", "0.2", "--grace", "3", "--payload-bytes", "100"]


@pytest.fixture(scope="module")
def cr() -> Iterator[ModuleType]:
    saved = list(sys.path)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        yield importlib.import_module("compiled_reader")
    finally:
        sys.path[:] = saved
        sys.modules.pop("compiled_reader", None)


@pytest.fixture(scope="module")
def exe(cr: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Path:
    require(bool(shutil.which("cc") or shutil.which("gcc")), "a C compiler (apt-get install gcc)")
    built, why = cr.build(tmp_path_factory.mktemp("reader"))
    assert built is not None, why
    return Path(built)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = start_server(tmp_path_factory.mktemp("reader-server"), **BENCH_SERVER)
    yield process
    process.stop(signal.SIGKILL)


def ws(server: ServerProcess) -> str:
    return server.http.replace("http://", "ws://") + "/ws"


def run(cr: ModuleType, command: list[str]) -> dict[str, Any]:
    report: dict[str, Any] = cr.run_trial(command, ready_timeout=30, run_timeout=60)
    return report


def assert_intact(report: dict[str, Any], subscribers: int) -> None:
    reader = report["reader"]
    assert report["ok"], report.get("failure")
    assert report["lost"] == report["out_of_order"] == report["errors"] == 0
    assert report["closed"] == {}
    assert reader["published"] == reader["acked"] > 0
    # every subscriber got every acknowledged message, each once
    assert reader["deliveries"] == subscribers * reader["acked"]
    assert reader["max_acked"] == reader["base_offset"] + reader["acked"]
    latency = report["latency_ms"]
    assert latency["count"] > 0
    assert 0 <= latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
    assert 0 < report["deliveries"] <= reader["deliveries"]


def test_roomcast_at_a_fixed_rate_every_subscriber_gets_every_acknowledged_message(
    cr: ModuleType, exe: Path, server: ServerProcess
) -> None:
    args = ["--subscribers", "20", "--rate", "40", *QUICK]
    report = run(cr, cr.reader_command(exe, ws(server), "roomcast", server.process.pid, args))
    assert_intact(report, 20)
    reader = report["reader"]
    assert reader["protocol"] == "roomcast"
    assert reader["rate"] == 40
    # 40/s over a 1 s window: about 40 publishes in it, each one to 20 subscribers
    assert 30 <= reader["published_in_window"] <= 42
    assert report["publish_rate"] == pytest.approx(reader["published_in_window"], abs=0.5)
    # the server's own CPU over the window, read from /proc
    assert report["server"]["cpu"] is not None
    assert 0 <= report["server"]["cpu"] <= 1.5
    assert report["config"]["latency_at"] == "socket"


def test_roomcast_sse_streams_get_every_acknowledged_message(
    cr: ModuleType, exe: Path, server: ServerProcess
) -> None:
    args = ["--subscribers", "10", "--rate", "30", *QUICK]
    command = cr.reader_command(exe, ws(server), "roomcast", None, args, sse=True)
    report = run(cr, [*command, "--room", "sse-streams"])
    assert_intact(report, 10)
    assert report["reader"]["sse"] is True


def test_roomcast_with_a_window_publishes_as_fast_as_acknowledgements_allow(
    cr: ModuleType, exe: Path, server: ServerProcess
) -> None:
    args = ["--subscribers", "10", "--window", "4", "--rate", "0", *QUICK, "--room", "ignored"]
    command = cr.reader_command(exe, ws(server), "roomcast", None, args)
    assert "--room" not in command  # not an option the reader shares with roomcast bench
    report = run(cr, [*command, "--room", "windowed"])
    assert_intact(report, 10)
    assert report["reader"]["window"] == 4
    assert report["reader"]["published"] > 40  # not paced
    assert report["server"]["cpu"] is None  # no --server-pid


def test_a_relaying_server_is_driven_with_a_barrier_and_echoes(cr: ModuleType, exe: Path) -> None:
    with Relay() as relay:
        args = ["--subscribers", "5", "--rate", "30", *QUICK]
        url = f"ws://127.0.0.1:{relay.port}/ws"
        report = run(cr, cr.reader_command(exe, url, "broadcast", None, args))
    assert_intact(report, 5)
    assert report["reader"]["base_offset"] == 0  # the publisher numbers from 1


def test_a_dropped_message_is_lost_and_a_repeated_one_out_of_order(
    cr: ModuleType, exe: Path
) -> None:
    def damage(conn: int, offset: int, frame: str) -> list[str]:
        if conn == 1 and offset == 5:
            return []  # the first subscriber never gets offset 5
        if conn == 2 and offset == 7:
            return [frame, frame]  # the second gets 7 twice
        return [frame]

    with Relay(damage) as relay:
        args = ["--subscribers", "3", "--rate", "30", *QUICK]
        url = f"ws://127.0.0.1:{relay.port}/ws"
        report = run(cr, cr.reader_command(exe, url, "broadcast", None, args))
    assert report["reader"]["acked"] >= 7
    assert report["reader"]["acked"] == report["reader"]["published"]
    assert report["lost"] == 1
    assert report["out_of_order"] == 1
    assert not report["ok"]
    assert report["exit_code"] == 1


@pytest.mark.parametrize("sse", [False, True], ids=["websocket", "sse"])
def test_a_server_that_closes_the_subscribers_is_reported(
    cr: ModuleType, exe: Path, tmp_path: Path, sse: bool
) -> None:
    server = start_server(tmp_path, **BENCH_SERVER)
    try:
        args = ["--subscribers", "5", "--rate", "20", "--duration", "3", "--warmup", "0",
                "--grace", "1"]  # fmt: skip
        command = cr.reader_command(exe, ws(server), "roomcast", None, args, sse=sse)

        def stop_soon() -> None:
            threading.Event().wait(1.5)
            server.stop(signal.SIGTERM)  # a graceful shutdown closes every socket

        stopper = threading.Thread(target=stop_soon)
        stopper.start()
        try:
            report = run(cr, command)
        finally:
            stopper.join()
    finally:
        server.stop(signal.SIGKILL)
    assert not report["ok"]
    assert report["closed"] == {"reader": 6}  # 5 subscribers and the publisher


def test_a_path_that_is_no_websocket_fails_the_setup_with_a_reason(
    cr: ModuleType, exe: Path, server: ServerProcess
) -> None:
    url = server.http.replace("http://", "ws://") + "/no-such-path"
    report = run(cr, cr.reader_command(exe, url, "roomcast", None, ["--subscribers", "2"]))
    assert not report["ok"]
    assert report["exit_code"] == 3
    assert "handshake" in report["failure"]


def test_a_refused_subscribe_fails_the_setup_with_the_reply(
    cr: ModuleType, exe: Path, server: ServerProcess
) -> None:
    command = cr.reader_command(exe, ws(server), "roomcast", None, ["--subscribers", "2"])
    report = run(cr, [*command, "--room", "no spaces allowed"])
    assert not report["ok"]
    assert report["exit_code"] == 3
    assert "refused" in report["failure"]


def test_nothing_listening_and_bad_arguments_end_with_their_codes(
    cr: ModuleType, exe: Path
) -> None:
    closed = f"ws://127.0.0.1:{free_port()}/ws"
    report = run(cr, cr.reader_command(exe, closed, "roomcast", None, ["--subscribers", "1"]))
    assert (report["ok"], report["exit_code"]) == (False, 3)
    assert "connect" in report["failure"]
    for bad in (["--subscribers", "0"], ["--subscribers", "1", "--protocol", "mqtt"],
                ["--subscribers", "1", "--window", "0"], ["--bogus", "1"]):  # fmt: skip
        report = run(cr, [str(exe), "--url", closed, *bad])
        assert (report["ok"], report["exit_code"]) == (False, 2), bad
        assert "usage" in report["failure"]
    report = run(cr, [str(exe), "--url", "wss://127.0.0.1:1/ws", "--subscribers", "1"])
    assert report["exit_code"] == 2
    assert "ws://host:port/path only" in report["failure"]


def test_it_drives_one_process_websocket_cases_and_roomcast_sse(cr: ModuleType) -> None:
    assert cr.drives("roomcast", "fanout", 1)
    assert cr.drives("broadcast", "fanout", 1)
    assert cr.drives("roomcast", "sse", 1)
    assert not cr.drives("broadcast", "sse", 1)  # sse-starlette: published by HTTP POST
    assert not cr.drives("roomcast", "fanout", 2)  # /proc of one process only
    assert not cr.drives("socketio", "fanout", 1)
    assert not cr.drives("roomcast", "idle", 1)


def test_its_summary_reads_as_a_bench_report(cr: ModuleType) -> None:
    summary = {
        "subscribers": 10, "protocol": "roomcast", "sse": False, "rate": 5.0, "window": 16,
        "published": 12, "published_in_window": 10, "acked": 12, "refused": 0,
        "max_acked": 12, "deliveries": 119, "gaps": 1, "missing": 0, "regressions": 0,
        "other_frames": 0, "closed": 0, "errors": 0, "base_offset": 0, "max_frame": 200,
        "measured_s": 2.0, "window_start": 100.0, "window_stop": 102.0, "cpu": 0.95,
        "server_cpu": 0.25, "measured": 99,
        "latency_ms": {"p50": 1, "p90": 2, "p99": 3, "p999": 4, "max": 5, "mean": 1, "count": 99},
    }  # fmt: skip
    report = cr.report(summary)
    assert report["deliveries_per_s"] == 49.5
    assert report["publish_rate"] == 5.0
    assert report["lost"] == 1
    assert not report["ok"]
    assert report["client_saturated"] is True  # 0.95 of its core
    assert report["connections"] == 11
    assert report["server"] == {"cpu": 0.25}
    # cpu_us_per_delivery reads config.duration, server.cpu and deliveries
    assert report["config"]["duration"] == 2.0


class _Hostile(socketserver.BaseRequestHandler):
    """Answers one HTTP request with what the test's ``answer`` returns."""

    answer: Callable[[bytes], bytes]

    def handle(self) -> None:
        conn: socket.socket = self.request
        conn.settimeout(5)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = conn.recv(4096)
            if not chunk:
                return
            head += chunk
        conn.sendall(type(self).answer(head))
        try:  # hold the connection until the reader gives up
            while conn.recv(4096):
                pass
        except OSError:
            pass


def hostile(answer: Callable[[bytes], bytes]) -> socketserver.ThreadingTCPServer:
    handler = type("Handler", (_Hostile,), {"answer": staticmethod(answer)})
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def upgraded(head: bytes) -> bytes:
    key = next(line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
               if line.lower().startswith(b"sec-websocket-key:"))  # fmt: skip
    accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    return b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" \
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"  # fmt: skip


def upgraded_and_connected(head: bytes) -> bytes:
    """A WebSocket upgrade and, at once, the reply to a roomcast ``connect`` (id 0)."""
    reply = b'{"id":0,"ok":true,"result":{}}'
    return upgraded(head) + bytes([0x81, len(reply)]) + reply


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        # a masked frame from a server is a protocol error
        (lambda head: upgraded(head) + bytes([0x81, 0x82, 1, 2, 3, 4, 0, 0]), "setup failed"),
        # a frame longer than 16 MiB is refused before it is buffered
        (
            lambda head: upgraded(head) + bytes([0x81, 127]) + (1 << 40).to_bytes(8, "big"),
            "setup failed",
        ),
        # an accept key that is not the key's
        (
            lambda head: b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: x\r\n\r\n",
            "bad Sec-WebSocket-Accept",
        ),
        # a head that never ends
        (lambda head: b"HTTP/1.1 101 OK\r\n" + b"X: y\r\n" * 3000, "response head too long"),
    ],
    ids=["masked-frame", "huge-frame", "bad-accept", "endless-head"],
)
def test_a_hostile_websocket_server_fails_the_setup_with_a_reason(
    cr: ModuleType, exe: Path, answer: Callable[[bytes], bytes], words: str
) -> None:
    server = hostile(answer)
    try:
        url = f"ws://127.0.0.1:{server.server_address[1]}/ws"
        report = run(cr, cr.reader_command(exe, url, "roomcast", None, ["--subscribers", "1"]))
    finally:
        server.shutdown()
        server.server_close()
    assert (report["ok"], report["exit_code"]) == (False, 3)
    assert words in report["failure"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"zz\r\nnot a chunk\r\n", "setup failed"),  # a chunk size that is no number
        (b"0\r\n\r\n", "setup failed"),  # the stream ends before its subscribed event
        (b"5\r\nevent: close\ndata: {}\n\n\r\n", "setup failed"),  # mis-sized chunk
    ],
    ids=["bad-chunk-size", "ended", "short-chunk"],
)
def test_a_hostile_sse_server_fails_the_setup_with_a_reason(
    cr: ModuleType, exe: Path, body: bytes, words: str
) -> None:
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    connected = upgraded_and_connected  # the publisher's WebSocket is well served

    server = hostile(lambda request: connected(request) if b"GET /ws" in request else head + body)
    try:
        url = f"ws://127.0.0.1:{server.server_address[1]}/ws"
        args = ["--subscribers", "1"]
        report = run(cr, cr.reader_command(exe, url, "roomcast", None, args, sse=True))
    finally:
        server.shutdown()
        server.server_close()
    assert (report["ok"], report["exit_code"]) == (False, 3)
    assert words in report["failure"]
