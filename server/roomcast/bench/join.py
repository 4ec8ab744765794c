"""Opening connections the way each protocol wants, up to the point they receive.

- ``roomcast`` (docs/protocol.md): a WebSocket to ``{url}/ws``; with ``--token`` a
  ``connect`` request first; then ``subscribe``, whose reply gives the room's offset,
  the subscriber's starting point. SSE: ``GET {url}/rooms/{room}/events``, whose
  ``subscribed`` event gives it.
- ``broadcast`` (relaying servers): a WebSocket to ``{url}/ws`` (SSE: ``GET
  {url}/events``). Such a server gives no sign that a connection is in its list (a
  ``{"type":"ready"}`` some send is ignored), so subscribers count as joined when the
  first barrier frame the publisher sends comes through; offsets start at 1.
- ``socketio``: python-socketio's client emits ``join``; joined like ``broadcast``.

Every step runs under the caller's timeout; failures raise :class:`ChannelError`.
"""

from __future__ import annotations

import json
import time

from .accounting import Stream
from .channel import Channel, ChannelError, WsChannel
from .config import BenchConfig
from .frames import CONNECT_ID, SUBSCRIBE_ID, Reply, connect_frame, parse_reply, subscribe_frame
from .rawws import RawWsChannel
from .roles import Publisher, Subscriber, Tally
from .sio import SioChannel
from .sse import HttpPublishChannel, SseChannel

__all__ = ["open_probe", "open_publisher", "open_subscriber", "request"]


async def request(channel: Channel, frame: str, request_id: int, what: str) -> Reply:
    """Send a roomcast request and wait for its reply (other frames are skipped)."""
    await channel.send(frame)
    while True:
        reply = parse_reply(await channel.recv())
        if reply is not None and reply.id == request_id:
            if not reply.ok:
                raise ChannelError(f"{what} refused: {reply.error}", kind=f"{what}:{reply.error}")
            return reply


async def open_ws(cfg: BenchConfig, timeout: float) -> Channel:
    """A WebSocket to ``{url}/ws`` with the client ``--ws-client`` chose."""
    if cfg.ws_client == "websockets":
        return await WsChannel.open(cfg.ws_url, timeout)
    return await RawWsChannel.open(cfg.ws_url, timeout, stamped=cfg.latency_at == "socket")


async def _roomcast_ws(cfg: BenchConfig, timeout: float, always_connect: bool = False) -> Channel:
    channel = await open_ws(cfg, timeout)
    try:
        if cfg.token or always_connect:
            await request(channel, connect_frame(cfg.token), CONNECT_ID, "connect")
    except BaseException:
        channel.abort()
        raise
    return channel


def _sse_headers(cfg: BenchConfig) -> dict[str, str]:
    return {"Authorization": f"Bearer {cfg.token}"} if cfg.token else {}


async def _roomcast_sse(cfg: BenchConfig, room: str, timeout: float) -> tuple[Channel, int]:
    channel = await SseChannel.open(
        f"{cfg.http_url}/rooms/{room}/events", _sse_headers(cfg), timeout
    )
    try:
        while True:
            event, data = await channel.next_event()
            if event == b"subscribed":
                return channel, int(json.loads(data)["offset"])
            if event in (b"close", b"error"):
                raise ChannelError(f"SSE stream refused: {data[:200]!r}", kind="sse:refused")
    except BaseException:
        channel.abort()
        raise


async def open_subscriber(
    cfg: BenchConfig, room: str, tally: Tally, *, member: bool = False
) -> Subscriber:
    """A connection subscribed to ``room``; ``member``: it publishes there too."""
    timeout = cfg.setup_timeout
    channel: Channel
    if cfg.protocol == "roomcast":
        if cfg.sse:
            channel, base = await _roomcast_sse(cfg, room, timeout)
        else:
            channel = await _roomcast_ws(cfg, timeout)
            try:
                reply = await request(channel, subscribe_frame(room), SUBSCRIBE_ID, "subscribe")
            except BaseException:
                channel.abort()
                raise
            base = int(reply.result.get("offset", 0))
        publisher = _publisher(cfg, channel, room, "reply", tally) if member else None
        return Subscriber(channel, Stream(room, base), publisher=publisher)
    if cfg.protocol == "socketio":
        channel = await SioChannel.open(cfg.http_url, timeout)
    elif cfg.sse:
        channel = await SseChannel.open(f"{cfg.http_url}/events", {}, timeout)
    else:
        channel = await open_ws(cfg, timeout)
    return Subscriber(channel, Stream(room, 0), joined=False)


def _publisher(cfg: BenchConfig, channel: Channel, room: str, ack: str, tally: Tally) -> Publisher:
    window = 1 if isinstance(channel, HttpPublishChannel) else cfg.window
    return Publisher(
        channel,
        room,
        ack=ack,
        rate=cfg.rate,
        window=window,
        payload_bytes=cfg.payload_bytes,
        tally=tally,
    )


async def open_publisher(cfg: BenchConfig, room: str, tally: Tally) -> Subscriber:
    """The publisher's connection, as a :class:`Subscriber` without a stream (its
    receive loop reads the acknowledgements) whose ``publisher`` is set."""
    timeout = cfg.setup_timeout
    channel: Channel
    if cfg.protocol == "roomcast":
        channel = await _roomcast_ws(cfg, timeout)
        ack = "reply"
    elif cfg.protocol == "socketio":
        channel = await SioChannel.open(cfg.http_url, timeout)
        ack = "echo"
    elif cfg.sse:
        channel = await HttpPublishChannel.open(cfg.http_url, timeout)
        ack = "echo"
    else:
        channel = await open_ws(cfg, timeout)
        ack = "echo"
    return Subscriber(channel, None, publisher=_publisher(cfg, channel, room, ack, tally))


async def open_probe(cfg: BenchConfig) -> tuple[Channel, float]:
    """One connection of a connection storm and its connect time in seconds: the
    WebSocket handshake plus (roomcast) the reply to a ``connect`` request, or the
    Socket.IO connection (engine.io handshake and namespace connect)."""
    start = time.perf_counter()
    channel: Channel
    if cfg.protocol == "roomcast":
        channel = await _roomcast_ws(cfg, cfg.setup_timeout, always_connect=True)
    elif cfg.protocol == "socketio":
        channel = await SioChannel.open(cfg.http_url, cfg.setup_timeout, join=False)
    else:
        channel = await open_ws(cfg, cfg.setup_timeout)
    return channel, time.perf_counter() - start
