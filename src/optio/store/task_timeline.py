"""Everything a repo task ran, in the order it ran: the agent's attempts, its PR's CI runs and its review runs.

Each section carries its own source label (`attempt N`, `ci #K on <sha>`, `review #R`) and its lines, so a
reader sees from one place what happened to the task and why, whichever run produced the output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from optio.store.models import AgentProcess, CiRun, PullRequest, ReviewRun, RunLog

KIND_ORDER = {"attempt": 0, "ci": 1, "review": 2}


@dataclass
class Section:
    """One run's output: `ref` is the attempt number, the CI run's number in the task or the review run's id."""

    kind: str
    ref: int
    source: str
    status: str | None
    started_at: datetime | None
    finished_at: datetime | None
    head_sha: str | None = None
    exit_code: int | None = None
    lines: list[tuple[str, str]] = field(default_factory=list)


def _run_lines(session: Session, kind: str, run_id: int, workspace_id: int) -> list[RunLog]:
    return list(session.scalars(
        select(RunLog).where(RunLog.run_kind == kind, RunLog.run_id == run_id, RunLog.workspace_id == workspace_id)
        .order_by(RunLog.seq)
    ))


def attempts_of(session: Session, kind: str, run_id: int, workspace_id: int) -> list[AgentProcess]:
    """The agent processes a run launched, one per attempt, oldest first: each attempt's own timestamps."""
    return list(session.scalars(
        select(AgentProcess).where(AgentProcess.run_kind == kind, AgentProcess.run_id == run_id,
                                   AgentProcess.workspace_id == workspace_id)
        .order_by(AgentProcess.id)
    ))


def attempts_by_run(session: Session, kind: str, run_ids: Sequence[int]) -> dict[int, list[AgentProcess]]:
    """`attempts_of` for many runs of one kind at once (the caller checks each process's workspace)."""
    out: dict[int, list[AgentProcess]] = {}
    for proc in session.scalars(select(AgentProcess).where(AgentProcess.run_kind == kind,
                                                           AgentProcess.run_id.in_(list(run_ids)))
                                .order_by(AgentProcess.id)):
        out.setdefault(proc.run_id, []).append(proc)
    return out


def _attempt_sections(session: Session, task_id: int, workspace_id: int) -> list[Section]:
    by_attempt: dict[int, Section] = {}
    for proc in attempts_of(session, "repo_task", task_id, workspace_id):
        by_attempt[proc.attempt] = Section(
            kind="attempt", ref=proc.attempt, source=f"attempt {proc.attempt}", status=proc.status,
            started_at=proc.started_at, finished_at=proc.finished_at, exit_code=proc.exit_code)
    for line in _run_lines(session, "repo_task", task_id, workspace_id):
        sec = by_attempt.get(line.attempt)
        if sec is None:  # lines Optio wrote for an attempt whose process row is gone (or never existed)
            sec = by_attempt[line.attempt] = Section(
                kind="attempt", ref=line.attempt, source=f"attempt {line.attempt}", status=None,
                started_at=line.created_at, finished_at=None)
        sec.lines.append((line.stream, line.text))
    return list(by_attempt.values())


def _ci_sections(session: Session, task_id: int, workspace_id: int) -> list[Section]:
    rows = session.execute(
        select(CiRun).join(PullRequest, PullRequest.id == CiRun.pr_id)
        .where(PullRequest.task_id == task_id, PullRequest.workspace_id == workspace_id)
        .order_by(CiRun.id)
    ).scalars()
    sections = []
    for k, ci in enumerate(rows, start=1):
        took = f", {ci.duration_s:.1f}s" if ci.duration_s is not None else ""
        status = ci.status if ci.exit_code is None else f"{ci.status}, exit {ci.exit_code}"
        sections.append(Section(
            kind="ci", ref=k, source=f"ci #{k} on {ci.head_sha[:10]}", status=status + took,
            started_at=ci.created_at, finished_at=ci.finished_at, head_sha=ci.head_sha, exit_code=ci.exit_code,
            lines=[("ci", text) for text in ci.output.splitlines()]))
    return sections


def _review_sections(session: Session, task_id: int, workspace_id: int) -> list[Section]:
    reviews = session.scalars(
        select(ReviewRun).where(ReviewRun.task_id == task_id, ReviewRun.workspace_id == workspace_id)
        .order_by(ReviewRun.id)
    )
    sections = []
    for rev in reviews:
        status = rev.state if rev.verdict is None else f"{rev.state}, verdict {rev.verdict}"
        lines = [(line.stream, line.text) for line in _run_lines(session, "pr_review", rev.id, workspace_id)]
        if rev.comments:
            lines.append(("review", f"review comments: {rev.comments}"))
        sections.append(Section(
            kind="review", ref=rev.id, source=f"review #{rev.id}", status=status,
            started_at=rev.started_at or rev.created_at, finished_at=rev.finished_at, head_sha=rev.head_sha,
            lines=lines))
    return sections


def task_sections(session: Session, task_id: int, workspace_id: int) -> list[Section]:
    """Every section of the task, in the order its run started."""
    sections = (_attempt_sections(session, task_id, workspace_id) + _ci_sections(session, task_id, workspace_id)
                + _review_sections(session, task_id, workspace_id))

    def when(sec: Section) -> tuple[float, int, int]:
        stamp = sec.started_at.timestamp() if sec.started_at is not None else float("inf")
        return (stamp, KIND_ORDER[sec.kind], sec.ref)

    return sorted(sections, key=when)
