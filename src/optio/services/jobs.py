"""Jobs (reusable parameterised prompts) and their runs."""

from __future__ import annotations

from typing import Any

from optio.agents import models as vendor_models
from optio.agents.base import AgentConfigError
from optio.agents.registry import get_adapter
from optio.domain.prompts import ParamSpec, TemplateError, placeholders, render, resolve_params
from optio.errors import Invalid
from optio.services.secret_refs import require_visible
from optio.store import jobs as job_store
from optio.store.db import Database
from optio.store.models import Job, JobRun
from optio.store.session import Session


def _param_specs(schema: dict[str, Any]) -> dict[str, ParamSpec]:
    specs: dict[str, ParamSpec] = {}
    for name, raw in (schema or {}).items():
        raw = raw or {}
        specs[name] = ParamSpec(
            name=name,
            required=bool(raw.get("required", "default" not in raw)),
            default=None if raw.get("default") is None else str(raw.get("default")),
            description=str(raw.get("description", "")),
        )
    return specs


def validate_agent(agent_type: str, agent_config: dict[str, Any], *, prefix: str = "") -> None:
    """`prefix` names the fields in errors: "" for the agent, "review_" for a repo's review agent."""
    try:
        get_adapter(agent_type)
    except AgentConfigError as exc:
        raise Invalid(str(exc), field=f"{prefix}agent_type") from None
    command = agent_config.get("command")
    if command is not None and not isinstance(command, str):
        raise Invalid("the command must be a string (a shell command line)", field=f"{prefix}agent_config.command")
    if agent_type == "script" and not (command or "").strip():
        raise Invalid(f"the script agent needs a command ({prefix}agent_config.command)",
                      field=f"{prefix}agent_config.command")
    try:
        vendor_models.check(agent_type, agent_config, prefix=prefix)
    except vendor_models.VendorOptionError as exc:
        raise Invalid(str(exc), field=exc.field) from None


def create_job(db: Database, workspace_id: int, data: dict[str, Any]) -> Job:
    validate_agent(data["agent_type"], data.get("agent_config") or {})
    secret_names = list(data.get("secret_names") or [])
    with db.read() as session:
        require_visible(session, workspace_id, secret_names)  # a job has no repo: workspace secrets only
    schema = dict(data.get("params_schema") or {})
    for name in placeholders(data["prompt_template"]):
        schema.setdefault(name, {"required": True})
    return job_store.insert_job(db, workspace_id, dict(
        name=data["name"],
        description=data.get("description") or "",
        prompt_template=data["prompt_template"],
        agent_type=data["agent_type"],
        agent_config=data.get("agent_config") or {},
        params_schema=schema,
        max_retries=data.get("max_retries", 0),
        max_concurrent_runs=data.get("max_concurrent_runs"),
        budget_usd=data.get("budget_usd"),
        timeout_s=data.get("timeout_s"),
        secret_names=secret_names,
    ))


def find_job(session: Session, workspace_id: int, ref: str | int) -> Job:
    return job_store.find_job(session, workspace_id, ref)


def list_jobs(db: Database, workspace_id: int) -> list[Job]:
    with db.read() as session:
        return job_store.list_jobs(session, workspace_id)


def start_run(db: Database, workspace_id: int, job_ref: str | int, params: dict[str, str], *,
              created_by: int | None = None) -> JobRun:
    """Render the prompt and create a queued run; the enqueue shares the run's transaction."""
    with db.write() as session:
        job = find_job(session, workspace_id, job_ref)
        try:
            resolved = resolve_params(_param_specs(job.params_schema), {k: str(v) for k, v in params.items()})
            prompt = render(job.prompt_template, resolved)
        except TemplateError as exc:
            raise Invalid(str(exc), field=f"params.{exc.field}" if exc.field else "params") from None
        return job_store.insert_run(session, workspace_id, job, resolved, prompt, created_by=created_by)
