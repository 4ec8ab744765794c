"""What hostile input leaves in a real `roomcast serve` process's log: no credential,
no secret setting, and no flood (issue 15: "Secrets and hostile input").

A peer's bad input (invalid UTF-8, an unparsable request, a stream it stopped
reading) is one INFO line at most, rate-limited per process (peerlog.py), never a
traceback; the lines past the limit are counted in /metrics."""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from websockets.frames import Frame, Opcode

from .. import forkserver
from ..auth.keys import SECRET, hs256, rsa_key, signed
from ..conftest import ServerProcess, server_env
from .client import Client, slow_reader_socket
from .test_observability import scrape, value
from .test_robustness import close_code_of, raw_websocket

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

ServerFactory = Callable[..., ServerProcess]


def token(sub: str = "ann") -> str:
    return hs256(sub=sub, exp=int(time.time() + 300), rooms=["chat:*"])


def lines_with(server: ServerProcess, text: str) -> list[str]:
    return [line for line in server.log().splitlines() if text in line]


# -- credentials in query strings -----------------------------------------------------


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_a_token_under_an_encoded_parameter_name_authenticates_but_is_never_logged(
    server_factory: ServerFactory, log_format: str
) -> None:
    server = server_factory(auth="jwt", jwt_secret=SECRET, log_level="info", log_format=log_format)
    ws_token, sse_token = token("ann"), token("bob")
    ann = await Client.open(f"{server.ws}?%74oken={ws_token}&name=x")
    reply = await ann.request("subscribe", room="chat:enc")
    assert reply["ok"], reply  # the decoded name authenticated the handshake
    await ann.close()
    url = f"{server.http}/events?room=chat:enc&tok%65n={sse_token}"
    async with httpx.AsyncClient(timeout=10) as http, http.stream("GET", url) as response:
        assert response.status_code == 200  # a stream of a private room: authenticated
    await asyncio.sleep(0.5)

    text = server.log()
    for jwt in (ws_token, sse_token):
        for part in jwt.split("."):
            assert part not in text
    assert "%74oken=[redacted]" in text  # the handshake line, as uvicorn writes it
    assert "tok%65n=[redacted]" in text  # the access line
    if log_format == "json":
        access = [json.loads(line) for line in lines_with(server, '"uvicorn.access"')]
        assert any(line["path"].endswith("tok%65n=[redacted]") for line in access)


# -- secret settings at start-up --------------------------------------------------------


def run_serve(tmp_path: Path, **settings: object) -> str:
    """Everything `roomcast serve` prints (at debug) with ``settings``: until it exits,
    or for 2 s more once it serves (then SIGTERM and its shutdown)."""
    env = server_env(log_level="debug", **settings)
    command = [sys.executable, "-m", "roomcast", "serve", "--port", "0"]
    out = tmp_path / "serve.log"
    with out.open("wb") as sink:  # forked like every test server (tests/forkserver.py)
        process = forkserver.popen(command, env, tmp_path, out) or subprocess.Popen(
            command, env=env, cwd=tmp_path, stdout=sink, stderr=sink
        )
    serving_since = None
    deadline = time.monotonic() + 20
    while process.poll() is None and time.monotonic() < deadline:
        if serving_since is None and b"Uvicorn running" in out.read_bytes():
            serving_since = time.monotonic()
        if serving_since is not None and time.monotonic() - serving_since > 2:
            break
        time.sleep(0.05)
    process.terminate()
    process.wait(15)
    return out.read_text(errors="replace")


def assert_no_part_of(secret: str, output: str) -> None:
    """Not the secret, nor any 6 characters of it in a row."""
    pieces = {secret[i : i + 6] for i in range(len(secret) - 5)}
    leaked = sorted(piece for piece in pieces if piece in output)
    assert not leaked, f"{leaked} of the secret in:\n{output}"


PASSWORD = "pw" + secrets.token_hex(12)


