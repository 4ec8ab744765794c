"""Where the client's token comes from, and when to renew it.

A fixed ``token`` is sent in every ``connect``; when the server closes the
connection with 3003 (expired), the client gives up, since the same token would be
refused again. With a ``token_provider`` (an async callable returning a fresh token)
the client asks it for every new connection (as roomcast.js calls its ``token``
function), after 3003 as after any other drop, and, with ``refresh_before`` set,
shortly before the current token expires, to send it in a ``refresh`` request: the
connection then lives on without a reconnect.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

__all__ = ["TokenProvider", "TokenSource", "refresh_delay"]

TokenProvider = Callable[[], Awaitable[str]]
"""An async callable that returns a fresh token."""


class TokenSource:
    """The token of each connection: ``token`` first, then the provider's."""

    def __init__(self, token: str | None, provider: TokenProvider | None) -> None:
        self._first = token
        self.provider = provider
        self.current = token

    @property
    def renewable(self) -> bool:
        """Whether a new token can be had (after 3003, or before expiry)."""
        return self.provider is not None

    async def for_connection(self) -> str | None:
        """The token for a new connection. The provider's exceptions propagate (the
        attempt fails and is retried with the backoff)."""
        token: str | None
        if self._first is not None:
            token, self._first = self._first, None
        elif self.provider is not None:
            token = await self.provider()
        else:
            token = self.current
        self.current = token
        return token

    async def renewed(self) -> str:
        """A fresh token from the provider (only when :attr:`renewable`)."""
        assert self.provider is not None
        token = await self.provider()
        self.current = token
        return token


def refresh_delay(expires: float, before: float, now: float | None = None) -> float:
    """Seconds from ``now`` until a token expiring at ``expires`` (Unix time) should be
    renewed: ``before`` seconds ahead, or at half its remaining life if that is
    shorter; 0 when it is (nearly) due."""
    remaining = expires - (time.time() if now is None else now)
    return max(0.0, remaining - before, remaining / 2)
