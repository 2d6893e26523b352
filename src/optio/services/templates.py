"""The prompt template library: workspace defaults and repo overrides of the task, review and job prompts.

A template is checked when it is saved (it parses, and reads only what its kind provides; a job template's
`params.NAME` must be declared by every job of the workspace), so the control plane can render it for any
task, review or job run later without a surprise.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from optio.domain import template_library as library
from optio.domain.templates import TemplateError
from optio.errors import Invalid
from optio.services.repos import find_repo
from optio.store import jobs as job_store
from optio.store import prompt_templates as store
from optio.store.db import Database
from optio.store.session import Session


@dataclass(frozen=True)
class TemplateView:
    kind: library.Kind
    repo: str | None
    source: library.Source
    body: str
    version: int | None  # None for the built-in text
    updated_at: datetime | None


def _kind(kind: str) -> library.Kind:
    try:
        return library.check_kind(kind)
    except TemplateError as exc:
        raise Invalid(str(exc), field="kind") from None


def _repo_id(session: Session, workspace_id: int, kind: library.Kind, repo: str | None) -> int | None:
    if repo is None:
        return None
    if kind == "job":
        raise Invalid("job templates belong to the workspace: a job has no repo", field="repo")
    return find_repo(session, workspace_id, repo).id


def _check(session: Session, workspace_id: int, kind: library.Kind, body: str) -> None:
    params = None
    if kind == "job":
        params = {job.name: dict(job.params_schema or {}) for job in job_store.list_jobs(session, workspace_id)}
    try:
        library.check(kind, body, params=params)
    except TemplateError as exc:
        raise Invalid(str(exc), field="body") from None


def list_templates(db: Database, workspace_id: int) -> list[TemplateView]:
    """Each kind's built-in text, then every stored default and override."""
    out = [TemplateView(kind, None, "builtin", library.BUILTIN[kind], None, None) for kind in library.KINDS]
    with db.read() as session:
        for row, repo in store.list_templates(session, workspace_id):
            out.append(TemplateView(_kind(row.kind), repo, "repo" if row.repo_id else "workspace", row.body,
                                    row.version, row.updated_at))
    return out


def show(db: Database, workspace_id: int, kind: str, repo: str | None = None) -> TemplateView:
    """The template the kind's prompts use (for the repo, when named), and where it comes from."""
    k = _kind(kind)
    with db.read() as session:
        repo_id = _repo_id(session, workspace_id, k, repo)
        own = store.find(session, workspace_id, k, repo_id) if repo_id is not None else None
        row = own or store.find(session, workspace_id, k, None)
        if row is None:
            return TemplateView(k, repo, "builtin", library.BUILTIN[k], None, None)
        return TemplateView(k, repo, "repo" if row.repo_id else "workspace", row.body, row.version, row.updated_at)


def save(db: Database, workspace_id: int, kind: str, body: str, *, repo: str | None = None,
         version: int | None = None) -> TemplateView:
    """Set the workspace default (no repo) or the repo's override; `version` is the one last read (0: none)."""
    k = _kind(kind)
    with db.write() as session:
        repo_id = _repo_id(session, workspace_id, k, repo)
        _check(session, workspace_id, k, body)
        row = store.save(session, workspace_id, k, repo_id, body, version)
        return TemplateView(k, repo, "repo" if repo_id else "workspace", row.body, row.version, row.updated_at)


def delete(db: Database, workspace_id: int, kind: str, repo: str | None = None) -> None:
    """Remove the repo's override (or the workspace default): the next level applies again."""
    k = _kind(kind)
    with db.write() as session:
        store.delete(session, workspace_id, k, _repo_id(session, workspace_id, k, repo))


def preview(db: Database, workspace_id: int, kind: str, *, repo: str | None = None, body: str | None = None,
            values: dict[str, Any] | None = None) -> tuple[str, str]:
    """(the rendered prompt, the template's source): the effective template (or `body`, unsaved) filled with
    the given values and `<name>` for the rest."""
    k = _kind(kind)
    if body is not None:
        with db.read() as session:
            _repo_id(session, workspace_id, k, repo)
            _check(session, workspace_id, k, body)
        template = library.Effective(k, body, "given")
    else:
        view = show(db, workspace_id, k, repo)
        template = library.Effective(k, view.body, view.source)
    for name in values or {}:
        head = name.split(".", 1)[0]
        if head not in library.VARIABLES[k]:
            raise Invalid(f"{k} templates have no variable {head!r}; they have {', '.join(library.VARIABLES[k])}",
                          field=f"values.{name}")
    try:
        return library.render_prompt(template, library.sample_values(k, values)), template.source
    except TemplateError as exc:
        raise Invalid(str(exc), field=f"values.{exc.field}" if exc.field else "values") from None
