"""In-process hooks: the application's say in connections, subscriptions and
publishes, like Phoenix's ``join`` and ``handle_in``.

::

    async def on_publish(principal: Principal, room: str, data: Any) -> Any:
        if is_muted(principal.user):
            raise Refused("you are muted")
        return {**data, "verified": True}  # what subscribers get instead

    rc = Roomcast(hooks=Hooks(on_publish=on_publish))

Every hook is optional and async; each runs in the request's own task, before
roomcast acts, never inside the fan-out loop (a slow hook delays the one
request it was called for, never anybody's deliveries):

* ``on_connect(principal)``: a WebSocket connection or an SSE stream is
  opened by ``principal``. Refusing closes the WebSocket with the close code of
  the error (``forbidden`` -> 3501; before the upgrade, when the application
  authenticates, the handshake is answered with the matching HTTP status) and
  answers an SSE request with that status.
* ``on_subscribe(principal, room)``: after roomcast's own permission check, on
  ``subscribe`` and for each room of an SSE stream. Refusing answers that
  request with the error.
* ``on_publish(principal, room, data)``: every publish that comes over the
  wire (WebSocket and REST; not ``rc.publish`` from the application's own code),
  after roomcast's permission and size checks, with ``data`` decoded; not for a
  publish whose idempotency key is already known when it arrives (a duplicate,
  not published again; retries racing each other may each run it). Return
  ``None`` to publish ``data`` as it is, or the value to publish instead (held
  to ``max_payload_bytes`` too: over it, the publish is refused ``too_large``).
* ``on_disconnect(principal)``: a connection for which ``on_connect`` passed
  has ended. Its errors are logged; there is nothing left to refuse.

A hook refuses by raising :class:`~roomcast.protocol.errors.Refused` (or any
``RequestError``, or FastAPI's ``HTTPException``, whose status picks the error
code). Any other exception refuses that one request with ``internal`` and is
logged once with its traceback; a hook that does not finish within
``hook_timeout`` seconds refuses it with ``unavailable``. Neither ever closes
the connection (but for ``on_connect``) or touches anyone else's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .auth import Principal
from .protocol.codec import DataNotEncodable, encode_data
from .protocol.codes import ErrorCode
from .protocol.errors import RequestError

__all__ = [
    "HookRunner",
    "Hooks",
    "OnConnect",
    "OnDisconnect",
    "OnPublish",
    "OnSubscribe",
]

log = logging.getLogger("roomcast.hooks")

OnConnect = Callable[[Principal], Awaitable[None]]
OnSubscribe = Callable[[Principal, str], Awaitable[None]]
OnPublish = Callable[[Principal, str, Any], Awaitable[Any]]
OnDisconnect = Callable[[Principal], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Hooks:
    """The application's hooks; see the module documentation for when each runs."""

    on_connect: OnConnect | None = None
    on_subscribe: OnSubscribe | None = None
    on_publish: OnPublish | None = None
    on_disconnect: OnDisconnect | None = None


_BY_STATUS = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.FORBIDDEN,
    413: ErrorCode.TOO_LARGE,
    422: ErrorCode.BAD_REQUEST,
    429: ErrorCode.RATE_LIMITED,
    503: ErrorCode.UNAVAILABLE,
}


def _as_request_error(exc: Exception, request_id: int | None) -> RequestError | None:
    """What a hook's exception refuses with, if it is one that refuses on purpose."""
    if isinstance(exc, RequestError):
        return RequestError(exc.code, exc.message, request_id)
    status = getattr(exc, "status_code", None)  # starlette's and FastAPI's HTTPException
    if isinstance(status, int) and hasattr(exc, "detail"):
        code = _BY_STATUS.get(status, ErrorCode.INTERNAL if status >= 500 else ErrorCode.FORBIDDEN)
        return RequestError(code, str(exc.detail), request_id)
    return None


class HookRunner:
    """Calls the hooks with the timeout and error rules of the module docstring.

    Every method raises :class:`RequestError` (with ``request_id``) to refuse,
    except :meth:`disconnect`, which never raises.
    """

    __slots__ = ("hooks", "max_payload_bytes", "timeout")

    def __init__(
        self, hooks: Hooks | None, timeout: float, max_payload_bytes: int | None = None
    ) -> None:
        self.hooks = hooks or Hooks()
        self.timeout = timeout
        self.max_payload_bytes = max_payload_bytes
        """What ``on_publish`` may return, encoded, like any publish (None: no bound)."""

    @property
    def on_publish(self) -> bool:
        return self.hooks.on_publish is not None

    async def _call(self, name: str, call: Awaitable[Any], request_id: int | None) -> Any:
        try:
            async with asyncio.timeout(self.timeout):
                return await call
        except TimeoutError:
            log.warning(
                "hook %s took longer than %ss: refused with unavailable", name, self.timeout
            )
            raise RequestError(ErrorCode.UNAVAILABLE, f"{name} timed out", request_id) from None
        except Exception as exc:
            refused = _as_request_error(exc, request_id)
            if refused is not None:
                raise refused from None
            log.exception("hook %s failed: refused with internal", name)
            raise RequestError(ErrorCode.INTERNAL, "internal error", request_id) from None

    async def connect(self, principal: Principal, request_id: int | None = None) -> None:
        hook = self.hooks.on_connect
        if hook is not None:
            await self._call("on_connect", hook(principal), request_id)

    async def subscribe(
        self, principal: Principal, room: str, request_id: int | None = None
    ) -> None:
        hook = self.hooks.on_subscribe
        if hook is not None:
            await self._call("on_subscribe", hook(principal, room), request_id)

    async def publish(
        self, principal: Principal, room: str, data: Any, request_id: int | None = None
    ) -> bytes | None:
        """Run ``on_publish`` on a publish's decoded ``data``: the JSON bytes to
        publish instead, or None to publish it as it is (also when there is no hook)."""
        hook = self.hooks.on_publish
        if hook is None:
            return None
        replaced = await self._call("on_publish", hook(principal, room, data), request_id)
        if replaced is None:
            return None
        try:
            encoded = encode_data(replaced)
        except DataNotEncodable:
            log.error("hook on_publish returned a value that is not JSON: refused with internal")
            raise RequestError(ErrorCode.INTERNAL, "internal error", request_id) from None
        limit = self.max_payload_bytes
        if limit is not None and len(encoded) > limit:
            message = f"on_publish made the data {len(encoded)} bytes; the limit is {limit}"
            raise RequestError(ErrorCode.TOO_LARGE, message, request_id)
        return encoded

    async def disconnect(self, principal: Principal) -> None:
        hook = self.hooks.on_disconnect
        if hook is None:
            return
        # A failure is logged by _call; a refusal means nothing once the connection is gone.
        with contextlib.suppress(RequestError):
            await self._call("on_disconnect", hook(principal), None)
