"""The fan-out contract without the fast path: a real server in a child process
whose uvicorn or websockets is not what roomcast's protocol was built for (a
private name gone, an untested release) comes up with one warning, on uvicorn's
own WebSocket protocol, and still serves: subscribers get every publish in
order, and shutdown closes them (``roomcast serve``: the drain's 3000; an app
mounted under ``roomcast.run``: uvicorn's own 1012)."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from roomcast.testing import free_port
from tests.conftest import ServerProcess, launch, server_env
from tests.e2e.client import Client

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

ROOT = Path(__file__).resolve().parents[2]

CLASS_GONE = (
    "import uvicorn.protocols.websockets.auto  # uvicorn's default keeps its class\n"
    "import uvicorn.protocols.websockets.websockets_sansio_impl as impl\n"
    "del impl.WebSocketsSansIOProtocol  # as if a uvicorn release renamed it\n"
)
UVICORN_NEWER = "import uvicorn\nuvicorn.__version__ = '0.56.0'\n"
WEBSOCKETS_NEWER = "import websockets\nwebsockets.__version__ = '18.0'\n"

SERVE = "from roomcast.cli import main\nsys.exit(main(['serve', '--port', '{port}']))\n"
MOUNTED = (
    "from fastapi import FastAPI\n"
    "import roomcast\n"
    "rc = roomcast.Roomcast(roomcast.Settings())\n"
    "app = FastAPI(lifespan=rc.lifespan)\n"
    "app.include_router(rc.router)\n"
    "roomcast.run(app, port={port})\n"
)


def start(tmp_path: Path, patch: str, server: str) -> ServerProcess:
    port = free_port()
    code = "import sys\n" + patch + server.format(port=port)
    env = server_env(database_url=f"sqlite+aiosqlite:///{tmp_path}/roomcast.db")
    env["PYTHONPATH"] = str(ROOT)
    command = [sys.executable, "-c", code]
    return launch(command, port=port, env=env, cwd=tmp_path, log_path=tmp_path / "server.log")


@pytest.mark.parametrize(
    ("patch", "server", "shutdown_code", "why"),
    [
        (CLASS_GONE, SERVE, 3000, "uvicorn's private protocol changed (ImportError"),
        (UVICORN_NEWER, SERVE, 3000, "uvicorn 0.56.0 is not a tested release"),
        (WEBSOCKETS_NEWER, MOUNTED, 1012, "websockets 18.0 is not a tested release"),
    ],
    ids=["private-class-gone", "uvicorn-untested", "websockets-untested-mounted"],
)
async def test_without_the_fast_path_a_server_still_fans_out_in_order_and_shuts_down(
    tmp_path: Path, patch: str, server: str, shutdown_code: int, why: str
) -> None:
    process = start(tmp_path, patch, server)
    try:
        room = "chat:fallback"
        subscribers = [await Client.open(process.ws, f"sub{i}") for i in range(3)]
        publisher = await Client.open(process.ws, "pub")
        for client in subscribers:
            assert (await client.request("subscribe", room=room))["ok"]
        for n in range(50):
            reply = await publisher.request("publish", room=room, data={"n": n})
            assert reply["ok"], reply
        for client in subscribers:
            got = await client.messages(50)
            assert [m["data"]["n"] for m in got] == list(range(50))
            assert [m["offset"] for m in got] == list(range(1, 51))
        process.process.send_signal(signal.SIGTERM)
        codes = [await client.closed() for client in [*subscribers, publisher]]
        assert codes == [shutdown_code] * 4
        # uvicorn re-raises the SIGTERM it captured once shutdown is complete.
        assert await asyncio.to_thread(process.process.wait, 15) in (0, -signal.SIGTERM)
    finally:
        process.stop()
    log = process.log()
    warnings = [line for line in log.splitlines() if "WebSocket fast path off" in line]
    assert len(warnings) == 1, log
    assert why in warnings[0]
    assert "serving with uvicorn's WebSocketsSansIOProtocol" in warnings[0]
    assert "Traceback" not in log
