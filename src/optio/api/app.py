"""The FastAPI application. `create_app` wires an Optio instance; the server lifecycle starts its threads."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from optio import __version__
from optio.api import errors
from optio.api.routes import jobs, prs, repo_tasks, repos, runs
from optio.api.schemas import Health
from optio.config import Settings
from optio.server import Optio, build, start
from optio.store import queue


def create_app(settings: Settings | None = None, optio: Optio | None = None, *, start_workers: bool = True) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        instance = optio or build(settings)
        app.state.optio = instance
        if start_workers:
            start(instance)
        try:
            yield
        finally:
            instance.stop()

    app = FastAPI(
        title="Optio",
        version=__version__,
        description="Self-hosted control plane for AI coding agents.",
        lifespan=lifespan,
    )
    errors.install(app)

    @app.get("/api/health", response_model=Health, tags=["system"])
    def health() -> Health:
        instance: Optio = app.state.optio
        with instance.db.read() as session:
            depth = queue.depth(session)
        return Health(status="ok", version=__version__, database=instance.db.dialect, queue_depth=depth)

    app.include_router(jobs.router)
    app.include_router(runs.router)
    app.include_router(repos.router)
    app.include_router(repo_tasks.router)
    app.include_router(prs.router)
    return app
