"""The ``roomcast`` command: ``serve``, ``token``, ``bench``, ``demo-feed`` and
``db upgrade``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from . import __version__
from .banner import announce_pages, server_url
from .bench.config import positive_int
from .runner import run_uvicorn, uvicorn_config_kwargs
from .settings import MIN_HS256_SECRET, Settings
from .startup import StartupError, preflight

__all__ = ["main", "uvicorn_config_kwargs"]


def check_serve_settings(settings: Settings) -> None:
    """Refuse settings that would run but serve rooms wrongly."""
    if settings.workers > 1 and not settings.redis_url:
        raise ValueError(
            f"--workers {settings.workers} needs the Redis broker (ROOMCAST_REDIS_URL): "
            "with the memory broker each worker would keep its own rooms"
        )


def _serve(args: argparse.Namespace) -> int:
    # Flags become environment settings, so every worker process sees them.
    for name in ("host", "port", "workers", "log_level"):
        value = getattr(args, name)
        if value is not None:
            os.environ[f"ROOMCAST_{name.upper()}"] = str(value)
    settings = Settings()
    check_serve_settings(settings)
    preflight(settings)  # bad service URLs, services down: one line and exit 2, before uvicorn
    announce_pages(settings)  # the page URLs, once it listens
    options = uvicorn_config_kwargs(settings)
    run_uvicorn("roomcast.app:serve_app", {**options, "factory": True})  # a worker's failure: 3
    return 0


def _db_upgrade(args: argparse.Namespace) -> int:
    from .db.migrate import upgrade
    from .db.store import DatabaseUnavailable

    url = args.url or Settings().database_url.get_secret_value()
    try:
        upgrade(url)
    except DatabaseUnavailable as exc:
        print(f"roomcast: database unavailable: {exc}", file=sys.stderr)
        return 1
    print("roomcast: database schema is up to date")
    return 0


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``1h``, ``7d`` as seconds."""
    value = text.strip().lower()
    unit = _UNITS.get(value[-1:])
    number = value[:-1] if unit is not None else value
    try:
        seconds = float(number) * (unit or 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 90s, 15m, 1h)") from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError("the duration must be positive")
    return seconds


def _token(args: argparse.Namespace) -> int:
    from .auth.tokens import issue_token

    settings = Settings()
    secret = args.secret or (
        settings.jwt_secret.get_secret_value() if settings.jwt_secret else None
    )
    if not secret:
        print("roomcast: set ROOMCAST_JWT_SECRET (or pass --secret)", file=sys.stderr)
        return 2
    if len(secret.encode()) < MIN_HS256_SECRET:
        print(f"roomcast: the secret must be at least {MIN_HS256_SECRET} bytes", file=sys.stderr)
        return 2
    token = issue_token(
        secret,
        args.sub,
        ttl=args.ttl,
        rooms=args.rooms,
        publish=args.publish,
        name=args.name,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        admin=args.admin,
    )
    print(token)
    return 0


def _bench(args: argparse.Namespace) -> int:
    from .bench import main as bench_main

    # The bench is a client of the server the settings describe (ROOMCAST_HOST/PORT).
    return bench_main(args.bench_args, prog="roomcast bench", default_url=server_url)


DEMO_FEED_HELP = """\
Publish a sample live feed (numbers like a service's metrics: cpu, rps, p99_ms, queue)
to rooms over REST, so a dashboard has something to show.

Credentials: with the default ROOMCAST_AUTH=off and no ROOMCAST_API_KEYS, none are
needed (do not pass --token then: with auth=off a bearer that is not an API key is
refused with 401). With ROOMCAST_API_KEYS set (auth=off or jwt), pass one of those keys
with --api-key. With ROOMCAST_AUTH=jwt, pass an API key or a token whose publish claim
matches every room (roomcast token --sub feed --publish 'feed:*'); a namespace with
client_publish=false takes API keys only.

Server unreachable, 5xx or 429: one line on stderr, then it backs off (up to 5 s) and
retries until the server is back. 401, 403 or another 4xx: exit status 2. Ctrl-C or
SIGTERM: exit status 0."""


def room_name(text: str) -> str:
    from .protocol.frames import ROOM_PATTERN

    if ROOM_PATTERN.fullmatch(text) is None:
        raise argparse.ArgumentTypeError(
            f"not a room name: {text!r} (1-128 letters, digits and _ . : -)"
        )
    return text


