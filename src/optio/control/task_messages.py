"""Messages to a repo task's agent, on the control side: taken into a prompt, or confirmed taken mid-run."""

from __future__ import annotations

import json
from datetime import datetime

from optio.control.context import ControlContext
from optio.domain import prompts
from optio.store import runs
from optio.store import task_messages as store
from optio.store.models import AgentProcess
from optio.store.session import Session
from optio.store.types import utcnow

KIND = "repo_task"


def into_prompt(ctx: ControlContext, *, workspace_id: int, task_id: int, attempt: int, prompt: str) -> str:
    """The prompt with every message the agent has not taken yet; they count as delivered with this start."""
    now = utcnow()
    with ctx.db.write() as session:
        rows = store.undelivered(session, task_id)
        texts: list[str] = []
        for row in rows:
            if store.mark(session, row.id, status="delivered", via="prompt", attempt=attempt, now=now):
                texts.append(row.text)
                runs.record_event(session, workspace_id=workspace_id, kind=KIND, run_id=task_id,
                                  event="message_delivered", from_state=None, to_state=None,
                                  reason=f"message #{row.id} given in the prompt of attempt {attempt}", now=now)
    return prompts.with_messages(prompt, texts)


def delivered(session: Session, proc: AgentProcess, payload: str, now: datetime) -> None:
    """The relay saw the running agent take a message (Claude Code replays each user message it takes)."""
    if proc.run_kind != KIND:
        return
    try:
        message_id = int(json.loads(payload)["delivered"])
    except (ValueError, KeyError, TypeError):
        return
    if store.mark(session, message_id, status="delivered", via="live", attempt=proc.attempt, now=now,
                  only_from=("sent", "queued"), task_id=proc.run_id):
        runs.record_event(session, workspace_id=proc.workspace_id, kind=KIND, run_id=proc.run_id,
                          event="message_delivered", from_state=None, to_state=None,
                          reason=f"message #{message_id} taken by the running agent (attempt {proc.attempt})",
                          now=now)
