"""Blueprints: saved repo-task definitions that a person, or a trigger, turns into a repo task."""

from __future__ import annotations

from typing import Any

from optio.control.triggers import start_blueprint
from optio.domain.review_policy import SETTINGS
from optio.domain.templates import TemplateError
from optio.errors import Invalid
from optio.services.jobs import checked_schema, validate_agent
from optio.services.repos import find_repo
from optio.services.secret_refs import require_visible
from optio.store import blueprints as blueprint_store
from optio.store import triggers as trigger_store
from optio.store.db import Database
from optio.store.models import Blueprint, RepoTask


def create(db: Database, workspace_id: int, data: dict[str, Any]) -> Blueprint:
    """Checked like a task made now would be: the repo, the agent, the secrets; and both templates against one
    params schema (given, or inferred from what the templates use)."""
    with db.read() as session:
        repo = find_repo(session, workspace_id, data["repo"])
        agent_type = data.get("agent_type") or repo.agent_type
        agent_config = dict(repo.agent_config or {}) if agent_type == repo.agent_type else {}
        agent_config.update(data.get("agent_config") or {})
        validate_agent(agent_type, agent_config)
        secret_names = list(data.get("secret_names") or [])
        require_visible(session, workspace_id, secret_names, repo_id=repo.id)
        review_settings = checked_review_settings(data.get("review_settings"), repo.review_agent_type)
    both = data["title_template"] + "\n" + data["prompt_template"]
    schema = checked_schema(both, data.get("params_schema"))
    for field in ("title_template", "prompt_template"):
        checked_schema(data[field], schema, field=field)  # names the template at fault
    return blueprint_store.insert(db, workspace_id, dict(
        name=data["name"], description=data.get("description") or "", repo_id=repo.id,
        title_template=data["title_template"], prompt_template=data["prompt_template"],
        agent_type=data.get("agent_type"), agent_config=data.get("agent_config") or {}, params_schema=schema,
        priority=data.get("priority", 0), max_retries=data.get("max_retries", 1), secret_names=secret_names,
        review_settings=review_settings))


def checked_review_settings(raw: dict[str, Any] | None, repo_review_agent: str | None) -> dict[str, Any]:
    """The settings that were given (None means the repo's), checked like a repo's: a review agent that
    exists with a usable config, and no agent settings next to `review_agent: false`."""
    settings = {k: v for k, v in dict(raw or {}).items() if v is not None and k in SETTINGS}
    if settings.get("review_agent") is False:
        for key in ("review_agent_type", "review_agent_config"):
            if key in settings:
                raise Invalid(f"{key} makes no sense with review_agent false", field=f"review_settings.{key}")
        return settings
    agent = settings.get("review_agent_type") or repo_review_agent
    if settings.get("review_agent") is True and agent is None:
        raise Invalid("the repo has no review agent: name one in review_agent_type",
                      field="review_settings.review_agent")
    if "review_agent_config" in settings and agent is None:
        raise Invalid("review_agent_config needs a review agent (the repo has none)",
                      field="review_settings.review_agent_config")
    if settings.get("review_agent_type"):
        try:
            validate_agent(settings["review_agent_type"], settings.get("review_agent_config") or {},
                           prefix="review_")
        except Invalid as exc:
            raise Invalid(exc.message, field=f"review_settings.{exc.field}") from None
    return settings


def list_blueprints(db: Database, workspace_id: int) -> list[tuple[Blueprint, str]]:
    with db.read() as session:
        return blueprint_store.list_blueprints(session, workspace_id)


def get(db: Database, workspace_id: int, ref: str | int) -> tuple[Blueprint, str]:
    with db.read() as session:
        row = blueprint_store.find(session, workspace_id, ref)
        return row, blueprint_store.repo_of(session, row).name


def run(db: Database, workspace_id: int, ref: str | int, params: dict[str, Any], *,
        created_by: int | None = None) -> RepoTask:
    """A repo task from the blueprint now, or a 422 naming the parameter."""
    with db.write() as session:
        try:
            return start_blueprint(session, workspace_id, ref, params, created_by=created_by)
        except TemplateError as exc:
            raise Invalid(str(exc), field=f"params.{exc.field}" if exc.field else "params") from None


def delete(db: Database, workspace_id: int, ref: str | int) -> None:
    """The blueprint and its triggers (like a job's); the tasks it made stay."""
    with db.write() as session:
        row = blueprint_store.find(session, workspace_id, ref)
        for trigger in trigger_store.for_target(session, workspace_id, "blueprint", row.id):
            trigger_store.delete(session, trigger)
        blueprint_store.delete(session, row)
