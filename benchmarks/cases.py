"""The servers benchmarks/run.py compares, and how to start each one.

A :class:`Case` is one server configuration driven by one ``roomcast bench`` scenario:
the command that starts it (``{port}`` and ``{redis}`` are filled in), the environment
it needs, and the bench protocol that speaks its contract (benchmarks/README.md).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CASES", "LIMIT", "PEERS", "ROOT", "Case", "SIDE_VENV", "roomcast_env"]

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT / "benchmarks" / "peers"
SIDE_VENV = ROOT / "benchmarks" / ".venv-redis7"
"""broadcaster's redis:// backend delivers nothing with redis-py 8 (README.md, "Known
problems"); its Redis variant runs from this virtualenv, with redis-py 7."""

PY = sys.executable


def roomcast_env(**extra: str) -> dict[str, str]:
    """A benchmark roomcast: no publish limit, presence off, outboxes a burst cannot
    fill (docs/bench.md, "Start the server for benchmarking")."""
    env = {
        "ROOMCAST_LOG_LEVEL": "warning",
        "ROOMCAST_PUBLISH_RATE": "0",
        "ROOMCAST_PRESENCE": "false",
        "ROOMCAST_OUTBOX_MAX_MESSAGES": "100000",
        "ROOMCAST_OUTBOX_MAX_BYTES": str(64 << 20),
        "ROOMCAST_DATABASE_URL": "sqlite+aiosqlite:///{tmp}/roomcast.db",
    }
    env.update(extra)
    return env


@dataclass(frozen=True)
class Case:
    key: str
    """Short name, used in the JSON and on the command line (--only)."""
    label: str
    """The name in RESULTS.md."""
    group: str
    """``fanout`` (1 worker), ``fanout2`` (2 workers through Redis), ``sse``, ``idle``."""
    command: tuple[str, ...]
    protocol: str
    scenario: str = "fanout"
    env: dict[str, str] = field(default_factory=dict)
    needs: frozenset[str] = frozenset()
    """``redis``, ``node``, ``side-venv``, ``socketio``, ``broadcaster``."""
    workers: int = 1
    health: str | None = None
    """An HTTP path that answers 200 once the server is ready (else: the port accepts)."""
    bench_args: tuple[str, ...] = ()
    """Extra arguments for ``roomcast bench`` (``--sse`` for SSE streams held idle)."""


def _roomcast(*args: str) -> tuple[str, ...]:
    return (PY, "-m", "roomcast", "serve", "--port", "{port}", *args)


def _peer(name: str, *args: str, python: str = PY) -> tuple[str, ...]:
    return (python, str(PEERS / name), "--port", "{port}", *args)


SIDE_PY = str(SIDE_VENV / "bin" / "python")
REDIS2 = ("--workers", "2", "--redis-url", "{redis}")

LIMIT = "frame-once"
"""The reference row: a frame built once, ``transport.write`` to every connection in a
loop (peers/frame_once.py), the practical ceiling for one event to N WebSockets."""

CASES: tuple[Case, ...] = (
    Case("roomcast", "roomcast, memory broker, 1 worker", "fanout", _roomcast(), "roomcast",
         env=roomcast_env(), health="/healthz"),
    Case(LIMIT, "frame-once transport.write loop (limit)", "fanout", _peer("frame_once.py"),
         "broadcast"),
    Case("tutorial", "FastAPI tutorial ConnectionManager", "fanout", _peer("tutorial.py"),
         "broadcast"),
    Case("websockets", "websockets serve() + broadcast()", "fanout",
         _peer("websockets_broadcast.py"), "broadcast"),
    Case("node-ws", "Node.js ws, forEach send", "fanout",
         ("node", str(PEERS / "node-ws" / "server.js"), "--port", "{port}"), "broadcast",
         needs=frozenset({"node"})),
    Case("broadcaster", "FastAPI + broadcaster memory://", "fanout",
         _peer("broadcaster_peer.py"), "broadcast", needs=frozenset({"broadcaster"})),
    Case("socketio", "python-socketio, 1 worker", "fanout", _peer("socketio_peer.py"),
         "socketio", needs=frozenset({"socketio"})),
    Case("roomcast-redis", "roomcast, Redis broker, 2 workers", "fanout2",
         _roomcast("--workers", "2"), "roomcast",
         env=roomcast_env(ROOMCAST_REDIS_URL="{redis}"), needs=frozenset({"redis"}),
         workers=2, health="/healthz"),
    Case("broadcaster-redis", "FastAPI + broadcaster redis://, 2 workers", "fanout2",
         _peer("broadcaster_peer.py", *REDIS2, python=SIDE_PY), "broadcast",
         needs=frozenset({"redis", "side-venv"}), workers=2),
    Case("socketio-redis", "python-socketio + AsyncRedisManager, 2 workers", "fanout2",
         _peer("socketio_peer.py", *REDIS2), "socketio",
         needs=frozenset({"redis", "socketio"}), workers=2),
    Case("roomcast-sse", "roomcast SSE, memory broker", "sse", _roomcast(), "roomcast",
         scenario="sse", env=roomcast_env(), health="/healthz"),
    Case("sse-starlette", "FastAPI + sse-starlette, a queue per client", "sse",
         _peer("sse_starlette_peer.py", "--queue-size", "100000"), "broadcast",
         scenario="sse"),
    Case("roomcast-idle", "roomcast, memory broker, 1 worker", "idle", _roomcast(),
         "roomcast", scenario="idle", env=roomcast_env(), health="/healthz"),
    Case("tutorial-idle", "FastAPI tutorial ConnectionManager", "idle",
         _peer("tutorial.py"), "broadcast", scenario="idle"),
    Case("websockets-idle", "websockets serve() + broadcast()", "idle",
         _peer("websockets_broadcast.py"), "broadcast", scenario="idle"),
    Case("frame-once-idle", "frame-once transport.write loop (limit)", "idle",
         _peer("frame_once.py"), "broadcast", scenario="idle"),
    Case("roomcast-sse-idle", "roomcast SSE streams, memory broker, 1 worker", "idle",
         _roomcast(), "roomcast", scenario="idle", env=roomcast_env(), health="/healthz",
         bench_args=("--sse",)),
)  # fmt: skip


def missing_needs(case: Case, have: set[str]) -> set[str]:
    return set(case.needs) - have


def environment_for(case: Case, port: int, redis_url: str, tmp: str) -> dict[str, str]:
    env = dict(os.environ)
    for key, value in case.env.items():
        env[key] = value.format(port=port, redis=redis_url, tmp=tmp)
    return env
