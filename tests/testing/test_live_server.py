"""LiveServer: a host app under a real uvicorn in a thread, lifespan and all."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

import roomcast.testing
from roomcast import Settings
from roomcast.testing import LiveServer, LiveServerError, connect, port_open
from roomcast.transports.uvicorn_ws import RoomcastWebSocketProtocol

from ..test_layers import PKG, imports_of
from .conftest import Host, host_app

pytestmark = pytest.mark.timeout(30)


def live_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("LiveServer:")]


# -- starting --------------------------------------------------------------------------


def test_when_start_returns_the_hosts_lifespan_has_run(host: Host) -> None:
    with LiveServer(host.app) as server:
        assert host.lifespan == ["startup"]
        assert httpx.get(f"{server.url}/started").json() == {"started": True}


def test_roomcasts_rest_routes_answer_under_the_hosts_prefix(server: LiveServer) -> None:
    assert httpx.get(f"{server.url}/rt/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{server.url}/rt/rooms").status_code == 200


def test_port_zero_binds_a_free_port_that_the_urls_name(host: Host) -> None:
    server = LiveServer(host.app)
    with pytest.raises(RuntimeError, match="chosen when the LiveServer starts"):
        _ = server.port
    with server:
        assert server.port > 0
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert server.ws_url() == f"ws://127.0.0.1:{server.port}/ws"
        assert server.ws_url("/rt/ws") == f"ws://127.0.0.1:{server.port}/rt/ws"
        assert server.ws_url("rt/ws") == f"ws://127.0.0.1:{server.port}/rt/ws"
        assert server.running


def test_a_lifespan_that_raises_makes_start_raise_with_its_error() -> None:
    server = LiveServer(host_app(fail="the host's startup failed: boom").app)
    with pytest.raises(LiveServerError, match="the host's startup failed: boom"):
        server.start()
    assert not server.running
    assert live_threads() == []
    assert not port_open(server.port)


def test_an_import_string_that_does_not_import_makes_start_raise() -> None:
    with (
        pytest.raises(LiveServerError, match="no_such_module"),
        LiveServer("tests.testing.no_such_module:app"),
    ):
        pass  # pragma: no cover
    assert live_threads() == []


def test_an_import_string_is_imported_and_its_lifespan_run() -> None:
    with LiveServer("tests.testing.importable_app:app") as server:
        answer = httpx.get(f"{server.url}/greeting").json()
    assert answer == {"greeting": "hello from the lifespan"}


def test_a_factory_is_called_with_factory_true() -> None:
    with LiveServer("tests.testing.importable_app:make_app", factory=True) as server:
        assert httpx.get(f"{server.url}/greeting").status_code == 200


def test_a_startup_slower_than_start_timeout_raises_timeout_error() -> None:
    server = LiveServer(host_app(startup_delay=5).app, start_timeout=0.3)
    with pytest.raises(TimeoutError, match=r"did not start within 0\.3 s"):
        server.start()
    assert live_threads() == []


def test_a_live_server_starts_once(server: LiveServer) -> None:
    with pytest.raises(RuntimeError, match="starts once"):
        server.start()


def test_options_that_would_serve_elsewhere_are_refused(host: Host) -> None:
    for option in ({"fd": 3}, {"uds": "/tmp/x.sock"}, {"workers": 2}, {"reload": True}):
        with pytest.raises(TypeError, match="not allowed"):
            LiveServer(host.app, **option)


# -- stopping --------------------------------------------------------------------------


def test_leaving_the_block_runs_the_lifespan_exit_ends_the_thread_and_frees_the_port(
    host: Host,
) -> None:
    with LiveServer(host.app) as server:
        port = server.port
        assert live_threads() != []
    assert host.lifespan == ["startup", "shutdown"]
    assert live_threads() == []
    assert not port_open(port)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # free again


def test_a_new_server_can_serve_on_the_port_of_a_stopped_one() -> None:
    with LiveServer(host_app().app) as first:
        port = first.port
    with LiveServer(host_app().app, port=port) as second:
        assert httpx.get(f"{second.url}/rt/healthz").status_code == 200


def test_stop_may_be_called_again_and_before_start(host: Host) -> None:
    LiveServer(host.app).stop()
    server = LiveServer(host.app).start()
    server.stop()
    server.stop()
    assert not server.running


# -- the async form --------------------------------------------------------------------


async def test_the_async_form_does_not_block_the_callers_loop() -> None:
    host = host_app(startup_delay=0.3)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        async with LiveServer(host.app) as server:
            assert ticks >= 10  # the loop ran while the lifespan slept 0.3 s
            async with httpx.AsyncClient() as http:
                response = await http.get(f"{server.url}/started")
            assert response.json() == {"started": True}
    finally:
        ticker.cancel()
    assert host.lifespan == ["startup", "shutdown"]
    assert live_threads() == []


# -- what runs where -------------------------------------------------------------------


async def test_acall_runs_a_coroutine_on_the_servers_loop(server: LiveServer) -> None:
    async def where() -> tuple[asyncio.AbstractEventLoop, str]:
        return asyncio.get_running_loop(), threading.current_thread().name

    loop, thread = await server.acall(where())
    assert loop is not asyncio.get_running_loop()
    assert thread == f"LiveServer:{server.port}"
    assert server.call(where()) == (loop, thread)


async def test_acall_that_outlasts_its_timeout_raises_timeout_error(server: LiveServer) -> None:
    with pytest.raises(TimeoutError, match=r"no result within 0\.1 s"):
        await server.acall(asyncio.sleep(5), timeout=0.1)


def test_call_on_a_stopped_server_raises(host: Host) -> None:
    with LiveServer(host.app) as server:
        pass
    coro = asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="not running"):
        server.call(coro)


def test_websockets_are_served_by_roomcasts_protocol_unless_ws_is_given(host: Host) -> None:
    with LiveServer(host.app) as server:
        assert server.uvicorn_server.config.ws_protocol_class is RoomcastWebSocketProtocol
    with LiveServer(host_app().app, ws="websockets-sansio") as server:
        assert server.uvicorn_server.config.ws_protocol_class is not RoomcastWebSocketProtocol


async def test_settings_give_the_websocket_limits_roomcast_serve_uses() -> None:
    settings = Settings(ws_max_size=1000)
    async with (
        LiveServer(host_app(settings).app, settings=settings) as server,
        connect(server.ws_url("/rt/ws")) as client,
    ):
        await client.send({"op": "ping", "pad": "x" * 2000})
        assert await client.closed() == 1009


# -- the package -----------------------------------------------------------------------


def test_importing_the_test_kit_starts_nothing_and_needs_no_pytest() -> None:
    code = (
        "import sys, threading\n"
        "import roomcast.testing\n"
        "assert threading.active_count() == 1, threading.enumerate()\n"
        "assert 'pytest' not in sys.modules\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=20, check=False
    )
    assert result.returncode == 0, result.stderr


def test_the_server_never_imports_the_test_kit() -> None:
    importers = [
        f"{path.relative_to(PKG)}:{line}"
        for path in PKG.rglob("*.py")
        if path.relative_to(PKG).parts[0] != "testing"
        for module, line in imports_of(path)
        if module == "roomcast.testing" or module.startswith("roomcast.testing.")
    ]
    assert importers == []


def test_the_test_kit_imports_no_pytest() -> None:
    folder = PKG / "testing"
    found = [
        f"{path.name}:{line}"
        for path in folder.glob("*.py")
        for module, line in imports_of(path)
        if module.split(".")[0] in ("pytest", "_pytest")
    ]
    assert found == []


def test_all_is_sorted_and_names_what_the_package_exports() -> None:
    names = roomcast.testing.__all__
    assert names == sorted(names)
    for name in names:
        assert getattr(roomcast.testing, name) is not None


def test_an_open_http_stream_does_not_hold_stop_past_the_graceful_timeout(host: Host) -> None:
    server = LiveServer(host.app, timeout_graceful_shutdown=1.0).start()
    with (
        httpx.Client(timeout=10) as http,
        http.stream("GET", f"{server.url}/rt/rooms/r/events") as response,
    ):
        assert response.status_code == 200
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 5
    assert live_threads() == []
