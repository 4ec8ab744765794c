"""An app LiveServer imports by name ("tests.testing.importable_app:app")."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.greeting = "hello from the lifespan"
    yield


app = FastAPI(lifespan=lifespan)


@app.get("/greeting")
async def greeting() -> dict[str, str]:
    return {"greeting": app.state.greeting}


def make_app() -> FastAPI:
    """A factory, for ``factory=True``."""
    return app
