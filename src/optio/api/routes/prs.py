"""Pull requests on the local forge: the human side of the loop (approve, request changes, merge, close).

Listing and reading also cover hosted forges' PRs (GitHub, GitLab), read from the forge itself; acting on those
happens on the forge.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field

from optio.api.deps import Ctx, get_ctx
from optio.api.errors import ERROR_RESPONSES
from optio.api.schemas import Id, MergeIn, PullRequestDetail, PullRequestOut, ReviewIn
from optio.api.views import hosted_pr_out, pr_out
from optio.control.ports import DiffSummary, Forge
from optio.errors import AppError
from optio.services import hosted_prs
from optio.services import prs as pr_service

router = APIRouter(prefix="/api/prs", tags=["pull requests"], responses=ERROR_RESPONSES)
UNAVAILABLE_HEADER = "X-Optio-Unavailable"


class DiffFileOut(BaseModel):
    path: str
    old_path: str | None = Field(description="Where a renamed file came from")
    status: str = Field(description="added, modified, deleted or renamed")
    additions: int
    deletions: int
    binary: bool


class DiffSummaryOut(BaseModel):
    files: list[DiffFileOut]
    additions: int = Field(description="Lines added over the files listed")
    deletions: int
    changed_files: int
    truncated: bool = Field(description="The forge listed only the first files of a larger change")


def diff_out(summary: DiffSummary) -> DiffSummaryOut:
    return DiffSummaryOut(
        files=[DiffFileOut(path=f.path, old_path=f.old_path, status=f.status, additions=f.additions,
                           deletions=f.deletions, binary=f.binary) for f in summary.files],
        additions=summary.additions, deletions=summary.deletions, changed_files=summary.changed_files,
        truncated=summary.truncated)


def _detail(ctx: Ctx, pr_id: int) -> PullRequestDetail:
    with ctx.db.read() as session:
        pr = pr_service.get_pr(session, ctx.workspace_id, pr_id)
        return pr_out(pr, *pr_service.details(session, pr))


def _forge(ctx: Ctx, pr_id: int) -> Forge:
    """The forge of the PR's own repo (repos on different forges live side by side)."""
    with ctx.db.read() as session:
        return pr_service.forge_for(session, ctx.optio.ctx.forges, ctx.workspace_id, pr_id)


@router.get("", response_model=list[PullRequestOut],
            description="The workspace's PRs: the local forge's, then hosted forges' (read from the forge, for "
                        "the newest tasks of each hosted repo). A hosted forge that cannot answer now is skipped "
                        f"and named in the `{UNAVAILABLE_HEADER}` header.")
def list_prs(response: Response, ctx: Ctx = Depends(get_ctx),
             state: str | None = Query(default=None, pattern="^(open|merged|closed)$"),
             hosted: bool = Query(default=True, description="Include hosted forges' PRs")) -> list[PullRequestOut]:
    out: list[PullRequestOut] = []
    for pr in pr_service.list_prs(ctx.db, ctx.workspace_id, state=state):
        out.append(_detail(ctx, pr.id))
    if hosted:
        listing = hosted_prs.list_in_workspace(ctx.db, ctx.optio.ctx.forges, ctx.workspace_id, state=state)
        out += [hosted_pr_out(p) for p in listing.prs]
        if listing.unavailable:
            # One ASCII line (a header is latin-1 and cannot break lines): never a 500 for a forge's odd reason.
            text = "; ".join(listing.unavailable).encode("ascii", "replace").decode()
            response.headers[UNAVAILABLE_HEADER] = " ".join(text.split())
    return out


@router.get("/resolve", response_model=PullRequestDetail)
def resolve_pr(ref: str = Query(min_length=1, max_length=100, description="Task id, task:ID, #N or pr:N"),
               repo: str | None = Query(default=None, max_length=200),
               ctx: Ctx = Depends(get_ctx)) -> PullRequestDetail:
    with ctx.db.read() as session:
        where = hosted_prs.target(session, ctx.workspace_id, ref, repo)
        if where is None:
            pr = pr_service.resolve(session, ctx.workspace_id, ref, repo)
            return pr_out(pr, *pr_service.details(session, pr))
    return hosted_pr_out(hosted_prs.resolve(ctx.optio.ctx.forges, where))


