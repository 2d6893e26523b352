"""Merge-queue batches of the local forge: several queued PRs tested as one merge, and the halves of a red one.

The local forge reaches these rows only through here. A batch's state lives in the database so a restart
mid-batch loses nothing: a pending batch is run again, a green one not yet recorded lands (or is found on
the base), planned halves keep their place.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from optio.store.models import MergeBatch, PullRequest

# A batch in one of these is the base's current work: at most one per (repo, base branch).
ACTIVE = ("pending", "passing", "failing", "error")


def get(session: Session, batch_id: int) -> MergeBatch | None:
    return session.get(MergeBatch, batch_id)


# Read by every step of the merge queue: built once, with bound parameters.
_ACTIVE = (select(MergeBatch).where(MergeBatch.repo_id == bindparam("repo_id"),
                                    MergeBatch.base_branch == bindparam("base_branch"), MergeBatch.status.in_(ACTIVE))
           .order_by(MergeBatch.id).limit(1))


def active(session: Session, repo_id: int, base_branch: str) -> MergeBatch | None:
    """The batch being tested, or tested and not yet landed or split, on this base."""
    return session.scalar(_ACTIVE, {"repo_id": repo_id, "base_branch": base_branch})


def planned(session: Session, repo_id: int, base_branch: str) -> list[MergeBatch]:
    """The halves of red batches still to be tested, oldest first (the caller orders them by queue place)."""
    return list(session.scalars(select(MergeBatch).where(MergeBatch.repo_id == repo_id,
                                                         MergeBatch.base_branch == base_branch,
                                                         MergeBatch.status == "planned")
                                .order_by(MergeBatch.id)))


def add(session: Session, members: Sequence[PullRequest], *, status: str, base_sha: str | None = None,
        now: datetime | None = None) -> MergeBatch:
    """A batch of `members` (in queue order) at their current heads."""
    first = members[0]
    batch = MergeBatch(workspace_id=first.workspace_id, repo_id=first.repo_id, base_branch=first.base_branch,
                       base_sha=base_sha, pr_ids=[p.id for p in members], head_shas=[p.head_sha for p in members],
                       status=status, started_at=now if status == "pending" else None)
    session.add(batch)
    session.flush()
    return batch


def finish(session: Session, batch_id: int, *, status: str, exit_code: int | None, output: str,
           duration_s: float | None, failure_kind: str | None, tested_sha: str | None, now: datetime) -> bool:
    """Record a batch's CI result, only if it is still pending (a batch dropped meanwhile keeps its state)."""
    result = session.execute(
        update(MergeBatch).where(MergeBatch.id == batch_id, MergeBatch.status == "pending")
        .values(status=status, exit_code=exit_code, output=output, duration_s=duration_s,
                failure_kind=failure_kind, tested_sha=tested_sha, finished_at=now))
    return bool(getattr(result, "rowcount", 0))
