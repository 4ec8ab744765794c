"""After a master switch the pub/sub link connects again, and
:meth:`RedisSentinelBase._check_link` sees that the connection it gets is to the
new master: one that lands elsewhere (a connect under way when the switch came,
an answer that lagged it) connects again, for as long as it takes.

The link here is a stand-in with the attributes the check reads (its real
behaviour, against real sentinels, is tests/hub/test_redis_sentinel.py); each
``reconnect()`` makes a new connection a moment later, to the next address the
test lists."""

from __future__ import annotations

import asyncio
import types
from typing import Any

from roomcast.hub.redis_sentinel import RedisSentinelBase

OLD, NEW, OTHER = ("127.0.0.1", 7000), ("127.0.0.1", 7001), ("127.0.0.1", 7002)


class Link:
    def __init__(self, lands_on: list[tuple[str, int]]) -> None:
        self.lands_on = lands_on  # where each connection made from now on goes
        self.serial = 1
        self.connected = True
        self.address: tuple[str, int] | None = OLD
        self.reconnects = 0

    def reconnect(self) -> None:
        self.reconnects += 1
        self.connected, self.address = False, None
        asyncio.get_running_loop().call_later(0.01, self._up)

    def _up(self) -> None:
        self.serial += 1
        self.connected, self.address = True, self.lands_on.pop(0)


def broker(master: tuple[str, int]) -> Any:
    return types.SimpleNamespace(_master=master)


async def check(owner: Any, link: Link) -> None:
    serial = link.serial
    link.reconnect()  # as _follow_master does
    await asyncio.wait_for(RedisSentinelBase._check_link(owner, link, serial), 5)  # type: ignore[arg-type]


async def test_a_link_that_comes_up_on_the_master_is_left_alone() -> None:
    link = Link([NEW])
    await check(broker(NEW), link)
    assert (link.address, link.reconnects) == (NEW, 1)


async def test_a_link_that_comes_up_elsewhere_connects_again_until_it_is_on_the_master() -> None:
    link = Link([OLD, OTHER, NEW])
    await check(broker(NEW), link)
    assert (link.address, link.reconnects) == (NEW, 3)


async def test_the_check_ends_when_the_master_changes_again() -> None:
    owner = broker(NEW)
    link = Link([OLD, OLD, OLD])
    link.lands_on = [OLD] * 100
    task = asyncio.ensure_future(check(owner, link))
    await asyncio.sleep(0.1)
    owner._master = OTHER  # the next switch: its own check follows it
    await asyncio.wait_for(task, 5)
    assert link.address == OLD
