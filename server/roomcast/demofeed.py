"""``roomcast demo-feed``: publish a sample live feed over REST.

A client of the REST API only (``POST /rooms/{room}/messages``): it imports the
standard library, httpx and :mod:`roomcast.protocol`, never the server's code.
Every ``interval`` it publishes one ``{"data": {...}}`` to each room, where data
looks like a service's metrics (``cpu``, ``rps``, ``p99_ms``, ``queue``) moving
smoothly: bounded random walks, seeded per room, so a ``seed`` reproduces every
value and two rooms differ.

It behaves like a production publisher: while the server is unreachable or
answers 5xx (a restart, say) or 429, it prints one line to stderr, backs off
(exponential, full jitter, capped at :data:`BACKOFF_CAP` seconds) and retries the
same sample, then carries on when the server is back. A 401, 403 or any other 4xx
will not get better by retrying: it prints the status and the server's detail and
exits 2. Ctrl-C (or SIGTERM) stops it with exit status 0.
"""

from __future__ import annotations

import json
import random
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TextIO
from urllib.parse import urlsplit

import httpx

__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_CAP",
    "DEFAULT_ROOM",
    "DEFAULT_URL",
    "FeedOptions",
    "Metrics",
    "run",
]

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_ROOM = "feed:demo"
BACKOFF_BASE = 0.25
"""Seconds: the first retry waits up to this, each further one up to twice as long..."""
BACKOFF_CAP = 5.0
"""...but never longer than this."""
RETRY_AFTER_CAP = 60.0
"""The longest ``Retry-After`` (seconds) a 429 or 5xx answer is obeyed for."""
TIMEOUT = 5.0
"""Seconds for each request (connect, write, read)."""
DETAIL_CHARS = 300


class FeedError(Exception):
    """An answer retrying will not fix (401, 403, another 4xx): exit status 2."""


@dataclass(frozen=True)
class FeedOptions:
    url: str
    rooms: tuple[str, ...] = (DEFAULT_ROOM,)
    interval: float = 1.0
    count: int | None = None
    """Publishes per room before exiting; None: until stopped."""
    seed: int | None = None
    """None: a random seed."""
    api_key: str | None = None
    token: str | None = None

    @property
    def base_url(self) -> str:
        return self.url.rstrip("/")


def check_url(url: str) -> str | None:
    """Why ``url`` is not a server base URL (None: it is one)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"--url must be an http:// or https:// URL, not {url!r}"
    if parts.query or parts.fragment:
        return f"--url must be the server's base URL, without a query or fragment: {url!r}"
    return None


# -- the numbers ------------------------------------------------------------------------


class Walk:
    """A bounded random walk: Gaussian steps of ``step``, pulled back toward ``center``
    by ``pull`` of the distance each time, reflected off ``low`` and ``high``."""

    __slots__ = ("center", "high", "low", "pull", "rng", "step", "value")

    def __init__(
        self,
        rng: random.Random,
        low: float,
        high: float,
        *,
        step: float,
        center: float | None = None,
        pull: float = 0.05,
    ) -> None:
        self.rng = rng
        self.low = low
        self.high = high
        self.step = step
        self.center = (low + high) / 2 if center is None else center
        self.pull = pull
        self.value = rng.uniform(low + (high - low) / 4, high - (high - low) / 4)

    def next(self) -> float:
        value = self.value + self.rng.gauss(0.0, self.step)
        value += (self.center - value) * self.pull
        if value < self.low:
            value = 2 * self.low - value
        if value > self.high:
            value = 2 * self.high - value
        self.value = min(max(value, self.low), self.high)
        return self.value


class Metrics:
    """One room's fake service: a load walk drives requests per second, CPU and tail
    latency; the queue fills while the load is above its usual level and drains when it
    falls back."""

    def __init__(self, seed: int, room: str) -> None:
        rng = random.Random(f"roomcast-demo-feed:{seed}:{room}")  # str seeds: stable
        self.peak_rps = rng.uniform(500.0, 5000.0)
        self.idle_cpu = rng.uniform(3.0, 12.0)
        self.base_p99 = rng.uniform(4.0, 20.0)
        self.load = Walk(rng, 0.05, 1.0, step=0.02, center=rng.uniform(0.35, 0.65))
        self.cpu_noise = Walk(rng, -3.0, 3.0, step=0.4, center=0.0, pull=0.1)
        self.p99_noise = Walk(rng, 0.85, 1.15, step=0.015, center=1.0, pull=0.1)
        self.rng = rng
        self.queue = 0

    def sample(self) -> dict[str, float | int]:
        load = self.load.next()
        rps = self.peak_rps * load * (1.0 + self.rng.gauss(0.0, 0.01))
        cpu = self.idle_cpu + 80.0 * load + self.cpu_noise.next()
        p99 = self.base_p99 * (1.0 + 3.0 * load**3) * self.p99_noise.next()
        backlog = max(0.0, (load - self.load.center) * 60.0 + 2.0)  # what this load queues
        queue = self.queue + (backlog - self.queue) * 0.3 + self.rng.gauss(0.0, 1.0)
        self.queue = max(round(queue), 0)
        return {
            "cpu": round(min(max(cpu, 0.0), 100.0), 1),
            "rps": max(round(rps), 0),
            "p99_ms": max(round(p99, 1), 0.1),
            "queue": self.queue,
        }


# -- publishing -------------------------------------------------------------------------


def _detail(response: httpx.Response) -> str:
    """The server's ``detail`` (FastAPI's error body), or the start of the body."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    if detail is None:
        text = response.text.strip()
    elif isinstance(detail, str):
        text = detail
    else:  # a 422's list of validation errors
        text = json.dumps(detail, separators=(",", ":"))
    text = " ".join(text.split())
    return text[:DETAIL_CHARS] + ("..." if len(text) > DETAIL_CHARS else "")


