"""Hostile input against a real roomcast server: issue 15's attacks, counted.

Usage (from the repository root; run by hand, it is no test)::

    .venv/bin/python benchmarks/attacks.py            # every attack at full size, 1-2 min
    .venv/bin/python benchmarks/attacks.py --quick    # smaller counts, about a minute
    .venv/bin/python benchmarks/attacks.py --only leak,jwt --keep /tmp/attack-logs

What it does: starts ``roomcast serve`` (one process, memory broker, a SQLite file
in a temporary folder) with ``auth=jwt`` (an HS256 secret and an RSA public key,
``jwt_algorithms=HS256,RS256``, an audience and an issuer), an API key, one allowed
origin, ``log_level=info`` (uvicorn's access log on) and short timeouts
(``--handshake-timeout``, ``--body-timeout``), its stdout and stderr captured to a
file; runs each attack against it, counts what it observes (statuses, close codes,
how long sockets stay open, the server's RSS, lines of its log, /metrics); and
prints one markdown table, ``attack | count | result``, as docs/security.md shows
it ("What we tested"). A second server logs as JSON for the token-leak attack, the
two flood attacks get a fresh server each (each starts with the peer log's whole
minute), one with a small ``max_rooms`` serves the read-amplification attack, and
the secret-at-startup attack starts servers with settings that cannot work. Most of
the run's time is servers starting and the timeouts running out, so ``--quick``
saves little; the full sizes are those of the outside testers (issue 15).

The attacks (``--only`` takes these keys, comma-separated):

* ``leak``: tokens in the query under encoded and varied parameter names, on
  WebSocket, SSE and REST, log_format text and json; the log is searched for
  every token's signature.
* ``startup``: settings that hold secrets and fail (a 31-byte JWT secret, Redis
  and database URLs with passwords that cannot connect or do not parse); the
  output is searched for any 6 characters of the secret in a row.
* ``bodies``: a 100 MiB ``Content-Length``, a chunked body over
  ``max_body_bytes``, 20 MiB without credentials, bodies that stall.
* ``slow``: sockets that send a WebSocket handshake one byte every 2 s, and
  sockets that send nothing.
* ``flood``: connections sending invalid UTF-8 text frames; SSE streams that
  stop reading until they are evicted.
* ``creds``: empty or non-Bearer ``Authorization``, an empty ``X-API-Key``, two
  ``Authorization`` headers, next to a valid credential.
* ``jwt``: forged, expired and malformed tokens on WebSocket, SSE and REST.
* ``origins``: WebSocket and cookie-SSE requests from other origins.
* ``amplify``: ``history`` of and subscribes to unknown rooms on the memory broker.

Every figure in the table is counted in this run; a row whose expectation did not
hold says ``FAILED`` and the exit status is 1 (2 if the run itself broke). The last
row counts ERROR and traceback lines in the whole log of every server that served
the attacks. ``--keep DIR`` copies every server's log there. The script needs the
development dependencies (``cryptography`` for the RSA and EC keys).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import warnings
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode

from roomcast.bench.procfs import rss_bytes
from roomcast.testing import ReplyError, connect, free_port

KiB, MiB, GiB = 1024, 1024 * 1024, 1024 * 1024 * 1024
SECRET = secrets.token_urlsafe(32)
API_KEY = "attack-key-" + secrets.token_hex(12)
AUDIENCE, ISSUER = "roomcast", "https://id.example"
APP_ORIGIN = "https://app.example"
WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
STOP_TIMEOUT = 15.0


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def n(value: float) -> str:
    """A count with thousands separators."""
    return f"{value:,.0f}"


@dataclass
class Row:
    attack: str
    count: str
    result: str
    held: bool


# -- servers -------------------------------------------------------------------------------


@dataclass
class Server:
    """A running ``roomcast serve``: its process, port, settings and log file."""

    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    settings: dict[str, str]

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def mark(self) -> int:
        """Where the log ends now (for :meth:`log_since`)."""
        return self.log_path.stat().st_size

    def log_since(self, mark: int) -> str:
        with self.log_path.open("rb") as f:
            f.seek(mark)
            return f.read().decode(errors="replace")

    def rss(self) -> int:
        return rss_bytes(self.proc.pid) or 0


def server_env(settings: dict[str, Any]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMCAST_")}
    env.update({f"ROOMCAST_{k.upper()}": str(v) for k, v in settings.items()})
    return env


def stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextlib.contextmanager
def running_server(work: Path, name: str, settings: dict[str, Any]) -> Iterator[Server]:
    """``roomcast serve`` on a free port with ``settings`` (as ROOMCAST_*), its output in
    ``work/name.log``; yields once /readyz answers 200, stops it on exit."""
    port = free_port()
    folder = work / name
    folder.mkdir()
    settings = {"database_url": f"sqlite+aiosqlite:///{folder / 'roomcast.db'}", **settings}
    log_path = work / f"{name}.log"
    command = [sys.executable, "-m", "roomcast", "serve", "--port", str(port)]
    with log_path.open("wb") as sink:
        proc = subprocess.Popen(
            command, env=server_env(settings), cwd=folder, stdout=sink, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    server = Server(proc, port, log_path, {k: str(v) for k, v in settings.items()})
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start:\n{log_path.read_text()[-3000:]}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{server.http}/readyz", timeout=1) as reply,
            ):
                if reply.status == 200:
                    break
            time.sleep(0.1)
        yield server
    finally:
        stop(proc)


def scrape(server: Server) -> dict[str, float]:
    """/metrics as {name{labels}: value} (labels sorted, as ``a="b",c="d"``)."""
    with urllib.request.urlopen(f"{server.http}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return samples


class RssPeak:
    """Samples a process's RSS every 10 ms in a thread; ``peak`` is the largest seen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss_bytes(pid) or 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, rss_bytes(self.pid) or 0)

    def __enter__(self) -> RssPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# -- raw HTTP and WebSocket ------------------------------------------------------------------

Headers = Sequence[tuple[str, str]]


