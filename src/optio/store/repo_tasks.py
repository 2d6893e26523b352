"""Repo tasks as the control plane reads and writes them: the task with its repo, dependencies and counts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Integer, Select, bindparam, func, select
from sqlalchemy.orm import Session

from optio.domain.backoff import repo_slot_cap
from optio.domain.review_policy import ReviewPolicy, effective
from optio.store import queue
from optio.store.models import AgentProcess, Repo, RepoTask, ReviewRun, TaskDependency
from optio.store.processes import ENDED_STATES
from optio.store.tickets import REF_PREFIX


def _ended_agent(task_id: Any, attempt: Any) -> Select[int]:
    """The recorded end of the agent of a task's attempt (each a value, or a column to correlate with)."""
    return select(AgentProcess.id).where(
        AgentProcess.run_kind == "repo_task", AgentProcess.run_id == task_id, AgentProcess.attempt == attempt,
        AgentProcess.purpose == "agent", AgentProcess.status.in_(ENDED_STATES))


def holds_slot() -> ColumnElement[bool]:
    """A task holds one of its repo's agent slots while provisioning, and while running until its agent ends.

    The caps bound agents at work. Once the agent of the task's current attempt has exited, what is left of
    `running` (pushing the branch, opening the pull request) is Optio's own git work, about half of a short
    task's time in the slot; the next queued task can start its agent meanwhile. A running task with no
    process row yet (the start committed, the launch not recorded) still holds its slot.
    """
    ended = _ended_agent(RepoTask.id, RepoTask.attempts).exists()
    return (RepoTask.state == "provisioning") | ((RepoTask.state == "running") & ~ended)


# The reads every look at a task makes are built once (with bound parameters): building and keying a
# statement costs more than SQLite takes to run it, and a look makes a dozen of them.
_LOAD = (select(RepoTask, Repo).join(Repo, Repo.id == RepoTask.repo_id)
         .where(RepoTask.id == bindparam("task_id"), RepoTask.workspace_id == bindparam("workspace_id")))


def load(session: Session, task_id: int, workspace_id: int) -> tuple[RepoTask, Repo] | None:
    row = session.execute(_LOAD, {"task_id": task_id, "workspace_id": workspace_id}).first()
    return None if row is None else (row[0], row[1])


def review_policy(repo: Repo, task: RepoTask | None) -> ReviewPolicy:
    """How the task's PR is reviewed and merged: the repo's settings with the task's own (its blueprint's)."""
    base = ReviewPolicy(require_approval=repo.require_approval, auto_merge=repo.auto_merge,
                        review_agent_type=repo.review_agent_type,
                        review_agent_config=dict(repo.review_agent_config or {}), review_prompt=repo.review_prompt)
    return effective(base, task.review_settings if task is not None else None)


def review_policy_for_pr(session: Session, repo: Repo, task_id: int | None) -> ReviewPolicy:
    """The policy of the task a PR belongs to (the repo's own for a PR no task opened)."""
    return review_policy(repo, session.get(RepoTask, task_id) if task_id is not None else None)


def ticket_label(task: RepoTask) -> str | None:
    """The ticket a task works on as people name it (``ticket #4`` for a local one), None without one."""
    if not task.ticket_ref:
        return None
    if task.ticket_ref.startswith(REF_PREFIX):
        return f"ticket #{task.ticket_ref.removeprefix(REF_PREFIX)}"
    return task.ticket_ref


def get_task(session: Session, task_id: int) -> RepoTask | None:
    return session.get(RepoTask, task_id)


def get_repo(session: Session, repo_id: int) -> Repo | None:
    return session.get(Repo, repo_id)


def state_of(session: Session, task_id: int) -> str | None:
    return session.scalar(select(RepoTask.state).where(RepoTask.id == task_id))


_DEPENDENCIES = (select(RepoTask.id, RepoTask.state).join(TaskDependency, TaskDependency.depends_on_id == RepoTask.id)
                 .where(TaskDependency.task_id == bindparam("task_id")))


def dependencies(session: Session, task_id: int) -> list[tuple[int, str]]:
    """(id, state) of every task this one waits for."""
    return [(r[0], r[1]) for r in session.execute(_DEPENDENCIES, {"task_id": task_id})]


def dependents(session: Session, task_id: int) -> list[tuple[int, int]]:
    """(task id, workspace id) of every task waiting for this one."""
    rows = session.execute(
        select(TaskDependency.task_id, TaskDependency.workspace_id).where(TaskDependency.depends_on_id == task_id)
    )
    return [(r[0], r[1]) for r in rows]


def agent_ended(session: Session, task_id: int, attempt: int) -> bool:
    """Whether the agent of the task's `attempt` is recorded as ended: its slot was freed then."""
    return session.scalar(_ended_agent(task_id, attempt).limit(1)) is not None


