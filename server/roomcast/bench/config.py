"""The command line of ``roomcast bench`` and the configuration it yields.

``roomcast bench SCENARIO [flags]``; every flag is documented in docs/bench.md. The
parser is built here (not in roomcast.cli) so that ``roomcast serve`` never imports the
load client.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .stamped import supported as stamped_supported

__all__ = [
    "DEFAULT_URL", "MIN_PAYLOAD_BYTES", "PROTOCOLS", "SCENARIOS", "BenchConfig",
    "build_parser", "parse_config", "positive_int",
]  # fmt: skip

SCENARIOS = ("fanout", "rooms", "connect", "idle", "sse")
PROTOCOLS = ("roomcast", "broadcast", "socketio")
SUPPORTED: dict[str, tuple[str, ...]] = {
    "fanout": PROTOCOLS,
    "rooms": ("roomcast",),
    "connect": PROTOCOLS,
    "idle": PROTOCOLS,
    "sse": ("roomcast", "broadcast"),
}
DEFAULT_RATE = {"fanout": 0.0, "rooms": 1.0, "sse": 0.0}
ROOM_PATTERN = re.compile(r"[A-Za-z0-9_.:\-]{1,100}")
DEFAULT_URL = "http://127.0.0.1:8000"
"""The server when neither ``--url`` nor the caller's ``default_url`` says (``roomcast
bench`` passes the local server of ``ROOMCAST_HOST``/``ROOMCAST_PORT``)."""
MIN_PAYLOAD_BYTES = len('{"bench_t":1795324677.123456,"seq":1000000,"pad":""}')
"""The smallest ``data`` the bench sends: its send time and sequence number
(frames.data_pad pads up from there)."""


@dataclass(frozen=True)
class BenchConfig:
    """One run of one scenario (immutable; sent to every worker process)."""

    scenario: str
    protocol: str
    url: str
    duration: float
    subscribers: int
    rate: float
    window: int
    payload_bytes: int
    processes: int
    room: str
    warmup: float
    rooms: int
    members: int
    concurrency: int
    server_pid: int | None
    token: str | None
    setup_timeout: float
    grace: float
    json_path: str | None
    ws_client: str = "raw"
    loop: str = "asyncio"
    """The workers' event loop: ``uvloop`` or ``asyncio`` (``--loop``; auto resolved)."""
    sse: bool = False
    """Subscribers are Server-Sent Events streams (the ``sse`` scenario; ``idle --sse``)."""
    latency_at: str = "read"
    """Where a delivery is timed: ``socket`` (the kernel's arrival stamp on the
    subscriber's socket) or ``read`` (when the client's loop read it); ``--latency-at``,
    auto resolved."""

    @property
    def http_url(self) -> str:
        """The base URL over HTTP(S), without a trailing slash."""
        return self.url.rstrip("/")

    @property
    def ws_url(self) -> str:
        """The WebSocket endpoint: ``{base}/ws`` over ws:// or wss://."""
        parts = urlsplit(self.http_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return urlunsplit((scheme, parts.netloc, parts.path + "/ws", "", ""))

    @property
    def connections(self) -> int:
        """How many subscriber connections the scenario opens."""
        if self.scenario == "rooms":
            return self.rooms * self.members
        return self.subscribers

    @property
    def publishes(self) -> bool:
        return self.scenario in ("fanout", "rooms", "sse")

    @property
    def barrier(self) -> bool:
        """Whether subscribers learn they are in the room from a sync frame (relaying
        servers), rather than from roomcast's subscribe reply."""
        return self.protocol != "roomcast"

    def room_names(self) -> list[str]:
        if self.scenario == "rooms":
            return [f"{self.room}.{i}" for i in range(self.rooms)]
        return [self.room]

    def as_json(self) -> dict[str, Any]:
        config = asdict(self)
        config.pop("token")
        config["token"] = bool(self.token)
        config["ws_url"] = self.ws_url
        return config


def _latency_at(
    choice: str, scenario: str, ws_client: str, sse: bool, protocol: str, url: str
) -> str:
    """``--latency-at`` as what will run: ``socket`` needs the lean WebSocket client
    over plain TCP on Linux (bench/stamped.py); anything else is timed at ``read``.
    ``auto`` stamps only scenarios that time deliveries (``idle`` and ``connect`` keep
    uvloop's own transport)."""
    can = (
        ws_client == "raw"
        and not sse
        and protocol != "socketio"
        and urlsplit(url).scheme == "http"
        and stamped_supported()
    )
    if choice == "auto":
        return "socket" if can and scenario in ("fanout", "rooms") else "read"
    if choice == "socket" and not can:
        raise argparse.ArgumentTypeError(
            "--latency-at socket needs --ws-client raw, WebSocket subscribers, an http:// "
            "URL and Linux"
        )
    return choice


def _loop(choice: str) -> str:
    """``--loop`` as what will run: ``auto`` is uvloop when it imports."""
    if choice != "auto":
        return choice
    return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1 (also used by ``roomcast demo-feed``)."""
    value = _whole(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _seconds(text: str) -> float:
    """An argparse type: a finite number >= 0 (seconds, or a rate per second)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, not {text!r}")
    return value


def _positive_seconds(text: str) -> float:
    value = _seconds(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def _payload_bytes(text: str) -> int:
    value = _whole(text)
    if value < MIN_PAYLOAD_BYTES:
        raise argparse.ArgumentTypeError(
            f"must be at least {MIN_PAYLOAD_BYTES}: every message carries its send time "
            "and sequence number"
        )
    return value


def _url(text: str) -> str:
    parts = urlsplit(text)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    if scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"not an http(s):// or ws(s):// URL: {text!r}")
    path = parts.path.rstrip("/")
    if parts.scheme in ("ws", "wss") and path.endswith("/ws"):
        path = path[: -len("/ws")]
    return urlunsplit((scheme, parts.netloc, path, "", ""))


def _room(text: str) -> str:
    if not ROOM_PATTERN.fullmatch(text):
        raise argparse.ArgumentTypeError("1-100 characters of letters, digits and _ . : -")
    return text


def _common(parser: argparse.ArgumentParser, scenario: str) -> None:
    add = parser.add_argument
    add(
        "--url",
        type=_url,
        help="server base URL (default: the local server of ROOMCAST_HOST and ROOMCAST_PORT, "
        f"{DEFAULT_URL} unset)",
    )
    add(
        "--protocol",
        choices=SUPPORTED[scenario],
        default="roomcast",
        help="what the server speaks (default roomcast)",
    )
    add("--duration", type=_seconds, default=10.0, help="measured seconds (default 10)")
    add("--warmup", type=_seconds, default=1.0, help="unmeasured seconds first (default 1)")
    add(
        "--subscribers",
        type=positive_int,
        default=1000,
        help="connections (default 1000; rooms: --rooms x --members)",
    )
    add("--processes", type=positive_int, help="client processes (default: CPU count)")
    add(
        "--concurrency",
        type=positive_int,
        default=64,
        help="connections opening at once, over all processes (default 64)",
    )
    add("--room", type=_room, default="bench", help="room name (rooms: its prefix)")
    add("--token", help="roomcast token, sent in a connect frame (SSE: Bearer header)")
    add("--server-pid", type=positive_int, help="server PID: its CPU and RSS (with its children)")
    add(
        "--setup-timeout",
        type=_positive_seconds,
        default=60.0,
        help="seconds to connect (default 60)",
    )
    add("--json", dest="json_path", metavar="FILE", help="write the results as JSON")
    add(
        "--ws-client",
        choices=("raw", "websockets"),
        default="raw",
        help="WebSocket client: bench's own lean one (default) or the websockets library",
    )
    add(
        "--latency-at",
        choices=("auto", "socket", "read"),
        default="auto",
        help="when a delivery counts as received: when the server's write reached the "
        "subscriber's socket (socket: the kernel's receive stamp, so the client's own queue "
        "is not counted), or when the client read it (read); auto is socket where it can "
        "be (fanout and rooms, the lean client over ws:// on Linux), read otherwise",
    )
    add(
        "--loop",
        choices=("auto", "uvloop", "asyncio"),
        default="auto",
        help="the load client's event loop: uvloop when installed (auto, the default: it "
        "reads a frame for less CPU, so the client bounds a figure later), or asyncio's own",
    )
    if scenario in ("fanout", "rooms", "sse"):
        per = " per member" if scenario == "rooms" else ""
        add(
            "--rate",
            type=_seconds,
            help=f"publishes/s{per}; 0: as fast as acks allow (default {DEFAULT_RATE[scenario]:g})",
        )
        add("--window", type=positive_int, default=16, help="unacked publishes at most (16)")
        add(
            "--payload-bytes",
            type=_payload_bytes,
            default=100,
            help=f"bytes of JSON data, at least {MIN_PAYLOAD_BYTES} (default 100)",
        )
        add("--grace", type=_seconds, default=5.0, help="seconds to wait for late deliveries")
    if scenario == "idle":
        add(
            "--sse",
            action="store_true",
            help="hold Server-Sent Events streams instead of WebSockets (roomcast, broadcast)",
        )
    if scenario == "rooms":
        add("--rooms", type=positive_int, default=100, help="rooms (default 100)")
        add("--members", type=positive_int, default=10, help="members per room (default 10)")


DESCRIPTIONS = {
    "fanout": "N subscribers in one room, one publisher (fixed --rate, or --rate 0: windowed)",
    "rooms": "--rooms rooms of --members members, every member publishing at --rate",
    "connect": "a connection storm: handshakes per second and connect latency",
    "idle": "hold N connections for --duration; with --server-pid, server RSS per connection",
    "sse": "N Server-Sent Events subscribers in one room, one publisher",
}


def build_parser(prog: str = "roomcast bench") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Load-test a roomcast server (or a peer server for comparison).",
        epilog="Benchmark servers: ROOMCAST_PUBLISH_RATE=0 ROOMCAST_PRESENCE=false; "
        "see docs/bench.md.",
    )
    scenarios = parser.add_subparsers(dest="scenario", required=True, metavar="SCENARIO")
    for name in SCENARIOS:
        sub = scenarios.add_parser(name, help=DESCRIPTIONS[name], description=DESCRIPTIONS[name])
        _common(sub, name)
    return parser


