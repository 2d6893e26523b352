"""Firing triggers: the shared path from a trigger (and what came with it) to a queued run, and the
scheduler tick that fires each due time of each schedule once.

The tick takes `now` so tests drive it with their own clock. A schedule's due times are counted from its
`last_due_at` (its creation, at first); when several passed (the server was down) only the latest fires, once.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from croniter import croniter  # type: ignore[import-untyped]

from optio.control.prompt_templates import job_prompt
from optio.domain.params import prepare_run
from optio.domain.templates import TemplateError, render
from optio.errors import Conflict, Invalid, NotFound
from optio.store import blueprints as blueprint_store
from optio.store import jobs as job_store
from optio.store import persistent_agents as agent_store
from optio.store import triggers as trigger_store
from optio.store.db import Database
from optio.store.models import RepoTask, Trigger
from optio.store.repo_tasks_read import NewTask, insert_task
from optio.store.session import Session

log = structlog.get_logger("optio.triggers")


def check_schedule(cron: str, timezone: str) -> None:
    """A 422 naming `cron` or `timezone` unless both are usable."""
    if not croniter.is_valid(cron):
        raise Invalid(f"{cron!r} is not a cron expression (five fields: minute hour day month weekday)",
                      field="cron")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise Invalid(f"{timezone!r} is not an IANA time zone (e.g. Europe/Berlin, UTC)", field="timezone") from None


def latest_due(cron: str, timezone: str, after: datetime, now: datetime) -> datetime | None:
    """The latest due time in (after, now], in UTC, or None when none passed."""
    zone = ZoneInfo(timezone)
    prev = croniter(cron, (now + timedelta(microseconds=1)).astimezone(zone)).get_prev(datetime)
    due = prev.astimezone(UTC)
    return due if due > after else None


def next_due(cron: str, timezone: str, after: datetime) -> datetime:
    zone = ZoneInfo(timezone)
    nxt: datetime = croniter(cron, after.astimezone(zone)).get_next(datetime)
    return nxt.astimezone(UTC)


def fire(session: Session, trigger: Trigger, *, source: str, now: datetime, params: dict[str, Any] | None = None,
         payload: object = None, due_at: datetime | None = None) -> tuple[str, int]:
    """Create the target's run in the caller's transaction and record the fire; returns (run kind, run id).

    A start the target's params schema refuses is a TemplateError (the caller decides: 422 or a log line).
    """
    given = {**(trigger.params or {}), **(params or {})}
    if trigger.target_type == "blueprint":
        kind, run_id = "repo_task", start_blueprint(session, trigger.workspace_id, trigger.target_id, given,
                                                    payload).id
    elif trigger.target_type == "job":
        job = job_store.find_job(session, trigger.workspace_id, trigger.target_id)
        resolved, prompt = prepare_run(job.params_schema, job.prompt_template, given, payload)
        prompt = job_prompt(session, trigger.workspace_id, job_name=job.name, declared=job.params_schema or {},
                            params=resolved, prompt=prompt)
        kind, run_id = "job_run", job_store.insert_run(session, trigger.workspace_id, job, resolved, prompt,
                                                        created_by=None).id
    elif trigger.target_type == "persistent_agent":
        kind, run_id = "agent", wake_agent(session, trigger, source=source, params=given, payload=payload,
                                           due_at=due_at)
    else:
        raise Invalid(f"triggers cannot start a {trigger.target_type!r}", field="target_type")
    trigger_store.record_fire(session, trigger, due_at=due_at, source=source, run_kind=kind, run_id=run_id, now=now)
    return kind, run_id


def wake_agent(session: Session, trigger: Trigger, *, source: str, params: dict[str, Any], payload: object,
               due_at: datetime | None) -> int:
    """Wake a persistent agent with a message saying which trigger fired and what came with it; its id.

    A schedule (or a person's "fire now") speaks as ``system:trigger-<id>``, a webhook as ``external:trigger-<id>``.
    """
    agent = agent_store.load(session, trigger.target_id, trigger.workspace_id)
    if agent is None:
        raise NotFound(f"agent {trigger.target_id} not found")
    if agent.state == "archived":
        raise Invalid(f"agent {agent.slug!r} is archived and takes no messages", field="target")
    body: dict[str, Any] = {"trigger": trigger.id, "source": source, "params": params}
    if due_at is not None:
        body["due_at"] = due_at.isoformat()
    if payload is not None:
        body["payload"] = payload
    label = f"trigger-{trigger.id}"
    sender = f"external:{label}" if source == "webhook" else f"system:{label}"
    agent_store.insert_message(session, agent, sender=sender, type="event", body=json.dumps(body, default=str))
    return agent.id


def start_blueprint(session: Session, workspace_id: int, ref: str | int, params: dict[str, Any],
                    payload: object = None, *, created_by: int | None = None) -> RepoTask:
    """A repo task from the blueprint, its title and prompt rendered from the params (and payload), in the
    caller's transaction. A start the params schema refuses is a TemplateError."""
    blueprint = blueprint_store.find(session, workspace_id, ref)
    resolved, prompt = prepare_run(blueprint.params_schema, blueprint.prompt_template, params, payload)
    context: dict[str, object] = dict(resolved) if payload is None else {**resolved, "payload": payload}
    # A title becomes a commit subject: one line, printable, whatever a payload held.
    title = " ".join("".join(ch for ch in render(blueprint.title_template, context)
                             if ch.isprintable() or ch.isspace()).split())[:500]
    if not title:
        raise TemplateError("the rendered title is empty", field=None)
    repo = blueprint_store.repo_of(session, blueprint)
    agent_type = blueprint.agent_type or repo.agent_type
    agent_config = dict(repo.agent_config or {}) if agent_type == repo.agent_type else {}
    agent_config.update(blueprint.agent_config or {})
    new = NewTask(title=title, prompt=prompt, agent_type=agent_type, agent_config=agent_config,
                  priority=blueprint.priority, max_retries=blueprint.max_retries,
                  secret_names=list(blueprint.secret_names or []), ticket_ref=None, created_by=created_by,
                  review_settings=dict(blueprint.review_settings or {}))
    return insert_task(session, workspace_id, repo, new, [])


def tick(db: Database, now: datetime) -> int:
    """Fire every schedule whose due time passed; returns how many runs this call created."""
    with db.read() as session:
        schedules = trigger_store.active_schedules(session)
    fired = 0
    for trigger in schedules:
        if not trigger.cron or not trigger.timezone:
            continue
        due = latest_due(trigger.cron, trigger.timezone, trigger.last_due_at or trigger.created_at, now)
        if due is None:
            continue
        try:
            with db.write() as session:
                if not trigger_store.claim_due(session, trigger.id, trigger.version, due):
                    continue  # another server (or a pause) got there first
                fresh = trigger_store.find(session, trigger.workspace_id, trigger.id)
                try:
                    kind, run_id = fire(session, fresh, source="schedule", now=now, due_at=due)
                except (TemplateError, Invalid, NotFound) as exc:
                    # The due time stays claimed: a schedule whose job cannot start says so once per tick.
                    log.warning("schedule_not_started", trigger=trigger.id, due_at=due.isoformat(), error=str(exc))
                    continue
        except Conflict:
            continue
        fired += 1
        log.info("schedule_fired", trigger=trigger.id, due_at=due.isoformat(), kind=kind, run=run_id)
    return fired
