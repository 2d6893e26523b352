"""A task's pull request on a hosted forge (GitHub, GitLab), read from the forge itself.

Hosted forges keep no local `pull_requests` row: the forge is the record, and a task's PR is the one on its branch
`optio/<task-id>`, found through the :class:`Forge` port. The local forge's PRs stay on `services.prs`.
A :class:`ForgeBusy` (rate limit, forge outage) passes through: the API answers it 503 with Retry-After.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from optio.control.ports import DiffSummary, Forge, ForgeBusy, ForgeRegistry, PullRequestState, UnknownForge
from optio.errors import AppError, NotFound
from optio.store import repo_tasks
from optio.store import repo_tasks_read as task_store
from optio.store import repos as repo_store
from optio.store.db import Database
from optio.store.models import Repo
from optio.store.repos import find_repo
from optio.store.session import Session

BRANCH_PREFIX = "optio/"
# How many of a hosted repo's newest tasks with a branch a PR listing asks the forge about (each is a few calls).
LIST_TASKS_PER_REPO = 25
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HostedRepo:
    """What reading a hosted PR needs of its repo, taken out of the session before the forge is asked."""

    id: int
    name: str
    forge: str
    ci_required: bool


@dataclass(frozen=True)
class HostedPr:
    repo: HostedRepo
    state: PullRequestState

    @property
    def number(self) -> int:
        return self.state.info.number

    @property
    def ref(self) -> str:
        """`REPO#N`: how `optio pr show` names it."""
        return f"{self.repo.name}#{self.number}"

    @property
    def task_id(self) -> int | None:
        tail = self.state.info.head_branch.removeprefix(BRANCH_PREFIX)
        return int(tail) if self.state.info.head_branch.startswith(BRANCH_PREFIX) and tail.isdigit() else None

    @property
    def ci_status(self) -> str | None:
        if self.state.ci is not None:
            return self.state.ci.status
        return "pending" if self.state.ci_required and self.state.info.state == "open" else None

    @property
    def review_status(self) -> str | None:
        review = self.state.review
        if review is None:
            return None
        return "approved" if review.verdict == "approve" else "changes_requested"


def hosted(repo: Repo) -> HostedRepo | None:
    """The repo as a hosted one, or None when it lives on the local forge."""
    if (repo.forge or "local") == "local":
        return None
    return HostedRepo(id=repo.id, name=repo.name, forge=repo.forge,
                      ci_required=bool((repo.forge_options or {}).get("ci_required", True)))


def _forge(forges: ForgeRegistry, repo: HostedRepo) -> Forge:
    try:
        return forges.get(repo.forge)
    except UnknownForge as exc:
        raise AppError(str(exc)) from None


def for_task(forges: ForgeRegistry, repo: HostedRepo, task_id: int) -> HostedPr | None:
    state = _forge(forges, repo).pr_for_task(repo.id, task_id)
    return HostedPr(repo, state) if state is not None else None


def by_number(forges: ForgeRegistry, repo: HostedRepo, number: int) -> HostedPr:
    forge = _forge(forges, repo)
    info = forge.get_pr(repo.id, number)
    ci = forge.ci_for_head(repo.id, number) if repo.ci_required and info.state == "open" else None
    review = forge.latest_review(repo.id, number)
    return HostedPr(repo, PullRequestState(info=info, ci_required=repo.ci_required, ci=ci, review=review))


def target(session: Session, workspace_id: int, ref: str, repo: str | None) -> tuple[HostedRepo, int, bool] | None:
    """Where `ref` (as `services.prs.resolve` takes it) points when that is a hosted repo: (repo, number or task
    id, whether it is a task id); None when it is the local forge's, left to `services.prs`."""
    ref = ref.strip()
    if ref.startswith(("#", "pr:")):
        number = ref.removeprefix("#").removeprefix("pr:")
        if repo is None or not number.isdigit():
            return None
        found = hosted(find_repo(session, workspace_id, repo))
        return (found, int(number), False) if found else None
    task_ref = ref.removeprefix("task:")
    if not task_ref.isdigit():
        return None
    task = repo_tasks.get_task(session, int(task_ref))
    if task is None or task.workspace_id != workspace_id:
        return None
    repo_row = repo_tasks.get_repo(session, task.repo_id)
    found = hosted(repo_row) if repo_row is not None else None
    return (found, task.id, True) if found else None


