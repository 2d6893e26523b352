"""The dashboard's pages (GET): each reads through the services the API uses and renders one template.

`?part=NAME` renders only the named live block of a page; `app.js` asks for it when the workspace event stream
says something on the page changed.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from optio.api.deps import Ctx, auth_of
from optio.api.routes.task_feed import DEFAULT_TYPES, STATES, TASK_TYPES
from optio.api.routes.task_feed import _decode as decode_feed_cursor
from optio.api.routes.task_feed import _encode as encode_feed_cursor
from optio.api.schemas import Id
from optio.domain.states import TERMINAL, RunKind
from optio.errors import AppError, Invalid
from optio.services import audit, credentials, dashboard, events, jobs, prs, repos, runs, task_feed, tasks, tickets
from optio.services import users as user_service
from optio.services.hosted_prs import of_task as hosted_pr_of_task
from optio.services.ticket_intake import actions_view as ticket_links_view
from optio.web.render import page, pipeline
from optio.web.session import SignInRequired, Viewer, viewer_of

router = APIRouter(include_in_schema=False)
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
    for row in rows:
        if row.run is not None:
            r = row.run
            items.append({"type": "job_run", "id": r.id, "href": f"/runs/{r.id}", "title": f"{row.job_name} run",
                          "where": row.job_name, "where_href": f"/jobs/{r.job_id}", "state": r.state,
                          "agent": "", "cost": r.cost_usd, "imputed": r.cost_imputed, "created_at": r.created_at,
                          "pr": None, "can_cancel": r.state in ("queued", "running"),
                          "can_retry": r.state in ("failed", "cancelled")})
        else:
            v = tasks.task_view(ctx.db, ctx.workspace_id, row.id)
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
    viewer = viewer_of(request)
    ctx = viewer.workspace()
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
    resumes = [e for e in timeline if e.to_state == "running" and e.from_state in ("pr_opened", "needs_attention")]
    return page(request, "task.html", viewer, {
        **_base(viewer, f"Task {task_id}: {view.task.title}", "tasks"), "v": view, "t": view.task,
        "stages": pipeline(view.task, view.pr, view.ci_status, view.review_status,
                           pr_detail["cis"] if pr_detail else None), "timeline": timeline,
        "resumes": resumes, "prd": pr_detail, "hosted": hosted, "done": view.task.state in TASK_TERMINAL,
        "log_url": f"/api/repo-tasks/{task_id}/logs", "live_key": f"repo_task:{task_id}"}, part=part)


@router.get("/runs/{run_id}")
@html_page
def run_detail(request: Request, run_id: Id, part: PART = None) -> Response:
    viewer = viewer_of(request)
    ctx = viewer.workspace()
    run, job_name = runs.job_run_with_name(ctx.db, ctx.workspace_id, run_id)
    timeline = runs.run_events(ctx.db, "job_run", run_id, ctx.workspace_id, "run")
    return page(request, "run.html", viewer, {
        **_base(viewer, f"Run {run_id} of {job_name}", "jobs"), "r": run, "job_name": job_name,
        "timeline": timeline, "done": run.state in RUN_TERMINAL, "log_url": f"/api/runs/{run_id}/logs",
        "live_key": f"job_run:{run_id}"}, part=part)


@router.get("/jobs")
@html_page
def job_list(request: Request) -> Response:
    viewer = viewer_of(request)
    ctx = viewer.workspace()
    return page(request, "jobs.html", viewer, {**_base(viewer, "Jobs", "jobs"),
                                               "jobs": jobs.list_jobs(ctx.db, ctx.workspace_id)})


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
    viewer = viewer_of(request)
    ctx = viewer.workspace()
    with ctx.db.read() as session:
        job = jobs.find_job(session, ctx.workspace_id, job_ref)
    history, _next = runs.list_job_runs(ctx.db, ctx.workspace_id, job=str(job.id), limit=50)
    return page(request, "job.html", viewer, {
        **_base(viewer, f"Job {job.name}", "jobs"), "job": job, "fields": param_fields(job.params_schema),
        "history": [r for r, _name in history]}, part=part)


@router.get("/repos")
@html_page
def repo_list(request: Request) -> Response:
    viewer = viewer_of(request)
    ctx = viewer.workspace()
    return page(request, "repos.html", viewer, {**_base(viewer, "Repos", "repos"),
                                                "repos": repos.list_repos(ctx.db, ctx.workspace_id)})


@router.get("/repos/{repo_ref}")
@html_page
def repo_detail(request: Request, repo_ref: str, part: PART = None) -> Response:
    viewer = viewer_of(request)
    ctx = viewer.workspace()
    with ctx.db.read() as session:
        repo = repos.find_repo(session, ctx.workspace_id, repo_ref)
    views, _next = tasks.list_tasks(ctx.db, ctx.workspace_id, repo=str(repo.id), limit=50)
    repo_prs = [p for p in prs.list_prs(ctx.db, ctx.workspace_id) if p.repo_id == repo.id]
    return page(request, "repo.html", viewer, {
        **_base(viewer, f"Repo {repo.name}", "repos"), "repo": repo, "views": views, "prs": repo_prs},
        part=part)


@router.get("/prs/{pr_id}")
@html_page
def pr_detail(request: Request, pr_id: Id, part: PART = None) -> Response:
    viewer = viewer_of(request)
    ctx = viewer.workspace()
    with ctx.db.read() as session:
        pr = prs.get_pr(session, ctx.workspace_id, pr_id)
        repo, cis, reviews = prs.details(session, pr)
    return page(request, "pr.html", viewer, {
        **_base(viewer, f"{repo.name}#{pr.number}: {pr.title}", "repos"), "pr": pr, "repo": repo, "cis": cis,
        "reviews": reviews, "live_key": f"repo_task:{pr.task_id}" if pr.task_id else ""}, part=part)


@router.get("/tickets")
@html_page
def ticket_list(request: Request) -> Response:
    viewer = viewer_of(request)
    ctx = viewer.workspace()
    return page(request, "tickets.html", viewer, {
        **_base(viewer, "Tickets", "tickets"), "tickets": tickets.list_tickets(ctx.db, ctx.workspace_id),
        "repos": repos.list_repos(ctx.db, ctx.workspace_id),
        "linked": ticket_links_view(ctx.db, ctx.workspace_id)})


@router.get("/costs")
@html_page
def cost_page(request: Request, days: Annotated[int, Query(ge=1, le=366)] = 30) -> Response:
    viewer = viewer_of(request)
    ctx = viewer.workspace()
    report = dashboard.cost_report(ctx.db, ctx.workspace_id, days=days)
    return page(request, "costs.html", viewer, {**_base(viewer, "Costs", "costs"), "report": report})


@router.get("/secrets")
@html_page
def secret_list(request: Request) -> Response:
    viewer = viewer_of(request)
    ctx = viewer.workspace()
    store = auth_of(ctx.optio).secrets
    repo_list = repos.list_repos(ctx.db, ctx.workspace_id)
    rows: list[tuple[Any, Any]] = [(s, None) for s in store.list(ctx.workspace_id)]
    for repo in repo_list:
        rows += [(s, repo) for s in store.list(ctx.workspace_id, repo_id=repo.id) if s.repo_id == repo.id]
    return page(request, "secrets.html", viewer, {**_base(viewer, "Secrets", "secrets"), "rows": rows,
                                                  "repos": repo_list})


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