@pytest.mark.parametrize(
    ("settings", "secret"),
    [
        ({"jwt_secret": "s" + PASSWORD[:30]}, "s" + PASSWORD[:30]),  # 31 bytes: too short
        ({"auth": "jwt", "jwt_secret": "j" + PASSWORD[:20], "jwt_algorithms": "HS999"},
         "j" + PASSWORD[:20]),
        ({"api_keys": PASSWORD, "ws_max_size": "0"}, PASSWORD),
        ({"redis_url": f"notaurl:{PASSWORD}@host"}, PASSWORD),
        ({"redis_url": f"redis://:{PASSWORD}@127.0.0.1:notaport/0"}, PASSWORD),
        ({"redis_url": f"redis://:{PASSWORD}@[::1/0"}, PASSWORD),
        # Nothing listens: it serves after redis_timeout (5 s by default) and reconnects.
        ({"redis_url": f"redis://u:{PASSWORD}@127.0.0.1:1/0", "redis_timeout": "0.5"}, PASSWORD),
        ({"database_url": f"garbage:{PASSWORD}@host"}, PASSWORD),
        ({"database_url": f"nosuchdriver://app:{PASSWORD}@127.0.0.1/db"}, PASSWORD),
        ({"database_url": f"postgresql+asyncpg://app:{PASSWORD}@127.0.0.1:x/db"}, PASSWORD),
        ({"database_url": f"postgresql+asyncpg://app:{PASSWORD}@127.0.0.1:1/db"}, PASSWORD),
        ({"auth": "jwt", "jwt_jwks_url": f"http://u:{PASSWORD}@127.0.0.1:1/jwks.json",
          "jwt_algorithms": "HS256"}, PASSWORD),
        ({"jwt_jwks_url": f"not a url {PASSWORD}", "workers": "0"}, PASSWORD),
    ],
    ids=lambda v: next(iter(v)) if isinstance(v, dict) else "",
)  # fmt: skip
def test_a_bad_setting_never_prints_a_secret_at_startup(
    tmp_path: Path, settings: dict[str, str], secret: str
) -> None:
    output = run_serve(tmp_path, **settings)
    assert output.strip()  # it said something (an error, or that it serves)
    assert_no_part_of(secret, output)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"redis_url": f"redis://:{PASSWORD}@127.0.0.1:x/0"},
         "ROOMCAST_REDIS_URL: the port must be 0 to 65535"),
        ({"redis_url": f"http://u:{PASSWORD}@127.0.0.1/0"},
         "ROOMCAST_REDIS_URL: the scheme must be one of redis, rediss, unix"),
        ({"database_url": f"nosuchdriver://app:{PASSWORD}@127.0.0.1/db"},
         "ROOMCAST_DATABASE_URL: no SQLAlchemy dialect or driver 'nosuchdriver' is installed"),
        ({"database_url": f"::{PASSWORD}"}, "ROOMCAST_DATABASE_URL: not a SQLAlchemy URL"),
    ],
    ids=["redis-port", "redis-scheme", "database-driver", "database-garbage"],
)  # fmt: skip
def test_an_unusable_service_url_is_refused_naming_its_setting(
    tmp_path: Path, settings: dict[str, str], message: str
) -> None:
    output = run_serve(tmp_path, **settings)
    assert f"roomcast: {message}" in output  # one line, exit before serving
    assert "Traceback" not in output
    assert "Uvicorn running" not in output
    assert_no_part_of(PASSWORD, output)


