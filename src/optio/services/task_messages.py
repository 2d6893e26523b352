"""Talking to a repo task's agent: a message reaches it mid-run where its CLI takes input, else at its next start.

Every message is stored (and shown on the task's timeline as an event). When the task's agent is running
with live input (Claude Code's stream-json), the message is written to the run's inbox at once and marked
delivered when the agent takes it; otherwise, or when the agent ends before taking it, it is prepended to
the prompt of the agent's next start. ``interrupt`` stops the current attempt and resumes at once with it,
through the reconciler (a control intent, written with a CAS), not counted as an automatic resume.
"""

from __future__ import annotations

import threading
from pathlib import Path

from optio.control import output_relay
from optio.control.processes import INBOX_FILE
from optio.errors import Conflict, NotFound
from optio.services import runs as run_service
from optio.store import processes as process_store
from optio.store import runs
from optio.store import task_messages as store
from optio.store.db import Database
from optio.store.models import TaskMessage
from optio.store.types import utcnow

KIND = "repo_task"
# Where an interrupt can act: a running agent is stopped and resumed; a task waiting on its PR is resumed.
INTERRUPTIBLE = ("running", "pr_opened", "needs_attention")
_send_lock = threading.Lock()  # one writer at a time per server, so messages never interleave in an inbox


def send(db: Database, workspace_id: int, task_id: int, text: str, *, interrupt: bool = False,
         user_id: int | None = None, username: str | None = None) -> TaskMessage:
    now = utcnow()
    with db.write() as session:
        task = runs.get_run(session, KIND, task_id, workspace_id)
        if task is None:
            raise NotFound(f"task {task_id} not found")
        if interrupt and task.state not in INTERRUPTIBLE:
            raise Conflict(f"cannot interrupt a task that is {task.state}; send the message without --interrupt "
                           "to give it at the agent's next start", field="interrupt")
        row = store.add(session, workspace_id=workspace_id, task_id=task_id, text=text, interrupt=interrupt,
                        created_by=user_id, now=now)
        who = username or "a person"
        runs.record_event(session, workspace_id=workspace_id, kind=KIND, run_id=task_id, event="message",
                          from_state=task.state, to_state=task.state,
                          reason=f"message #{row.id} from {who}{' (interrupt)' if interrupt else ''}: {text}",
                          now=now)
        proc = process_store.latest(session, KIND, task_id) if task.state == "running" else None
        inbox = Path(proc.log_dir) / INBOX_FILE if proc is not None and proc.status in ("starting", "alive") else None
    if interrupt:
        run_service.set_intent(db, workspace_id, KIND, task_id, "interrupt", {"interrupt": INTERRUPTIBLE})
    elif inbox is not None:
        with _send_lock:
            sent = output_relay.send_message(inbox, row.id, text)
        if sent:
            with db.write() as session:
                store.mark(session, row.id, status="sent", only_from=("queued",))
    with db.read() as session:
        return next(m for m in store.listed(session, workspace_id, task_id) if m.id == row.id)


def listed(db: Database, workspace_id: int, task_id: int) -> list[TaskMessage]:
    with db.read() as session:
        if runs.get_run(session, KIND, task_id, workspace_id) is None:
            raise NotFound(f"task {task_id} not found")
        return store.listed(session, workspace_id, task_id)
