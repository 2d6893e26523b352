"""The FastAPI application. `create_app` wires an Optio instance; the server lifecycle starts its threads."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from optio import __version__
from optio.api import errors
from optio.api.audit_trail import AuditTrailMiddleware
from optio.api.body_limit import BodyLimitMiddleware
from optio.api.rate_limit import FixedWindow, RateLimitMiddleware
from optio.api.request_guard import RequestGuardMiddleware
from optio.api.routes import (
    account,
    apikeys,
    events,
    forge_hooks,
    jobs,
    pod_git,
    prs,
    repo_tasks,
    repos,
    runs,
    task_feed,
    tickets,
    web_auth,
)
from optio.api.routes import agent_msg as agent_msg_routes
from optio.api.routes import agent_tools as agent_tool_routes
from optio.api.routes import audit as audit_routes
from optio.api.routes import blueprints as blueprint_routes
from optio.api.routes import metrics as metrics_routes
from optio.api.routes import notifications as notification_routes
from optio.api.routes import persistent_agents as persistent_agent_routes
from optio.api.routes import secrets as secret_routes
from optio.api.routes import task_messages as task_message_routes
from optio.api.routes import templates as template_routes
from optio.api.routes import ticket_sources as ticket_source_routes
from optio.api.routes import triggers as trigger_routes
from optio.api.schemas import Health
from optio.config import Settings
from optio.observability import tracing
from optio.server import Optio, build, start
from optio.services import runs as run_service
from optio.web import actions as web_actions
from optio.web import agent_pages as web_agent_pages
from optio.web import assets
from optio.web import docs as web_docs
from optio.web import intake_pages as web_intake_pages
from optio.web import pages as web_pages


def create_app(settings: Settings | None = None, optio: Optio | None = None, *, start_workers: bool = True) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        instance = optio or build(settings)
        app.state.optio = instance
        if start_workers:
            start(instance, settings.role)
        try:
            yield
        finally:
            instance.stop()
            tracing.shutdown()

    app = FastAPI(
        title="Optio",
        version=__version__,
        description="Self-hosted control plane for AI coding agents.",
        lifespan=lifespan,
        docs_url=None,  # served by optio.web.docs from vendored assets, not a CDN
        redoc_url=None,
    )
    errors.install(app)
    tracing.install(app, version=__version__)
    # The last added runs first: the body and rate limits answer before anything else; the audit trail sits
    # innermost, next to the routes, and sees their final status.
    app.add_middleware(AuditTrailMiddleware)
    app.add_middleware(RateLimitMiddleware,
                       login=FixedWindow(lambda: app.state.optio.db, settings.login_rate_limit,
                                         settings.rate_limit_window_s),
                       webhook=FixedWindow(lambda: app.state.optio.db, settings.webhook_rate_limit,
                                           settings.rate_limit_window_s))
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes,
                       path_limits={"/api/pods/git/": settings.kube_git_max_push_mb * 1024 * 1024})
    # Outermost: a foreign Host (DNS rebinding) or, with auth disabled, a cross-site write is refused first.
    app.add_middleware(RequestGuardMiddleware, settings=settings)

    @app.get("/api/health", response_model=Health, tags=["system"])
    def health() -> Health:
        instance: Optio = app.state.optio
        depth = run_service.queue_depth(instance.db)
        unreadable = len(instance.auth.secrets.unreadable) if instance.auth is not None else 0
        return Health(status="degraded" if unreadable else "ok", version=__version__, database=instance.db.dialect,
                      queue_depth=depth, unreadable_secrets=unreadable)

    app.include_router(metrics_routes.router)
    if settings.role == "worker":
        return app  # a worker replica serves its health and its own metrics, nothing else
    app.include_router(jobs.router)
    app.include_router(runs.router)
    app.include_router(repos.router)
    app.include_router(repo_tasks.router)
    app.include_router(prs.router)
    app.include_router(tickets.router)
    app.include_router(task_feed.router)
    app.include_router(account.router)
    app.include_router(apikeys.router)
    app.include_router(secret_routes.router)
    app.include_router(agent_tool_routes.router)
    app.include_router(task_message_routes.router)
    app.include_router(agent_msg_routes.router)
    app.include_router(audit_routes.router)
    app.include_router(events.router)
    app.include_router(web_auth.router)
    app.include_router(web_docs.router_for(app))
    app.include_router(web_pages.router)
    app.include_router(web_actions.router)
    app.include_router(web_agent_pages.router)
    app.include_router(web_intake_pages.router)
    app.mount("/static", assets.static_files(), name="static")
    app.include_router(forge_hooks.router)
    app.include_router(pod_git.router)
    app.include_router(trigger_routes.router)
    app.include_router(trigger_routes.hooks)
    app.include_router(persistent_agent_routes.router)
    app.include_router(blueprint_routes.router)
    app.include_router(notification_routes.router)
    app.include_router(ticket_source_routes.router)
    app.include_router(ticket_source_routes.links)
    app.include_router(ticket_source_routes.hooks)
    app.include_router(template_routes.router)
    return app
