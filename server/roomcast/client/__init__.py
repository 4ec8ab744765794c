"""roomcast.client: the Python client of roomcast's protocol (docs/python-client.md).

::

    import roomcast.client

    async with roomcast.client.connect("ws://localhost:8000/ws", name="bot") as rc:
        sub = await rc.subscribe("chat:lobby")
        await rc.publish("chat:lobby", {"text": "hi"})
        async for event in sub:
            ...

It behaves like the browser's roomcast.js: it reconnects with full-jitter backoff as
the close codes say, resubscribes every room from its last position (yielding
:class:`Recovered` or :class:`Reset`), drops duplicates, keeps requests as futures
with timeouts and a bound, pipelines publishes, pings a silent connection, renews
tokens through a callback, and resends a publish only when it has an idempotency key
(every publish gets one unless told otherwise). :func:`sse` reads the same events
over Server-Sent Events. Built on :mod:`roomcast.protocol` only (layer rule), with
``websockets`` and ``httpx``.

Modules, one concept each: connect.py (``connect``), connection.py (``Client``, the
reconnect loop), subscription.py (a room's events), requests.py (pending requests),
events.py (typed events and results), position.py (dedupe), link.py (one
WebSocket), reconnect.py (whether and when), state.py,
tokens.py, options.py, sse.py, errors.py.

Exceptions, rooted at :class:`roomcast.RoomcastError`::

    RoomcastError
     +-- RequestError              (roomcast.protocol) an error reply
     |    +-- RequestRefused         the server refused a request (op, code, message)
     +-- ClientError               the client has no answer to give
          +-- RequestTimeout         no reply in time (a TimeoutError too)
          +-- QueueFull              max_pending requests already wait
          +-- Disconnected           sent, then the connection was lost: may have acted
          |    +-- PublishUnconfirmed  a publish without idempotency key: never resent
          +-- ClientClosed           the client was closed
          +-- ConnectionFailed       gave up: close code 3500+, refused, max_retries
"""

from __future__ import annotations

from ..protocol.errors import RequestError, RoomcastError
from ..protocol.events import Position
from .connect import Connecting, connect
from .connection import Client
from .errors import (
    ClientClosed,
    ClientError,
    ConnectionFailed,
    Disconnected,
    PublishUnconfirmed,
    QueueFull,
    RequestRefused,
    RequestTimeout,
)
from .events import (
    Event,
    HistoryPage,
    Join,
    Leave,
    Member,
    Message,
    Notice,
    PublishResult,
    Recovered,
    Reset,
    Session,
    SubscribeResult,
    Unsubscribed,
)
from .options import ClientOptions, StreamOptions
from .reconnect import backoff_delay
from .sse import EventStream, sse
from .state import ConnectionState, StateChange
from .subscription import Subscription
from .tokens import TokenProvider

__all__ = [
    "Client",
    "ClientClosed",
    "ClientError",
    "ClientOptions",
    "Connecting",
    "ConnectionFailed",
    "ConnectionState",
    "Disconnected",
    "Event",
    "EventStream",
    "HistoryPage",
    "Join",
    "Leave",
    "Member",
    "Message",
    "Notice",
    "Position",
    "PublishResult",
    "PublishUnconfirmed",
    "QueueFull",
    "Recovered",
    "RequestError",
    "RequestRefused",
    "RequestTimeout",
    "Reset",
    "RoomcastError",
    "Session",
    "StateChange",
    "StreamOptions",
    "SubscribeResult",
    "Subscription",
    "TokenProvider",
    "Unsubscribed",
    "backoff_delay",
    "connect",
    "sse",
]
