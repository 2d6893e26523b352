"""Request-scoped dependencies: the running Optio and the caller's workspace."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Header, Request

from optio.errors import NotFound
from optio.server import Optio
from optio.store import workspaces
from optio.store.db import Database


@dataclass(frozen=True)
class Ctx:
    optio: Optio
    workspace_id: int

    @property
    def db(self) -> Database:
        return self.optio.db


def get_ctx(request: Request, x_optio_workspace: str | None = Header(default=None)) -> Ctx:
    optio: Optio = request.app.state.optio
    slug = x_optio_workspace or workspaces.DEFAULT_SLUG
    with optio.db.read() as session:
        ws = workspaces.by_slug(session, slug)
        if ws is None:
            raise NotFound(f"workspace {slug!r} not found")
        return Ctx(optio=optio, workspace_id=ws.id)
