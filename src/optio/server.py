"""Assembles one Optio process: database (migrated), runtime, reconcile workers, recovery, resync."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass

import structlog

from optio.config import Settings
from optio.control import processes
from optio.control.context import ControlContext
from optio.control.kinds.job import JobRunHandler
from optio.control.worker import WorkerPool, resync
from optio.runtime.local import LocalRuntime
from optio.store import migrate, workspaces
from optio.store.db import Database


def configure_logging(level: str = "info") -> None:
    logging.basicConfig(stream=sys.stderr, level=getattr(logging, level.upper(), logging.INFO), format="%(message)s")
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
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

    @property
    def db(self) -> Database:
        return self.ctx.db

    def stop(self) -> None:
        self.workers.stop()
        if self.ctx.runtime is not None:
            self.ctx.runtime.shutdown()


def build(settings: Settings) -> Optio:
    """Migrate, create the default workspace, wire the control plane. Does not start threads."""
    settings.resolved_data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.resolved_database_url)
    migrate.upgrade(db)
    with db.write() as session:
        workspaces.ensure_default(session)
    ctx = ControlContext(settings=settings, db=db)
    ctx.handlers = {JobRunHandler.kind: JobRunHandler()}
    ctx.runtime = LocalRuntime(processes.DbSink(ctx))
    return Optio(settings=settings, ctx=ctx, workers=WorkerPool(ctx))


def start(optio: Optio) -> None:
    """Adopt processes left by a previous server, sweep every open run, then start the workers."""
    processes.recover(optio.ctx)
    resync(optio.ctx)
    optio.workers.start()
