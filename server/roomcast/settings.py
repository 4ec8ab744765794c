"""All of roomcast's settings, in one class. Environment prefix: ``ROOMCAST_``.

Every operator limit the server enforces is a named setting here (the few
fixed limits of the wire protocol are constants in protocol/frames.py);
docs/operations.md
lists them. CLI flags of ``roomcast serve`` override the environment.

Secrets, and settings that may hold one (a password in ``redis_url`` or
``database_url``, a key in ``jwt_jwks_url``'s query), are ``SecretStr``: their
``repr`` is ``**********``, errors about them never echo them (SettingsError),
and a reader must call ``.get_secret_value()``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .protocol.errors import RoomcastError

__all__ = ["NamespaceConfig", "Settings", "SettingsError"]

Positive = Annotated[float, Field(gt=0)]
Count = Annotated[int, Field(ge=1)]
Limit = Annotated[int, Field(ge=0)]
CommaList = Annotated[list[str], NoDecode]

MIN_HS256_SECRET = 32
REDIS_SCHEMES = frozenset({"redis", "rediss", "unix"})
"""The URL schemes redis-py takes in ``redis_url``."""
"""Bytes: RFC 7518 asks for a key at least as long as the hash."""


class NamespaceConfig(BaseModel):
    """Options of the rooms whose name starts with ``<namespace>:`` (docs/security.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    public: bool = False
    """Anyone, with or without a token, may subscribe and read history and presence."""
    client_publish: bool = True
    """Connected clients may publish (within their token's ``publish`` patterns);
    False: only the backend publishes, over REST with an API key."""
    presence: bool | None = None
    """Track presence in these rooms (unset: the ``presence`` setting)."""
    history_size: Annotated[int | None, Field(ge=1)] = None
    """Events kept per room (unset: the ``history_size`` setting)."""
    persist: bool = False
    """Keep every message of these rooms in SQL, as rooms created with ``persist``."""


class SettingsError(RoomcastError, ValueError):
    """Settings that cannot be used: each problem names its setting and the rule,
    never the value given (it may be a secret)."""

    @classmethod
    def of(cls, exc: ValidationError) -> SettingsError:
        problems = []
        for error in exc.errors(include_url=False, include_input=False, include_context=False):
            name = ".".join(str(part) for part in error["loc"])
            setting = f"ROOMCAST_{name.split('.')[0].upper()}" if name else ""
            message = error["msg"].removeprefix("Value error, ")
            problems.append(message if message.startswith(setting) else f"{setting}: {message}")
        return cls("; ".join(problems))


class Settings(BaseSettings):
    """Every setting, from keyword arguments, then ``ROOMCAST_*`` variables.
    Raises :class:`SettingsError` for settings that cannot be used."""

    model_config = SettingsConfigDict(env_prefix="ROOMCAST_", extra="ignore")

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise SettingsError.of(exc) from None

    # -- serving -------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8000
    workers: Count = 1
    log_level: Literal["critical", "error", "warning", "info", "debug", "trace"] = "info"
    handshake_timeout: Positive = 10.0
    """Seconds a connection has to send a complete request line and headers (HTTP, and
    the WebSocket handshake); a slower one is closed (roomcast's HTTP protocol)."""
    max_body_bytes: Annotated[int | None, Field(ge=1)] = None
    """Largest REST request body in bytes; larger is refused 413 before it is read.
    Unset: ``max_payload_bytes`` plus 16 KiB for the JSON around the data."""
    body_timeout: Positive = 10.0
    """Seconds a REST request body may go without a byte arriving before 408."""
    retry_after: Count = 5
    """Seconds a client over a connection limit is asked to wait (``Retry-After``)."""
    graceful_shutdown_timeout: Positive = 10.0
    """Seconds uvicorn waits for connections and tasks to finish on shutdown."""
    drain_timeout: Positive = 5.0
    """Seconds to wait for sockets to take their 3000 close before uvicorn's own shutdown."""
    gc_freeze: bool = True
    """After start-up, freeze every object allocated so far out of the collector's way
    (standalone server only; gctune.py)."""
    gc_threshold: Limit = 50_000
    """Container allocations between young collections (Python's default 700; 0 keeps
    it). Standalone server only."""

    # -- WebSocket -----------------------------------------------------------------
    ws_max_size: Count = 128 * 1024
    """Largest incoming frame in bytes; a larger one closes the connection with 1009."""
    ws_ping_interval: Positive = 20.0
    ws_ping_timeout: Positive = 20.0
    """A peer that does not answer a WebSocket ping within this many seconds is dropped."""
    ws_per_message_deflate: bool = False

    # -- Server-Sent Events --------------------------------------------------------
    sse_keepalive: Positive = 15.0
    """Seconds between keep-alive comments on an idle event stream."""
    sse_retry_ms: Count = 2000
    """The ``retry:`` hint: milliseconds EventSource waits before reconnecting."""

    # -- per connection ------------------------------------------------------------
    outbox_max_messages: Count = 1000
    outbox_max_bytes: Count = 4 * 1024 * 1024
    """A connection whose outbox exceeds either bound is closed 3001 (slow consumer).
    Sizes are counted in characters of the encoded frames (bytes, for ASCII)."""
    send_timeout: Positive = 10.0
    """A connection whose writer makes no progress on one frame for this long is
    closed 3001 (slow consumer), even when no new traffic fills its outbox."""
    slow_close_timeout: Positive = 5.0
    """Seconds the server tries to deliver a close frame (to a peer that may have
    stopped reading) before it releases the connection anyway."""
    max_payload_bytes: Count = 64 * 1024
    """Largest ``data`` of one publish, encoded as JSON; larger gets ``too_large``."""
    max_subscriptions: Count = 100
    ws_write_batch: Count = 64
    """Most queued frames one direct write carries (transports/websocket.py)."""
    max_inflight_publishes: Count = 32
    """Publishes of one connection carried out at once (pipelined, answered in
    order); at the bound the server reads that connection's next frame only once
    the oldest is answered."""
    max_bad_frames: Count = 20
    """Malformed frames a connection may send before it is closed with 3502."""

    # -- rooms and history ------------------------------------------------------------
    history_size: Count = 1000
    """Events kept per room for resume and history (memory and Redis brokers)."""
    room_ttl: Positive = 3600.0
    """Seconds an unused room's history is kept once nobody is subscribed."""
    max_rooms: Count = 100_000
    """Rooms one process keeps (memory broker: with history; any broker: subscribed);
    a publish or subscribe that would make one more gets ``unavailable``."""
    max_history_bytes: Count = 256 * 1024 * 1024
    """Bytes of retained history one process keeps over all rooms (memory broker); past
    it the oldest events of the largest rooms are let go (a resume from before them
    answers ``recovered: false``)."""
    idempotency_window: Annotated[float, Field(ge=0)] = 300.0
    """Seconds a publish's idempotency key is remembered: within it a publish with the
    same key, room and user is answered with the first one's position and not
    published again. 0: keys are ignored (every publish is published)."""
    max_idempotency_keys: Count = 10_000
    """Idempotency keys one room remembers at once (memory broker); past it the oldest
    are forgotten, and a publish with one of those is published again."""
    presence: bool = True
    presence_ttl: Positive = 30.0
    """Seconds a presence entry lives unless its process refreshes it (Redis broker):
    a crashed worker's users leave within this time."""
    presence_refresh: Positive = 10.0
    """Seconds between a process's presence refreshes and expiry sweeps (Redis broker)."""

    # -- persistence (rooms created with persist keep their messages in SQL) ---------
    database_url: SecretStr = SecretStr("sqlite+aiosqlite:///roomcast.db")
    """SQLAlchemy URL: a SQLite file by default; ``postgresql+asyncpg://...`` for PostgreSQL."""
    database_migrate: bool = True
    """Bring the schema up to date at startup (``roomcast db upgrade`` does it by hand)."""
    database_timeout: Positive = 5.0
    """Seconds to wait for the database (connect, statement) before ``unavailable``."""
    writer_max_pending: Count = 10_000
    """Events waiting to be written; a publish to a persisted room beyond it gets
    ``unavailable``."""
    writer_max_batch: Count = 500
    """Most events written in one transaction (group commit)."""
    writer_max_delay: Annotated[float, Field(ge=0)] = 0.005
    """Seconds the writer waits for more events before committing a batch."""
    room_options_ttl: Positive = 5.0
    """Seconds a process caches a room's options (persist, presence), so rooms created
    or deleted on another process take effect within this time."""
    replay_limit: Count = 10_000
    """Most events a resume reads from SQL when its gap is older than the broker's history."""

    # -- authentication and permissions (docs/security.md) ---------------------------
    auth: Literal["off", "jwt"] = "off"
    """``off``: anyone may connect, subscribe and publish (a warning at startup).
    ``jwt``: clients need a token, except in public namespaces."""
    jwt_secret: SecretStr | None = None
    """HS256 secret, at least 32 bytes."""
    jwt_public_key: str | None = None
    """PEM public key (RS256/ES256), or the path of a PEM file."""
    jwt_jwks_url: SecretStr | None = None
    """URL of a JWKS document with the public keys (RS256/ES256), picked by ``kid``."""
    jwt_algorithms: CommaList = []
    """Accepted ``alg`` values, comma-separated. Unset: HS256 with a secret, RS256 and
    ES256 with a public key or JWKS. Never taken from the token."""
    jwt_issuer: str | None = None
    """When set, a token's ``iss`` must equal it."""
    jwt_audience: str | None = None
    """When set, a token's ``aud`` must contain it."""
    jwt_leeway: Annotated[float, Field(ge=0)] = 0.0
    """Seconds of clock skew allowed on ``exp`` and ``nbf``."""
    jwks_cache_ttl: Positive = 300.0
    """Seconds a fetched JWKS document is used before it is fetched again."""
    jwks_timeout: Positive = 5.0
    """Seconds to wait for the JWKS document; past it, clients get 1013 / 503."""
    auth_cookie: str = "roomcast_token"
    """Cookie a WebSocket or SSE client may carry its token in."""
    auth_timeout: Positive = 10.0
    """Seconds a WebSocket that needs a token has to send ``connect`` before 3500."""
    api_keys: Annotated[list[SecretStr], NoDecode] = []
    """Comma-separated keys for backends: REST publishing to any room and room
    administration (``Authorization: Bearer <key>`` or ``X-API-Key``). When set, REST
    writes need one even with ``auth=off``."""
    allowed_origins: CommaList = []
    """Origins (``https://app.example``) whose pages may open a WebSocket, or an SSE
    stream with a cookie; ``*`` allows any. Unset: same origin only, plus clients that
    send no Origin (non-browser)."""
    namespaces: dict[str, NamespaceConfig] = {}
    """Per-namespace options as JSON: ``{"feed": {"public": true, "client_publish":
    false}}``; the key ``*`` sets the default of every other namespace."""
    namespaces_file: Path | None = None
    """A TOML or JSON file of namespace options (same shape); merged under ``namespaces``."""

    # -- limits (docs/security.md) ------------------------------------------------------
    publish_rate: Annotated[float, Field(ge=0)] = 100.0
    """Publishes per second per connection (token bucket); 0: no limit."""
    publish_burst: Count = 200
    """Publishes a connection may send at once before ``publish_rate`` applies."""
    max_rate_breaches: Count = 20
    """Refused publishes (less those accepted since) before the connection is closed 3004."""
    max_connections_per_user: Limit = 100
    """Open connections per token subject on one process; 0: no limit."""
    max_connections_per_ip: Limit = 0
    """Open connections per client address on one process; 0: no limit (behind a
    proxy, set uvicorn's ``FORWARDED_ALLOW_IPS`` so the address is the client's)."""
    max_room_length: Annotated[int, Field(ge=1, le=128)] = 128
    """Longest room name accepted, in characters (the protocol allows 128)."""
    max_broadcast_rooms: Count = 1000
    """Most rooms one REST ``/broadcast`` publishes to."""
    hook_timeout: Positive = 10.0
    """Seconds an application hook may take; past it ``on_connect``, ``on_subscribe``
    and ``on_publish`` refuse the request with ``unavailable``, and ``on_disconnect``
    is given up on (logged) (hooks.py)."""

    # -- services ------------------------------------------------------------------
    redis_url: SecretStr | None = None
    """Set to use the Redis broker (several workers or machines); unset: memory broker."""
    redis_prefix: str = "rc"
    """Prefix of every Redis key and channel, so deployments can share a Redis."""
    redis_sharded: bool = False
    """Use sharded pub/sub (SSUBSCRIBE/SPUBLISH, Redis 7+)."""
    redis_cluster: bool = False
    """ROOMCAST_REDIS_URL names a node of a Redis Cluster: commands go through the
    cluster client and pub/sub is sharded, one connection per shard in use."""
    redis_timeout: Positive = 5.0
    """Seconds to wait for Redis (connect, command, subscribe confirmation)."""
    redis_ping_interval: Positive = 5.0
    """Seconds of pub/sub silence before a PING; no answer within as long again
    counts as a lost connection."""
    redis_max_batch: Count = 256
    """Most publishes sent to Redis in one pipeline (hub/redis_batch.py)."""
    redis_backoff_cap: Positive = 2.0
    """Longest wait, in seconds, between pub/sub reconnect attempts (full jitter)."""
    redis_sentinels: CommaList = []
    """Redis Sentinel addresses, comma-separated ``host:port`` (``[::1]:26379`` for IPv6):
    the Redis broker asks them for the master of ``redis_sentinel_service``, connects
    there and follows it when they fail it over (docs/redis.md). ``redis_url`` then
    gives only the credentials, database and TLS of the connections to the master (its
    host and port are not used); left unset, it is ``redis://``."""
    redis_sentinel_service: Annotated[str, Field(min_length=1)] = "mymaster"
    """The master's name, as in the sentinels' ``sentinel monitor <name> ...``."""
    redis_sentinel_password: SecretStr | None = None
    """The sentinels' own password (their ``requirepass``), if they have one."""
    startup_check: bool = True
    """At startup, stop (StartupError; ``roomcast serve``: one line, exit status 2) when
    Redis cannot be reached; false: start anyway, not ready, and connect when it can.
    The database must answer at startup either way (startup.py)."""

    # -- observability (docs/deploy.md) ---------------------------------------------
    metrics: bool = True
    """Serve ``/metrics`` (Prometheus text format) for this process."""
    peer_log_per_minute: Limit = 60
    """Log lines per minute, per process, about what peers sent wrong (bad frames,
    evicted streams); past it they are counted in /metrics, not logged. 0: none."""
    log_format: Literal["text", "json"] = "text"
    """``json``: one JSON object per log line (uvicorn's and roomcast's), with the
    connection id and other fields as keys."""
    forwarded_allow_ips: str = "127.0.0.1"
    """Addresses (comma-separated, or ``*``) of proxies whose ``X-Forwarded-For`` and
    ``X-Forwarded-Proto`` are believed: the client address then comes from them
    (logs, ``max_connections_per_ip``). ``*`` only where nothing but the proxy can
    reach the server."""

    # -- browser pages (roomcast/web: roomcast.js, /chat, /dashboard) -----------------
    web: bool = True
    """Serve the browser client and its pages: ``/``, ``/chat``, ``/dashboard``,
    ``/roomcast.js`` (docs/client.md). Off for an app that mounts only the API."""
    web_dir: Path | None = None
    """The folder of those files; default: the ``web`` folder of the installed package."""
    admin: bool = True
    """Serve the admin page and its API (``/admin``, ``/admin/overview``) to
    administrators (docs/client.md). With ``auth=off`` they exist only when ``host`` is a
    loopback address, and then need no key unless ``api_keys`` are set."""

    @field_validator(
        "jwt_algorithms", "allowed_origins", "api_keys", "redis_sentinels", mode="before"
    )
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _check_auth(self) -> Self:
        secret = self.jwt_secret.get_secret_value() if self.jwt_secret else None
        if secret is not None and len(secret.encode()) < MIN_HS256_SECRET:
            raise ValueError(f"ROOMCAST_JWT_SECRET must be at least {MIN_HS256_SECRET} bytes")
        if self.auth == "jwt" and not (secret or self.jwt_public_key or self.jwt_jwks_url):
            raise ValueError(
                "ROOMCAST_AUTH=jwt needs ROOMCAST_JWT_SECRET, ROOMCAST_JWT_PUBLIC_KEY "
                "or ROOMCAST_JWT_JWKS_URL"
            )
        for alg in self.jwt_algorithms:
            if alg not in HMAC_ALGORITHMS | ASYMMETRIC_ALGORITHMS:
                raise ValueError(f"ROOMCAST_JWT_ALGORITHMS: {alg!r} is not supported")
            if alg in HMAC_ALGORITHMS and not secret:
                raise ValueError(f"ROOMCAST_JWT_ALGORITHMS: {alg} needs ROOMCAST_JWT_SECRET")
            if alg in ASYMMETRIC_ALGORITHMS and not (self.jwt_public_key or self.jwt_jwks_url):
                raise ValueError(
                    f"ROOMCAST_JWT_ALGORITHMS: {alg} needs ROOMCAST_JWT_PUBLIC_KEY or _JWKS_URL"
                )
        return self

    @field_validator("redis_sentinels")
    @classmethod
    def _sentinel_addresses(cls, value: list[str]) -> list[str]:
        for entry in value:
            sentinel_address(entry)
        return value

    @model_validator(mode="after")
    def _check_sentinels(self) -> Self:
        """Sentinels name the master: not with a cluster, nor a socket path; with no
        ``redis_url`` the connections to the master are ``redis://`` (no password)."""
        if not self.redis_sentinels:
            return self
        if self.redis_cluster:
            raise ValueError(
                "ROOMCAST_REDIS_SENTINELS cannot be used with ROOMCAST_REDIS_CLUSTER "
                "(a cluster fails over by itself)"
            )
        if self.redis_url is None or not self.redis_url.get_secret_value():
            self.redis_url = SecretStr("redis://")
        elif self.redis_url.get_secret_value().lower().startswith("unix:"):
            raise ValueError(
                "ROOMCAST_REDIS_URL: a unix:// URL cannot be used with ROOMCAST_REDIS_SENTINELS "
                "(the sentinels name the master's TCP address)"
            )
        return self

    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """``redis_sentinels`` as ``(host, port)`` pairs."""
        return [sentinel_address(entry) for entry in self.redis_sentinels]

    @model_validator(mode="after")
    def _check_redis_url(self) -> Self:
        """A Redis URL redis-py can parse (its own error would not name the setting)."""
        if self.redis_url is None:
            return self
        try:
            parts = urlsplit(self.redis_url.get_secret_value())
        except ValueError:  # "Invalid IPv6 URL"
            raise ValueError("ROOMCAST_REDIS_URL: not a URL") from None
        if parts.scheme not in REDIS_SCHEMES:
            raise ValueError(
                f"ROOMCAST_REDIS_URL: the scheme must be one of {', '.join(sorted(REDIS_SCHEMES))}"
            )
        try:
            parts.port  # noqa: B018 (parsing it is the check)
        except ValueError:
            raise ValueError("ROOMCAST_REDIS_URL: the port must be 0 to 65535") from None
        return self

    def accepted_algorithms(self) -> list[str]:
        """The ``alg`` values tokens may use: the setting, or what the keys allow."""
        if self.jwt_algorithms:
            return list(self.jwt_algorithms)
        algorithms = ["HS256"] if self.jwt_secret else []
        if self.jwt_public_key or self.jwt_jwks_url:
            algorithms += ["RS256", "ES256"]
        return algorithms


def sentinel_address(entry: str) -> tuple[str, int]:
    """``host:port`` (``[v6 address]:port``) as a pair; ValueError naming the setting."""
    host, _, port = entry.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        host = ""  # an IPv6 address without brackets: where its port starts is unclear
    if not host or any(c in host for c in " /@[]") or not port.isdigit():
        raise ValueError(
            f"ROOMCAST_REDIS_SENTINELS: {entry!r} is not host:port "
            "(comma-separated, e.g. 10.0.0.1:26379,10.0.0.2:26379)"
        )
    if not 1 <= int(port) <= 65535:
        raise ValueError(f"ROOMCAST_REDIS_SENTINELS: {entry!r}: the port must be 1 to 65535")
    return host, int(port)


HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
