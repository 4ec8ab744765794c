"""roomcast: a real-time collaboration server on FastAPI.

The public API, what an application that mounts roomcast imports
(docs/embedding.md)::

    from roomcast import Hooks, Principal, Refused, Roomcast, RoomcastError, Settings

Everything here is loaded on first use, so ``import roomcast.protocol`` (the
load tester, a client) stays light. ``roomcast.client`` is the Python client
(docs/python-client.md): ``roomcast.client.connect(url)``.

Errors: one tree, rooted at :class:`RoomcastError`::

    RoomcastError
     +-- RequestError          refused with an error code (``code``, ``message``)
     |    +-- Refused            raised by a hook to refuse (``forbidden`` by default)
     +-- ConnectionClosing     a connection closed with ``close_code`` (auth, limits)
     +-- Unavailable           the broker or database cannot serve now: retry later
     +-- DurableNotPersisted   ``durable`` asked of a room that is not persisted
     +-- PublishedNotPersisted a ``durable`` publish went out but was not committed
     +-- NotStarted            used outside the lifespan
     +-- SettingsError         settings that cannot be used (a ValueError too)
     +-- StartupError          a service a setting names cannot be reached at startup
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from . import client
    from .api.deps import Authenticate, NotStarted
    from .api.docs import offline_docs
    from .app import create_app
    from .auth import Principal
    from .hooks import Hooks, OnConnect, OnDisconnect, OnPublish, OnSubscribe
    from .hub.broker import PresenceEntry, Unavailable
    from .hub.publishing import DurableNotPersisted, PublishedNotPersisted
    from .protocol.codes import CloseCode, ErrorCode
    from .protocol.errors import ConnectionClosing, Refused, RequestError, RoomcastError
    from .runner import run
    from .runtime import Roomcast
    from .server_api import History, Message, Published, Stats
    from .settings import Settings, SettingsError
    from .startup import StartupError
    from .transports.fastpath import WebSocketProtocol

__all__ = [
    "Authenticate",
    "CloseCode",
    "ConnectionClosing",
    "DurableNotPersisted",
    "ErrorCode",
    "History",
    "Hooks",
    "Message",
    "NotStarted",
    "OnConnect",
    "OnDisconnect",
    "OnPublish",
    "OnSubscribe",
    "PresenceEntry",
    "Principal",
    "Published",
    "PublishedNotPersisted",
    "Refused",
    "RequestError",
    "Roomcast",
    "RoomcastError",
    "Settings",
    "SettingsError",
    "StartupError",
    "Stats",
    "Unavailable",
    "WebSocketProtocol",
    "__version__",
    "client",
    "create_app",
    "offline_docs",
    "run",
]

_WHERE = {
    "Authenticate": "api.deps",
    "CloseCode": "protocol.codes",
    "ConnectionClosing": "protocol.errors",
    "DurableNotPersisted": "hub.publishing",
    "ErrorCode": "protocol.codes",
    "History": "server_api",
    "Hooks": "hooks",
    "Message": "server_api",
    "NotStarted": "api.deps",
    "OnConnect": "hooks",
    "OnDisconnect": "hooks",
    "OnPublish": "hooks",
    "OnSubscribe": "hooks",
    "PresenceEntry": "hub.broker",
    "Principal": "auth",
    "Published": "server_api",
    "PublishedNotPersisted": "hub.publishing",
    "Refused": "protocol.errors",
    "RequestError": "protocol.errors",
    "Roomcast": "runtime",
    "RoomcastError": "protocol.errors",
    "Settings": "settings",
    "SettingsError": "settings",
    "StartupError": "startup",
    "Stats": "server_api",
    "Unavailable": "hub.broker",
    "WebSocketProtocol": "transports.fastpath",  # roomcast's, or uvicorn's where it cannot be
    "create_app": "app",
    "offline_docs": "api.docs",
    "run": "runner",
}


_SUBMODULES = frozenset({"client"})


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:  # importing sets it as an attribute of this package
        return importlib.import_module(f"{__name__}.{name}")
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'roomcast' has no attribute {name!r}")
    module, _, attribute = where.partition(":")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), attribute or name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
