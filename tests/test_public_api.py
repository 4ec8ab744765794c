"""The public API: what a host app imports from ``roomcast``, pinned."""

from __future__ import annotations

import subprocess
import sys

import pytest

import roomcast

PUBLIC = [
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


def test_the_public_names_are_pinned_and_sorted() -> None:
    assert roomcast.__all__ == PUBLIC
    assert roomcast.__all__ == sorted(roomcast.__all__)


def test_every_public_name_resolves() -> None:
    for name in roomcast.__all__:
        assert getattr(roomcast, name) is not None, name
    assert set(dir(roomcast)) >= set(PUBLIC)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchThing"):
        roomcast.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018


def test_every_error_a_host_catches_is_a_roomcast_error() -> None:
    from roomcast import client
    from roomcast.api.deps import NotStarted
    from roomcast.auth import InvalidCredentials, TokenExpiredError, TooManyConnections
    from roomcast.db.store import DatabaseUnavailable, RoomExists
    from roomcast.hub.archive import ArchiveUnavailable
    from roomcast.hub.broker import BrokerUnavailable
    from roomcast.protocol.codec import DataNotEncodable
    from roomcast.protocol.errors import ConnectionRefused
    from roomcast.transports.sse import LastEventIdError

    errors = [
        roomcast.RequestError,
        roomcast.Refused,
        roomcast.ConnectionClosing,
        roomcast.Unavailable,
        roomcast.DurableNotPersisted,
        roomcast.PublishedNotPersisted,
        roomcast.NotStarted,
        roomcast.SettingsError,
        roomcast.StartupError,
        NotStarted,
        InvalidCredentials,
        TokenExpiredError,
        TooManyConnections,
        DatabaseUnavailable,
        RoomExists,
        ArchiveUnavailable,
        BrokerUnavailable,
        DataNotEncodable,
        ConnectionRefused,
        LastEventIdError,
        client.RequestRefused,
        client.ClientError,
        client.RequestTimeout,
        client.QueueFull,
        client.Disconnected,
        client.PublishUnconfirmed,
        client.ClientClosed,
        client.ConnectionFailed,
    ]
    for error in errors:
        assert issubclass(error, roomcast.RoomcastError), error
    assert issubclass(roomcast.SettingsError, ValueError)  # what a bad setting always was


def test_importing_roomcast_or_its_protocol_loads_no_web_framework() -> None:
    code = (
        "import sys, roomcast, roomcast.protocol.codec; "
        "print(any(m in sys.modules for m in ('fastapi', 'sqlalchemy', 'redis')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


def test_the_client_is_reached_from_roomcast_and_loads_no_server_stack() -> None:
    code = (
        "import sys, roomcast; connect = roomcast.client.connect; "
        "print(sorted(m for m in ('fastapi', 'starlette', 'sqlalchemy', 'redis', 'uvicorn') "
        "if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr
    assert issubclass(roomcast.client.RequestRefused, roomcast.RequestError)


def test_the_protocol_class_is_importable_the_way_uvicorn_imports_it() -> None:
    from uvicorn.importer import import_from_string

    from roomcast.transports.uvicorn_ws import RoomcastWebSocketProtocol

    assert import_from_string("roomcast:WebSocketProtocol") is RoomcastWebSocketProtocol
