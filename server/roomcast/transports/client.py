"""One connection's identity: its principal, its token's expiry, its place in
the connection limits. Shared by the WebSocket and SSE transports.

A principal comes from a token (:meth:`Client.login`) or, when the application
authenticates, from its ``authenticate`` at the handshake (:meth:`Client.admit`);
either way the application's ``on_connect`` hook sees it first, and
``on_disconnect`` when the connection ends (:meth:`Client.release`).

When the token expires the connection is closed with 3003 (TOKEN_EXPIRED),
unless a ``refresh`` brought a new one first.
"""

from __future__ import annotations

import asyncio
import time

from ..auth import (
    Authority,
    AuthUnavailable,
    ConnectionLease,
    InvalidCredentials,
    Principal,
    TokenExpiredError,
    TooManyConnections,
)
from ..hooks import HookRunner
from ..hub.subscriber import Subscriber
from ..protocol.codes import CloseCode, ErrorCode
from ..protocol.errors import ConnectionRefused, RequestError, Unauthorized
from .inflight import InFlight

__all__ = ["Client"]

NO_HOOKS = HookRunner(None, timeout=1.0)


class Client:
    """Call :meth:`release` (and then :meth:`disconnected`) when the connection ends."""

    def __init__(
        self,
        authority: Authority,
        sub: Subscriber,
        lease: ConnectionLease,
        handshake_token: str | None = None,
        max_inflight: int = 1,
        *,
        hooks: HookRunner = NO_HOOKS,
    ) -> None:
        self.authority = authority
        self.hooks = hooks
        self.sub = sub
        self.inflight = InFlight(sub, max_inflight)
        """Publishes submitted and not yet answered (inflight.py)."""
        self.lease = lease
        self.handshake_token = handshake_token
        """A token from the handshake (cookie or query), used unless ``connect`` brings one."""
        self.principal: Principal | None = None
        self.connected: Principal | None = None
        """The principal ``on_connect`` passed, for ``on_disconnect``."""
        self._expiry: asyncio.TimerHandle | None = None

    @property
    def needs_credentials(self) -> bool:
        """No principal yet, and anonymous clients are not let in."""
        return self.principal is None and not self.authority.anonymous_allowed

    async def login(
        self, token: str | None, name: str | None, request_id: int | None = None
    ) -> Principal:
        """Authenticate with ``token`` (or as anonymous). Raises the
        ConnectionClosing errors of auth/errors.py (3500, 3003, 1013, 3004), and
        ConnectionRefused when ``on_connect`` refuses.

        When the application authenticates, the principal was admitted at the
        handshake and tokens play no part: a ``connect`` may only rename an
        anonymous principal."""
        if self.authority.host_authenticates:
            if self.principal is None:
                raise Unauthorized("the application did not authenticate this connection")
            if name is not None:
                self.rename(name)
            return self.principal
        principal = await self.authority.authenticate(token, name)
        await self.admit(principal, request_id)
        return principal

    async def admit(self, principal: Principal, request_id: int | None = None) -> None:
        """Run ``on_connect`` for ``principal``, then act as it (:meth:`adopt`).
        Raises ConnectionRefused when the hook refuses, TooManyConnections over
        the per-user limit."""
        if self.connected is None or self.connected.user != principal.user:
            try:
                await self.hooks.connect(principal, request_id)
            except RequestError as exc:
                raise ConnectionRefused(exc) from None
        self.adopt(principal)
        self.connected = principal

    async def refresh(self, token: str, request_id: int | None) -> list[str]:
        """Replace the token before it expires; returns the rooms the new token
        no longer allows (the caller unsubscribes them). Failures are error
        replies: the connection stays until the old token expires."""
        if self.authority.host_authenticates:
            message = "tokens are not used: the application authenticates connections"
            raise RequestError(ErrorCode.BAD_REQUEST, message, request_id)
        if self.authority.verifier is None:
            raise RequestError(ErrorCode.BAD_REQUEST, "tokens are not used (auth=off)", request_id)
        try:
            principal = await self.authority.authenticate(token)
        except InvalidCredentials as exc:
            raise RequestError(ErrorCode.UNAUTHORIZED, str(exc), request_id) from None
        except TokenExpiredError as exc:
            raise RequestError(ErrorCode.TOKEN_EXPIRED, str(exc), request_id) from None
        except AuthUnavailable as exc:
            raise RequestError(ErrorCode.UNAVAILABLE, str(exc), request_id) from None
        current = self.principal
        if current is not None and not current.anonymous and current.user != principal.user:
            raise RequestError(ErrorCode.FORBIDDEN, "the token is for another user", request_id)
        try:
            self.adopt(principal)
        except TooManyConnections as exc:  # an anonymous client becoming a user at its limit
            raise RequestError(ErrorCode.LIMIT_EXCEEDED, str(exc), request_id) from None
        return [room for room in self.sub.rooms if not self.may_subscribe(room)]

    def adopt(self, principal: Principal) -> None:
        """Act as ``principal`` from now on; closes 3003 when its token expires.
        Raises TooManyConnections over the per-user limit."""
        self.lease.claim_user(None if principal.anonymous else principal.user)
        self.principal = principal
        self.sub.user = principal.name
        self.sub.user_id = principal.user
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        if principal.expires is not None:
            delay = max(0.0, principal.expires + self.authority.leeway - time.time())
            self._expiry = asyncio.get_running_loop().call_later(delay, self._expired)

    def _expired(self) -> None:
        self._expiry = None
        self.sub.close(CloseCode.TOKEN_EXPIRED)

    def rename(self, name: str) -> None:
        """An anonymous client may choose the name others see."""
        if self.principal is not None and self.principal.anonymous:
            self.sub.user = name

    def may_subscribe(self, room: str) -> bool:
        return self.principal is not None and self.authority.may_subscribe(self.principal, room)

    def check_read(self, room: str, request_id: int | None) -> None:
        """Subscribe, history and presence need read permission; else ``forbidden``."""
        if not self.may_subscribe(room):
            raise RequestError(ErrorCode.FORBIDDEN, f"not allowed to read {room!r}", request_id)

    def check_publish(self, room: str, request_id: int | None) -> None:
        principal = self.principal
        if principal is None or not self.authority.may_publish(principal, room):
            message = f"not allowed to publish to {room!r}"
            raise RequestError(ErrorCode.FORBIDDEN, message, request_id)

    def release(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        self.lease.release()

    async def disconnected(self) -> None:
        """Run ``on_disconnect`` once, if ``on_connect`` passed (never raises)."""
        principal, self.connected = self.connected, None
        if principal is not None:
            await self.hooks.disconnect(principal)