def resolve(forges: ForgeRegistry, where: tuple[HostedRepo, int, bool]) -> HostedPr:
    repo, value, is_task = where
    if not is_task:
        return by_number(forges, repo, value)
    pr = for_task(forges, repo, value)
    if pr is None:
        raise NotFound(f"task {value} has no pull request yet")
    return pr


def of_task(forges: ForgeRegistry, repo: Repo, task_id: int, *, has_branch: bool) -> HostedPr | None:
    """The task's hosted PR for its page or API body; None on the local forge, before it pushed a branch, or while
    the forge is busy or cannot be read (the task itself still reads; `optio pr show` reports the forge's error)."""
    where = hosted(repo)
    if where is None or not has_branch:
        return None
    try:
        return for_task(forges, where, task_id)
    except ForgeBusy:
        return None
    except Exception as exc:  # a forge that cannot be read (a revoked token) must not break the task
        log.warning("could not read task %s's pull request from %s: %s: %s", task_id, where.forge,
                    type(exc).__name__, exc)
        return None


def diff(forges: ForgeRegistry, repo: HostedRepo, number: int) -> DiffSummary:
    """The PR's files as the forge lists them (ForgeBusy passes through, like every hosted read)."""
    return _forge(forges, repo).diff_summary(repo.id, number)


def busy_message(forge: str, exc: ForgeBusy) -> str:
    """What a person reads when a hosted forge cannot answer now: which forge, why, and when to look again."""
    return f"{forge} is busy ({exc.reason}); try again in {max(1, round(exc.retry_after_s))}s"


@dataclass(frozen=True)
class Listing:
    """The workspace's hosted PRs, with a line per forge that could not be read now (never an error page)."""

    prs: list[HostedPr]
    unavailable: list[str]


def list_in_workspace(db: Database, forges: ForgeRegistry, workspace_id: int, *,
                      state: str | None = None) -> Listing:
    """Hosted PRs of the workspace's newest tasks (their branch is ``optio/<task-id>``), newest task first.

    The forge is the record, so each is read from it; a repo whose forge is busy is skipped once and named in
    ``unavailable`` instead of failing the whole listing.
    """
    with db.read() as session:
        wanted: list[tuple[HostedRepo, list[int]]] = []
        for repo in repo_store.list_repos(session, workspace_id):
            where = hosted(repo)
            if where is None:
                continue
            tasks = task_store.list_tasks(session, workspace_id, repo_id=repo.id, state=None,
                                          limit=LIST_TASKS_PER_REPO, before=None)
            wanted.append((where, [t.id for t in tasks if t.branch is not None]))
    found: list[HostedPr] = []
    unavailable: list[str] = []
    for on, task_ids in wanted:
        try:
            for task_id in task_ids:
                pr = for_task(forges, on, task_id)
                if pr is not None and (state is None or pr.state.info.state == state):
                    found.append(pr)
        except ForgeBusy as exc:
            unavailable.append(f"{on.name}: " + busy_message(on.forge, exc))
        except Exception as exc:  # one repo's unreadable forge (a revoked token) must not hide the others
            log.warning("could not list pull requests of %s on %s: %s: %s", repo.name, on.forge,
                        type(exc).__name__, exc)
            unavailable.append(f"{on.name}: {on.forge} could not be read ({type(exc).__name__})")
    found.sort(key=lambda p: -(p.task_id or 0))
    return Listing(prs=found, unavailable=unavailable)
