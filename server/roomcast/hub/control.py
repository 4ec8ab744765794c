"""Server-side control of subscribers: a user's connections, a room's members.

Part of the hub, split out of hub.py: the functions here read and change the
hub's own tables (``_subscribers``, ``_rooms``) and use its presence helpers.

Per user, on every process (:meth:`Hub.disconnect_user`, :meth:`Hub.unsubscribe_user`):
the hub turns the call into a *control message* and hands it to
:meth:`Broker.publish_control <roomcast.hub.broker.Broker.publish_control>`, which
gives it to this process's hub at once (before the call first awaits) and to
every other process's hub as it arrives; each runs :func:`apply`. The broker's
delivery is at most once: a process whose link to the broker is down while a
message is sent never acts on it (docs/redis.md, "Control channel"). Messages,
JSON objects matched by the principal's stable ``user_id``::

    {"op": "disconnect", "user": "<user id>", "code": 3503}
    {"op": "unsubscribe", "user": "<user id>", "room": "<room>"}

:func:`apply` is synchronous and touches only this process's tables: no await,
nothing per event. What must await (presence ``leave``, letting an emptied room
go) runs afterwards in a task. A message this process does not understand (a
newer worker's, during a rolling upgrade) is logged and ignored.

* ``disconnect``: every registered subscriber of the user, WebSocket and SSE, is
  closed with the code (:meth:`Subscriber.close`: what is queued still goes out,
  then the close); the transport's usual clean-up announces the leaves.
* ``unsubscribe``: every subscriber of the user in the room, live or pending, is
  taken out of it (no event of the room reaches it after this), is offered one
  :func:`unsubscribed` notice, then its ``leave`` is announced. A subscriber
  whose subscribe is still reading its replay has had no reply yet:
  :meth:`Hub.subscribe` finds it taken out, sends the reply and the replay, then
  the notice, and never joins (so no leave either).

Per room (:meth:`Hub.close_room`): :func:`empty_room` unsubscribes every local
subscriber of a room once its ``deleted`` notice has gone out.

Per connection: the send watchdog (:func:`watch_sends`) evicts a connection
whose writer is stuck on one send (the peer stopped reading).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..protocol.codes import CloseCode
from ..protocol.events import Notice
from .broker import Unavailable
from .local_room import LocalRoom, frame_for
from .subscriber import Subscriber

if TYPE_CHECKING:
    from .hub import Hub

__all__ = [
    "apply",
    "disconnect_message",
    "empty_room",
    "evict_stalled",
    "spawn",
    "unsubscribe_message",
    "unsubscribed",
    "watch_sends",
]

log = logging.getLogger("roomcast.hub")


def disconnect_message(user_id: str, code: CloseCode) -> dict[str, object]:
    """The control message that closes every connection of ``user_id`` with ``code``."""
    return {"op": "disconnect", "user": user_id, "code": int(code)}


def unsubscribe_message(user_id: str, room: str) -> dict[str, object]:
    """The control message that takes ``user_id`` out of ``room``."""
    return {"op": "unsubscribe", "user": user_id, "room": room}


def unsubscribed(room: str) -> Notice:
    """What a subscriber the server took out of ``room`` gets, last from the room."""
    return Notice("unsubscribed", room, {"reason": "server"})


def apply(hub: Hub, message: Mapping[str, object]) -> None:
    """Act on a control message in this process. Never awaits."""
    op, user, room = message.get("op"), message.get("user"), message.get("room")
    if op == "disconnect" and isinstance(user, str):
        code = _close_code(message.get("code"))
        for sub in [s for s in hub._subscribers if s.user_id == user]:
            sub.close(code)
    elif op == "unsubscribe" and isinstance(user, str) and isinstance(room, str):
        _unsubscribe(hub, user, room)
    else:
        log.warning("ignoring a control message this process does not understand: %r", message)


def _close_code(value: object) -> CloseCode:
    """The message's code; one this process does not know closes as ``disconnected``."""
    if isinstance(value, int):
        with contextlib.suppress(ValueError):
            return CloseCode(value)
    log.warning("control: unknown close code %r, closing with %d", value, CloseCode.DISCONNECTED)
    return CloseCode.DISCONNECTED


def _unsubscribe(hub: Hub, user: str, room: str) -> None:
    local = hub._rooms.get(room)
    if local is None:
        return
    notice = unsubscribed(room)
    left: list[Subscriber] = []
    for sub in [s for s in (*local.live, *local.live_sse, *local.pending) if s.user_id == user]:
        pending = local.pending.get(sub)
        local.remove(sub)
        if pending is not None and pending.until is None:
            continue  # still subscribing: Hub.subscribe replies, then sends the notice
        sub.rooms.discard(room)
        sub.offer(frame_for(notice, sub))
        left.append(sub)
    spawn(hub, _leave(hub, room, local, left))


async def _leave(hub: Hub, room: str, local: LocalRoom, subs: list[Subscriber]) -> None:
    """Announce the leaves of ``subs``, taken out of ``room``; let the room go if empty."""
    try:
        if subs and await hub._presence_in(room):
            leaves = (hub._announce(sub, room, "leave") for sub in subs)
            results = await asyncio.gather(*leaves, return_exceptions=True)
            for sub, result in zip(subs, results, strict=True):
                if isinstance(result, Exception):
                    log.warning("could not announce %s leaving %s: %s", sub.conn_id, room, result)
        await hub._leave_room_if_empty(room, local)
    except Exception:
        log.warning("clean-up after unsubscribing from %s failed", room, exc_info=True)


async def empty_room(hub: Hub, room: str) -> None:
    """Unsubscribe every local subscriber of ``room`` (it was deleted)."""
    local = hub._rooms.get(room)
    if local is None:
        return
    for sub in [*local.live, *local.live_sse, *local.pending]:
        try:
            await hub.unsubscribe(sub, room)
        except Unavailable:
            log.warning("could not announce %s leaving deleted %s", sub.conn_id, room)


def spawn(hub: Hub, work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` in a task the hub keeps until it is done."""
    task = asyncio.get_running_loop().create_task(work)
    hub._tasks.add(task)
    task.add_done_callback(hub._tasks.discard)


async def watch_sends(hub: Hub, timeout: float) -> None:
    """Every ``timeout / 2`` seconds, :meth:`Hub.check_sends`. Runs until cancelled."""
    while True:
        await asyncio.sleep(timeout / 2)
        hub.check_sends()


def evict_stalled(subscribers: Iterable[Subscriber]) -> int:
    """Evict each subscriber whose writer has been sending one frame since the
    previous two calls; returns how many (see :meth:`Hub.check_sends`)."""
    evicted = 0
    for sub in subscribers:
        if sub.sending and sub.pops == sub.watched_pops:
            sub.stalls += 1
            if sub.stalls == 2:
                sub.evict("send_timeout")
                evicted += 1
        else:
            sub.stalls = 0
        sub.watched_pops = sub.pops
    return evicted
