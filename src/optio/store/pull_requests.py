"""Pull requests of the local forge with their CI runs and reviews: the aggregate's reads and named writes.

The local forge, the merge gates, the PR service and the control plane reach these rows only through here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from optio.store.models import CiRun, PrReview, PullRequest, Repo, RepoTask


def close_if_open(session: Session, pr_id: int, now: datetime) -> None:
    session.execute(update(PullRequest).where(PullRequest.id == pr_id, PullRequest.state == "open")
                    .values(state="closed", closed_at=now))


def add_review(session: Session, *, workspace_id: int, pr_id: int, head_sha: str, verdict: str, comments: str,
               author: str) -> None:
    """Record a review of `head_sha` (its comments already redacted by the caller)."""
    session.add(PrReview(workspace_id=workspace_id, pr_id=pr_id, head_sha=head_sha, verdict=verdict,
                         comments=comments, author=author))


# --- reads ----------------------------------------------------------------------------------------------

def get(session: Session, pr_id: int) -> PullRequest | None:
    return session.get(PullRequest, pr_id)


def get_many(session: Session, pr_ids: Sequence[int]) -> dict[int, PullRequest]:
    """The PRs of `pr_ids` that exist, by id: one query for a repo's open PRs instead of one each."""
    if not pr_ids:
        return {}
    return {pr.id: pr for pr in session.scalars(select(PullRequest).where(PullRequest.id.in_(list(pr_ids))))}


def in_workspace(session: Session, workspace_id: int, pr_id: int) -> PullRequest | None:
    return session.scalar(select(PullRequest).where(PullRequest.id == pr_id, PullRequest.workspace_id == workspace_id))


# The reads the forge and every look at a task make are built once (with bound parameters): building and
# keying a statement costs more than SQLite takes to run it.
_BY_NUMBER = select(PullRequest).where(PullRequest.repo_id == bindparam("repo_id"),
                                       PullRequest.number == bindparam("number"))
_OPEN_FOR_TASK = select(PullRequest).where(PullRequest.task_id == bindparam("task_id"), PullRequest.state == "open")
_OF_TASK = (select(PullRequest, Repo.ci_command).join(RepoTask, RepoTask.pr_id == PullRequest.id)
            .join(Repo, Repo.id == PullRequest.repo_id)
            .where(RepoTask.id == bindparam("task_id"), PullRequest.repo_id == bindparam("repo_id")))
_CI_RUN = (select(CiRun).where(CiRun.pr_id == bindparam("pr_id"), CiRun.head_sha == bindparam("head_sha"))
           .order_by(CiRun.id.desc()).limit(1))
_CI_RUN_ON = _CI_RUN.where(CiRun.base_sha == bindparam("base_sha"))
_CI_RUN_ON_NO_BASE = _CI_RUN.where(CiRun.base_sha.is_(None))
_MERGE_QUEUE = (select(PullRequest).where(PullRequest.repo_id == bindparam("repo_id"),
                                          PullRequest.base_branch == bindparam("base_branch"),
                                          PullRequest.state == "open", PullRequest.merge_queued_at.is_not(None))
                .order_by(PullRequest.merge_queued_at, PullRequest.id))
_LATEST_REVIEW = (select(PrReview).where(PrReview.pr_id == bindparam("pr_id")).order_by(PrReview.id.desc()).limit(1))
_REVIEWS = select(PrReview).where(PrReview.pr_id == bindparam("pr_id")).order_by(PrReview.id)
_REVIEWS_OF_HEAD = _REVIEWS.where(PrReview.head_sha == bindparam("head_sha"))


def by_number(session: Session, repo_id: int, number: int) -> PullRequest | None:
    return session.scalar(_BY_NUMBER, {"repo_id": repo_id, "number": number})


def by_number_in_workspace(session: Session, workspace_id: int, number: int,
                           repo: str | None = None) -> list[PullRequest]:
    """PRs numbered `number` in the workspace, in the repo named (or numbered) `repo` when given."""
    q = select(PullRequest).where(PullRequest.workspace_id == workspace_id, PullRequest.number == number)
    if repo is not None:
        repo_id = int(repo) if repo.isdigit() else -1
        q = q.join(Repo, Repo.id == PullRequest.repo_id).where((Repo.name == repo) | (Repo.id == repo_id))
    return list(session.scalars(q))


def list_in_workspace(session: Session, workspace_id: int, *, state: str | None = None,
                      limit: int = 500) -> list[PullRequest]:
    q = select(PullRequest).where(PullRequest.workspace_id == workspace_id).order_by(PullRequest.id.desc())
    if state:
        q = q.where(PullRequest.state == state)
    return list(session.scalars(q.limit(limit)))


def open_for_task(session: Session, task_id: int) -> PullRequest | None:
    return session.scalar(_OPEN_FOR_TASK, {"task_id": task_id})


def of_task(session: Session, repo_id: int, task_id: int) -> tuple[PullRequest, str | None] | None:
    """The task's current PR (the one its row points at) and its repo's CI command."""
    row = session.execute(_OF_TASK, {"task_id": task_id, "repo_id": repo_id}).first()
    return None if row is None else (row[0], row[1])


def open_ids(session: Session, repo_id: int | None = None) -> list[int]:
    q = select(PullRequest.id).where(PullRequest.state == "open")
    if repo_id is not None:
        q = q.where(PullRequest.repo_id == repo_id)
    return list(session.scalars(q))


def open_ids_unknown_mergeability(session: Session) -> list[int]:
    return list(session.scalars(select(PullRequest.id).where(PullRequest.state == "open",
                                                             PullRequest.mergeable.is_(None))))


