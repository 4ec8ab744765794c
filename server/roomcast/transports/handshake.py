"""The HTTP protocol uvicorn runs for roomcast: uvicorn's, with a deadline for each
request's line and headers (transports/uvicorn_http.py).

uvicorn's ``http`` option takes a protocol class, or any callable that makes a
protocol from uvicorn's keyword arguments; :class:`HTTPProtocol` is such a
callable carrying the ``handshake_timeout`` setting. It is a small frozen
dataclass, so it pickles into uvicorn's worker processes (``workers`` above 1)
and imports nothing of uvicorn until the first connection. runner.py passes it
(``roomcast serve``, ``roomcast.run``) and so does ``roomcast.testing.LiveServer``.

The class is picked once per process: roomcast's httptools protocol when httptools
is installed (as uvicorn's ``auto`` picks), else roomcast's h11 one. If uvicorn's
modules they subclass cannot be imported (a uvicorn outside the tested releases),
one warning is logged and uvicorn's own ``auto`` protocol serves, without the
deadline.
"""

from __future__ import annotations

import importlib
import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

__all__ = ["DEFAULT_HANDSHAKE_TIMEOUT", "HTTPProtocol", "http_protocol_class"]

DEFAULT_HANDSHAKE_TIMEOUT = 10.0
"""The ``handshake_timeout`` setting's default."""

log = logging.getLogger("roomcast")

_chosen: tuple[Any, bool] | None = None
_lock = threading.Lock()


def _pick() -> tuple[Any, bool]:
    try:
        module = importlib.import_module("roomcast.transports.uvicorn_http")
    except Exception as exc:  # uvicorn's private modules changed
        from uvicorn.protocols.http.auto import AutoHTTPProtocol

        log.warning(
            "request headers are not timed out (handshake_timeout): roomcast's HTTP "
            "protocol cannot be used with this uvicorn (%s: %s)",
            type(exc).__name__,
            exc,
        )
        return AutoHTTPProtocol, False
    try:
        import httptools  # noqa: F401
    except ImportError:
        return module.H11Protocol, True
    return module.HttpToolsProtocol, True


def http_protocol_class() -> tuple[type[asyncio.Protocol], bool]:
    """The protocol class this process serves HTTP with, and whether it is
    roomcast's (it then takes ``handshake_timeout``)."""
    global _chosen
    with _lock:
        if _chosen is None:
            _chosen = _pick()
    return _chosen


@dataclass(frozen=True)
class HTTPProtocol:
    """uvicorn's ``http=``: makes each connection's protocol with this deadline."""

    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT

    def __call__(self, **kwargs: Any) -> asyncio.Protocol:
        cls, ours = _chosen or http_protocol_class()
        protocol: asyncio.Protocol = cls(**kwargs)
        if ours:  # read when the connection is made, which comes after this
            protocol.handshake_timeout = self.handshake_timeout  # type: ignore[attr-defined]
        return protocol
