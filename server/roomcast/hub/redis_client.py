"""The Redis client side of RedisBroker: its settings, its clients, the naming of
room keys and channels, and the one way to run a script.

:class:`RedisClientBase` is the bottom of RedisBroker's layers (redis.py):
each layer above it (redis_resync.py, redis_shards.py, redis_slots.py,
redis_sentinel.py, then redis.py) adds one concept and sets up its own state in
:meth:`_init_state`. This one owns the constructor's settings, the command
client (a ``redis.asyncio.Redis``, or a ``RedisCluster``) and its registered
scripts, the pub/sub links by name (made by redis_slots.py), the channels this
process wants, and how connections are made: timeouts, which commands may be
retried (none that may have run already), and with Redis Sentinel, where the
master is (each new connection asks the sentinels: :meth:`_master_pool`).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import Connection, SSLConnection, parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError
from redis.maint_notifications import MaintNotificationsConfig

from . import redis_scripts
from .broker import Broker, BrokerUnavailable
from .redis_batch import MAIN, node_url
from .redis_pubsub import PubSubLink

__all__ = ["RedisClientBase"]

log = logging.getLogger("roomcast.redis")

_raced = [0.0, 0]  # when _client_race last logged; how many since


def _client_race(exc: Exception) -> None:
    """Log a redis-py cluster client failure that is not a RedisError, at most
    every 10 s (a fault makes many at once)."""
    now = time.monotonic()
    _raced[1] += 1
    if now - _raced[0] >= 10:
        log.warning(
            "redis cluster client failed (%s: %s; %d such since the last report): "
            "answered unavailable",
            type(exc).__name__, exc, _raced[1],
        )  # fmt: skip
        _raced[:] = [now, 0]


class RedisClientBase(Broker):
    """Settings, clients, naming and script calls of :class:`RedisBroker`."""

    def __init__(
        self,
        url: str,
        *,
        history_size: int = 1000,
        room_ttl: float = 3600.0,
        presence_ttl: float = 30.0,
        presence_refresh: float = 10.0,
        prefix: str = "rc",
        sharded: bool = False,
        cluster: bool = False,
        timeout: float = 5.0,
        ping_interval: float = 5.0,
        backoff_cap: float = 2.0,
        max_batch: int = 256,
        sentinels: Sequence[tuple[str, int]] = (),
        sentinel_service: str = "mymaster",
        sentinel_password: str | None = None,
        idempotency_window: float = 300.0,
    ) -> None:
        super().__init__()
        if cluster and sentinels:
            raise ValueError("a Redis Cluster fails over by itself: no sentinels with it")
        problem = self.url_problem(url)
        if problem is not None:
            raise ValueError(problem)
        self.url = url
        self.sentinels = list(sentinels)
        """Redis Sentinel addresses: when given, every connection goes to the master
        they name for ``sentinel_service`` (``url``: credentials, db, TLS only)."""
        self.sentinel_service = sentinel_service
        self._sentinel_password = sentinel_password
        self._sentinel: Sentinel | None = None
        self._sentinel_pools: list[SentinelConnectionPool] = []  # re-pointed on a switch
        self._link_pool: SentinelConnectionPool | None = None
        self.max_batch = max_batch  # most publishes in one pipeline (redis_batch.py)
        self.history_size = history_size
        self.idempotency_window = idempotency_window
        """Seconds an idempotency key is kept (redis_scripts.PUBLISH); 0: none are."""
        self.room_ttl = max(1, int(room_ttl))
        self.presence_ttl = presence_ttl
        self.presence_refresh = presence_refresh
        self.prefix = prefix
        self.cluster = cluster
        self.sharded = sharded or cluster
        self.timeout = timeout
        self.ping_interval = ping_interval
        self.backoff_cap = backoff_cap
        self._publish_cmd = "SPUBLISH" if self.sharded else "PUBLISH"
        self.control_channel = f"{prefix}:{{!control}}:ch".encode()
        """Control messages of every process on this prefix. ``!`` is in no room
        name, so no room's channel or keys can meet it."""
        self._node = secrets.token_urlsafe(9).encode()  # marks this broker's own
        self._client: aioredis.Redis | aioredis.RedisCluster | None = None
        self._links: dict[str, PubSubLink] = {}  # "main", or a cluster node's name
        self._wanted: set[bytes] = set()  # channels this process subscribes to
        self._scripts: dict[str, Any] = {}
        self._init_state()

    def _init_state(self) -> None:
        """Each layer above sets up its own state here (calling ``super()`` first)."""

    @staticmethod
    def url_problem(url: str) -> str | None:
        """Why redis-py cannot use ``url`` (without quoting it: it may hold a
        password), or None. No I/O."""
        try:
            parse_url(url)
        except ValueError as exc:
            text = str(exc)  # "Invalid value for 'db' in connection URL.": names no value
            return text.rstrip(".") if "connection URL" in text else "redis-py cannot parse it"
        return None

    # -- naming ---------------------------------------------------------------------

    def _keys(self, room: str, *kinds: str) -> list[str]:
        return [f"{self.prefix}:{{{room}}}:{kind}" for kind in kinds]

    def channel(self, room: str) -> bytes:
        return f"{self.prefix}:{{{room}}}:ch".encode()

    def _room_of(self, channel: bytes) -> str:
        return channel.decode()[len(self.prefix) + 2 : -4]

    # -- lifecycle --------------------------------------------------------------------

    def _connection_kwargs(self) -> dict[str, Any]:
        return {
            "socket_connect_timeout": self.timeout,
            "socket_timeout": self.timeout,
            "health_check_interval": 0,
            # One immediate retry when a pooled connection turns out dead (Redis
            # restarted): the command never reached Redis. None on timeouts: a
            # publish that timed out may have run, and must not run twice.
            "retry": Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            # redis-py 8 speaks RESP3 and, with maintenance notifications on (its
            # default then), hands out pooled connections without checking that
            # Redis did not close them: a restart would cost the next publish.
            "maint_notifications_config": MaintNotificationsConfig(enabled=False),
        }

    def _cluster_kwargs(self) -> dict[str, Any]:
        """The cluster client's (commands other than publishes, and the slot map).

        ``retry`` is the cluster-level retry, which covers timeouts too: none, as
        a script that timed out may have run (NOTICE, MAINTAIN must not run
        twice); a failed command answers ``unavailable`` and the next one reads
        the slot map again first. ``reinitialize_steps=0``: a ``MOVED`` patches
        the slot in the map instead of closing every connection every 5th time
        (redis-py closes them under the commands still using them). Shards that
        serve keep serving while another is down (``require_full_coverage``)."""
        return {
            **self._connection_kwargs(),
            "retry": Retry(ExponentialWithJitterBackoff(cap=self.backoff_cap), 0),
            "require_full_coverage": False,
            "reinitialize_steps": 0,
        }

    def _publish_pool(self, node: str, on_connect: Any) -> aioredis.ConnectionPool:
        """The publish batcher's pool to ``node`` (``main``, or a cluster node's
        ``host:port``; redis_batch.py): this URL's credentials and options, no
        automatic retry (a publish that timed out may have run: it must not run
        twice; a pooled connection Redis closed is made again before use), and
        the script loaded on every new connection."""
        url = self.url if node == MAIN else node_url(self.url, node)
        kwargs = self._connection_kwargs()
        kwargs.update(retry=Retry(NoBackoff(), 0), redis_connect_func=on_connect)
        if self._sentinel is not None:
            return self._master_pool(**kwargs)
        return aioredis.ConnectionPool.from_url(url, **kwargs)

    def _master_pool(self, **kwargs: Any) -> SentinelConnectionPool:
        """A pool of connections to the master the sentinels name: each new
        connection asks them where it is (redis-py's SentinelManagedConnection),
        and one that reads ``READONLY`` (a demoted master) is dropped. ``url``'s
        credentials, database and TLS (not its host and port), ``kwargs`` as for
        ``ConnectionPool.from_url``. Kept, so a switch re-points its open
        connections (redis_sentinel.py)."""
        assert self._sentinel is not None
        options: dict[str, Any] = dict(parse_url(self.url))
        for key in ("host", "port", "path"):
            options.pop(key, None)
        connection_class = options.pop("connection_class", None)
        if connection_class is not None and issubclass(connection_class, SSLConnection):
            options["ssl"] = True  # SentinelConnectionPool's TLS switch
        options = {**kwargs, **options}
        pool = SentinelConnectionPool(  # type: ignore[no-untyped-call,unused-ignore]
            self.sentinel_service, self._sentinel, **options
        )
        self._sentinel_pools.append(pool)
        return pool

    def _new_connection(self, host: str | None = None, port: int | None = None) -> Connection:
        if host is None and self._sentinel is not None:
            if self._link_pool is None:
                self._link_pool = self._master_pool(**self._connection_kwargs())
            conn = self._link_pool.make_connection()  # type: ignore[no-untyped-call,unused-ignore]
            assert isinstance(conn, Connection)
            return conn
        if host is None:
            pool = aioredis.ConnectionPool.from_url(self.url, **self._connection_kwargs())
            conn = pool.make_connection()  # type: ignore[no-untyped-call,unused-ignore]
            assert isinstance(conn, Connection)
            return conn
        return Connection(host=host, port=port or 6379, **self._connection_kwargs())

    async def _open_client(self) -> None:
        """Make the command client (a cluster one reads the slot map first; with
        sentinels, one whose connections go to the master they name) and register
        the scripts (redis_scripts.py) on it."""
        kwargs = self._connection_kwargs()
        if self.cluster:
            cluster = aioredis.RedisCluster.from_url(self.url, **self._cluster_kwargs())
            try:
                await cluster.initialize()
            except (RedisError, RedisClusterException, OSError) as exc:  # no node answers
                raise BrokerUnavailable(f"redis cluster: {exc}") from exc
            self._client = cluster
        elif self.sentinels:
            sentinel_kwargs = {**kwargs, "password": self._sentinel_password}
            self._sentinel = Sentinel(  # type: ignore[no-untyped-call,unused-ignore]
                self.sentinels, sentinel_kwargs=sentinel_kwargs
            )
            self._client = aioredis.Redis.from_pool(self._master_pool(**kwargs))
        else:
            self._client = aioredis.Redis.from_url(self.url, **kwargs)
        for name in redis_scripts.__all__:
            self._scripts[name] = self._client.register_script(getattr(redis_scripts, name))

    async def check(self) -> None:
        """One connection as :meth:`start` would make it, and PING (a cluster: read
        its slot map; with sentinels: ask them for the master, then PING it), with
        no retry; closed after. BrokerUnavailable says what failed."""
        kwargs = {**self._connection_kwargs(), "retry": Retry(NoBackoff(), 0)}
        client: aioredis.Redis | aioredis.RedisCluster
        try:
            if self.cluster:
                client = aioredis.RedisCluster.from_url(self.url, **self._cluster_kwargs())
                try:
                    await client.initialize()
                finally:
                    await client.aclose()
                return
            if self.sentinels:
                host, port = await self._ask_sentinels(kwargs)
                options = {**kwargs, **parse_url(self.url), "host": host, "port": port}
                options.pop("path", None)
                client = aioredis.Redis.from_pool(aioredis.ConnectionPool(**options))
            else:
                client = aioredis.Redis.from_url(self.url, **kwargs)
            try:
                await client.ping()
            finally:
                await client.aclose()
        except (RedisError, RedisClusterException, OSError) as exc:
            raise BrokerUnavailable(f"redis: {exc}") from exc

    async def _ask_sentinels(self, kwargs: dict[str, Any]) -> tuple[str, int]:
        """The master's address, from the first sentinel that answers."""
        failures = []
        for host, port in self.sentinels:
            sentinel = aioredis.Redis(
                host=host, port=port, password=self._sentinel_password, **kwargs
            )
            try:
                master = await sentinel.sentinel_get_master_addr_by_name(
                    self.sentinel_service, return_responses=True
                )
            except (RedisError, OSError) as exc:
                failures.append(f"{host}:{port}: {exc}")
                continue
            finally:
                await sentinel.aclose()
            if not isinstance(master, tuple):  # None: it monitors no such master
                raise BrokerUnavailable(
                    f"sentinel {host}:{port} knows no master named {self.sentinel_service!r}"
                )
            address, master_port = master
            return (address.decode() if isinstance(address, bytes) else address), master_port
        raise BrokerUnavailable("no sentinel answered: " + "; ".join(failures))

    async def _call(self, script: str, keys: list[str], args: list[Any]) -> Any:
        client = self._client
        cluster = client if isinstance(client, aioredis.RedisCluster) else None
        slots = None if cluster is None else cluster.nodes_manager.slots_cache
        try:
            return await self._scripts[script](keys=keys, args=args)
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable(f"redis: {exc}") from exc
        except (AttributeError, RuntimeError, TypeError) as exc:
            if not self.cluster:
                raise
            # redis-py's cluster client closes every connection on CLUSTERDOWN or
            # a slot not covered, under the commands still using them: those fail
            # with these. Redis is away for the moment, as far as the caller knows.
            _client_race(exc)
            raise BrokerUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc
        finally:
            # The cluster client read the whole slot map again before this command
            # (a command before it failed to connect): a new map object.
            if cluster is not None and cluster.nodes_manager.slots_cache is not slots:
                self._slot_map_read()

    def _slot_map_read(self) -> None:
        """The cluster client's slot map was updated (read again, or a slot
        re-pointed by a ``MOVED`` to a publish): redis_slots.py follows the slots
        whose owner changed; nothing to do here. Called by :meth:`_call` and the
        publish batcher (its ``on_slot_map``). No I/O."""
