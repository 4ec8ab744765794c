"""Requests as futures: ids, timeouts, and the bounded set of those not yet answered.

A :class:`Request` is made by a call (``publish``, ``history``, ...) and settled by
its reply, its timeout, the caller's cancellation, or the end of the connection or
the client. :class:`PendingRequests` holds every request not yet settled: those that
wait for a connection (in call order) and those given to the current connection (by
id; queued for its writer, or written). It refuses one more than ``max_pending``.

When a connection ends, what happens to a request it had:

* not written yet: it waits for the next connection (nothing was sent);
* written, and ``resendable`` (a publish with an idempotency key): it waits for the
  next connection and is sent again there, if that connection has the same scope of
  keys (the server keeps keys per user, and one scope for every anonymous
  connection; under another, a resend could be published twice: it fails instead);
* written, otherwise: it fails (:class:`Disconnected`, or :class:`PublishUnconfirmed`
  for a publish): it may have taken effect, and sending it again could repeat it.

Requests the client makes for itself (``internal``: resubscribes, pings, refreshes)
are never carried over: the client makes them again for the next connection.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Callable
from typing import Any

import orjson
from pydantic import BaseModel

from ..protocol.frames import is_valid_room
from .errors import QueueFull, RequestTimeout

__all__ = ["IDEMPOTENCY_KEY", "PendingRequests", "Request", "check_room", "request_fields"]

IDEMPOTENCY_KEY = re.compile(r"[!-~]{1,128}")
"""A publish's idempotency key: 1-128 printable ASCII characters, no spaces."""


def request_fields(model: type[BaseModel], op: str, **values: Any) -> dict[str, Any]:
    """A request's fields, validated by the protocol's frame model (``ValueError`` if
    invalid; no second copy of the frames). ``None`` values are left out (except
    ``data``, where ``null`` is a value); values the model does not know yet (a
    newer field) are sent as given."""
    present = {k: v for k, v in values.items() if v is not None or k == "data"}
    frame = model.model_validate({"op": op, **present})
    fields = frame.model_dump(mode="json", exclude_defaults=True, exclude={"op", "id"})
    fields.update({k: v for k, v in present.items() if k not in model.model_fields})
    return fields


def check_room(room: str) -> str:
    """``room`` if it is a valid room name, else ``ValueError``."""
    if not is_valid_room(room):
        raise ValueError(f"invalid room name {room[:140]!r}: 1-128 of A-Z a-z 0-9 _ . : -")
    return room


class Request:
    """One request: ``op`` and its ``fields`` (without ``op``/``id``), and the future
    its caller awaits, resolved with the reply's ``result`` dict."""

    __slots__ = (
        "fields",
        "future",
        "id",
        "internal",
        "on_result",
        "op",
        "resendable",
        "sends",
        "sent",
        "sent_as",
        "timer",
    )

    def __init__(
        self,
        op: str,
        fields: dict[str, Any],
        future: asyncio.Future[dict[str, Any]],
        *,
        resendable: bool = False,
        internal: bool = False,
    ) -> None:
        self.op = op
        self.fields = fields
        self.future = future
        self.resendable = resendable
        self.internal = internal
        self.id: int | None = None
        self.sent = False  # written to the current connection's socket
        self.sends = 0  # how many times it was written, over all connections
        self.sent_as: str | None = None  # the user id it was first written under
        self.timer: asyncio.TimerHandle | None = None
        #: Called with the result as the reply is read, before any later frame (the
        #: future's callbacks run later, when frames after it may have been read).
        self.on_result: Callable[[dict[str, Any]], None] | None = None

    def frame(self) -> str:
        """The text frame, with the id of the connection it goes out on."""
        return orjson.dumps({"op": self.op, "id": self.id, **self.fields}).decode()

    def __repr__(self) -> str:
        return f"<Request {self.op} id={self.id} sends={self.sends}>"


