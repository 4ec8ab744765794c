"""Choosing the WebSocket protocol: roomcast's own only with the uvicorn and
websockets releases it was tested with, uvicorn's own otherwise (one warning),
and nothing of uvicorn's private modules needed to import roomcast."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import uvicorn
import websockets
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

import roomcast
from roomcast.transports import fastpath
from roomcast.transports.uvicorn_ws import RoomcastWebSocketProtocol

ROOT = Path(__file__).resolve().parents[2]
PRIVATE = "uvicorn.protocols.websockets.websockets_sansio_impl"


@pytest.fixture
def fresh_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in a process that has not chosen yet (the choice is made once per process)."""
    monkeypatch.setattr(fastpath, "_chosen", None)
    monkeypatch.setattr(fastpath, "_why_not", None)


def bounds_in_pyproject() -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    found = {}
    for line in dependencies:
        match = re.fullmatch(r"([\w-]+)(?:\[[\w,]+\])?(.*)", line)
        assert match is not None, line
        name, specifiers = match.groups()
        if name in fastpath.TESTED:
            spec = dict(re.findall(r"(>=|<)([\w.]+)", specifiers))
            assert set(spec) == {">=", "<"}, f"{line}: needs a lower and an upper bound"
            found[name] = (fastpath.release(spec[">="]), fastpath.release(spec["<"]))
    return found


def test_the_tested_releases_are_the_dependency_bounds_in_pyproject() -> None:
    assert bounds_in_pyproject() == fastpath.TESTED


def test_the_installed_uvicorn_and_websockets_are_tested_releases() -> None:
    assert fastpath.untested() is None, "CI must run a release inside the bounds"


def test_a_version_is_compared_by_its_leading_numbers() -> None:
    assert fastpath.release("0.55.0") == (0, 55, 0)
    assert fastpath.release("0.56.0rc1") == (0, 56, 0)
    assert fastpath.release("17.4.dev0") == (17, 4)
    assert fastpath.release("18") == (18,)
    assert fastpath.release("") == ()
    assert (0, 52, 1) <= fastpath.release("0.55.0") < (0, 56)
    assert not fastpath.release("0.56.0rc1") < (0, 56)


@pytest.mark.usefixtures("fresh_choice")
def test_with_tested_releases_uvicorn_runs_roomcasts_protocol_and_nothing_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, "roomcast"):
        assert fastpath.websocket_protocol() is RoomcastWebSocketProtocol
    assert fastpath.fast_path_unavailable() is None
    assert fastpath.is_fast_path(RoomcastWebSocketProtocol)
    assert not fastpath.is_fast_path(WebSocketsSansIOProtocol)
    assert caplog.records == []


@pytest.mark.usefixtures("fresh_choice")
@pytest.mark.parametrize(
    ("module", "version"),
    [(uvicorn, "0.56.0"), (uvicorn, "0.52.0"), (websockets, "18.0"), (websockets, "13.1")],
)
def test_an_untested_uvicorn_or_websockets_gets_uvicorns_protocol_and_one_warning(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    module: object,
    version: str,
) -> None:
    monkeypatch.setattr(module, "__version__", version)
    with caplog.at_level(logging.WARNING, "roomcast"):
        assert fastpath.websocket_protocol() is WebSocketsSansIOProtocol
        assert fastpath.websocket_protocol() is WebSocketsSansIOProtocol  # chosen once
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith("WebSocket fast path off: ")
    assert f"{getattr(module, '__name__', '')} {version} is not a tested release" in (
        record.getMessage()
    )
    assert "WebSocketsSansIOProtocol, fan-out through ASGI sends" in record.getMessage()
    assert fastpath.fast_path_unavailable() is not None


@pytest.mark.usefixtures("fresh_choice")
def test_roomcast_websocket_protocol_is_the_choice_made_where_uvicorn_loads_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from uvicorn.importer import import_from_string

    from roomcast.runner import PROTOCOL_PATH, uvicorn_config_kwargs
    from roomcast.settings import Settings

    assert uvicorn_config_kwargs(Settings())["ws"] == PROTOCOL_PATH
    assert roomcast.WebSocketProtocol is RoomcastWebSocketProtocol  # kept by roomcast
    monkeypatch.delitem(vars(roomcast), "WebSocketProtocol")  # put back after the test
    monkeypatch.setattr(fastpath, "_chosen", None)  # as in a process yet to choose
    monkeypatch.setattr(uvicorn, "__version__", "0.56.0")
    assert import_from_string(PROTOCOL_PATH) is WebSocketsSansIOProtocol


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )


def test_importing_roomcast_and_its_websocket_transport_needs_no_private_uvicorn_module() -> None:
    code = (
        "import sys\n"
        "import roomcast, roomcast.transports.websocket, roomcast.transports.direct\n"
        f"print({PRIVATE!r} in sys.modules)\n"
        f"sys.modules[{PRIVATE!r}] = None  # as if uvicorn no longer had it\n"
        "import roomcast.runtime, roomcast.app\n"
        "print(roomcast.transports.direct.DIRECT)\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "roomcast.direct"]


def test_without_the_private_class_roomcast_websocket_protocol_is_uvicorns_default() -> None:
    code = (
        "import logging, sys\n"
        "logging.basicConfig(level=logging.WARNING, format='%(levelname)s %(message)s')\n"
        "import uvicorn.protocols.websockets.auto as auto\n"
        f"import {PRIVATE} as impl\n"
        "del impl.WebSocketsSansIOProtocol  # as if uvicorn renamed it\n"
        "import roomcast\n"
        "print(roomcast.WebSocketProtocol is auto.AutoWebSocketsProtocol)\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True"]
    (warning,) = result.stderr.splitlines()
    assert warning.startswith("WARNING WebSocket fast path off: uvicorn's private protocol ")
