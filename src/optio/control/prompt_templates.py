"""The prompts the control plane hands agents, rendered through the template library (repo override, then
workspace default, then the built-in text; see `optio.domain.template_library`)."""

from __future__ import annotations

from collections.abc import Mapping

import structlog

from optio.domain import template_library as library
from optio.domain.templates import TemplateError
from optio.store import prompt_templates
from optio.store.session import Session

log = structlog.get_logger("optio.templates")


def effective(session: Session, workspace_id: int, kind: library.Kind, repo_id: int | None) -> library.Effective:
    repo_body, workspace_body = prompt_templates.bodies(session, workspace_id, kind, repo_id)
    return library.effective(kind, repo_body=repo_body, workspace_body=workspace_body)


def render(session: Session, workspace_id: int, kind: library.Kind, repo_id: int | None,
           values: Mapping[str, object]) -> str:
    """The prompt from the effective template. A saved template was checked against the kind's variables, so
    it renders; should it not (a job's param removed since), the built-in text is used and the reason logged,
    rather than an agent getting no prompt at all."""
    template = effective(session, workspace_id, kind, repo_id)
    try:
        return library.render_prompt(template, values)
    except TemplateError as exc:
        log.warning("template_not_rendered", kind=kind, source=template.source, error=str(exc))
        return library.render_prompt(library.effective(kind), values)


def job_prompt(session: Session, workspace_id: int, *, job_name: str, declared: Mapping[str, object],
               params: Mapping[str, object], prompt: str) -> str:
    """A job run's prompt: its rendered prompt template, wrapped by the workspace's job template."""
    values = {"prompt": prompt, "job": job_name, "params": {**{name: None for name in declared}, **params}}
    return render(session, workspace_id, "job", None, values)