class PendingRequests:
    """Every request not yet settled, at most ``max_pending`` of the caller's own.

    The owner calls :meth:`attach` when a connection is ready (with the writer's
    queue) and :meth:`detach` when it ends; in between, :meth:`submit` hands
    requests straight to the writer, and :meth:`answer` finds the request a reply
    is for. The owner's event loop is the only thread that touches it.
    """

    def __init__(self, max_pending: int) -> None:
        self.max_pending = max_pending
        self._ids = itertools.count(1)
        self._waiting: list[Request] = []
        self._given: dict[int, Request] = {}
        self._outbox: asyncio.Queue[Request] | None = None
        self._count = 0  # the callers' requests not yet settled
        #: Requests sent again on a new connection (publishes with a key), in all.
        self.resent = 0

    def __len__(self) -> int:
        """The callers' requests not yet settled (what ``max_pending`` bounds)."""
        return self._count

    @property
    def in_flight(self) -> int:
        """Requests written to the current connection and not yet answered."""
        return sum(1 for r in self._given.values() if r.sent and not r.future.done())

    @property
    def waiting(self) -> int:
        """Requests waiting for a connection."""
        return len(self._waiting)

    def new(
        self,
        op: str,
        fields: dict[str, Any],
        timeout: float,
        *,
        resendable: bool = False,
        internal: bool = False,
    ) -> Request:
        """A request that fails with :class:`RequestTimeout` after ``timeout`` s;
        :class:`QueueFull` if ``max_pending`` of the callers' are unsettled."""
        if not internal and self._count >= self.max_pending:
            raise QueueFull(f"{self._count} requests already wait for replies (max_pending)")
        loop = asyncio.get_running_loop()
        request = Request(
            op, fields, loop.create_future(), resendable=resendable, internal=internal
        )
        if not internal:
            self._count += 1
        request.timer = loop.call_later(timeout, _expire, request, timeout)
        request.future.add_done_callback(lambda _: self._settled(request))
        return request

    def submit(self, request: Request) -> None:
        """Send ``request`` on the current connection, or keep it for the next one."""
        if self._outbox is None:
            self._waiting.append(request)
        else:
            self._give(request)

    def attach(
        self, outbox: asyncio.Queue[Request], first: list[Request], user_id: str
    ) -> list[Request]:
        """A connection of ``user_id`` is ready: ``first`` (the resubscribes) go out,
        then every waiting request in call order, then whatever is submitted later.

        Returns the requests to resend that were written under another user id: the
        server keeps idempotency keys per user (``Session.idempotency_scope``), so it
        could not tell a repeat of those. They are not sent; their callers must be
        told."""
        self._outbox = outbox
        waiting, self._waiting = self._waiting, []
        refused = [r for r in waiting if r.sent_as is not None and r.sent_as != user_id]
        for request in (*first, *waiting):
            if not request.future.done() and request not in refused:
                self.resent += request.sent_as is not None
                self._give(request)
        return refused

    def detach(self, user_id: str | None) -> list[Request]:
        """The connection (of ``user_id``) ended: keep what may be (re)sent for the
        next one; return the written requests that may not (their callers must be
        told)."""
        self._outbox = None
        given = sorted(self._given.values(), key=lambda r: r.id or 0)
        self._given.clear()
        again: list[Request] = []
        lost: list[Request] = []
        for request in given:
            if request.future.done():
                continue
            if request.internal or (request.sent and not request.resendable):
                lost.append(request)
                continue
            if request.sent and request.sent_as is None:
                request.sent_as = user_id
            request.sent = False
            again.append(request)
        self._waiting[:0] = again
        return lost

    def answer(self, request_id: Any) -> Request | None:
        """The request a reply with ``request_id`` is for (None: settled meanwhile)."""
        if type(request_id) is not int:
            return None
        return self._given.pop(request_id, None)

    def drain(self) -> list[Request]:
        """Every unsettled request, to fail them all (the client is ending)."""
        everything = [*self._waiting, *self._given.values()]
        self._waiting = []
        self._given.clear()
        return [r for r in everything if not r.future.done()]

    def _give(self, request: Request) -> None:
        assert self._outbox is not None
        request.id = next(self._ids)
        self._given[request.id] = request
        self._outbox.put_nowait(request)

    def _settled(self, request: Request) -> None:
        if request.timer is not None:
            request.timer.cancel()
        if not request.internal:
            self._count -= 1
        if request.id is not None and self._given.get(request.id) is request:
            del self._given[request.id]
        if request in self._waiting:
            self._waiting.remove(request)


def _expire(request: Request, timeout: float) -> None:
    if not request.future.done():
        request.future.set_exception(
            RequestTimeout(f"no reply to {request.op} within {timeout:g} s")
        )
