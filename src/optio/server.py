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
from optio.control.kinds.agent import AgentHandler
from optio.control.kinds.job import JobRunHandler
from optio.control.kinds.repo import RepoTaskHandler, sweep_finished_worktrees
from optio.control.kinds.review import ReviewRunHandler
from optio.control.ports import ForgeRegistry, Runtime
from optio.control.replicas import NOTIFIER, RESYNC, TICKET_POLLER, Replica
from optio.control.worker import WorkerPool, resync
from optio.forge.github import GitHubForge
from optio.forge.gitlab import GitLabForge
from optio.forge.hosted import KINDS
from optio.forge.local import LocalForge
from optio.runtime import sandbox as run_sandbox
from optio.runtime.local import LocalRuntime
from optio.security import private_file
from optio.security.redact import default_redactor
from optio.services.auth_state import AuthState, build_auth_state
from optio.services.notifications import Notifier
from optio.services.ticket_intake import TicketSync
from optio.store import migrate, notify, pull_requests, workspaces
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
    listener: notify.Listener | None = None
    tickets: TicketSync | None = None

    @property
    def db(self) -> Database:
        return self.ctx.db

    @property
    def replica(self) -> Replica:
        return self.workers.replica

    def stop(self) -> None:
        self.workers.stop()
        if self.notifier is not None:
            self.notifier.stop()
        if self.tickets is not None:
            self.tickets.stop()
        if self.listener is not None:
            self.listener.stop()
        for forge in self.ctx.forges.all():
            forge.shutdown()
        self.ctx.runtime.shutdown()
        # Last: its processes are no longer watched here, so the replica that adopts them is the only tailer.
        self.replica.stop()


def build(settings: Settings) -> Optio:
    """Migrate, create the default workspace, wire the control plane. Does not start threads."""
    # Everything the server writes (database, WAL, keys, logs, worktrees) is its own: owner-only from birth.
    os.umask(0o077)
    private_file.secure_data_dir(settings.resolved_data_dir)
    db = Database(settings.resolved_database_url, busy_timeout_s=settings.db_busy_timeout_s)
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
    forge.worktrees.username = hosted_git_username(db)
    ctx = ControlContext(
        settings=settings, db=db, runtime=build_runtime(settings, processes.DbSink(db, settings), sandbox),
        forges=forges, worktrees=forge.worktrees, secrets=auth.secrets,
        redactors=redactors,
    )
    ctx.handlers = {
        JobRunHandler.kind: JobRunHandler(),
        RepoTaskHandler.kind: RepoTaskHandler(),
        ReviewRunHandler.kind: ReviewRunHandler(),
        AgentHandler.kind: AgentHandler(turn_token_secret=auth.session_secret),
    }
    replica = Replica(db, lease_s=settings.replica_lease_s, replica_id=ctx.replica_id)
    notifier = Notifier(db, auth.secrets.keyring, allowlist=settings.outbound_allowlist,
                        backoff_s=settings.notify_backoff_s, max_attempts=settings.notify_max_attempts,
                        timeout_s=settings.notify_timeout_s, owner=lambda: replica.holds(NOTIFIER))
    # On PostgreSQL other replicas' enqueues wake this one's workers too (the commit hook covers its own).
    listener = notify.Listener(db.url, ctx.wake.notify) if db.dialect == "postgresql" else None
    # Ticket providers call trackers under the same SSRF allowlist as every other outbound request.
    ticket_net.set_allowlist(settings.outbound_allowlist)
    ticket_sync = TicketSync(db, auth.secrets, public_url=settings.api_url,
                             poll_interval_s=settings.ticket_poll_interval_s, backoff_s=settings.notify_backoff_s,
                             max_attempts=settings.notify_max_attempts, owner=lambda: replica.holds(TICKET_POLLER))
    return Optio(settings=settings, ctx=ctx, workers=WorkerPool(ctx, replica), auth=auth, notifier=notifier,
                 listener=listener, tickets=ticket_sync)


def build_runtime(settings: Settings, sink: processes.DbSink, sandbox: run_sandbox.Sandbox | None) -> Runtime:
    """Local processes (the default), or pods of a Kubernetes cluster (``OPTIO_RUNTIME=kubernetes``)."""
    local = LocalRuntime(sink, sandbox=sandbox)
    if settings.runtime == "kubernetes":
        from optio.runtime.kube_setup import from_settings
        from optio.runtime.routing import RoutingRuntime

        return RoutingRuntime(from_settings(settings, sink), local, frozenset(settings.kube_local_kinds))
    return local


def hosted_credentials(db: Database, by_kind: dict[str, Callable[[int], str | None]],
                       fallback: Callable[[int], str | None]) -> Callable[[int], str | None]:
    """A repo's git credential, asked of its hosted forge's adapter when it has one."""

    def credential(repo_id: int) -> str | None:
        with db.read() as session:
            kind = pull_requests.forge_kind_of(session, repo_id)
        hosted = by_kind.get(kind or "")
        return hosted(repo_id) if hosted is not None else fallback(repo_id)

    return credential


def hosted_git_username(db: Database) -> Callable[[int], str | None]:
    """The user name a hosted forge wants beside a token (GitHub: `x-access-token`, GitLab: `oauth2`)."""

    def username(repo_id: int) -> str | None:
        with db.read() as session:
            kind = KINDS.get(pull_requests.forge_kind_of(session, repo_id) or "")
        return kind.token_username if kind is not None else None

    return username


def uvicorn_proxy_options(settings: Settings) -> dict[str, object]:
    """Believe `X-Forwarded-For`/`-Proto` only from OPTIO_TRUSTED_PROXIES.

    uvicorn's own default trusts them from loopback (and FORWARDED_ALLOW_IPS), so any local process, or a
    client behind a local proxy that passes the header through, could choose its own address and with it its
    rate-limit key. With no trusted proxy the headers are ignored and the peer address is the client.
    """
    if not settings.trusted_proxies:
        return {"proxy_headers": False, "forwarded_allow_ips": ""}
    return {"proxy_headers": True, "forwarded_allow_ips": list(settings.trusted_proxies)}


def start(optio: Optio, role: str = "all") -> None:
    """Join the replicas; for a worker: adopt processes no live replica watches, sweep every open run, start the
    workers and the single-owner sweeps.

    An `api` replica serves HTTP only. Forge recovery (scratch checkouts, CI left pending) runs only in a
    replica that starts alone: with others alive, their checkouts are in use, and the PR watcher reruns CI a
    dead replica left pending.
    """
    optio.replica.start()
    if role == "api":
        return
    alone = not optio.replica.others_alive()
    processes.recover(optio.ctx)
    collect_garbage = getattr(optio.ctx.runtime, "collect_garbage", None)
    if collect_garbage is not None:  # pods and Secrets of runs that ended while no server watched them
        collect_garbage(processes.live_keys(optio.ctx))
    if alone:
        for forge in optio.ctx.forges.all():
            forge.recover()
        sweep_finished_worktrees(optio.ctx)
    with optio.replica.sweep(RESYNC) as mine:
        if mine:
            resync(optio.ctx, still_mine=lambda: optio.replica.holds(RESYNC))
    if optio.listener is not None:
        optio.listener.start()
    optio.workers.start()
    if optio.notifier is not None:
        optio.replica.want(NOTIFIER)
        optio.notifier.start()
    if optio.tickets is not None:
        optio.replica.want(TICKET_POLLER)
        optio.tickets.start()
