"""Annotated dependency aliases shared by the routers, and the dependencies that
bind a request to its Roomcast and to the application's principal.

Each :class:`~roomcast.app.Roomcast` includes the routers with a dependency of
its own (:func:`binder`): it puts the instance in the request's scope (so two
instances can live in one app) and, when the application authenticates, runs
the application's ``authenticate`` as an ordinary FastAPI dependency, so it may
itself use ``Depends(...)`` (the host's session, its database), dependency
overrides and the router-level dependencies the host gave ``include_router``.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, cast

from fastapi import Depends, HTTPException
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection

from ..auth import Principal
from ..protocol.codes import http_status_of
from ..protocol.errors import RequestError, RoomcastError

if TYPE_CHECKING:
    from ..app import Roomcast

__all__ = [
    "Authenticate",
    "NotStarted",
    "RoomcastDep",
    "binder",
    "get_roomcast",
    "scope_principal",
]

log = logging.getLogger("roomcast")

_TOLD = "roomcast_told_lifespan_missing"
"""Set on an application's ``state`` once it was told its roomcast has no lifespan."""

ROOMCAST = "roomcast"
PRINCIPAL = "roomcast.principal"

Authenticate = Callable[..., Awaitable[Principal | None] | Principal | None]
"""An application's ``authenticate``: given the connection (``HTTPConnection``,
``Request`` or ``WebSocket``) and whatever else it asks for with ``Depends``, the
principal, or None (or an exception) to refuse."""


class NotStarted(RoomcastError, RuntimeError):
    """The server-side API is used while the lifespan is not running
    (``FastAPI(lifespan=rc.lifespan)``); routes answer 503 then."""


def get_roomcast(conn: HTTPConnection) -> Roomcast:
    """The Roomcast this request was routed to (or the one on ``app.state``), while
    its lifespan runs. Otherwise the request gets 503 (an app that forgot
    ``lifespan=rc.lifespan`` finds out at its first request, with a log line)."""
    rc = conn.scope.get(ROOMCAST)
    if rc is None:
        rc = getattr(conn.app.state, "roomcast", None)
    if rc is None or not rc.running:
        state = conn.app.state
        if (rc is None or not rc.started_once) and not getattr(state, _TOLD, False):
            setattr(state, _TOLD, True)  # said once per application, not once per request
            log.error("roomcast is used but its lifespan never started: pass lifespan=rc.lifespan")
        raise HTTPException(503, "roomcast is not running (its lifespan is not running)")
    return cast("Roomcast", rc)


RoomcastDep = Annotated["Roomcast", Depends(get_roomcast)]


def scope_principal(conn: HTTPConnection) -> Principal | None:
    """What the application's ``authenticate`` made of this request, if it ran."""
    principal = conn.scope.get(PRINCIPAL)
    return principal if isinstance(principal, Principal) else None


def _as_dependency(authenticate: Authenticate) -> Callable[..., Awaitable[Principal | None]]:
    """``authenticate`` as a FastAPI dependency: a first parameter without an
    annotation, or annotated ``Request`` or ``WebSocket``, receives the
    ``HTTPConnection`` (the same code serves REST, SSE and WebSocket); it may be
    async, or sync (then it runs in a thread, as FastAPI runs sync dependencies); a
    roomcast error it raises becomes the matching HTTP error."""
    signature = inspect.signature(authenticate, eval_str=True)  # the host's own names
    parameters = list(signature.parameters.values())
    if parameters:
        first = parameters[0]
        annotation = first.annotation
        if annotation is inspect.Parameter.empty or (
            isinstance(annotation, type) and issubclass(annotation, HTTPConnection)
        ):
            parameters[0] = first.replace(annotation=HTTPConnection)

    is_async = inspect.iscoroutinefunction(authenticate) or inspect.iscoroutinefunction(
        getattr(authenticate, "__call__", None)  # noqa: B004 - an object with async __call__
    )

    async def dependency(*args: Any, **kwargs: Any) -> Principal | None:
        try:
            if is_async:
                result = authenticate(*args, **kwargs)
            else:  # like FastAPI's own sync dependencies: in a thread, never blocking the loop
                result = await run_in_threadpool(authenticate, *args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
        except RequestError as exc:
            raise HTTPException(http_status_of(exc.code), exc.message) from None
        if result is not None and not isinstance(result, Principal):
            raise TypeError(f"authenticate returned {type(result).__name__}, not a Principal")
        return result

    dependency.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=parameters, return_annotation=Principal | None
    )
    dependency.__name__ = getattr(authenticate, "__name__", "authenticate")
    return dependency


def binder(rc: Roomcast, authenticate: Authenticate | None) -> Callable[..., Awaitable[None]]:
    """The dependency that binds a request to ``rc`` and, with ``authenticate``,
    to the principal it returns (None when it returned None)."""
    if authenticate is None:

        async def bind(conn: HTTPConnection) -> None:
            conn.scope[ROOMCAST] = rc

        return bind

    async def bind_principal(conn: HTTPConnection, principal: Principal | None) -> None:
        conn.scope[ROOMCAST] = rc
        conn.scope[PRINCIPAL] = principal

    # Annotations are strings in this module, and FastAPI resolves them in its
    # globals, where ``host`` is not: the signature is given as objects.
    host = Annotated[Principal | None, Depends(_as_dependency(authenticate))]
    bind_principal.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(
                "conn", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=HTTPConnection
            ),
            inspect.Parameter(
                "principal", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=host
            ),
        ],
        return_annotation=None,
    )
    return bind_principal
