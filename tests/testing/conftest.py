"""A host app like the ones roomcast.testing is for: its own lifespan and routes,
roomcast mounted under /rt."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import pytest
from fastapi import FastAPI, Request

from roomcast import Roomcast, Settings
from roomcast.testing import LiveServer


@dataclass
class Host:
    app: FastAPI
    rc: Roomcast
    lifespan: list[str] = field(default_factory=list)
    """What the host's lifespan did, in order: "startup", "shutdown"."""


def host_app(
    settings: Settings | None = None, *, fail: str | None = None, startup_delay: float = 0.0
) -> Host:
    """``rc = Roomcast(settings)`` mounted under /rt in a host app whose lifespan
    wraps roomcast's; ``fail`` makes the host's startup raise with that message."""
    rc = Roomcast(settings or Settings())
    host = Host(FastAPI(), rc)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.sleep(startup_delay)
        if fail is not None:
            raise RuntimeError(fail)
        async with rc.lifespan(app):
            app.state.started = True
            host.lifespan.append("startup")
            yield
        host.lifespan.append("shutdown")

    app = host.app = FastAPI(lifespan=lifespan)
    app.include_router(rc.router, prefix="/rt")

    @app.get("/started")
    async def started(request: Request) -> dict[str, bool]:
        return {"started": getattr(request.app.state, "started", False)}

    return host


@pytest.fixture
def host() -> Host:
    return host_app()


@pytest.fixture
def server(host: Host) -> Iterator[LiveServer]:
    """The host app served for one test (the synchronous form, in a sync fixture)."""
    with LiveServer(host.app) as server:
        yield server