def request_head(
    method: str, target: str, port: int, headers: Headers = (), close: bool = True
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def ws_head(target: str, port: int, headers: Headers = ()) -> bytes:
    upgrade = [
        ("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Key", WS_KEY),
        ("Sec-WebSocket-Version", "13"),
    ]  # fmt: skip
    return request_head("GET", target, port, [*upgrade, *headers], close=False)


async def read_head(reader: asyncio.StreamReader, timeout: float = 10) -> int:
    """The status of a response; 0 if the connection closed (or timed out) first."""
    try:
        async with asyncio.timeout(timeout):
            head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, TimeoutError):
        return 0
    return int(head.split(b" ", 2)[1])


async def exchange(port: int, head: bytes, body: bytes = b"") -> int:
    """Send ``head`` (and ``body``) on a new connection; the response's status (0:
    closed without one). Only the head of the response is read."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + body)
        return await read_head(reader)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def until_closed(reader: asyncio.StreamReader, timeout: float) -> float | None:
    """Seconds until the peer closes the connection (what it sends is read and
    dropped); None if it is still open after ``timeout``."""
    start = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return None
    except ConnectionError:
        pass
    return time.monotonic() - start


async def bounded(jobs: list[Awaitable[Any]], concurrency: int) -> list[Any]:
    """Await ``jobs`` with at most ``concurrency`` running at once; results in order."""
    gate = asyncio.Semaphore(concurrency)

    async def one(job: Awaitable[Any]) -> Any:
        async with gate:
            return await job

    return await asyncio.gather(*(one(job) for job in jobs))


def tally(values: list[Any]) -> str:
    """``401: 20, 0: 2`` for a list of outcomes, most common first."""
    return ", ".join(f"{k}: {n(v)}" for k, v in collections.Counter(values).most_common())


# -- tokens ----------------------------------------------------------------------------------


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "sub": "u-" + secrets.token_hex(4), "exp": int(time.time()) + 300, "aud": AUDIENCE,
        "iss": ISSUER, "rooms": ["chat:*"], "publish": ["chat:*"],
    }  # fmt: skip
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def hs256(secret: str = SECRET, **overrides: Any) -> str:
    return jwt.encode(claims(**overrides), secret, algorithm="HS256")


def handmade(header: dict[str, Any], payload: dict[str, Any], key: bytes | None) -> str:
    """A JWT built by hand: any header; HMAC-SHA256 with ``key``, or no signature."""
    signing = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    if key is None:
        return signing + "."
    return f"{signing}.{b64(hmac.new(key, signing.encode(), hashlib.sha256).digest())}"


def new_rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class Keys:
    """The server's RSA key pair (the server has the public half) and an attacker's keys."""

    server: rsa.RSAPrivateKey = field(default_factory=new_rsa)
    attacker: rsa.RSAPrivateKey = field(default_factory=new_rsa)
    attacker_ec: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )

    @property
    def public_pem(self) -> str:
        public = self.server.public_key()
        pem = public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return pem.decode()


def forged_tokens(keys: Keys) -> list[tuple[str, Callable[[], str]]]:
    """Tokens no client should get in with: (name, a function that makes a fresh one)."""
    pem = keys.public_pem.encode()
    other = "another-secret-of-at-least-32-bytes!!"
    hs_header = {"alg": "HS256", "typ": "JWT"}
    attacker_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(keys.attacker.public_key()))

    def now() -> int:
        return int(time.time())

    def none_with_signature() -> str:
        _, body, sig = hs256().split(".")
        return f"{b64(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{body}.{sig}"

    def signature_of_another() -> str:
        head, body, _ = hs256(sub="mallory").split(".")
        return f"{head}.{body}.{hs256().split('.')[2]}"

    def tampered() -> str:
        head, body, sig = hs256(rooms=["chat:lobby"]).split(".")
        payload = json.loads(base64.urlsafe_b64decode(body + "=="))
        payload["rooms"] = payload["publish"] = ["*"]
        return f"{head}.{b64(json.dumps(payload).encode())}.{sig}"

    return [
        ("alg none", lambda: jwt.encode(claims(), None, algorithm="none")),
        ("alg None", lambda: handmade({"alg": "None", "typ": "JWT"}, claims(), None)),
        ("alg NONE", lambda: handmade({"alg": "NONE"}, claims(), None)),
        ("alg none, signature kept", none_with_signature),
        ("HS256 keyed with the server's RSA public key",
         lambda: handmade(hs_header, claims(), pem)),
        ("the same, PEM stripped", lambda: handmade(hs_header, claims(), pem.strip())),
        ("RS256 by another key", lambda: jwt.encode(claims(), keys.attacker, algorithm="RS256")),
        ("ES256 (not accepted)", lambda: jwt.encode(claims(), keys.attacker_ec, algorithm="ES256")),
        ("HS512 with the real secret (not accepted)",
         lambda: jwt.encode(claims(), SECRET, algorithm="HS512")),
        ("wrong HMAC secret", lambda: hs256(other)),
        ("signature stripped", lambda: hs256().rsplit(".", 1)[0] + "."),
        ("another token's signature", signature_of_another),
        ("tampered payload (rooms: *)", tampered),
        ("expired", lambda: hs256(exp=now() - 60)),
        ("nbf in the future", lambda: hs256(nbf=now() + 3600)),
        ("exp as a string", lambda: hs256(exp="9999999999")),
        ("iat as a string", lambda: hs256(iat=str(now()))),
        ("no exp", lambda: hs256(exp=None)),
        ("no sub", lambda: hs256(sub=None)),
        ("wrong audience", lambda: hs256(aud="another-service")),
        ("no audience", lambda: hs256(aud=None)),
        ("wrong issuer", lambda: hs256(iss="https://evil.example")),
        ("kid path traversal, empty key",
         lambda: handmade({**hs_header, "kid": "../../../../../dev/null"}, claims(), b"")),
        ("kid SQL injection",
         lambda: handmade({**hs_header, "kid": "x' UNION SELECT 'k'--"}, claims(), b"k")),
        ("jku to the attacker's JWKS", lambda: jwt.encode(
            claims(), keys.attacker, algorithm="RS256",
            headers={"jku": "http://127.0.0.1:9/jwks.json", "kid": "evil"})),
        ("the attacker's key embedded (jwk)", lambda: jwt.encode(
            claims(), keys.attacker, algorithm="RS256", headers={"jwk": attacker_jwk})),
        ("huge (200 KB), wrong secret", lambda: hs256(other, pad="x" * 200_000)),
        ("empty", lambda: ""),
        ("garbage", lambda: "not-a-token"),
        ("empty parts", lambda: ".."),
    ]  # fmt: skip


# -- the attacks -----------------------------------------------------------------------------


@dataclass
class Run:
    """What every attack gets: the options, the keys, the folder for servers."""

    opts: argparse.Namespace
    keys: Keys
    work: Path

    def main_settings(self, log_format: str) -> dict[str, Any]:
        pem_path = self.work / "jwt-public.pem"
        if not pem_path.exists():
            pem_path.write_text(self.keys.public_pem)
        return {
            "auth": "jwt", "jwt_secret": SECRET, "jwt_public_key": pem_path,
            "jwt_algorithms": "HS256,RS256", "jwt_audience": AUDIENCE, "jwt_issuer": ISSUER,
            "api_keys": API_KEY, "allowed_origins": APP_ORIGIN, "log_level": "info",
            "log_format": log_format, "handshake_timeout": self.opts.handshake_timeout,
            "body_timeout": self.opts.body_timeout, "send_timeout": 2,
            "outbox_max_bytes": 512 * KiB, "sse_keepalive": 1, "publish_rate": 0,
        }  # fmt: skip

    def size(self, full: int, quick: int) -> int:
        return quick if self.opts.quick else full


# - tokens in query strings


LEAK_QUERIES: list[tuple[str, str]] = [
    ("token", "token={t}"),
    ("%74oken", "%74oken={t}"),
    ("tok%65n", "tok%65n={t}"),
    ("TOKEN", "TOKEN={t}"),
    ("access_token", "access_token={t}"),
    ("Access-Token", "Access-Token={t}"),
    ("api_key", "api_key={t}"),
    ("%2574oken (double-encoded)", "%2574oken={t}"),
    ("; separator", "name=x;token={t}"),
    ("repeated", "token=x&token={t}"),
]


async def leak_request(server: Server, transport: str, query: str) -> int:
    port = server.port
    if transport == "ws":
        return await exchange(port, ws_head(f"/ws?{query}", port))
    if transport == "sse":
        return await exchange(port, request_head("GET", f"/events?room=chat:leak&{query}", port))
    return await exchange(port, request_head("GET", f"/rooms/chat:leak/messages?{query}", port))


async def attack_leak(run: Run, server: Server) -> Row:
    """Tokens in query strings under every credential name and encoding: none of
    their signatures may reach the log."""
    fmt = server.settings["log_format"]
    reps = run.size(10, 3)
    mark = server.mark()
    signatures, payloads, statuses = [], [], []
    for rep in range(reps):
        for _, pattern in LEAK_QUERIES:
            for transport in ("ws", "sse", "rest"):
                # Half are valid tokens (they authenticate), half forged (refused).
                token = hs256() if rep % 2 == 0 else hs256("forged-secret-of-at-least-32-bytes!!")
                signatures.append(token.rsplit(".", 1)[1])
                payloads.append(token.split(".")[1])
                status = await leak_request(server, transport, pattern.format(t=token))
                statuses.append(f"{transport} {status}")
    await asyncio.sleep(1.0)  # the last access lines
    text = server.log_since(mark)
    lines = text.splitlines()
    found = sum(text.count(sig) for sig in signatures)
    bodies = sum(text.count(payload) for payload in payloads)
    redacted = sum("[redacted]" in line for line in lines)
    authenticated = statuses.count("sse 200")
    held = found == 0 and bodies == 0 and redacted >= len(signatures)
    return Row(
        "tokens in the query as "
        + ", ".join(f"`{name}`" for name, _ in LEAK_QUERIES)
        + f", on WebSocket, SSE and REST; log_format={fmt}, access log on",
        f"{n(len(signatures))} requests ({authenticated} SSE streams authenticated by them)",
        f"{found} token signatures (and {bodies} payloads) in {n(len(lines))} log lines "
        f"({n(redacted)} lines with `[redacted]`)",
        held,
    )


# - secret settings at startup


def run_failing_serve(
    work: Path, name: str, settings: dict[str, str], grace: float
) -> tuple[str, bool]:
    """Everything ``roomcast serve`` prints at debug with ``settings``: until it exits,
    or ``grace`` seconds after it says it serves (then SIGTERM); and whether it exited
    by itself."""
    folder = work / name
    folder.mkdir()
    out = work / f"{name}.log"
    env = server_env({"log_level": "debug", "port": free_port(), **settings})
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "roomcast", "serve"], env=env, cwd=folder, stdout=sink,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    serving = None
    deadline = time.monotonic() + 30
    while proc.poll() is None and time.monotonic() < deadline:
        if serving is None and b"Uvicorn running" in out.read_bytes():
            serving = time.monotonic()
        if serving is not None and time.monotonic() - serving > grace:
            break
        time.sleep(0.1)
    exited = proc.poll() is not None
    stop(proc)
    return out.read_text(errors="replace"), exited


def runs_of(secret: str, text: str, length: int = 6) -> list[str]:
    """Every ``length`` characters of ``secret`` in a row that appear in ``text``."""
    pieces = {secret[i : i + length] for i in range(len(secret) - length + 1)}
    return sorted(piece for piece in pieces if piece in text)


async def attack_startup(run: Run) -> Row:
    password = "pw" + secrets.token_urlsafe(18)
    short = secrets.token_urlsafe(32)[:31]
    closed = free_port()
    cases = {
        "31-byte ROOMCAST_JWT_SECRET": ({"auth": "jwt", "jwt_secret": short}, short),
        "Redis URL, nothing listening": (
            {"redis_url": f"redis://:{password}@127.0.0.1:{closed}/0", "redis_timeout": "1"},
            password,
        ),
        "Redis URL, bad port": ({"redis_url": f"redis://u:{password}@127.0.0.1:x/0"}, password),
        "PostgreSQL URL, nothing listening": (
            {"database_url": f"postgresql+asyncpg://app:{password}@127.0.0.1:{closed}/db",
             "database_timeout": "1"},
            password,
        ),
        "database URL, unknown driver": (
            {"database_url": f"nosuchdriver://app:{password}@127.0.0.1/db"}, password
        ),
        "API key next to an invalid setting": (
            {"api_keys": password, "ws_max_size": "0"}, password
        ),
    }  # fmt: skip
    jobs = [
        asyncio.to_thread(run_failing_serve, run.work, f"startup-{i}", settings, 3.0)
        for i, (settings, _) in enumerate(cases.values())
    ]
    outputs = await bounded(jobs, 3)
    leaked, lines, named, exited = [], 0, 0, 0
    for (name, (settings, secret)), (output, stopped) in zip(cases.items(), outputs, strict=True):
        lines += len(output.splitlines())
        if runs := runs_of(secret, output):
            leaked.append(f"{name}: {runs}")
        exited += stopped
        named += stopped and any(f"ROOMCAST_{key.upper()}" in output for key in settings)
    held = not leaked and lines > 0
    detail = "; ".join(leaked) if leaked else "0 runs of 6 characters of the secret"
    return Row(
        "secret settings that fail: " + "; ".join(cases),
        f"{len(cases)} start-ups at log_level=debug",
        f"{detail} in {n(lines)} lines of output ({exited} refused to start, "
        f"{named} of them naming the setting; {len(cases) - exited} served, retrying)",
        held,
    )


# - REST bodies


def publish_head(port: int, length: int | None, credentials: bool = True) -> bytes:
    headers = [("Content-Type", "application/json")]
    if credentials:
        headers.append(("X-API-Key", API_KEY))
    headers.append(("Content-Length", str(length)) if length is not None else
                   ("Transfer-Encoding", "chunked"))  # fmt: skip
    return request_head("POST", "/rooms/chat:body/messages", port, headers, close=False)


async def send_then_answer(
    server: Server, head: bytes, body_bytes: int, chunked: bool = False
) -> tuple[int, int, float | None]:
    """Send ``head``, wait for an answer before any body byte; if none comes, send
    up to ``body_bytes`` of body (chunked or not) while waiting. Returns (status,
    body bytes sent before the status came, seconds until the server closed the
    connection after the status, or None if it stayed open 15 s)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(head)
        answer = asyncio.ensure_future(read_head(reader, timeout=60))
        await asyncio.wait([answer], timeout=0.5)
        sent = 0
        block = b"x" * (64 * KiB)
        while not answer.done() and sent < body_bytes:
            data = block[: min(len(block), body_bytes - sent)]
            frame = f"{len(data):x}\r\n".encode() + data + b"\r\n" if chunked else data
            try:
                writer.write(frame)
                await writer.drain()
            except ConnectionError:
                break
            sent += len(data)
        status = await answer
        closed = await until_closed(reader, 15)
        return status, sent, closed
    finally:
        writer.close()


