"""The prompt template library's rows: a workspace default or a repo override per kind, changed by
compare-and-swap on `version` so two people editing one template cannot silently overwrite each other."""

from __future__ import annotations

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from optio.errors import Conflict, NotFound
from optio.store.models import PromptTemplate, Repo
from optio.store.types import utcnow


def scope_of(repo_id: int | None) -> str:
    return "workspace" if repo_id is None else f"repo:{repo_id}"


def find(session: Session, workspace_id: int, kind: str, repo_id: int | None) -> PromptTemplate | None:
    return session.scalar(select(PromptTemplate).where(
        PromptTemplate.workspace_id == workspace_id, PromptTemplate.kind == kind,
        PromptTemplate.scope == scope_of(repo_id)))


# Read by every look at a task that can start an agent: built once, with bound parameters.
_BODIES = select(PromptTemplate.scope, PromptTemplate.body).where(
    PromptTemplate.workspace_id == bindparam("workspace_id"), PromptTemplate.kind == bindparam("kind"),
    PromptTemplate.scope.in_(bindparam("scopes", expanding=True)))


def bodies(session: Session, workspace_id: int, kind: str, repo_id: int | None) -> tuple[str | None, str | None]:
    """(the repo's override, the workspace default) of a kind; None where there is none. One query."""
    scopes = ["workspace"] + ([scope_of(repo_id)] if repo_id is not None else [])
    found = {scope: body for scope, body in session.execute(
        _BODIES, {"workspace_id": workspace_id, "kind": kind, "scopes": scopes})}
    return (found.get(scope_of(repo_id)) if repo_id is not None else None), found.get("workspace")


def list_templates(session: Session, workspace_id: int) -> list[tuple[PromptTemplate, str | None]]:
    """Every stored template of the workspace with its repo's name (None for a workspace default)."""
    q = (select(PromptTemplate, Repo.name).outerjoin(Repo, Repo.id == PromptTemplate.repo_id)
         .where(PromptTemplate.workspace_id == workspace_id).order_by(PromptTemplate.kind, PromptTemplate.id))
    return [(r[0], r[1]) for r in session.execute(q)]


def save(session: Session, workspace_id: int, kind: str, repo_id: int | None, body: str,
         expected_version: int | None) -> PromptTemplate:
    """Insert or replace the template; `expected_version` (when given) must be the stored one (0: none yet)."""
    row = find(session, workspace_id, kind, repo_id)
    if row is None:
        if expected_version not in (None, 0):
            raise Conflict(f"the {kind} template changed meanwhile (it no longer exists)", field="version")
        row = PromptTemplate(workspace_id=workspace_id, kind=kind, scope=scope_of(repo_id), repo_id=repo_id,
                             body=body, version=1)
        try:
            with session.begin_nested():
                session.add(row)
        except IntegrityError:
            raise Conflict(f"the {kind} template was saved by someone else meanwhile", field="version") from None
        return row
    current = row.version if expected_version is None else expected_version
    done = session.execute(update(PromptTemplate).where(PromptTemplate.id == row.id,
                                                        PromptTemplate.version == current)
                           .values(body=body, version=current + 1, updated_at=utcnow())).rowcount  # type: ignore[attr-defined]
    if not done:
        raise Conflict(f"the {kind} template changed meanwhile (version {row.version}, not {current})",
                       field="version")
    session.refresh(row)
    return row


def delete(session: Session, workspace_id: int, kind: str, repo_id: int | None) -> None:
    row = find(session, workspace_id, kind, repo_id)
    if row is None:
        where = "the workspace" if repo_id is None else "this repo"
        raise NotFound(f"{where} has no {kind} template of its own")
    session.delete(row)
