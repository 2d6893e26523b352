"""Assembles one Optio process: database (migrated), runtime, reconcile workers, recovery, resync."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import structlog
from structlog.typing import Processor

from optio.config import Settings
from optio.control import processes
from optio.control.context import ControlContext
from optio.control.kinds.job import JobRunHandler
from optio.control.kinds.repo import RepoTaskHandler
from optio.control.kinds.review import ReviewRunHandler
from optio.control.ports import ForgeRegistry
from optio.control.worker import WorkerPool, resync
from optio.forge.github import GitHubForge
from optio.forge.gitlab import GitLabForge
from optio.forge.local import LocalForge
from optio.runtime import sandbox as run_sandbox
from optio.runtime.local import LocalRuntime
from optio.security import private_file
from optio.security.redact import default_redactor
from optio.services.auth_state import AuthState, build_auth_state
from optio.services.notifications import Notifier
from optio.services.ticket_intake import TicketSync
from optio.store import migrate, pull_requests, workspaces
from optio.store.db import Database
from optio.tickets import net as ticket_net


def configure_logging(level: str = "info") -> None:
    logging.basicConfig(stream=sys.stderr, level=getattr(logging, level.upper(), logging.INFO), format="%(message)s")
    # httpx logs every request a forge client makes at INFO: noise, and URLs are not for the server log.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            cast("Processor", default_redactor.structlog_processor),
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper(), logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


@dataclass
class Optio:
    settings: Settings
    ctx: ControlContext
    workers: WorkerPool
    auth: AuthState
    notifier: Notifier | None = None
    tickets: TicketSync | None = None

    @property
    def db(self) -> Database:
        return self.ctx.db

    def stop(self) -> None:
        self.workers.stop()
        if self.notifier is not None:
            self.notifier.stop()
        if self.tickets is not None:
            self.tickets.stop()
        for forge in self.ctx.forges.all():
            forge.shutdown()
        self.ctx.runtime.shutdown()


def build(settings: Settings) -> Optio:
    """Migrate, create the default workspace, wire the control plane. Does not start threads."""
    # Everything the server writes (database, WAL, keys, logs, worktrees) is its own: owner-only from birth.
    os.umask(0o077)
    private_file.secure_data_dir(settings.resolved_data_dir)
    db = Database(settings.resolved_database_url)
    migrate.upgrade(db)
    with db.write() as session:
        workspaces.ensure_default(session)
    auth = build_auth_state(settings, db)
    redactors = auth.secrets.redactors
    # Raises (the server does not start) when a multi-user server cannot confine its agents.
    sandbox = run_sandbox.from_settings(settings)
    forge = LocalForge(db, settings.resolved_data_dir,
                       redact=lambda text, ws, repo_id: redactors.for_scope(ws, repo_id).redact(text),
                       secrets=auth.secrets, outbound_allowlist=settings.outbound_allowlist)
    forge.sandbox = sandbox
    forge.ci_timeout_s = settings.ci_timeout_s
    forge.merge_batch_max = settings.merge_batch_max
    github = GitHubForge(db, secrets=auth.secrets,
                         redact=lambda text, ws, repo_id: redactors.for_scope(ws, repo_id).redact(text),
                         outbound_allowlist=settings.outbound_allowlist, public_url=settings.url)
    gitlab = GitLabForge(db, settings.resolved_data_dir,
                         redact=lambda text, ws, repo_id: redactors.for_scope(ws, repo_id).redact(text),
                         secrets=auth.secrets, outbound_allowlist=settings.outbound_allowlist, public_url=settings.url)
    forges = ForgeRegistry({forge.name: forge, github.name: github, gitlab.name: gitlab})
    # git authenticates to a hosted forge with what its adapter says (a GitHub App's installation token);
    # every other repo with its credential secret, as before.
    forge.worktrees.credential = hosted_credentials(db, {github.name: github.git_credential}, forge.credential)
    ctx = ControlContext(
        settings=settings, db=db, runtime=LocalRuntime(processes.DbSink(db, settings), sandbox=sandbox),
        forges=forges, worktrees=forge.worktrees, secrets=auth.secrets,
        redactors=redactors,
    )
    ctx.handlers = {
        JobRunHandler.kind: JobRunHandler(),
        RepoTaskHandler.kind: RepoTaskHandler(),
        ReviewRunHandler.kind: ReviewRunHandler(),
    }
    notifier = Notifier(db, auth.secrets.keyring, allowlist=settings.outbound_allowlist,
                        backoff_s=settings.notify_backoff_s, max_attempts=settings.notify_max_attempts,
                        timeout_s=settings.notify_timeout_s)
    # Ticket providers call trackers under the same SSRF allowlist as every other outbound request.
    ticket_net.set_allowlist(settings.outbound_allowlist)
    ticket_sync = TicketSync(db, auth.secrets, public_url=settings.api_url,
                             poll_interval_s=settings.ticket_poll_interval_s, backoff_s=settings.notify_backoff_s,
                             max_attempts=settings.notify_max_attempts)
    return Optio(settings=settings, ctx=ctx, workers=WorkerPool(ctx), auth=auth, notifier=notifier,
                 tickets=ticket_sync)


def hosted_credentials(db: Database, by_kind: dict[str, Callable[[int], str | None]],
                       fallback: Callable[[int], str | None]) -> Callable[[int], str | None]:
    """A repo's git credential, asked of its hosted forge's adapter when it has one."""

    def credential(repo_id: int) -> str | None:
        with db.read() as session:
            kind = pull_requests.forge_kind_of(session, repo_id)
        hosted = by_kind.get(kind or "")
        return hosted(repo_id) if hosted is not None else fallback(repo_id)

    return credential


def uvicorn_proxy_options(settings: Settings) -> dict[str, object]:
    """Believe `X-Forwarded-For`/`-Proto` only from OPTIO_TRUSTED_PROXIES.

    uvicorn's own default trusts them from loopback (and FORWARDED_ALLOW_IPS), so any local process, or a
    client behind a local proxy that passes the header through, could choose its own address and with it its
    rate-limit key. With no trusted proxy the headers are ignored and the peer address is the client.
    """
    if not settings.trusted_proxies:
        return {"proxy_headers": False, "forwarded_allow_ips": ""}
    return {"proxy_headers": True, "forwarded_allow_ips": list(settings.trusted_proxies)}


def start(optio: Optio) -> None:
    """Adopt processes left by a previous server, sweep every open run, then start the workers."""
    processes.recover(optio.ctx)
    for forge in optio.ctx.forges.all():
        forge.recover()
    resync(optio.ctx)
    optio.workers.start()
    if optio.notifier is not None:
        optio.notifier.start()
    if optio.tickets is not None:
        optio.tickets.start()