_ACTIVE_IN_REPO = (select(func.count()).select_from(RepoTask)
                   .where(RepoTask.repo_id == bindparam("repo_id"), RepoTask.id != bindparam("except_task"),
                          holds_slot()))
_QUEUED_AHEAD = (select(func.count()).select_from(RepoTask)
                 .where(RepoTask.repo_id == bindparam("repo_id"), RepoTask.state == "queued",
                        RepoTask.id != bindparam("task_id"),
                        (RepoTask.priority > bindparam("priority"))
                        | ((RepoTask.priority == bindparam("priority")) & (RepoTask.id < bindparam("task_id")))))


def active_in_repo(session: Session, repo_id: int, *, except_task: int | None = None) -> int:
    # Task ids start at 1: 0 excepts none.
    return session.scalar(_ACTIVE_IN_REPO, {"repo_id": repo_id, "except_task": except_task or 0}) or 0


def queued_ahead(session: Session, task: RepoTask) -> int:
    """Queued tasks of the repo that come first (higher priority, then older)."""
    return session.scalar(_QUEUED_AHEAD, {"repo_id": task.repo_id, "task_id": task.id,
                                          "priority": task.priority}) or 0


def _next_queued(repo_id: Any) -> Select[int, int]:
    """The queued tasks of repo `repo_id` (a value or an expression), first in line first, `limit` of them."""
    return (select(RepoTask.id, RepoTask.workspace_id).where(RepoTask.repo_id == repo_id, RepoTask.state == "queued")
            .order_by(RepoTask.priority.desc(), RepoTask.id).limit(bindparam("limit", type_=Integer)))


# Read by every agent's exit and every task leaving or passing on the queue: built once.
_NEXT_QUEUED = _next_queued(bindparam("repo_id"))


def next_queued_in_repo(session: Session, repo_id: int, limit: int) -> list[tuple[int, int]]:
    return [(r[0], r[1]) for r in session.execute(_NEXT_QUEUED, {"repo_id": repo_id, "limit": limit})]


_SLOTS_OF_TASK = (select(Repo.id, Repo.max_concurrent, Repo.rate_limited_until)
                  .join(RepoTask, RepoTask.repo_id == Repo.id).where(RepoTask.id == bindparam("task_id")))


def wake_queued_for(session: Session, task_id: int, default: int, now: datetime, *,
                    except_task: int | None = None) -> None:
    """`wake_queued` for the repo of task `task_id`, its slots counted now by the rate-limit rule (`default`
    where the repo sets none): for a task whose look did not read the repo's capacity."""
    row = session.execute(_SLOTS_OF_TASK, {"task_id": task_id}).first()
    if row is not None:
        wake_queued(session, row[0], repo_slot_cap(row[1], default, row[2], now), except_task=except_task)


def wake_queued(session: Session, repo_id: int, cap: int, *, at_least: int = 1, except_task: int | None = None) -> None:
    """Ask the repo's next queued tasks to look now, first in line first: as many as it has free slots.

    Every freed or still-free slot wakes its own task. Waking only the head of the line on each freed slot
    lost slots for good: two agents ending together both woke the same head, one slot stayed idle with
    tasks waiting (they are not looked at again until a slot is freed), and the repo's agents ran one at a
    time. `at_least` are woken even when the count says every slot is taken, a look being cheaper than a
    slot left idle on a count read a moment early.
    """
    wanted = min(max(cap - active_in_repo(session, repo_id, except_task=except_task), at_least), 10)
    if wanted <= 0:
        return
    for other, ws in next_queued_in_repo(session, repo_id, wanted):
        queue.enqueue(session, "repo_task", other, ws, reason="capacity freed", first=True)


def latest_review_run(session: Session, task_id: int) -> ReviewRun | None:
    return session.scalar(select(ReviewRun).where(ReviewRun.task_id == task_id).order_by(ReviewRun.id.desc()).limit(1))


def live_review_exists(session: Session, task_id: int, head_sha: str) -> bool:
    """A review run of this head that has not failed or been cancelled."""
    return session.scalar(select(ReviewRun.id).where(ReviewRun.task_id == task_id, ReviewRun.head_sha == head_sha,
                                                     ReviewRun.state.not_in(("failed", "cancelled")))) is not None


def add_review_run(session: Session, *, workspace_id: int, task_id: int, pr_id: int | None, repo_id: int,
                   number: int, head_sha: str, agent_type: str, agent_config: dict[str, Any], prompt: str) -> int:
    review = ReviewRun(workspace_id=workspace_id, task_id=task_id, pr_id=pr_id, repo_id=repo_id, number=number,
                       head_sha=head_sha,
                       agent_type=agent_type, agent_config=agent_config, prompt=prompt, state="queued")
    session.add(review)
    session.flush()
    return review.id