def _retry_after(response: httpx.Response) -> float | None:
    try:
        seconds = float(response.headers.get("retry-after", ""))
    except ValueError:
        return None
    return min(seconds, RETRY_AFTER_CAP) if seconds >= 0 else None


class Publisher:
    """Publishes samples to rooms over one HTTP client, retrying what can be retried."""

    def __init__(self, options: FeedOptions, err: TextIO) -> None:
        headers = {"User-Agent": "roomcast-demo-feed"}
        if options.api_key:
            headers["X-API-Key"] = options.api_key
        if options.token:
            headers["Authorization"] = f"Bearer {options.token}"
        self.client = httpx.Client(base_url=options.base_url, headers=headers, timeout=TIMEOUT)
        self.url = options.base_url
        self.err = err
        self.jitter = random.Random()  # not the seeded one: retries leave the data alone
        self.failing: str | None = None  # the kind of failure last reported
        self.failures = 0

    def close(self) -> None:
        self.client.close()

    def _say(self, line: str) -> None:
        print(f"demo-feed: {line}", file=self.err, flush=True)

    def publish(self, room: str, data: dict[str, float | int]) -> None:
        """POST one message, retrying until the server takes it. Raises FeedError."""
        attempt = 0
        while True:
            wait: float | None = None
            try:
                response = self.client.post(f"/rooms/{room}/messages", json={"data": data})
            except httpx.TransportError as exc:
                kind = "unreachable"
                reason = f"{self.url} unreachable ({type(exc).__name__})"
            else:
                status = response.status_code
                if status < 300:
                    self._recovered()
                    return
                reason = f"{status} {response.reason_phrase}: {_detail(response)}"
                if status != 429 and status < 500:
                    hint = ""
                    if status in (401, 403):
                        hint = " (see --api-key and --token in `roomcast demo-feed --help`)"
                    raise FeedError(f"{room}: the server refused to publish: {reason}{hint}")
                kind = str(status)
                wait = _retry_after(response)
            if kind != self.failing:
                self._say(f"{room}: {reason}; retrying")
                self.failing = kind
            self.failures += 1
            if wait is None:
                wait = self.jitter.uniform(0.0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt))
            attempt += 1
            time.sleep(wait)

    def _recovered(self) -> None:
        if self.failing is not None:
            self._say(f"publishing again to {self.url} after {self.failures} failed attempts")
            self.failing = None
            self.failures = 0


@contextmanager
def _sigterm_stops() -> Iterator[None]:
    """SIGTERM stops the feed as Ctrl-C does (only the main thread may set handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _every(interval: float) -> str:
    return f"every {interval:g} s"


def run(options: FeedOptions, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Publish until ``count`` per room (or Ctrl-C / SIGTERM); the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    problem = check_url(options.url)
    if problem is not None:
        print(f"demo-feed: {problem}", file=err)
        return 2
    seed = options.seed if options.seed is not None else random.SystemRandom().randrange(2**32)
    feeds = [(room, Metrics(seed, room)) for room in dict.fromkeys(options.rooms)]
    until = "Ctrl-C stops" if options.count is None else f"{options.count} each, Ctrl-C stops"
    print(
        f"demo-feed: publishing to {', '.join(room for room, _ in feeds)} "
        f"{_every(options.interval)} at {options.base_url} ({until})",
        file=out,
        flush=True,
    )
    publisher = Publisher(options, err)
    try:
        with _sigterm_stops():
            ticks = 0
            next_at = time.monotonic()
            while options.count is None or ticks < options.count:
                for room, metrics in feeds:
                    publisher.publish(room, metrics.sample())
                ticks += 1
                if options.count is not None and ticks >= options.count:
                    break
                # After an outage carry on from now, without a burst of catch-up publishes.
                next_at = max(next_at + options.interval, time.monotonic())
                time.sleep(max(0.0, next_at - time.monotonic()))
    except KeyboardInterrupt:
        return 0
    except FeedError as exc:
        print(f"demo-feed: {exc}", file=err)
        return 2
    finally:
        publisher.close()
    return 0
