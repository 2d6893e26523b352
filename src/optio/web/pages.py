"""The dashboard's pages (GET): each reads through the services the API uses and renders one template.

`?part=NAME` renders only the named live block of a page; `app.js` asks for it when the workspace event stream
says something on the page changed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from optio.api.deps import Ctx, auth_of
from optio.api.routes.task_feed import DEFAULT_TYPES, STATES, TASK_TYPES
from optio.api.routes.task_feed import _decode as decode_feed_cursor
from optio.api.routes.task_feed import _encode as encode_feed_cursor
from optio.api.schemas import Id
from optio.api.views import hosted_pr_out, pr_out
from optio.control.ports import DiffSummary, ForgeBusy
from optio.domain.states import TERMINAL, RunKind
from optio.errors import AppError, Invalid, NotFound
from optio.services import (
    audit,
    credentials,
    dashboard,
    events,
    hosted_prs,
    jobs,
    prs,
    repos,
    runs,
    task_feed,
    tasks,
    ticket_sources,
    tickets,
)
from optio.services import users as user_service
from optio.services.hosted_prs import of_task as hosted_pr_of_task
from optio.services.ticket_intake import actions_view as ticket_links_view
from optio.web.render import page, pipeline
from optio.web.session import SignInRequired, Viewer, viewer_of

router = APIRouter(include_in_schema=False)
log = logging.getLogger(__name__)
PART = Annotated[str | None, Query(max_length=40, pattern="^[a-z_]+$")]
TASK_TERMINAL = TERMINAL[RunKind.REPO_TASK]
RUN_TERMINAL = TERMINAL[RunKind.JOB_RUN]


def html_page(fn: Callable[..., Response]) -> Callable[..., Response]:
    """Sign-in redirect and errors as pages (the API's JSON errors are for programs)."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Response:
        request: Request = kwargs["request"]
        try:
            return fn(*args, **kwargs)
        except SignInRequired:
            return RedirectResponse("/login", status_code=303)
        except AppError as exc:
            return error_page(request, exc.status, exc.message)
        except ForgeBusy as exc:  # a hosted forge's rate limit or outage: say so, never a 500
            return error_page(request, 503, f"The forge cannot answer now ({exc.reason}); try again in "
                                            f"{max(1, round(exc.retry_after_s))}s.")

    return wrapper


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    try:
        viewer: Viewer | None = viewer_of(request)
    except SignInRequired:
        viewer = None
    if viewer is None:
        return HTMLResponse(f"<!doctype html><title>Error</title><p role='alert'>{message}</p>", status_code=status)
    return page(request, "error.html", viewer, {"status": status, "message": message, "title": "Error"},
                status=status)


def _base(viewer: Viewer, title: str, nav: str) -> dict[str, Any]:
    return {"title": title, "nav": nav, "events_after": events.current_position(viewer.workspace().db)}


def workspace_page(request: Request, template: str, nav: str, load: Callable[[Ctx], tuple[str, dict[str, Any]]],
                   part: str | None = None) -> Response:
    """The shape most pages share: the viewer's workspace, what `load` reads through the services (the page's
    title and its data), rendered whole or as one live block."""
    viewer = viewer_of(request)
    title, data = load(viewer.workspace())
    return page(request, template, viewer, {**_base(viewer, title, nav), **data}, part=part)


@router.get("/")
@html_page
def overview(request: Request, part: PART = None) -> Response:
    viewer = viewer_of(request)
    if viewer.ctx is None:
        return page(request, "waiting.html", viewer, {"title": "Optio", "nav": ""})
    ctx = viewer.ctx
    data = dashboard.overview(ctx.db, ctx.workspace_id)
    return page(request, "overview.html", viewer, {**_base(viewer, "Overview", "overview"), "o": data}, part=part)


def _feed_items(ctx: Ctx, rows: list[task_feed.FeedRow]) -> list[dict[str, Any]]:
    items = []
    views = tasks.task_views(ctx.db, [r.task for r in rows if r.task is not None])
    for row in rows:
        if row.run is not None:
            r = row.run
            items.append({"type": "job_run", "id": r.id, "href": f"/runs/{r.id}", "title": f"{row.job_name} run",
                          "where": row.job_name, "where_href": f"/jobs/{r.job_id}", "state": r.state,
                          "agent": "", "cost": r.cost_usd, "imputed": r.cost_imputed, "created_at": r.created_at,
                          "pr": None, "can_cancel": r.state in ("queued", "running"),
                          "can_retry": r.state in ("failed", "cancelled")})
        elif row.task is not None:
            v = views[row.id]
            t = v.task
            items.append({"type": "repo_task", "id": t.id, "href": f"/tasks/{t.id}", "title": t.title,
                          "where": v.repo.name, "where_href": f"/repos/{v.repo.id}", "state": t.state,
                          "agent": t.agent_type, "cost": t.cost_usd, "imputed": t.cost_imputed,
                          "created_at": t.created_at, "pr": v.pr, "ci": v.ci_status,
                          "can_cancel": t.state not in TASK_TERMINAL,
                          "can_retry": t.state in ("failed", "cancelled", "needs_attention")})
    return items


@router.get("/tasks")
@html_page
def task_list(
    request: Request,
    part: PART = None,
    state: Annotated[str | None, Query(max_length=40)] = None,
    type: Annotated[str | None, Query(max_length=20)] = None,
    repo: Annotated[str | None, Query(max_length=200)] = None,
    job: Annotated[str | None, Query(max_length=200)] = None,
    agent: Annotated[str | None, Query(max_length=64)] = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Response:
    viewer = viewer_of(request)
    ctx = viewer.workspace()
    state = state or None
    if state and state not in STATES:
        raise Invalid(f"unknown state {state!r}", field="state")
    kinds = DEFAULT_TYPES if not type else (type,)
    if any(k not in TASK_TYPES[:2] for k in kinds):
        raise Invalid(f"unknown type {type!r}", field="type")
    repo_list = repos.list_repos(ctx.db, ctx.workspace_id)
    job_list = jobs.list_jobs(ctx.db, ctx.workspace_id)
    only = task_feed.FeedFilter(
        repo_id=next((r.id for r in repo_list if repo and (r.name == repo or str(r.id) == repo)), -1) if repo
        else None,
        job_id=next((j.id for j in job_list if job and (j.name == job or str(j.id) == job)), -1) if job else None,
        agent_type=agent or None, search=q or None)
    ranks = tuple(rank for rank, kind in enumerate(TASK_TYPES) if kind in kinds)
    rows = task_feed.newest(ctx.db, ctx.workspace_id, ranks=ranks, state=state,
                            position=decode_feed_cursor(cursor), limit=limit + 1, only=only)
    shown, more = rows[:limit], len(rows) > limit
    next_cursor = encode_feed_cursor(shown[-1].created_at, TASK_TYPES[shown[-1].rank], shown[-1].id) \
        if more and shown else None
    filters = {"state": state or "", "type": type or "", "repo": repo or "", "job": job or "", "agent": agent or "",
               "q": q or ""}
    agents = sorted({r.agent_type for r in repo_list} | {j.agent_type for j in job_list})
    return page(request, "tasks.html", viewer, {
        **_base(viewer, "Tasks", "tasks"), "items": _feed_items(ctx, shown), "next_cursor": next_cursor,
        "filters": filters, "states": STATES, "repos": repo_list, "jobs": job_list, "agents": agents,
        "cursor": cursor or "", "limit": limit}, part=part)


@router.get("/tasks/{task_id}")
@html_page
def task_detail(request: Request, task_id: Id, part: PART = None) -> Response:
    def load(ctx: Ctx) -> tuple[str, dict[str, Any]]:
        view = tasks.task_view(ctx.db, ctx.workspace_id, task_id)
        timeline = runs.run_events(ctx.db, "repo_task", task_id, ctx.workspace_id, "task")
        pr_detail: dict[str, Any] | None = None
        if view.pr is not None:
            with ctx.db.read() as session:
                pr = prs.get_pr(session, ctx.workspace_id, view.pr.id)
                _repo, cis, reviews = prs.details(session, pr)
                pr_detail = {"pr": pr, "cis": cis, "reviews": reviews}
        hosted = None if view.pr is not None else hosted_pr_of_task(
            ctx.optio.ctx.forges, view.repo, task_id, has_branch=view.task.branch is not None)
        resumes = [e for e in timeline
                   if e.to_state == "running" and e.from_state in ("pr_opened", "needs_attention")]
        return f"Task {task_id}: {view.task.title}", {
            "v": view, "t": view.task,
            "stages": pipeline(view.task, view.pr, view.ci_status, view.review_status,
                               pr_detail["cis"] if pr_detail else None), "timeline": timeline,
            "resumes": resumes, "prd": pr_detail, "hosted": hosted, "done": view.task.state in TASK_TERMINAL,
            "log_url": f"/api/repo-tasks/{task_id}/logs", "live_key": f"repo_task:{task_id}"}

    return workspace_page(request, "task.html", "tasks", load, part)


@router.get("/runs/{run_id}")
@html_page
def run_detail(request: Request, run_id: Id, part: PART = None) -> Response:
    def load(ctx: Ctx) -> tuple[str, dict[str, Any]]:
        run, job_name = runs.job_run_with_name(ctx.db, ctx.workspace_id, run_id)
        timeline = runs.run_events(ctx.db, "job_run", run_id, ctx.workspace_id, "run")
        return f"Run {run_id} of {job_name}", {
            "r": run, "job_name": job_name, "timeline": timeline, "done": run.state in RUN_TERMINAL,
            "log_url": f"/api/runs/{run_id}/logs", "live_key": f"job_run:{run_id}"}

    return workspace_page(request, "run.html", "jobs", load, part)


@router.get("/jobs")
@html_page
def job_list(request: Request) -> Response:
    return workspace_page(request, "jobs.html", "jobs",
                          lambda ctx: ("Jobs", {"jobs": jobs.list_jobs(ctx.db, ctx.workspace_id)}))


def param_fields(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The run-now form's fields, from the job's params schema."""
    fields = []
    for name, spec in sorted((schema or {}).items()):
        spec = spec or {}
        fields.append({"name": name, "required": bool(spec.get("required", "default" not in spec)),
                       "default": "" if spec.get("default") is None else str(spec.get("default")),
                       "description": str(spec.get("description", "")),
                       "choices": [str(c) for c in spec.get("enum", []) or []]})
    return fields


@router.get("/jobs/{job_ref}")
@html_page
def job_detail(request: Request, job_ref: str, part: PART = None) -> Response:
    def load(ctx: Ctx) -> tuple[str, dict[str, Any]]:
        with ctx.db.read() as session:
            job = jobs.find_job(session, ctx.workspace_id, job_ref)
        history, _next = runs.list_job_runs(ctx.db, ctx.workspace_id, job=str(job.id), limit=50)
        return f"Job {job.name}", {"job": job, "fields": param_fields(job.params_schema),
                                   "history": [r for r, _name in history]}

    return workspace_page(request, "job.html", "jobs", load, part)


@router.get("/repos")
@html_page
def repo_list(request: Request) -> Response:
    return workspace_page(request, "repos.html", "repos",
                          lambda ctx: ("Repos", {"repos": repos.list_repos(ctx.db, ctx.workspace_id)}))


@router.get("/repos/{repo_ref}")
@html_page
def repo_detail(request: Request, repo_ref: str, part: PART = None) -> Response:
    def load(ctx: Ctx) -> tuple[str, dict[str, Any]]:
        with ctx.db.read() as session:
            repo = repos.find_repo(session, ctx.workspace_id, repo_ref)
        views, _next = tasks.list_tasks(ctx.db, ctx.workspace_id, repo=str(repo.id), limit=50)
        repo_prs = [p for p in prs.list_prs(ctx.db, ctx.workspace_id) if p.repo_id == repo.id]
        return f"Repo {repo.name}", {"repo": repo, "views": views, "prs": repo_prs}

    return workspace_page(request, "repo.html", "repos", load, part)


PR_STATES = ("open", "merged", "closed")


def pr_href(pr: Any) -> str:
    """A PR's page: the local forge's by its id, a hosted forge's as `REPO_ID-NUMBER` (the forge keeps it)."""
    return f"/prs/{pr.id}" if pr.id is not None else f"/prs/{pr.repo_id}-{pr.number}"


@router.get("/prs")
@html_page
def pr_list(request: Request, part: PART = None,
            state: Annotated[str | None, Query(max_length=10)] = None) -> Response:
    state = state or None
    if state is not None and state not in PR_STATES:
        raise Invalid(f"unknown state {state!r}", field="state")

    def load(ctx: Ctx) -> tuple[str, dict[str, Any]]:
        local = prs.list_prs(ctx.db, ctx.workspace_id, state=state)
        with ctx.db.read() as session:
            rows = [pr_out(pr, *prs.details(session, pr)) for pr in local]
        listing = hosted_prs.list_in_workspace(ctx.db, ctx.optio.ctx.forges, ctx.workspace_id, state=state)
        rows += [hosted_pr_out(p) for p in listing.prs]
        return "Pull requests", {"rows": [(pr_href(r), r) for r in rows], "unavailable": listing.unavailable,
                                 "state": state or "", "states": PR_STATES}

    return workspace_page(request, "prs.html", "prs", load, part)


def _diff(load: Callable[[], DiffSummary], what: str) -> tuple[DiffSummary | None, str]:
    """The PR's diff summary, or why it is not shown: the rest of the PR page never fails for want of it."""
    try:
        return load(), ""
    except ForgeBusy as exc:
        return None, f"The forge cannot list the files now ({exc.reason}); try again in " \
                     f"{max(1, round(exc.retry_after_s))}s."
    except AppError as exc:
        return None, f"The files changed cannot be shown: {exc.message}"
    except Exception as exc:  # a forge or git that cannot answer must not take the PR page down
        log.warning("could not read the diff of %s: %s: %s", what, type(exc).__name__, exc)
        return None, f"The files changed cannot be shown ({type(exc).__name__})."


@router.get("/prs/{pr_ref}")
@html_page
def pr_detail(request: Request, pr_ref: Annotated[str, PathParam(max_length=40)], part: PART = None) -> Response:
    local_id, sep, hosted_number = pr_ref.partition("-")
    if not local_id.isdigit() or (sep and not hosted_number.isdigit()):
        raise NotFound(f"pull request {pr_ref!r} not found: use its id, or REPO_ID-NUMBER for a hosted forge's")

    def load_local(ctx: Ctx) -> tuple[str, dict[str, Any]]:
        with ctx.db.read() as session:
            pr = prs.get_pr(session, ctx.workspace_id, int(local_id))
            repo, cis, reviews = prs.details(session, pr)
        diff, diff_error = _diff(lambda: prs.diff_summary(ctx.db, ctx.optio.ctx.forges, ctx.workspace_id, pr.id),
                                 f"pull request {pr.id}")
        return f"{repo.name}#{pr.number}: {pr.title}", {
            "pr": pr, "repo": repo, "cis": cis, "reviews": reviews, "diff": diff, "diff_error": diff_error,
            "hosted": False, "live_key": f"repo_task:{pr.task_id}" if pr.task_id else ""}

    def load_hosted(ctx: Ctx) -> tuple[str, dict[str, Any]]:
        with ctx.db.read() as session:
            repo = repos.find_repo(session, ctx.workspace_id, local_id)
        where = hosted_prs.hosted(repo)
        if where is None:
            raise NotFound(f"repo {repo.name} is on the local forge: its pull requests are /prs/ID")
        found = hosted_pr_out(hosted_prs.by_number(ctx.optio.ctx.forges, where, int(hosted_number)))
        diff, diff_error = _diff(lambda: hosted_prs.diff(ctx.optio.ctx.forges, where, found.number),
                                 f"{repo.name}#{found.number}")
        return f"{repo.name}#{found.number}: {found.title}", {
            "pr": found, "repo": repo, "cis": found.ci_runs, "reviews": found.reviews, "diff": diff,
            "diff_error": diff_error, "hosted": True,
            "live_key": f"repo_task:{found.task_id}" if found.task_id else ""}

    return workspace_page(request, "pr.html", "prs", load_hosted if hosted_number else load_local, part)


@router.get("/tickets")
@html_page
def ticket_list(request: Request) -> Response:
    base_url = str(request.base_url)
    return workspace_page(request, "tickets.html", "tickets", lambda ctx: ("Tickets", {
        "sources": [ticket_sources.view(s, base_url) for s in ticket_sources.list_sources(ctx.db, ctx.workspace_id)],
        "tickets": tickets.list_tickets(ctx.db, ctx.workspace_id),
        "repos": repos.list_repos(ctx.db, ctx.workspace_id),
        "linked": ticket_links_view(ctx.db, ctx.workspace_id)}))


@router.get("/costs")
@html_page
def cost_page(request: Request, days: Annotated[int, Query(ge=1, le=366)] = 30) -> Response:
    return workspace_page(request, "costs.html", "costs", lambda ctx: ("Costs", {
        "report": dashboard.cost_report(ctx.db, ctx.workspace_id, days=days)}))


@router.get("/secrets")
@html_page
def secret_list(request: Request) -> Response:
    def load(ctx: Ctx) -> tuple[str, dict[str, Any]]:
        store = auth_of(ctx.optio).secrets
        repo_list = repos.list_repos(ctx.db, ctx.workspace_id)
        rows: list[tuple[Any, Any]] = [(s, None) for s in store.list(ctx.workspace_id)]
        for repo in repo_list:
            rows += [(s, repo) for s in store.list(ctx.workspace_id, repo_id=repo.id) if s.repo_id == repo.id]
        return "Secrets", {"rows": rows, "repos": repo_list}

    return workspace_page(request, "secrets.html", "secrets", load)


@router.get("/settings")
@html_page
def settings_page(request: Request) -> Response:
    return settings_response(request)


def settings_response(request: Request, new_key: Any = None) -> Response:
    """The settings page; `new_key` (an `ApiKeyCreated`) is shown on it this once, on a page no cache keeps."""
    viewer = viewer_of(request)
    ctx = viewer.workspace()
    with ctx.db.read() as session:
        members = user_service.list_members(session, ctx.workspace_id)
        workspaces = user_service.memberships_of(session, ctx.user_id or 0)
    keys = credentials.list_api_keys(ctx.db, ctx.user_id or 0)
    audit_rows = audit.list_events(ctx.db, ctx.workspace_id, limit=50)[0] if viewer.is_admin else []
    response = page(request, "settings.html", viewer, {
        **_base(viewer, "Settings", "settings"), "members": members, "keys": keys, "audit": audit_rows,
        "workspaces": workspaces, "new_key": new_key})
    if new_key is not None:
        response.headers["Cache-Control"] = "no-store"
    return response
