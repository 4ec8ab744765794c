"""A client's connection state: one enum and its legal transitions, as
roomcast.js's states.

::

    IDLE -> CONNECTING -> CONNECTED <-> RECONNECTING -> RESUMED
                 \\             \\            \\            \\
                  +-------------+------------+------------+--> FAILED, CLOSED

``RECONNECTING`` repeats for every failed attempt. After a reconnect the state is
``RESUMED`` when every room recovered what it missed, else ``CONNECTED`` (the
:class:`StateChange` names the rooms that did not: ``lost``). ``FAILED`` (the client
gave up) and ``CLOSED`` (``close()``) are final, except that closing a failed client
makes it ``CLOSED``.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["ConnectionState", "StateChange", "can_move", "tell"]

log = logging.getLogger("roomcast.client")


class ConnectionState(enum.Enum):
    IDLE = "idle"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    RESUMED = "resumed"
    FAILED = "failed"
    CLOSED = "closed"


_S = ConnectionState
_MOVES: dict[ConnectionState, frozenset[ConnectionState]] = {
    _S.IDLE: frozenset({_S.CONNECTING, _S.CLOSED}),
    _S.CONNECTING: frozenset({_S.CONNECTED, _S.RECONNECTING, _S.FAILED, _S.CLOSED}),
    _S.CONNECTED: frozenset({_S.RECONNECTING, _S.FAILED, _S.CLOSED}),
    _S.RECONNECTING: frozenset({_S.RECONNECTING, _S.CONNECTED, _S.RESUMED, _S.FAILED, _S.CLOSED}),
    _S.RESUMED: frozenset({_S.RECONNECTING, _S.FAILED, _S.CLOSED}),
    _S.FAILED: frozenset({_S.CLOSED}),
    _S.CLOSED: frozenset(),
}


def can_move(old: ConnectionState, new: ConnectionState) -> bool:
    """Whether ``old -> new`` is a legal transition."""
    return new in _MOVES[old]


@dataclass(frozen=True, slots=True)
class StateChange:
    """One transition, as the ``on_state`` callback gets it.

    ``code``/``reason``: the close code and reason that caused it (``RECONNECTING``,
    ``FAILED``); ``attempt``/``delay``: the reconnect attempt about to be made and
    the seconds before it; ``lost``: rooms that did not recover their gap
    (``CONNECTED`` after a reconnect)."""

    state: ConnectionState
    code: int | None = None
    reason: str = ""
    attempt: int = 0
    delay: float | None = None
    lost: tuple[str, ...] = ()


def tell(on_state: Callable[[StateChange], None] | None, change: StateChange) -> None:
    """Give ``change`` to the application's ``on_state`` callback, if any; a callback
    that raises is logged, never raised into the client."""
    if on_state is not None:
        try:
            on_state(change)
        except Exception:
            log.exception("roomcast client: the on_state callback failed")
