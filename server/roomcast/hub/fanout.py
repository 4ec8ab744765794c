"""Fan-out when a subscriber raises: the others still get the event, once.

The hub's fan-out loop (the flush of a room's batch, local_room.py and
audience.py) is the hot path: one call per subscriber and nothing else. It walks
an explicit iterator inside one ``try`` around the whole loop, which costs
nothing until something raises (CPython 3.11's zero-cost exceptions). Nothing a
subscriber's ``write`` or ``offer`` does should raise; if one does (a bug, or
a transport's ``write`` failing), the loop stops at that subscriber and the hub
calls :func:`offer_rest` from its ``except`` block, with the subscriber that
raised and the subscribers the loop had not reached yet:

* that subscriber is closed with 1011 (its queued frames dropped): its client
  reconnects and resumes from the last event it received, so it misses
  nothing; the failure is logged once, with the traceback;
* the loop goes on from the next subscriber, now one ``try`` per subscriber,
  so every other subscriber gets the event exactly once (those before the one
  that raised already had it; the iterator does not start over).

The caller's obligation: call it inside the ``except`` block (the log takes the
traceback from there), with the subscriber whose call raised (None if the
iterator itself raised before yielding anything).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from ..protocol.codes import CloseCode
from ..protocol.events import Event, Notice
from .subscriber import Subscriber

__all__ = ["offer_rest"]

log = logging.getLogger("roomcast.hub")


def offer_rest(
    failed: Subscriber | None,
    rest: Iterator[Subscriber],
    offer: Callable[[Subscriber], object],
    item: Event | Notice | str,
) -> None:
    """Close ``failed``, then ``offer(sub)`` for each subscriber left in ``rest``,
    closing each one that raises. ``item``: what was offered, for the log."""
    what = _describe(item)
    _close(failed, what)
    while True:
        try:
            sub = next(rest)
        except StopIteration:
            return
        except Exception:  # the collection changed under the loop: a bug in the hub
            log.exception("fan-out of %s stopped: the subscribers changed meanwhile", what)
            return
        try:
            offer(sub)
        except Exception:
            _close(sub, what)


def _close(sub: Subscriber | None, what: str) -> None:
    log.exception("offering %s to %r failed; closing it with 1011", what, sub)
    if sub is None:
        return
    try:
        sub.close(CloseCode.INTERNAL_ERROR, discard=True)
    except Exception:
        log.exception("closing %r failed too", sub)


def _describe(item: Event | Notice | str) -> str:
    if isinstance(item, Event):
        return f"{item.room} offset {item.epoch}:{item.offset}"
    if isinstance(item, Notice):
        return f"a {item.kind} notice in {item.room}"
    return item