@router.get("/diff", response_model=DiffSummaryOut,
            description="The files a PR changes with +/- line counts, the PR named as for `/api/prs/resolve` "
                        "(hosted forges' PRs too).")
def resolve_diff(ref: str = Query(min_length=1, max_length=100, description="Task id, task:ID, #N or pr:N"),
                 repo: str | None = Query(default=None, max_length=200),
                 ctx: Ctx = Depends(get_ctx)) -> DiffSummaryOut:
    with ctx.db.read() as session:
        where = hosted_prs.target(session, ctx.workspace_id, ref, repo)
        pr_id = pr_service.resolve(session, ctx.workspace_id, ref, repo).id if where is None else None
    if pr_id is not None:
        return diff_out(pr_service.diff_summary(ctx.db, ctx.optio.ctx.forges, ctx.workspace_id, pr_id))
    assert where is not None
    found = hosted_prs.resolve(ctx.optio.ctx.forges, where)
    return diff_out(hosted_prs.diff(ctx.optio.ctx.forges, found.repo, found.number))


@router.get("/{pr_id}/diff", response_model=DiffSummaryOut)
def get_diff(pr_id: Id, ctx: Ctx = Depends(get_ctx)) -> DiffSummaryOut:
    return diff_out(pr_service.diff_summary(ctx.db, ctx.optio.ctx.forges, ctx.workspace_id, pr_id))


@router.get("/{pr_id}", response_model=PullRequestDetail)
def get_pr(pr_id: Id, ctx: Ctx = Depends(get_ctx)) -> PullRequestDetail:
    return _detail(ctx, pr_id)


@router.post("/{pr_id}/approve", response_model=PullRequestDetail)
def approve(pr_id: Id, body: ReviewIn | None = None, ctx: Ctx = Depends(get_ctx)) -> PullRequestDetail:
    pr = _detail(ctx, pr_id)
    _forge(ctx, pr_id).submit_review(pr.repo_id, pr.number, verdict="approve", comments=(body or ReviewIn()).comment,
                              author=f"user:{ctx.username or ctx.user_id or 'local'}")
    return _detail(ctx, pr_id)


@router.post("/{pr_id}/request-changes", response_model=PullRequestDetail)
def request_changes(pr_id: Id, body: ReviewIn, ctx: Ctx = Depends(get_ctx)) -> PullRequestDetail:
    pr = _detail(ctx, pr_id)
    if not body.comment.strip():
        raise AppError("a change request needs a comment", field="comment", code="invalid")
    _forge(ctx, pr_id).submit_review(pr.repo_id, pr.number, verdict="request_changes", comments=body.comment,
                              author=f"user:{ctx.username or ctx.user_id or 'local'}")
    return _detail(ctx, pr_id)


@router.post("/{pr_id}/merge", response_model=PullRequestDetail,
             description="Squash-merge the head. Refused (409) unless CI passed on that head and the repo's "
                         "approval rule holds on it; `force: true` (admins only, audited) overrides.")
def merge(pr_id: Id, body: MergeIn | None = None, ctx: Ctx = Depends(get_ctx)) -> PullRequestDetail:
    pr_service.merge_pr(ctx.db, _forge(ctx, pr_id), ctx.workspace_id, pr_id, user_id=ctx.user_id,
                        actor=ctx.username or "anonymous", role=ctx.role, force=(body or MergeIn()).force)
    return _detail(ctx, pr_id)


@router.post("/{pr_id}/rerun-ci", response_model=PullRequestDetail,
             description="Run the repo's CI again on the PR's current head. Refused (409) when the PR is not open, "
                         "the repo has no CI command or CI is already pending on that head.")
def rerun_ci(pr_id: Id, ctx: Ctx = Depends(get_ctx)) -> PullRequestDetail:
    pr_service.rerun_ci(ctx.db, _forge(ctx, pr_id), ctx.workspace_id, pr_id)
    return _detail(ctx, pr_id)


@router.post("/{pr_id}/close", response_model=PullRequestDetail)
def close(pr_id: Id, ctx: Ctx = Depends(get_ctx)) -> PullRequestDetail:
    pr = _detail(ctx, pr_id)
    _forge(ctx, pr_id).close(pr.repo_id, pr.number)
    return _detail(ctx, pr_id)
