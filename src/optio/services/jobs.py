"""Jobs (reusable parameterised prompts) and their runs."""

from __future__ import annotations

from typing import Any

from optio.agents import models as vendor_models
from optio.agents.base import AgentConfigError
from optio.agents.registry import get_adapter
from optio.control.prompt_templates import job_prompt
from optio.domain import template_library
from optio.domain.params import RESERVED, check_template, parse_schema, prepare_run
from optio.domain.states import TERMINAL, RunKind
from optio.domain.templates import TemplateError, placeholders
from optio.errors import Conflict, Invalid
from optio.services.secret_refs import require_visible
from optio.store import jobs as job_store
from optio.store import prompt_templates
from optio.store import triggers as trigger_store
from optio.store.db import Database
from optio.store.models import Job, JobRun
from optio.store.session import Session


def checked_schema(template: str, raw_schema: dict[str, Any] | None, *,
                   field: str = "prompt_template") -> dict[str, Any]:
    """The schema to store for a template: given and checked, or (none given) every name the template uses,
    required. A given schema must declare every name the template reads."""
    schema = {k: {kk: vv for kk, vv in dict(v or {}).items() if vv is not None} for k, v in (raw_schema or {}).items()}
    try:
        specs = parse_schema(schema)
    except TemplateError as exc:
        raise Invalid(str(exc), field=f"params_schema.{exc.field}" if exc.field else "params_schema") from None
    try:
        names = placeholders(template)
        if schema:
            check_template(template, specs)
    except TemplateError as exc:
        raise Invalid(str(exc), field=field) from None
    if not schema:
        schema = {name: {"required": True} for name in names if name not in RESERVED}
    return schema


def fits_job_template(session: Session, workspace_id: int, name: str, schema: dict[str, Any]) -> None:
    """A 422 unless the workspace's job template (if it has one) reads only params this job declares: every
    run's prompt goes through it."""
    body = prompt_templates.bodies(session, workspace_id, "job", None)[1]
    if body is None:
        return
    try:
        template_library.check("job", body, params={name: schema})
    except TemplateError as exc:
        raise Invalid(f"{exc}: the workspace's job template reads it (optio template show --kind job)",
                      field="params_schema") from None


def prepare(schema: dict[str, Any], template: str, params: dict[str, Any], payload: object = None,
            ) -> tuple[dict[str, Any], str]:
    """A start's params and prompt, or a 422 naming the parameter."""
    try:
        return prepare_run(schema, template, params, payload)
    except TemplateError as exc:
        raise Invalid(str(exc), field=f"params.{exc.field}" if exc.field else "params") from None


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
    schema = checked_schema(data["prompt_template"], data.get("params_schema"))
    with db.read() as session:
        fits_job_template(session, workspace_id, data["name"], schema)
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


def start_run(db: Database, workspace_id: int, job_ref: str | int, params: dict[str, Any], *,
              created_by: int | None = None) -> JobRun:
    """Render the prompt and create a queued run; the enqueue shares the run's transaction."""
    with db.write() as session:
        job = find_job(session, workspace_id, job_ref)
        resolved, prompt = prepare(job.params_schema, job.prompt_template, params)
        prompt = job_prompt(session, workspace_id, job_name=job.name, declared=job.params_schema or {},
                            params=resolved, prompt=prompt)
        return job_store.insert_run(session, workspace_id, job, resolved, prompt, created_by=created_by)


_EDITABLE = ("name", "description", "prompt_template", "agent_type", "agent_config", "params_schema", "max_retries",
             "max_concurrent_runs", "budget_usd", "timeout_s", "secret_names")


def update_job(db: Database, workspace_id: int, job_ref: str | int, changes: dict[str, Any]) -> Job:
    """Change the given fields; the result is checked as a whole, like a new job (runs already made keep the
    prompt they were given)."""
    with db.write() as session:
        job = find_job(session, workspace_id, job_ref)
        merged = {key: changes.get(key, getattr(job, key)) for key in _EDITABLE}
        validate_agent(merged["agent_type"], merged["agent_config"] or {})
        require_visible(session, workspace_id, list(merged["secret_names"] or []))
        if "prompt_template" in changes or "params_schema" in changes:
            merged["params_schema"] = checked_schema(merged["prompt_template"], merged["params_schema"])
            fits_job_template(session, workspace_id, merged["name"], merged["params_schema"])
        return job_store.update_job(session, job, {k: v for k, v in merged.items()
                                                   if k in changes or k == "params_schema"})


def clone_job(db: Database, workspace_id: int, job_ref: str | int, name: str) -> Job:
    with db.read() as session:
        job = find_job(session, workspace_id, job_ref)
        data = {key: getattr(job, key) for key in _EDITABLE}
    data["name"] = name
    return create_job(db, workspace_id, data)


def delete_job(db: Database, workspace_id: int, job_ref: str | int) -> None:
    """Refused while a run of the job is unfinished; its triggers go with it."""
    with db.write() as session:
        job = find_job(session, workspace_id, job_ref)
        active = job_store.active_run_count(session, job.id, TERMINAL[RunKind.JOB_RUN])
        if active:
            raise Conflict(f"job {job.name!r} has {active} unfinished run(s); cancel them first")
        for trigger in trigger_store.for_target(session, workspace_id, "job", job.id):
            trigger_store.delete(session, trigger)
        job_store.delete_job(session, job)