async def drown(server: Server, size: int) -> tuple[int, int]:
    """Declare ``size`` bytes, wait for the answer, then send them all anyway (an
    attacker does not care for the answer). (status, body bytes the socket took)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(publish_head(server.port, size))
        status = await read_head(reader, timeout=5)
        block, sent = b"x" * MiB, 0
        with contextlib.suppress(ConnectionError):
            while sent < size:
                writer.write(block)
                await writer.drain()
                sent += len(block)
        return status, sent
    finally:
        writer.close()


async def attack_big_declared(run: Run, server: Server) -> Row:
    reps = run.size(10, 3)
    size = 100 * MiB
    before = server.rss()
    with RssPeak(server.proc.pid) as peak:
        results = [await drown(server, size) for _ in range(reps)]
    statuses = [status for status, _ in results]
    sent = sum(s for _, s in results)
    growth = (peak.peak - before) / MiB
    held = statuses == [413] * reps and growth < 20
    return Row(
        "REST POST declaring `Content-Length: 100 MiB` (API key), the body sent anyway "
        "after the answer",
        f"{reps} requests ({n(sent / MiB)} MiB of body sent)",
        f"{statuses.count(413)}/{reps} answered 413 before a byte of the body was sent; "
        f"server RSS peak {growth:+.1f} MB over {before / MiB:.0f} MB",
        held,
    )


async def attack_chunked(run: Run, server: Server, limit: int) -> Row:
    reps = run.size(10, 3)
    jobs = [
        send_then_answer(server, publish_head(server.port, None), 16 * MiB, chunked=True)
        for _ in range(reps)
    ]
    mark, before = server.mark(), server.rss()
    with RssPeak(server.proc.pid) as peak:
        results = await bounded(jobs, 5)
    growth = (peak.peak - before) / MiB
    await asyncio.sleep(0.5)
    logged = sum(
        "POST /rooms/chat:body/messages" in line and " 413 " in line
        for line in server.log_since(mark).splitlines()
    )
    statuses = [status for status, _, _ in results]
    most = max(sent for _, sent, _ in results)
    # The server answers 413 at the limit and drops the rest as it comes (a lingering
    # close bounded by handshake_timeout), so a client still sending reads its 413.
    held = logged == reps and statuses.count(413) == reps and growth < 20
    return Row(
        f"REST POST, chunked body of up to 16 MiB (API key; max_body_bytes {limit // KiB} KiB)",
        f"{reps} requests",
        f"{logged}/{reps} answered 413 at the limit (the server's access log); the client, "
        f"sending up to {most / MiB:.1f} MiB, read the 413 in {statuses.count(413)}/{reps} "
        f"(the rest dropped unread as it came), a connection reset in "
        f"{statuses.count(0)}/{reps}; server RSS peak {growth:+.1f} MB",
        held,
    )


async def attack_no_credentials(run: Run, server: Server) -> Row:
    reps = run.size(10, 3)
    declared = [
        send_then_answer(server, publish_head(server.port, 20 * MiB, False), 20 * MiB)
        for _ in range(reps)
    ]
    chunked = [
        send_then_answer(server, publish_head(server.port, None, False), 20 * MiB, chunked=True)
        for _ in range(reps)
    ]
    first = await bounded(declared, 5)
    second = await bounded(chunked, 5)
    before_body = sum(sent == 0 for _, sent, _ in first + second)
    held = (
        before_body == 2 * reps
        and all(s in (401, 413) for s, _, _ in first)
        and all(s == 401 for s, _, _ in second)
    )
    return Row(
        "REST POST of 20 MiB without credentials: `Content-Length`, and chunked",
        f"{2 * reps} requests",
        f"declared: {tally([s for s, _, _ in first])}; chunked: "
        f"{tally([s for s, _, _ in second])}; {before_body}/{2 * reps} answered before a "
        "byte of the body was sent",
        held,
    )


async def stall(server: Server, declared: int) -> tuple[int, float | None, float | None]:
    """Declare ``declared`` bytes, send 1 KB, then nothing. (status, seconds from the
    last byte to the status, seconds from the last byte to the close)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(publish_head(server.port, declared) + b"x" * 1000)
        await writer.drain()
        start = time.monotonic()
        status = await read_head(reader, timeout=30)
        answered = time.monotonic() - start if status else None
        closed = await until_closed(reader, 30)
        return status, answered, None if closed is None else time.monotonic() - start
    finally:
        writer.close()


