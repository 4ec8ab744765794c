"""Every bound and timing of the client, named, with roomcast.js's defaults
(in seconds where roomcast.js has milliseconds)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ClientOptions", "StreamOptions"]


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """Options of :func:`roomcast.client.connect`.

    Reconnecting: attempt *n* waits a random time between 0 and
    ``min(max_delay, min_delay * 2**n)``; ``max_retries`` failed attempts in a row
    (``None``: no limit) and the client gives up; a connection that stayed up
    ``stable_after`` seconds starts the count over.
    """

    min_delay: float = 0.5
    """Backoff base, seconds."""
    max_delay: float = 15.0
    """Backoff cap, seconds."""
    max_retries: int | None = None
    """Failed attempts in a row before giving up (``None``: never)."""
    stable_after: float = 10.0
    """A connection up this long resets the attempt count."""
    open_timeout: float = 10.0
    """One attempt: the WebSocket handshake plus the ``connect`` reply."""
    connect_timeout: float | None = 30.0
    """How long entering ``async with connect(...)`` waits for the first connection,
    across attempts, before it raises :class:`ConnectionFailed` (``None``: no limit)."""
    request_timeout: float = 10.0
    """A request's reply, counted from the call (waiting for a connection counts)."""
    queue: bool = True
    """Requests made while not connected wait for the connection; ``False`` refuses
    them at once with :class:`Disconnected`."""
    max_pending: int = 1000
    """Requests that may wait for their replies at once (queued, sent, in flight);
    one more raises :class:`QueueFull`."""
    ping_interval: float = 20.0
    """Seconds without a frame from the server before the client sends ``ping``."""
    ping_timeout: float = 10.0
    """No ``ping`` reply within this and the connection counts as lost."""
    refresh_before: float | None = 30.0
    """With a ``token_provider``, renew the token (``refresh``) this long before it
    expires (half its remaining life for shorter tokens); ``None``: only on 3003."""
    idempotency_keys: bool = True
    """Give every publish a fresh idempotency key unless it brings its own."""
    max_buffer: int = 10_000
    """Events a subscription holds for a consumer that has not taken them; beyond
    it events are dropped and the consumer gets one ``Reset`` (cause ``overflow``)."""
    max_message_bytes: int | None = 64 * 1024 * 1024
    """The largest frame accepted from the server (a ``history`` page of 1000 large
    messages is the biggest)."""
    close_timeout: float = 5.0
    """How long ``close()`` waits for the server's closing handshake."""

    def __post_init__(self) -> None:
        if self.min_delay < 0 or self.max_delay < self.min_delay:
            raise ValueError("need 0 <= min_delay <= max_delay")
        if self.max_pending < 1 or self.max_buffer < 1:
            raise ValueError("max_pending and max_buffer must be at least 1")
        for name in ("open_timeout", "request_timeout", "ping_interval", "ping_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")


@dataclass(frozen=True, slots=True)
class StreamOptions:
    """Options of :func:`roomcast.client.sse`."""

    min_delay: float = 0.5
    max_delay: float = 15.0
    max_retries: int | None = None
    open_timeout: float = 10.0
    """Connecting and the response's headers."""
    idle_timeout: float = 60.0
    """No byte for this long (the server sends a comment every ``sse_keepalive``
    seconds, 15 by default) and the stream counts as lost."""
    connect_timeout: float | None = 30.0
    """How long entering ``async with sse(...)`` waits for the stream to open."""
    max_buffer: int = 10_000
    """Events held for a consumer that has not taken them (as ``ClientOptions``)."""

    def __post_init__(self) -> None:
        if self.min_delay < 0 or self.max_delay < self.min_delay:
            raise ValueError("need 0 <= min_delay <= max_delay")
        if self.max_buffer < 1:
            raise ValueError("max_buffer must be at least 1")
