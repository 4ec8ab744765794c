"""Which WebSocket protocol class uvicorn runs for roomcast: its own (the fast
path, uvicorn_ws.py) when it can be built here, else uvicorn's own.

roomcast's protocol subclasses a private uvicorn module and edits websockets'
parser (decision 13 in docs/decisions.md), so it is only used with the uvicorn
and websockets releases it was tested with (:data:`TESTED`, the bounds in
pyproject.toml). Outside them, or when the private names it needs are gone,
:func:`websocket_protocol` logs one warning and returns uvicorn's stock
websockets-sansio protocol (or uvicorn's default when that is gone too): the
server still serves, with every frame through ASGI ``send`` (about a third of
the fan-out rate) and, under a server whose signals are uvicorn's
(``roomcast.run``), uvicorn's close on shutdown (1012) instead of the drain's
3000 (docs/operations.md).

Nothing here imports uvicorn until :func:`websocket_protocol` is called; uvicorn
calls it through ``roomcast:WebSocketProtocol`` (runner.PROTOCOL_PATH) when it
loads its config.
"""

from __future__ import annotations

import importlib
import logging
import re
import sys
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

    WebSocketProtocol: type[asyncio.Protocol]

__all__ = ["TESTED", "fast_path_unavailable", "is_fast_path", "websocket_protocol"]

log = logging.getLogger("roomcast.websocket")

TESTED: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "uvicorn": ((0, 52, 1), (0, 56)),
    "websockets": ((14, 0), (18,)),
}
"""Per module: the releases roomcast's protocol was tested with, [lowest, bound):
the dependency bounds in pyproject.toml (a test keeps them the same)."""

_MODULE = "roomcast.transports.uvicorn_ws"
_STOCK = (
    ("uvicorn.protocols.websockets.websockets_sansio_impl", "WebSocketsSansIOProtocol"),
    ("uvicorn.protocols.websockets.auto", "AutoWebSocketsProtocol"),  # uvicorn's default
)

_chosen: Any = None
_why_not: str | None = None
_lock = threading.Lock()


def release(version: str) -> tuple[int, ...]:
    """The leading numbers of a version string: ``"0.56.0rc1"`` -> ``(0, 56, 0)``."""
    numbers = []
    for part in version.split("."):
        match = re.match(r"\d+", part)
        if match is None:
            break
        numbers.append(int(match.group()))
        if match.end() < len(part):
            break
    return tuple(numbers)


def untested(names: Iterable[str] = TESTED) -> str | None:
    """Which of ``names`` (default: uvicorn and websockets) is installed in a
    release outside :data:`TESTED` (a sentence), or None."""
    for name in names:
        lowest, bound = TESTED[name]
        version = str(getattr(importlib.import_module(name), "__version__", ""))
        if not lowest <= release(version) < bound:
            tested = f"{'.'.join(map(str, lowest))} up to {'.'.join(map(str, bound))}"
            return f"{name} {version or '(version unknown)'} is not a tested release ({tested})"
    return None


def _build() -> tuple[Any, str | None]:
    reason = untested()
    if reason is None:
        try:
            module = importlib.import_module(_MODULE)
        except Exception as exc:  # a private name is gone: any error of the class's making
            reason = f"uvicorn's private protocol changed ({type(exc).__name__}: {exc})"
        else:
            return module.RoomcastWebSocketProtocol, None
    for module_name, attribute in _STOCK:
        try:
            stock = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError):
            continue
        if stock is not None:
            return stock, reason
    raise ImportError(f"uvicorn has no WebSocket protocol to fall back to ({reason})")


def websocket_protocol() -> type[asyncio.Protocol]:
    """The WebSocket protocol class uvicorn should run for roomcast: its own, or
    (logged once per process, at WARNING) uvicorn's when roomcast's cannot be
    used here. ImportError only when uvicorn has no WebSocket protocol at all."""
    global _chosen, _why_not
    with _lock:  # LiveServers load their configs in threads of their own
        if _chosen is None:
            _chosen, _why_not = _build()
            if _why_not is not None:
                log.warning(
                    "WebSocket fast path off: %s; serving with uvicorn's %s, fan-out "
                    "through ASGI sends (docs/operations.md)",
                    _why_not,
                    _chosen.__name__,
                )
    chosen: type[asyncio.Protocol] = _chosen
    return chosen


def fast_path_unavailable() -> str | None:
    """Why :func:`websocket_protocol` fell back (already logged), or None."""
    return _why_not


def is_fast_path(protocol: object) -> bool:
    """``protocol`` is roomcast's own protocol class (or a subclass of it).
    Never imports it: a class can only be roomcast's once its module is loaded."""
    module = sys.modules.get(_MODULE)
    ours = getattr(module, "RoomcastWebSocketProtocol", None)
    return isinstance(protocol, type) and ours is not None and issubclass(protocol, ours)


def __getattr__(name: str) -> Any:
    if name == "WebSocketProtocol":
        return websocket_protocol()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