def seconds_range(values: list[float | None]) -> str:
    seen = [v for v in values if v is not None]
    if not seen:
        return "never"
    return f"{min(seen):.2f}-{max(seen):.2f} s"


async def attack_stall(run: Run, server: Server, limit: int) -> list[Row]:
    reps = run.size(20, 5)
    body_timeout = run.opts.body_timeout
    handshake_timeout = run.opts.handshake_timeout
    huge = await asyncio.gather(*(stall(server, GiB) for _ in range(reps)))
    small = await asyncio.gather(*(stall(server, limit // 2) for _ in range(reps)))
    huge_closed = [c for _, _, c in huge]
    small_closed = [c for _, _, c in small]
    rows = [
        Row(
            "REST POST declaring 1 GiB (API key) that sends 1 KB and stalls",
            f"{reps} connections at once",
            f"{tally([s for s, _, _ in huge])} at once; {sum(c is not None for c in huge_closed)}"
            f"/{reps} closed {seconds_range(huge_closed)} after the last byte "
            f"(handshake_timeout {handshake_timeout:g} s: the unread rest of a refused body)",
            all(s == 413 for s, _, _ in huge)
            and all(c is not None and c < handshake_timeout + 2 for c in huge_closed),
        ),
        Row(
            f"REST POST declaring {limit // 2 // KiB} KiB (within the limit, API key) that "
            "sends 1 KB and stalls",
            f"{reps} connections at once",
            f"{tally([s for s, _, _ in small])} {seconds_range([a for _, a, _ in small])} after "
            f"the last byte (body_timeout {body_timeout:g} s); "
            f"{sum(c is not None for c in small_closed)}/{reps} closed",
            all(s == 408 for s, _, _ in small)
            and all(c is not None and c < body_timeout + 2 for c in small_closed),
        ),
    ]
    return rows


# - slow handshakes


HANDSHAKE = (
    b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: " + WS_KEY.encode() + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


async def dribble(port: int, interval: float, give_up: float) -> float | None:
    """Send a WebSocket handshake one byte every ``interval`` seconds (nothing at all
    if ``interval`` is 0); seconds until the server closes, or None if it did not
    within ``give_up`` seconds."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    start = time.monotonic()
    try:
        for byte in HANDSHAKE if interval else b"":
            try:
                writer.write(bytes([byte]))
                await writer.drain()
            except ConnectionError:
                return time.monotonic() - start
            left = give_up - (time.monotonic() - start)
            if left <= 0:
                return None
            closed = await until_closed(reader, min(interval, left))
            if closed is not None:
                return time.monotonic() - start
        rest = await until_closed(reader, max(0.0, give_up - (time.monotonic() - start)))
        return None if rest is None else time.monotonic() - start
    finally:
        writer.close()


async def readyz_latency(server: Server, until: asyncio.Future[Any]) -> list[float]:
    """GET /readyz every 0.5 s until ``until`` is done; each answer's seconds (a
    refused or failed one counts as infinity)."""
    times = []
    async with httpx.AsyncClient(timeout=10) as http:
        while not until.done():
            start = time.monotonic()
            try:
                ok = (await http.get(f"{server.http}/readyz")).status_code == 200
            except httpx.HTTPError:
                ok = False
            times.append(time.monotonic() - start if ok else float("inf"))
            await asyncio.wait([until], timeout=0.5)
    return times


async def attack_slow(run: Run, server: Server) -> list[Row]:
    timeout = run.opts.handshake_timeout
    give_up = timeout + 15
    rows = []
    for label, count, interval in (
        ("sockets sending `GET /ws` and its headers one byte every 2 s",
         run.size(400, 100), 2.0),
        ("sockets that connect and send nothing", run.size(100, 50), 0.0),
    ):  # fmt: skip
        start = time.monotonic()
        attack = asyncio.gather(*(dribble(server.port, interval, give_up) for _ in range(count)))
        latencies = await readyz_latency(server, attack)
        closed: list[float | None] = attack.result()
        took = time.monotonic() - start
        done = [c for c in closed if c is not None]
        worst = max(latencies, default=float("inf"))
        rows.append(
            Row(
                label,
                f"{count} at once",
                f"{len(done)}/{count} closed by the server, {seconds_range(done)} after "
                f"connecting (handshake_timeout {timeout:g} s; the attack took {took:.1f} s); "
                f"/readyz answered {sum(s < float('inf') for s in latencies)}/{len(latencies)} "
                f"meanwhile, slowest "
                f"{worst * 1000:.0f} ms",
                len(done) == count and max(done) < timeout + 2 and worst < 5,
            )
        )
    return rows


# - log flooding


def invalid_utf8_frame() -> bytes:
    return Frame(Opcode.TEXT, b'{"op":"\xff\xfe"}').serialize(mask=True, extensions=[])


async def utf8_connection(port: int, frames: int) -> int | None:
    """A WebSocket (no credentials) that sends ``frames`` invalid UTF-8 text frames;
    the close code it gets (None: none)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(ws_head("/ws", port))
        if await read_head(reader) != 101:
            return None
        writer.write(invalid_utf8_frame() * frames)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        try:
            async with asyncio.timeout(10):
                head = await reader.readexactly(4)
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            return None
        return int.from_bytes(head[2:4]) if head[:1] == b"\x88" else None
    finally:
        writer.close()


def error_lines(text: str) -> tuple[int, int]:
    """(ERROR lines, traceback lines) of a log slice, text or JSON."""
    lines = text.splitlines()
    json_levels = ('"level":"error"', '"level":"critical"')
    errors = sum(
        line.startswith(("ERROR", "CRITICAL")) or any(level in line for level in json_levels)
        for line in lines
    )
    tracebacks = sum("Traceback" in line or line.startswith("  File ") for line in lines)
    return errors, tracebacks


async def attack_utf8(run: Run, server: Server) -> Row:
    conns, frames = run.size(200, 50), 10
    mark = server.mark()
    before = scrape(server)["roomcast_peer_log_dropped_total"]
    codes = await bounded([utf8_connection(server.port, frames) for _ in range(conns)], 50)
    await asyncio.sleep(1.0)
    dropped = scrape(server)["roomcast_peer_log_dropped_total"] - before
    text = server.log_since(mark)
    errors, tracebacks = error_lines(text)
    peer = sum("not UTF-8" in line for line in text.splitlines())
    return Row(
        f"WebSocket text frames that are not UTF-8, no credentials ({frames} per connection)",
        f"{conns} connections, {n(conns * frames)} frames",
        f"closes: {tally(codes)}; {errors} ERROR and {tracebacks} traceback lines; {peer} "
        f"peer-log lines, {dropped:.0f} more counted in roomcast_peer_log_dropped_total",
        codes == [1007] * conns and errors == 0 and tracebacks == 0,
    )


def stalled_stream(port: int, token: str) -> socket.socket:
    """An SSE stream whose client reads its status line and then nothing."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    sock.sendall(request_head("GET", "/events?room=chat:stall", port,
                              [("Authorization", f"Bearer {token}")], close=False))  # fmt: skip
    if not sock.recv(12).startswith(b"HTTP/1.1 200"):
        raise RuntimeError("the stalled SSE stream was not opened")
    return sock


async def attack_sse_stall(run: Run, server: Server) -> Row:
    count = run.size(20, 5)
    mark = server.mark()
    before = scrape(server)
    socks = [await asyncio.to_thread(stalled_stream, server.port, hs256()) for _ in range(count)]
    try:
        published, open_streams = 0, count
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient(timeout=10, headers={"X-API-Key": API_KEY}) as http:
            url = f"{server.http}/rooms/chat:stall/messages"
            while open_streams and time.monotonic() < deadline:
                for _ in range(20):
                    await http.post(url, json={"data": "x" * 60_000})
                    published += 1
                open_streams = int(scrape(server)['roomcast_connections{transport="sse"}'])
            while open_streams and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                open_streams = int(scrape(server)['roomcast_connections{transport="sse"}'])
        await asyncio.sleep(run.opts.handshake_timeout)  # sends that time out meanwhile
        after = scrape(server)
    finally:
        for sock in socks:
            sock.close()
    evicted = sum(
        after.get(k, 0) - before.get(k, 0) for k in after if k.startswith("roomcast_evictions")
    )
    text = server.log_since(mark)
    errors, tracebacks = error_lines(text)
    lines = sum("event stream" in line for line in text.splitlines())
    return Row(
        "SSE streams that stop reading (the socket kept open) until they are evicted",
        f"{count} streams, {published} publishes of 60 KB",
        f"{count - open_streams}/{count} ended ({evicted:.0f} evictions in /metrics); "
        f"{errors} ERROR and {tracebacks} traceback lines; {lines} peer-log lines",
        open_streams == 0 and errors == 0 and tracebacks == 0,
    )


# - presented credentials


def credential_cases(token: str) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(name, target, headers): a valid credential next to one that cannot hold."""
    key, bearer = ("X-API-Key", API_KEY), ("Authorization", f"Bearer {API_KEY}")
    publish, stats = "/rooms/chat:cred/messages", "/stats"
    sse = "/events?room=chat:cred"
    cases = []
    for target in (publish, stats):
        cases += [
            ("empty Authorization + key", target, [key, ("Authorization", "")]),
            ("Basic Authorization + key", target, [key, ("Authorization", "Basic dTpw")]),
            ("`Bearer` without token + key", target, [key, ("Authorization", "Bearer")]),
            ("two bearer tokens in one header", target, [("Authorization", f"Bearer {API_KEY} x")]),
            ("invalid bearer + key", target, [key, ("Authorization", "Bearer nope")]),
            ("empty X-API-Key + bearer key", target, [bearer, ("X-API-Key", "")]),
            ("wrong X-API-Key + bearer key", target, [bearer, ("X-API-Key", "nope")]),
            ("two Authorization headers, both the key", target, [bearer, bearer]),
            ("two Authorization headers, key + Basic", target,
             [bearer, ("Authorization", "Basic dTpw")]),
            ("two X-API-Key headers, key + wrong", target, [key, ("X-API-Key", "nope")]),
        ]  # fmt: skip
    cases += [
        ("SSE: Basic Authorization + ?token", f"{sse}&token={token}",
         [("Authorization", "Basic dTpw")]),
        ("SSE: empty ?token= + bearer", f"{sse}&token=", [("Authorization", f"Bearer {token}")]),
        ("SSE: two tokens (header, query)", f"{sse}&token={hs256()}",
         [("Authorization", f"Bearer {token}")]),
        ("SSE: empty Authorization + ?token", f"{sse}&token={token}", [("Authorization", "")]),
    ]  # fmt: skip
    return cases


async def credential_status(server: Server, target: str, headers: Headers) -> int:
    port = server.port
    if target.startswith("/rooms/"):
        body = b'{"data": 1}'
        headers = [*headers, ("Content-Type", "application/json"), ("Content-Length", "11")]
        return await exchange(port, request_head("POST", target, port, headers), body)
    return await exchange(port, request_head("GET", target, port, headers))


async def attack_credentials(run: Run, server: Server) -> Row:
    reps = run.size(5, 2)
    token = hs256()
    controls = [
        ("/rooms/chat:cred/messages", [("X-API-Key", API_KEY)]),
        ("/rooms/chat:cred/messages", [("Authorization", f"Bearer {API_KEY}")]),
        ("/stats", [("X-API-Key", API_KEY)]),
        ("/events?room=chat:cred", [("Authorization", f"Bearer {token}")]),
        (f"/events?room=chat:cred&token={token}", []),
    ]
    control = [await credential_status(server, t, h) for t, h in controls]
    cases = credential_cases(token) * reps
    statuses = [await credential_status(server, t, h) for _, t, h in cases]
    accepted = [name for (name, _, _), s in zip(cases, statuses, strict=True) if s != 401]
    ok_controls = sum(s in (200, 201) for s in control)
    return Row(
        "a valid credential next to one that cannot hold: empty, non-Bearer or invalid "
        "`Authorization`, empty or wrong `X-API-Key`, two `Authorization` headers "
        "(REST publish, /stats, SSE)",
        f"{len(cases)} requests ({len(cases) // reps} kinds)",
        f"{statuses.count(401)}/{len(cases)} answered 401"
        + (f" (not 401: {sorted(set(accepted))})" if accepted else "")
        + f"; the valid credentials alone: {ok_controls}/{len(control)} accepted",
        not accepted and ok_controls == len(control),
    )


# - forged tokens


async def ws_outcome(server: Server, token: str) -> str:
    """``accepted``, or how a WebSocket ``connect`` with ``token`` was refused."""
    client = await connect(server.ws, timeout=10, max_size=None)
    try:
        reply = await client.request("connect", token=token)
    except ConnectionClosed:
        return f"close {client.close_code or await client.closed()}"
    finally:
        await client.close()
    return "accepted" if reply.get("ok") else f"error {reply['error']['code']}"


async def http_outcome(server: Server, target: str, token: str) -> str:
    head = request_head("GET", target, server.port, [("Authorization", f"Bearer {token}")])
    status = await exchange(server.port, head)
    return "accepted" if status == 200 else f"HTTP {status}"


async def attack_jwt(run: Run, server: Server) -> Row:
    reps = run.size(3, 1)
    forged = forged_tokens(run.keys)
    outcomes: list[str] = []
    accepted: list[str] = []
    for _ in range(reps):
        for name, make in forged:
            for transport in ("ws", "sse", "rest"):
                if transport == "ws":
                    outcome = await ws_outcome(server, make())
                elif transport == "sse":
                    outcome = await http_outcome(server, "/events?room=chat:jwt", make())
                else:
                    outcome = await http_outcome(server, "/rooms/chat:jwt/messages", make())
                outcomes.append(outcome)
                if outcome == "accepted":
                    accepted.append(f"{name} ({transport})")
    controls = [
        await ws_outcome(server, hs256()),
        await http_outcome(server, "/events?room=chat:jwt", hs256()),
        await http_outcome(server, "/rooms/chat:jwt/messages", hs256()),
        await ws_outcome(server, jwt.encode(claims(), run.keys.server, algorithm="RS256")),
    ]
    good = controls.count("accepted")
    return Row(
        f"forged and invalid JWTs ({len(forged)} kinds: "
        + ", ".join(name for name, _ in forged)
        + ") on WebSocket `connect`, SSE and REST",
        f"{len(outcomes)} attempts",
        f"{len(accepted)} accepted"
        + (f" ({sorted(set(accepted))})" if accepted else "")
        + f"; refused as {tally([o for o in outcomes if o != 'accepted'])}; valid HS256 and "
        f"RS256 tokens: {good}/{len(controls)} accepted",
        not accepted and good == len(controls),
    )


# - origins


def foreign_origins(port: int) -> list[str]:
    return [
        "http://127.0.0.1", f"https://127.0.0.1:{port}", "null", f"http://localhost:{port}",
        f"http://127.0.0.1:{port}.evil.example", f"http://127.0.0.1:{port}@evil.example",
        "http://evil.example", "http://127.0.0.1:80", "http://app.example",
        "https://app.example:8443", "https://app.example.evil.example", "file://",
    ]  # fmt: skip


async def origin_status(server: Server, transport: str, origin: str | None) -> int:
    port = server.port
    extra = [] if origin is None else [("Origin", origin)]
    if transport == "ws":
        return await exchange(port, ws_head("/ws", port, extra))
    cookie = ("Cookie", f"roomcast_token={hs256()}")
    return await exchange(port, request_head("GET", "/events?room=chat:o", port, [cookie, *extra]))


async def attack_origins(run: Run, server: Server) -> Row:
    reps = run.size(5, 2)
    origins = foreign_origins(server.port) * reps
    statuses = [await origin_status(server, t, o) for o in origins for t in ("ws", "sse")]
    controls = [
        await origin_status(server, t, o)
        for o in (f"http://127.0.0.1:{server.port}", APP_ORIGIN, None)
        for t in ("ws", "sse")
    ]
    good = sum(s in (101, 200) for s in controls)
    return Row(
        "WebSocket handshakes and cookie-authenticated SSE from other origins: "
        + ", ".join(f"`{o}`" for o in foreign_origins(server.port)).replace(
            str(server.port), "PORT"
        ),
        f"{len(statuses)} requests",
        f"{tally(statuses)}; same origin, the allowed origin and no Origin: {good}/"
        f"{len(controls)} accepted",
        statuses.count(403) == len(statuses) and good == len(controls),
    )


# - read amplification on the memory broker


async def amplify(server: Server, op: str, rooms: list[str]) -> list[str]:
    """``op`` (``history`` or ``subscribe`` then ``unsubscribe``) for each room, over
    a few connections, many requests in flight; each outcome (``ok`` or an error code)."""
    clients = [await connect(server.ws, timeout=30) for _ in range(4)]

    async def one(i: int, room: str) -> str:
        client = clients[i % len(clients)]
        reply = await client.request(op, room=room)
        if not reply.get("ok"):
            return str(reply["error"]["code"])
        if op == "subscribe":
            with contextlib.suppress(ReplyError):
                await client.unsubscribe(room)
        return "ok"

    try:
        return await bounded([one(i, room) for i, room in enumerate(rooms)], 80)
    finally:
        for client in clients:
            await client.close()


async def attack_amplify(run: Run) -> list[Row]:
    reads, max_rooms = run.size(10_000, 2_000), run.size(1_000, 200)
    settings = {"max_rooms": max_rooms, "log_level": "warning", "publish_rate": 0}
    with running_server(run.work, "amplify", settings) as server:
        rss0 = server.rss()
        history = await amplify(server, "history", [f"h:{i}" for i in range(reads)])
        rss1 = server.rss()
        subscribes = await amplify(server, "subscribe", [f"s:{i}" for i in range(reads)])
        rss2 = server.rss()
        hub_rooms = scrape(server)["roomcast_rooms"]
    made = subscribes.count("ok")
    created_by_reads = max_rooms - made
    return [
        Row(
            "`history` of unknown rooms (memory broker)",
            f"{n(reads)} reads",
            f"answered: {tally(history)}; rooms they created: {created_by_reads} (after them "
            f"{n(made)}/{n(max_rooms)} new rooms could still be made: max_rooms={max_rooms}); "
            f"RSS {(rss1 - rss0) / MiB:+.1f} MB",
            history.count("ok") == reads and created_by_reads == 0,
        ),
        Row(
            "subscribe (then unsubscribe) to unknown rooms (memory broker)",
            f"{n(reads)} subscribes",
            f"{tally(subscribes)}: rooms made {n(made)}, bounded by max_rooms={max_rooms}; "
            f"rooms with a subscriber afterwards: {hub_rooms:.0f}; "
            f"RSS {(rss2 - rss1) / MiB:+.1f} MB",
            made <= max_rooms and subscribes.count("ok") + subscribes.count("unavailable") == reads,
        ),
    ]


# -- the run ---------------------------------------------------------------------------------

ATTACKS = ("leak", "startup", "bodies", "slow", "flood", "creds", "jwt", "origins", "amplify")


def timed(label: str) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
    def wrap(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def inner(*args: Any) -> Any:
            start = time.monotonic()
            log(f"{label} ...")
            result = await fn(*args)
            log(f"{label}: {time.monotonic() - start:.1f} s")
            return result

        return inner

    return wrap


async def attack_bodies(run: Run, server: Server) -> list[Row]:
    limit = int(server.settings.get("max_body_bytes") or 64 * KiB + 16 * KiB)
    return [
        await attack_big_declared(run, server),
        await attack_chunked(run, server, limit),
        await attack_no_credentials(run, server),
        *await attack_stall(run, server, limit),
    ]


async def attack_flood(run: Run) -> list[Row]:
    """Each on a server of its own, so that each starts with the peer log's whole
    minute (``peer_log_per_minute``: earlier attacks' refusals use it up too)."""
    with running_server(run.work, "flood-utf8", run.main_settings("text")) as server:
        utf8 = await attack_utf8(run, server)
    with running_server(run.work, "flood-sse", run.main_settings("text")) as server:
        stalled = await attack_sse_stall(run, server)
    return [utf8, stalled]


async def attacks(run: Run, only: set[str]) -> list[Row]:
    rows: list[Row] = []
    if "leak" in only:
        with running_server(run.work, "json", run.main_settings("json")) as server:
            rows.append(await timed("leak (json)")(attack_leak)(run, server))
    if only & {"leak", "bodies", "slow", "creds", "jwt", "origins"}:
        with running_server(run.work, "main", run.main_settings("text")) as server:
            log(f"server pid {server.proc.pid} on {server.http}")
            if "leak" in only:
                rows.insert(0, await timed("leak (text)")(attack_leak)(run, server))
            if "creds" in only:
                rows.append(await timed("creds")(attack_credentials)(run, server))
            if "jwt" in only:
                rows.append(await timed("jwt")(attack_jwt)(run, server))
            if "origins" in only:
                rows.append(await timed("origins")(attack_origins)(run, server))
            if "bodies" in only:
                rows += await timed("bodies")(attack_bodies)(run, server)
            if "slow" in only:
                rows += await timed("slow")(attack_slow)(run, server)
            if server.proc.poll() is not None:
                raise RuntimeError("the server died during the attacks")
    if "flood" in only:
        rows += await timed("flood")(attack_flood)(run)
    if "startup" in only:
        rows.append(await timed("startup")(attack_startup)(run))
    if "amplify" in only:
        rows += await timed("amplify")(attack_amplify)(run)
    rows.append(whole_logs(run))
    return rows


def whole_logs(run: Run) -> Row:
    """ERROR and traceback lines in the whole log of every server that served the
    attacks (the start-up attack's servers, which are meant to fail, left out)."""
    logs = sorted(p for p in run.work.glob("*.log") if not p.name.startswith("startup-"))
    total = errors = tracebacks = 0
    for path in logs:
        text = path.read_text(errors="replace")
        total += len(text.splitlines())
        e, t = error_lines(text)
        errors, tracebacks = errors + e, tracebacks + t
    return Row(
        "all of the above: the logs of the servers that served them",
        f"{len(logs)} servers, {n(total)} log lines",
        f"{errors} ERROR and {tracebacks} traceback lines",
        errors == 0 and tracebacks == 0,
    )


def table(rows: list[Row]) -> str:
    lines = ["| attack | count | result |", "|---|---|---|"]
    for row in rows:
        result = row.result if row.held else f"**FAILED**: {row.result}"
        lines.append(f"| {row.attack} | {row.count} | {result} |")
    return "\n".join(lines)


def options() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller counts (about a minute)")
    p.add_argument(
        "--only", default=",".join(ATTACKS), help="comma-separated: " + ",".join(ATTACKS)
    )
    p.add_argument("--handshake-timeout", type=float, default=3.0, help="the server's (default 3)")
    p.add_argument("--body-timeout", type=float, default=2.0, help="the server's (default 2)")
    p.add_argument("--keep", type=Path, help="copy every server's log into this folder")
    opts = p.parse_args()
    unknown = set(opts.only.split(",")) - set(ATTACKS)
    if unknown:
        p.error(f"unknown attacks: {sorted(unknown)}")
    return opts


def main() -> int:
    opts = options()
    # The HS512 token with the (43-byte) HS256 secret is an attack, not a mistake.
    warnings.filterwarnings("ignore", category=jwt.warnings.InsecureKeyLengthWarning)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="roomcast-attacks-") as tmp:
        run = Run(opts, Keys(), Path(tmp))
        try:
            rows = asyncio.run(attacks(run, set(opts.only.split(","))))
        except Exception as exc:
            log(f"the run failed: {exc!r}")
            return 2
        finally:
            if opts.keep:
                opts.keep.mkdir(parents=True, exist_ok=True)
                for path in Path(tmp).glob("*.log"):
                    shutil.copy(path, opts.keep / path.name)
    mode = "--quick" if opts.quick else "full"
    print(f"roomcast attack run, {time.strftime('%Y-%m-%d')}, {mode}, "
          f"{time.monotonic() - start:.0f} s\n")  # fmt: skip
    print(table(rows))
    return 0 if all(row.held for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
