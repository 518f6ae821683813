"""The ASGI application: the API, the page and its static files, all served by the one process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from embeddings.retrieval.retrieve import Retriever

from ..config import Config
from . import api
from .guard import Guard, RateLimiter
from .service import Service

STATIC = Path(__file__).resolve().parent / "static"


def create_app(config: Config, opener: Callable[[], Retriever], token: str = "") -> FastAPI:
    """The app; `opener` returns the retriever (building the index if needed) and runs once, in the background.

    Answers wait for it with 503, so the server accepts connections (and health checks) at once.
    """
    service = Service(config, opener)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        loading = asyncio.create_task(service.load())
        try:
            yield
        finally:
            service.close()
            if not loading.done():
                loading.cancel()

    # No /docs or /redoc: they load Swagger UI from a CDN, which an air-gapped intranet cannot reach.
    app = FastAPI(
        title="speechqa",
        summary="Cited answers from a corpus of Chinese speeches",
        version="1",
        openapi_url="/api/openapi.json",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.service = service
    api.install(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"cache-control": "no-cache"})

    app.add_middleware(
        Guard,
        token=token,
        limiter=RateLimiter(config.web.rate_limit_per_minute),
        max_body_bytes=config.web.max_body_bytes,
    )
    return app
