"""When to reconnect, and how soon: the rules roomcast.js follows, in one place for
the WebSocket client and the event stream.

Whether: ``should_reconnect`` of protocol/codes.py decides by close code (3000-3499
and most standard codes: yes; 3500-4999 and 1002/1003/1007/1008/1009: no). 3003
(token expired) reconnects only when a ``token_provider`` can give a new token. A
refused handshake or stream (an HTTP status) stops on a 4xx other than 408 and 429,
and on 401 only without a ``token_provider``; 5xx and network errors reconnect.

How soon: exponential backoff with full jitter. Attempt ``n`` (0, 1, ...) waits a
random time between 0 and ``min(max_delay, min_delay * 2**n)``, so clients that lost
the same server spread their returns instead of arriving together.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

from ..protocol.codes import should_reconnect
from .errors import ConnectionFailed

__all__ = ["ABNORMAL", "TOKEN_EXPIRED", "backoff_delay", "first_attempt", "give_up"]

ABNORMAL = 1006  # a connection that ended without a close frame
TOKEN_EXPIRED = 3003
_RETRY_STATUSES = frozenset({408, 429})


def backoff_delay(
    attempt: int,
    min_delay: float,
    max_delay: float,
    rand: Callable[[], float] = random.random,
) -> float:
    """The delay in seconds before reconnect attempt ``attempt`` (full jitter)."""
    ceiling: float = min(max_delay, min_delay * 2 ** min(attempt, 30))
    return rand() * ceiling


def give_up(
    code: int | None, reason: str, status: int | None, *, renewable: bool
) -> ConnectionFailed | None:
    """Why not to reconnect after an end with close ``code`` (None: none was
    received) or HTTP ``status``; None: reconnect. ``renewable``: a new token can
    be had."""
    if status is not None:
        if status == 401 and renewable:
            return None
        if 400 <= status < 500 and status not in _RETRY_STATUSES:
            return ConnectionFailed(reason, status=status)
        return None
    code = ABNORMAL if code is None else code
    if code == TOKEN_EXPIRED:
        if renewable:
            return None
        return ConnectionFailed(
            f"token expired ({code}) and no token_provider to renew it", close_code=code
        )
    if not should_reconnect(code):
        return ConnectionFailed(f"closed by the server: {reason} ({code})", close_code=code)
    return None


async def first_attempt(
    first: asyncio.Future[None],
    timeout: float | None,
    close: Callable[[], Awaitable[None]],
    late: Callable[[], str],
) -> None:
    """Wait up to ``timeout`` for ``first`` (set by the runner once it is through,
    or failed with why it stopped); on the deadline or any error ``close()``, and
    on the deadline raise :class:`ConnectionFailed` with ``late()`` as its message.
    ``start`` of the WebSocket client and of the event stream."""
    try:
        async with asyncio.timeout(timeout):
            await asyncio.shield(first)
    except TimeoutError:
        await close()
        raise ConnectionFailed(late()) from None
    except BaseException:
        await close()
        raise