def ci_run(session: Session, pr_id: int, head_sha: str) -> CiRun | None:
    """The latest CI run of `head_sha`, on whichever base it was tested."""
    return session.scalar(_CI_RUN, {"pr_id": pr_id, "head_sha": head_sha})


def ci_run_on(session: Session, pr_id: int, head_sha: str, base_sha: str | None) -> CiRun | None:
    """The CI run of the merge of `head_sha` onto `base_sha` (the pair a result holds for)."""
    if base_sha is None:
        return session.scalar(_CI_RUN_ON_NO_BASE, {"pr_id": pr_id, "head_sha": head_sha})
    return session.scalar(_CI_RUN_ON, {"pr_id": pr_id, "head_sha": head_sha, "base_sha": base_sha})


def ci_runs(session: Session, pr_id: int) -> list[CiRun]:
    return list(session.scalars(select(CiRun).where(CiRun.pr_id == pr_id).order_by(CiRun.id)))


def pending_ci_of_open_prs(session: Session) -> list[tuple[int, str, str | None]]:
    rows = session.execute(
        select(CiRun.pr_id, CiRun.head_sha, CiRun.base_sha).join(PullRequest, PullRequest.id == CiRun.pr_id)
        .where(CiRun.status == "pending", PullRequest.state == "open")
    )
    return [(r[0], r[1], r[2]) for r in rows]


def merge_queue(session: Session, repo_id: int, base_branch: str) -> list[PullRequest]:
    """The open PRs waiting in the merge queue of `base_branch`, first come first."""
    return list(session.scalars(_MERGE_QUEUE, {"repo_id": repo_id, "base_branch": base_branch}))


def queued_bases(session: Session) -> list[tuple[int, str]]:
    """Every (repo, base branch) with a non-empty merge queue."""
    rows = session.execute(select(PullRequest.repo_id, PullRequest.base_branch).distinct()
                           .where(PullRequest.state == "open", PullRequest.merge_queued_at.is_not(None)))
    return [(r[0], r[1]) for r in rows]


def latest_review(session: Session, pr_id: int) -> PrReview | None:
    return session.scalar(_LATEST_REVIEW, {"pr_id": pr_id})


def reviews(session: Session, pr_id: int, *, head_sha: str | None = None) -> list[PrReview]:
    if head_sha is None:
        return list(session.scalars(_REVIEWS, {"pr_id": pr_id}))
    return list(session.scalars(_REVIEWS_OF_HEAD, {"pr_id": pr_id, "head_sha": head_sha}))


def repo_of(session: Session, pr: PullRequest) -> Repo | None:
    return session.get(Repo, pr.repo_id)


def get_repo(session: Session, repo_id: int) -> Repo | None:
    return session.get(Repo, repo_id)


def all_repos(session: Session) -> list[Repo]:
    return list(session.scalars(select(Repo)))


def forge_kind_of(session: Session, repo_id: int) -> str | None:
    return session.scalar(select(Repo.forge).where(Repo.id == repo_id))


# --- writes ---------------------------------------------------------------------------------------------

_TAKE_NUMBER = (update(Repo).where(Repo.id == bindparam("repo_id")).values(next_pr_number=Repo.next_pr_number + 1)
                .returning(Repo.next_pr_number))


def create(session: Session, repo: Repo, task_id: int, *, title: str, body: str, head_branch: str,
           head_sha: str) -> PullRequest:
    """A new open PR of `repo`, numbered by the repo's own counter.

    The number is taken by one atomic increment of the counter: PRs of a repo are created concurrently (a new
    PR takes no merge-queue lock), and a read-then-write of the counter would give two of them one number.
    """
    number = session.execute(_TAKE_NUMBER, {"repo_id": repo.id}).scalar_one() - 1
    pr = PullRequest(workspace_id=repo.workspace_id, repo_id=repo.id, task_id=task_id, number=number, title=title,
                     body=body, head_branch=head_branch, head_sha=head_sha, base_branch=repo.default_branch,
                     state="open")
    session.add(pr)
    session.flush()
    return pr


def add_pending_ci(session: Session, pr: PullRequest, head_sha: str, base_sha: str | None = None) -> bool:
    """A pending CI run for the merge of `head_sha` onto `base_sha`, unless that pair has one; True if added."""
    if ci_run_on(session, pr.id, head_sha, base_sha) is not None:
        return False
    session.add(CiRun(workspace_id=pr.workspace_id, pr_id=pr.id, head_sha=head_sha, base_sha=base_sha,
                      status="pending"))
    session.flush()
    return True


def reset_ci(session: Session, pr: PullRequest, head_sha: str, base_sha: str | None) -> None:
    """CI of `head_sha` merged onto `base_sha` is pending again (a re-run): its previous result is dropped."""
    ci = ci_run_on(session, pr.id, head_sha, base_sha)
    if ci is None:
        session.add(CiRun(workspace_id=pr.workspace_id, pr_id=pr.id, head_sha=head_sha, base_sha=base_sha,
                          status="pending"))
        return
    ci.status, ci.exit_code, ci.output, ci.duration_s, ci.finished_at = "pending", None, "", None, None
    ci.failure_kind, ci.tested_sha = None, None


def point_task_at(session: Session, task_id: int, pr_id: int) -> None:
    session.execute(update(RepoTask).where(RepoTask.id == task_id).values(pr_id=pr_id))


def add_review_row(session: Session, *, workspace_id: int, pr_id: int, head_sha: str, verdict: str, comments: str,
                   author: str) -> PrReview:
    review = PrReview(workspace_id=workspace_id, pr_id=pr_id, head_sha=head_sha, verdict=verdict,
                      comments=comments, author=author)
    session.add(review)
    session.flush()
    return review