async def test_neither_a_redis_outage_nor_a_jwks_outage_prints_a_url_password(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(
        log_level="debug",
        redis_url=f"redis://:{PASSWORD}@127.0.0.1:1/0",  # nothing listens: reconnect lines
        startup_check="false",  # serve anyway (else: one line, exit 2)
        redis_timeout=0.5,
        redis_backoff_cap=0.2,
        auth="jwt",
        jwt_jwks_url=f"http://u:{PASSWORD}@127.0.0.1:1/jwks.json",
    )
    client = await Client.open(server.ws)
    rs256 = signed(rsa_key(), "RS256", sub="ann", exp=int(time.time() + 60), kid="k1")
    await client.send({"op": "connect", "id": 1, "token": rs256})
    assert await close_code_of(client) == 1013  # the JWKS cannot be fetched: try again later
    await asyncio.sleep(1.5)
    text = server.log()
    assert "redis pub/sub connect to main failed" in text  # the outage was logged...
    assert_no_part_of(PASSWORD, text)  # ...without the URL's password


# -- peer noise -------------------------------------------------------------------------


def invalid_utf8_frame() -> bytes:
    return Frame(Opcode.TEXT, b'{"op":"\xff\xfe"}').serialize(mask=True, extensions=[])


def close_code_for_invalid_utf8(port: int) -> int:
    """Open a WebSocket, send a text frame that is not UTF-8; the close code it gets."""
    with raw_websocket(port) as sock:
        sock.sendall(invalid_utf8_frame())
        head = sock.recv(4)
    assert head[:1] == b"\x88", head  # a close frame
    return int.from_bytes(head[2:4])


async def test_invalid_utf8_frames_log_one_line_each_up_to_the_limit_and_count_the_rest(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(log_level="info", peer_log_per_minute=5)
    before = value(await asyncio.to_thread(scrape, server), "roomcast_peer_log_dropped_total")
    codes = [await asyncio.to_thread(close_code_for_invalid_utf8, server.port) for _ in range(40)]
    assert codes == [1007] * 40  # the close the peer gets is unchanged
    await asyncio.sleep(0.3)
    after = value(await asyncio.to_thread(scrape, server), "roomcast_peer_log_dropped_total")

    text = server.log()
    assert "Traceback" not in text
    assert "ERROR" not in text
    assert len(lines_with(server, "not UTF-8")) == 5
    assert after - before == 35


async def test_an_evicted_stream_whose_peer_keeps_its_socket_open_logs_one_line(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(
        log_level="info", send_timeout=1, outbox_max_bytes=64 * 1024, sse_keepalive=0.5
    )
    sock = slow_reader_socket(server.port)
    try:
        sock.sendall(f"GET /events?room=chat:full HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n"
                     .encode())  # fmt: skip
        assert sock.recv(12).startswith(b"HTTP/1.1 200")  # then it reads nothing more
        async with httpx.AsyncClient(timeout=10) as http:
            for _ in range(200):  # 12 MB: more than the kernel's socket buffers hold
                url = f"{server.http}/rooms/chat:full/messages"
                assert (await http.post(url, json={"data": "x" * 60_000})).status_code < 300
        deadline = time.monotonic() + 20
        while not lines_with(server, "event stream") and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        await asyncio.sleep(2)  # more sends would time out meanwhile
    finally:
        sock.close()
    text = server.log()
    assert "Traceback" not in text
    assert "ERROR" not in text
    dropped = lines_with(server, "event stream")
    assert len(dropped) == 1, text
    assert "the peer read nothing" in dropped[0]


def send_raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
        return answer


async def test_unparsable_requests_and_unknown_upgrades_are_rate_limited_peer_lines(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(log_level="info", peer_log_per_minute=4)
    for _ in range(10):
        answer = await asyncio.to_thread(send_raw, server.port, b"NOT HTTP AT ALL\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 400")
    upgrade = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
    for _ in range(10):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        sock.sendall(upgrade)
        sock.close()
    await asyncio.sleep(0.5)
    samples = await asyncio.to_thread(scrape, server)
    text = server.log()
    assert "Invalid HTTP request received" not in text  # uvicorn's own lines, replaced
    assert "Unsupported upgrade request" not in text
    assert len(lines_with(server, "does not parse")) == 4  # the limit
    assert value(samples, "roomcast_peer_log_dropped_total") == 6 + 10


async def test_no_peer_lines_at_all_with_a_limit_of_zero(server_factory: ServerFactory) -> None:
    server = server_factory(log_level="info", peer_log_per_minute=0)
    assert await asyncio.to_thread(close_code_for_invalid_utf8, server.port) == 1007
    answer = await asyncio.to_thread(send_raw, server.port, b"NOT HTTP\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400")
    await asyncio.sleep(0.3)
    assert value(await asyncio.to_thread(scrape, server), "roomcast_peer_log_dropped_total") == 2
    assert not lines_with(server, "not UTF-8")
    assert not lines_with(server, "does not parse")
    assert not lines_with(server, "Invalid")