def parse_config(
    argv: Sequence[str],
    prog: str = "roomcast bench",
    default_url: Callable[[], str] | None = None,
) -> BenchConfig:
    """Parse ``argv`` (without the program name); exits 2 on a bad command line.
    Without ``--url``, the server is ``default_url()`` (else :data:`DEFAULT_URL`)."""
    parser = build_parser(prog)
    args = parser.parse_args(list(argv))
    url: str = args.url
    if url is None:
        try:
            url = _url(default_url() if default_url is not None else DEFAULT_URL)
        except (ValueError, argparse.ArgumentTypeError) as exc:  # settings it cannot use
            parser.error(f"{exc} (or pass --url)")
    scenario: str = args.scenario
    rooms = getattr(args, "rooms", 1)
    members = getattr(args, "members", 1)
    connections = rooms * members if scenario == "rooms" else args.subscribers
    processes = args.processes or os.cpu_count() or 1
    rate = getattr(args, "rate", None)
    payload = getattr(args, "payload_bytes", 100)
    if scenario in ("fanout", "rooms", "sse") and args.duration <= 0:
        parser.error("--duration must be positive")
    sse = scenario == "sse" or getattr(args, "sse", False)
    if sse and args.protocol not in SUPPORTED["sse"]:
        parser.error(f"--sse: streams are roomcast or broadcast, not {args.protocol}")
    try:
        latency_at = _latency_at(args.latency_at, scenario, args.ws_client, sse, args.protocol, url)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    return BenchConfig(
        scenario=scenario,
        protocol=args.protocol,
        url=url,
        duration=args.duration,
        subscribers=connections,
        rate=DEFAULT_RATE.get(scenario, 0.0) if rate is None else rate,
        window=getattr(args, "window", 16),
        payload_bytes=payload,
        processes=max(1, min(processes, connections)),
        room=args.room,
        warmup=args.warmup if scenario in ("fanout", "rooms", "sse") else 0.0,
        rooms=rooms,
        members=members,
        concurrency=args.concurrency,
        server_pid=args.server_pid,
        token=args.token,
        setup_timeout=args.setup_timeout,
        grace=getattr(args, "grace", 5.0),
        json_path=args.json_path,
        ws_client=args.ws_client,
        loop=_loop(args.loop),
        sse=sse,
        latency_at=latency_at,
    )
