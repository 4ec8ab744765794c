"""roomcast's test kit for apps that mount roomcast: real servers, a protocol client,
real services. Nothing here fakes roomcast; every helper runs the real thing.

* :class:`LiveServer`: the host's ASGI app under a real uvicorn (lifespan on,
  roomcast's WebSocket protocol) on a free loopback port, in a background thread
  (live.py).
* :func:`connect` / :class:`ProtocolClient`: a WebSocket client speaking roomcast's
  protocol, with ``subscribe``, ``publish``, ``next_event``, ... (client.py).
* :class:`RedisServer`, :class:`RedisCluster`, :class:`RedisSentinels`,
  :class:`PostgresServer`: real ``redis-server`` (alone, a cluster, or a master
  with a replica and sentinels) and PostgreSQL processes on free ports, for
  settings like ``redis_url``, ``redis_sentinels`` and ``database_url``
  (redis_server.py, redis_sentinel.py, postgres_server.py; the binaries must be
  installed, see each class).

Exceptions, rooted at :class:`roomcast.protocol.errors.RoomcastError`::

    RoomcastError
     +-- ReplyError         an error reply to a request helper (code, message, reply)
     +-- LiveServerError    the app under LiveServer did not start

Waits raise :class:`TimeoutError` saying what was awaited.

Importing this package starts nothing, and it needs only roomcast's own
dependencies (uvicorn, websockets, httpx): no pytest. Fixtures are the host's to
write; docs/testing-your-app.md shows them. The server never imports this package.
"""

from __future__ import annotations

from .client import Connecting, ProtocolClient, connect
from .errors import LiveServerError, ReplyError
from .live import LiveServer
from .ports import free_port, port_open
from .postgres_server import PostgresServer, postgres_available, postgres_bin
from .redis_sentinel import RedisSentinel, RedisSentinels
from .redis_server import RedisCluster, RedisServer, free_cluster_port, redis_available

__all__ = [
    "Connecting",
    "LiveServer",
    "LiveServerError",
    "PostgresServer",
    "ProtocolClient",
    "RedisCluster",
    "RedisSentinel",
    "RedisSentinels",
    "RedisServer",
    "ReplyError",
    "connect",
    "free_cluster_port",
    "free_port",
    "port_open",
    "postgres_available",
    "postgres_bin",
    "redis_available",
]