def _demo_feed(args: argparse.Namespace) -> int:
    from .demofeed import FeedOptions, run

    options = FeedOptions(
        url=args.url or server_url(),
        rooms=tuple(args.rooms or ["feed:demo"]),
        interval=args.interval,
        count=args.count,
        seed=args.seed,
        api_key=args.api_key or os.environ.get("ROOMCAST_DEMO_API_KEY") or None,
        token=args.token or os.environ.get("ROOMCAST_DEMO_TOKEN") or None,
    )
    return run(options)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="roomcast", description="real-time rooms over WebSocket")
    parser.add_argument("--version", action="version", version=f"roomcast {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the server (settings: ROOMCAST_* variables)")
    serve.add_argument("--host", help="address to bind (ROOMCAST_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind (ROOMCAST_PORT, default 8000)")
    serve.add_argument("--workers", type=int, help="worker processes (ROOMCAST_WORKERS)")
    serve.add_argument(
        "--log-level",
        dest="log_level",
        choices=["critical", "error", "warning", "info", "debug", "trace"],
    )
    serve.set_defaults(func=_serve)

    token = commands.add_parser(
        "token",
        help="print an HS256 token for development (signed with ROOMCAST_JWT_SECRET)",
        description="Print a signed token. Repeat --rooms and --publish for several patterns.",
    )
    token.add_argument("--sub", required=True, help="the user id (sub claim)")
    token.add_argument("--name", help="display name (name claim; default: the sub)")
    token.add_argument(
        "--rooms",
        action="append",
        default=[],
        metavar="PATTERN",
        help="rooms it may subscribe to, e.g. 'chat:*'",
    )
    token.add_argument(
        "--publish",
        action="append",
        default=[],
        metavar="PATTERN",
        help="rooms it may publish to (default: none, read-only)",
    )
    token.add_argument(
        "--ttl", type=parse_duration, default=3600.0, help="lifetime: 90s, 15m, 1h (default 1h)"
    )
    token.add_argument(
        "--admin",
        action="store_true",
        help='an administrator\'s token ("admin": true): every room, the admin page',
    )
    token.add_argument("--secret", help="HS256 secret (default: ROOMCAST_JWT_SECRET)")
    token.set_defaults(func=_token)

    # The bench parses its own flags (roomcast.bench.config), so `roomcast serve` never
    # imports the load client; prefix_chars="+" hands every flag, -h too, through to it.
    bench = commands.add_parser(
        "bench",
        help="load-test a server: fanout | rooms | connect | idle | sse (docs/bench.md)",
        add_help=False,
        prefix_chars="+",
    )
    bench.add_argument("bench_args", nargs=argparse.REMAINDER)
    bench.set_defaults(func=_bench)

    feed = commands.add_parser(
        "demo-feed",
        help="publish a sample live feed to rooms over REST (for the dashboard)",
        description=DEMO_FEED_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    feed.add_argument(
        "--url",
        help="the server's base URL (default: the local server of ROOMCAST_HOST and "
        "ROOMCAST_PORT, http://127.0.0.1:8000 unset)",
    )
    feed.add_argument(
        "--room",
        dest="rooms",
        action="append",
        type=room_name,
        metavar="ROOM",
        help="a room to publish to; repeat for several (default feed:demo)",
    )
    feed.add_argument(
        "--interval",
        type=parse_duration,
        default=1.0,
        help="seconds between publishes to each room, > 0 (default 1)",
    )
    feed.add_argument(
        "--count",
        type=positive_int,
        help="publish this many messages per room, then exit 0 (default: until Ctrl-C)",
    )
    feed.add_argument(
        "--seed", type=int, help="seed of the numbers, to reproduce them (default: random)"
    )
    feed.add_argument(
        "--api-key",
        dest="api_key",
        help="one of the server's API keys (ROOMCAST_API_KEYS), sent as X-API-Key "
        "(default: the ROOMCAST_DEMO_API_KEY variable)",
    )
    feed.add_argument(
        "--token",
        help="a token that may publish to the rooms (auth=jwt), sent as "
        "Authorization: Bearer (default: the ROOMCAST_DEMO_TOKEN variable)",
    )
    feed.set_defaults(func=_demo_feed)

    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_commands.add_parser("upgrade", help="migrate the schema to the latest version")
    upgrade.add_argument("--url", help="database URL (ROOMCAST_DATABASE_URL)")
    upgrade.set_defaults(func=_db_upgrade)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except (ValueError, StartupError) as exc:  # invalid settings, services not reachable
        print(f"roomcast: {exc}", file=sys.stderr)
        return 2
