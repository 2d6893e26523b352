"""Pull requests on the local forge, as people see and act on them."""

from __future__ import annotations

from optio.control.ports import DiffSummary, Forge, ForgeRegistry, UnknownForge
from optio.domain.prompts import squash_merge_message
from optio.errors import AppError, Invalid, NotFound
from optio.forge.merge_gates import check_merge_gates
from optio.services import audit
from optio.store import pull_requests as prs
from optio.store import repo_tasks
from optio.store.db import Database
from optio.store.models import CiRun, PrReview, PullRequest, Repo
from optio.store.session import Session


class Forbidden(AppError):
    status = 403
    code = "forbidden"


def get_pr(session: Session, workspace_id: int, pr_id: int) -> PullRequest:
    pr = prs.in_workspace(session, workspace_id, pr_id)
    if pr is None:
        raise NotFound(f"pull request {pr_id} not found")
    return pr


def resolve(session: Session, workspace_id: int, ref: str, repo: str | None = None) -> PullRequest:
    """`TASK_OR_PR`: a task id (`12`, `task:12`) or a PR number (`#3`, `pr:3`, with `repo` when ambiguous)."""
    ref = ref.strip()
    if ref.startswith(("#", "pr:")):
        number = ref.removeprefix("#").removeprefix("pr:")
        if not number.isdigit():
            raise Invalid(f"bad pull request reference {ref!r}", field="ref")
        found = prs.by_number_in_workspace(session, workspace_id, int(number), repo)
        if not found:
            raise NotFound(f"pull request {ref} not found")
        if len(found) > 1:
            raise Invalid(f"pull request {ref} exists in several repos; pass --repo", field="repo")
        return found[0]
    task_ref = ref.removeprefix("task:")
    if not task_ref.isdigit():
        raise Invalid(f"bad reference {ref!r}: use a task id or #PR", field="ref")
    task = repo_tasks.get_task(session, int(task_ref))
    if task is None or task.workspace_id != workspace_id:
        raise NotFound(f"task {task_ref} not found")
    if task.pr_id is None:
        raise NotFound(f"task {task_ref} has no pull request yet")
    return get_pr(session, workspace_id, task.pr_id)


def list_prs(db: Database, workspace_id: int, *, state: str | None = None) -> list[PullRequest]:
    with db.read() as session:
        return prs.list_in_workspace(session, workspace_id, state=state)


def details(session: Session, pr: PullRequest) -> tuple[Repo, list[CiRun], list[PrReview]]:
    repo = prs.repo_of(session, pr)
    assert repo is not None
    return repo, prs.ci_runs(session, pr.id), prs.reviews(session, pr.id)


def forge_for(session: Session, forges: ForgeRegistry, workspace_id: int, pr_id: int) -> Forge:
    """The forge the PR's repo lives on."""
    pr = get_pr(session, workspace_id, pr_id)
    kind = prs.forge_kind_of(session, pr.repo_id) or "local"
    try:
        return forges.get(kind)
    except UnknownForge as exc:
        raise AppError(str(exc)) from None


def diff_summary(db: Database, forges: ForgeRegistry, workspace_id: int, pr_id: int) -> DiffSummary:
    """The files the PR changes, from its repo's own forge."""
    with db.read() as session:
        forge = forge_for(session, forges, workspace_id, pr_id)
        pr = get_pr(session, workspace_id, pr_id)
        repo_id, number = pr.repo_id, pr.number
    return forge.diff_summary(repo_id, number)


def rerun_ci(db: Database, forge: Forge, workspace_id: int, pr_id: int) -> None:
    """CI again on the PR's head, on the PR's own forge (409 when it is not open or the repo runs no CI)."""
    with db.read() as session:
        pr = get_pr(session, workspace_id, pr_id)
        repo_id, number = pr.repo_id, pr.number
    forge.rerun_ci(repo_id, number)


def merge_message(session: Session, pr: PullRequest) -> str:
    """The squash commit's message, the same as the loop's own merge writes (naming the ticket it closes)."""
    if pr.task_id is None:
        return f"{pr.title} (#{pr.number})"
    task = repo_tasks.get_task(session, pr.task_id)
    return squash_merge_message(pr.title, pr.number, pr.task_id, repo_tasks.ticket_label(task) if task else None)


def merge_pr(db: Database, forge: Forge, workspace_id: int, pr_id: int, *, user_id: int | None, actor: str,
             role: str, force: bool = False) -> None:
    """Merge through the gates; an admin's `force` skips them and leaves an audit row saying what it skipped.

    Members can never force: the gates are the repo's rules, and only an admin may decide to break them.
    The audit row is written once the merge landed (a refused or conflicting merge bypassed nothing).
    """
    with db.read() as session:
        pr = get_pr(session, workspace_id, pr_id)
        if force and role != "admin":
            raise Forbidden("only a workspace admin can force a merge past its gates")
        repo = prs.repo_of(session, pr)
        assert repo is not None
        report = check_merge_gates(session, repo, pr)
        repo_id, number, head_sha, message = pr.repo_id, pr.number, pr.head_sha, merge_message(session, pr)
        already_merged = pr.state == "merged"
    merged_sha = forge.merge(repo_id, number, head_sha=head_sha, message=message, force=force)
    if force and not already_merged:
        audit.record(db, workspace_id=workspace_id, user_id=user_id, actor=actor, action="pr.force_merge",
                     target_type="pull request", target_id=pr_id,
                     detail={"user": actor, "pr_id": pr_id, "pr_number": number, "repo_id": repo_id,
                             "head_sha": head_sha, "merged_sha": merged_sha, "bypassed": list(report.unmet)})
