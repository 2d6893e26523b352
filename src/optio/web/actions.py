"""The dashboard's forms (POST): each checks CSRF and role, validates with the API's own request schemas and
calls the same route code the API runs, then redirects (post/redirect/get). Errors come back as pages."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from functools import wraps
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from optio.api.account_schemas import USERNAME_PATTERN, ApiKeyCreate, MemberSet, SecretSet
from optio.api.deps import SESSION_COOKIE, WORKSPACE_COOKIE, Ctx, workspace_choice_cookie
from optio.api.routes import account as account_routes
from optio.api.routes import apikeys as apikey_routes
from optio.api.routes import jobs as job_routes
from optio.api.routes import prs as pr_routes
from optio.api.routes import repo_tasks as task_routes
from optio.api.routes import repos as repo_routes
from optio.api.routes import runs as run_routes
from optio.api.routes import secrets as secret_routes
from optio.api.routes import tickets as ticket_routes
from optio.api.routes.web_auth import _secure as secure_cookies
from optio.api.schemas import (
    Id,
    MergeIn,
    RepoCreate,
    RepoTaskCreate,
    RepoUpdate,
    ReviewIn,
    RunCreate,
    TicketCreate,
    TicketWork,
)
from optio.errors import AppError, Invalid
from optio.services import users
from optio.web.pages import error_page, settings_response
from optio.web.session import PageForbidden, SignInRequired, self_of, writer_of

router = APIRouter(include_in_schema=False)
TASK_INTENTS = {"cancel": task_routes.cancel_task, "retry": task_routes.retry_task,
                "resume": task_routes.resume_task}
RUN_INTENTS = {"cancel": run_routes.cancel_run, "retry": run_routes.retry_run}
# The dashboard's sections: where a workspace switch may return to (anything deeper belongs to the old one).
SECTIONS = frozenset({"tasks", "jobs", "repos", "prs", "tickets", "costs", "secrets", "settings", "triggers",
                      "blueprints", "templates"})


def form_action(fn: Callable[..., Any], who: Callable[[Request, str], Ctx] = writer_of) -> Callable[..., Any]:
    """Reads the form, checks the writer (`who`), runs the action; a string result is where to go next, a
    response is sent as it is (a page that must not be reloaded from a redirect, like a new API key)."""

    @wraps(fn)
    async def wrapper(request: Request, **kwargs: Any) -> Response:
        form = await request.form()
        # Browsers send a textarea's line breaks as CRLF; Optio's text is LF (and refuses a stray CR).
        data = {k: v.replace("\r\n", "\n") for k, v in form.multi_items() if isinstance(v, str)}
        lists = {k: [v for v in form.getlist(k) if isinstance(v, str)] for k in form}
        try:
            ctx = who(request, data.get("csrf_token", ""))
            if "request" in inspect.signature(fn).parameters:
                kwargs["request"] = request
            target = await run_in_threadpool(fn, ctx, data, lists, **kwargs)
        except SignInRequired:
            return RedirectResponse("/login", status_code=303)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
            return error_page(request, 422, f"{field}: {first.get('msg')}")
        except AppError as exc:
            where = f" ({exc.field})" if exc.field else ""
            return error_page(request, exc.status, exc.message + where)
        if isinstance(target, Response):
            return target
        return RedirectResponse(target, status_code=303)

    wrapper.__signature__ = _signature_without_ctx(fn)  # type: ignore[attr-defined]
    return wrapper


def _signature_without_ctx(fn: Callable[..., Any]) -> Any:
    """The route's signature for FastAPI: the request and the path parameters (the form is read by hand)."""
    params = [inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request)]
    for name, p in inspect.signature(fn).parameters.items():
        if name not in ("ctx", "data", "lists", "request"):
            params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY))
    return inspect.Signature(params, return_annotation=Response)


def _opt(data: dict[str, str], name: str) -> str | None:
    value = data.get(name, "").strip()
    return value or None


def _agent_config(data: dict[str, str]) -> dict[str, Any]:
    command = _opt(data, "command")
    return {"command": command} if command else {}


@router.post("/repos", name="web_add_repo")
@form_action
def add_repo(ctx: Ctx, data: dict[str, str], lists: dict[str, list[str]]) -> str:
    body = RepoCreate.model_validate({
        "remote_url": data.get("remote_url", "").strip(), "name": _opt(data, "name"),
        "default_branch": _opt(data, "default_branch"), "ci_command": _opt(data, "ci_command"),
        "require_approval": "require_approval" in data, "auto_merge": "auto_merge" in data,
        "agent_type": _opt(data, "agent_type") or "script", "agent_config": _agent_config(data)})
    repo = repo_routes.add_repo(body, ctx)
    return f"/repos/{repo.id}"


@router.post("/repos/{repo_ref}/settings", name="web_update_repo")
@form_action
def update_repo(ctx: Ctx, data: dict[str, str], lists: dict[str, list[str]], repo_ref: str) -> str:
    changes: dict[str, Any] = {"ci_command": data.get("ci_command", "").strip(),
                               "require_approval": "require_approval" in data, "auto_merge": "auto_merge" in data}
    if _opt(data, "max_concurrent"):
        try:
            changes["max_concurrent"] = int(data["max_concurrent"])
        except ValueError:
            raise Invalid("a whole number", field="max_concurrent") from None
    if "review_agent_type" in data:
        changes["review_agent_type"] = data["review_agent_type"].strip()
    body = RepoUpdate.model_validate(changes)
    repo = repo_routes.update_repo(repo_ref, body, ctx)
    return f"/repos/{repo.id}"


@router.post("/repos/{repo_ref}/tasks", name="web_create_task")
@form_action
def create_task(ctx: Ctx, data: dict[str, str], lists: dict[str, list[str]], repo_ref: str) -> str:
    depends = [int(d) for d in (data.get("depends_on") or "").replace(",", " ").split() if d.isdigit()]
    body = RepoTaskCreate.model_validate({
        "repo": repo_ref, "title": data.get("title", "").strip(), "prompt": data.get("prompt", ""),
        "agent_type": _opt(data, "agent_type"), "agent_config": _agent_config(data), "depends_on": depends})
    task = task_routes.create_task(body, ctx)
    return f"/tasks/{task.id}"


@router.post("/tasks/{task_id}/{intent}", name="web_task_intent")
@form_action
def task_intent(ctx: Ctx, data: dict[str, str], lists: dict[str, list[str]], task_id: Id, intent: str) -> str:
    if intent not in TASK_INTENTS:
        raise Invalid(f"unknown action {intent!r}", field="intent")
    TASK_INTENTS[intent](task_id, ctx)
    return f"/tasks/{task_id}"


@router.post("/tasks", name="web_bulk_tasks")
@form_action
def bulk(ctx: Ctx, data: dict[str, str], lists: dict[str, list[str]]) -> str:
    """Cancel or retry every selected task (`repo_task:ID` / `job_run:ID`); ones in the wrong state are skipped."""
    action = data.get("action", "")
    if action not in ("cancel", "retry"):
        raise Invalid("choose cancel or retry", field="action")
    chosen = lists.get("ids", [])
    if not chosen:
        raise Invalid("select at least one task", field="ids")
    for item in chosen:
        kind, _, raw = item.partition(":")
        if not raw.isdigit() or kind not in ("repo_task", "job_run"):
            raise Invalid(f"not a task: {item!r}", field="ids")
        try:
            (TASK_INTENTS if kind == "repo_task" else RUN_INTENTS)[action](int(raw), ctx)
        except AppError as exc:
            if exc.status != 409:
                raise
    return data.get("back") if (data.get("back") or "").startswith("/tasks") else "/tasks"  # type: ignore[return-value]


@router.post("/runs/{run_id}/{intent}", name="web_run_intent")
@form_action
def run_intent(ctx: Ctx, data: dict[str, str], lists: dict[str, list[str]], run_id: Id, intent: str) -> str:
    if intent not in RUN_INTENTS:
        raise Invalid(f"unknown action {intent!r}", field="intent")
    RUN_INTENTS[intent](run_id, ctx)
    return f"/runs/{run_id}"


@router.post("/jobs/{job_ref}/run", name="web_run_job")
@form_action
def run_job(ctx: Ctx, data: dict[str, str], lists: dict[str, list[str]], job_ref: str) -> str:
    params = {k[6:]: v for k, v in data.items() if k.startswith("param.") and v != ""}
    run = job_routes.start_run(job_ref, RunCreate.model_validate({"params": params}), ctx)
    return f"/runs/{run.id}"


@router.post("/prs/{pr_id}/{action}", name="web_pr_action")
@form_action
def pr_action(ctx: Ctx, data: dict[str, str], lists: dict[str, list[str]], pr_id: Id, action: str) -> str:
    comment = ReviewIn.model_validate({"comment": data.get("comment", "")})
    if action == "approve":
        pr_routes.approve(pr_id, comment, ctx)
    elif action == "request-changes":
        pr_routes.request_changes(pr_id, comment, ctx)
    elif action == "merge":
        pr_routes.merge(pr_id, MergeIn(force="force" in data), ctx)
    else:
        raise Invalid(f"unknown action {action!r}", field="action")
    back = data.get("back", "")
    return back if back.startswith(("/tasks/", "/prs/")) else f"/prs/{pr_id}"


@router.post("/tickets", name="web_create_ticket")
@form_action
def create_ticket(ctx: Ctx, data: dict[str, str], lists: dict[str, list[str]]) -> str:
    ticket_routes.create_ticket(TicketCreate.model_validate({
        "title": data.get("title", "").strip(), "body": data.get("body", ""), "repo": _opt(data, "repo")}), ctx)
    return "/tickets"


@router.post("/tickets/{number}/work", name="web_work_on_ticket")
@form_action
def work_on_ticket(ctx: Ctx, data: dict[str, str], lists: dict[str, list[str]], number: Id) -> str:
    """Hand the ticket to an agent as a repo task, as `optio ticket work` does."""
    body = TicketWork.model_validate({"repo": _opt(data, "repo"), "agent_type": _opt(data, "agent_type"),
                                      "agent_config": _agent_config(data)})
    task = ticket_routes.work_on_ticket(number, body, ctx)
    return f"/tasks/{task.id}"


def _admin(ctx: Ctx, what: str = "secrets") -> None:
    if not users.role_at_least(ctx.role, "admin"):
        raise PageForbidden(f"{what} need the admin role in workspace {ctx.workspace_slug!r}; you are {ctx.role}")


@router.post("/secrets", name="web_set_secret")
@form_action
def set_secret(ctx: Ctx, data: dict[str, str], lists: dict[str, list[str]]) -> str:
    _admin(ctx)
    body = SecretSet.model_validate({"value": data.get("value", ""), "repo": _opt(data, "repo")})
    secret_routes.set_secret(body, data.get("name", "").strip(), ctx)
    return "/secrets"


@router.post("/secrets/delete", name="web_delete_secret")
@form_action
def delete_secret(ctx: Ctx, data: dict[str, str], lists: dict[str, list[str]]) -> str:
    _admin(ctx)
    secret_routes.delete_secret(data.get("name", "").strip(), _opt(data, "repo"), ctx)
    return "/secrets"


@router.post("/settings/members", name="web_set_member")
@form_action
def set_member(ctx: Ctx, data: dict[str, str], lists: dict[str, list[str]]) -> str:
    """Add someone (you share a workspace with) to this one, or change a member's role."""
    _admin(ctx, "members and roles")
    username = data.get("username", "").strip()
    if not re.fullmatch(USERNAME_PATTERN, username):
        raise Invalid("letters, digits and . _ @ - (up to 200)", field="username")
    account_routes.set_member(MemberSet.model_validate({"role": data.get("role", "")}), username, ctx)
    return "/settings"


def self_action(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A form about the person's own account: CSRF checked, any role (a viewer manages their own keys too)."""
    return form_action(fn, who=self_of)


@router.post("/settings/apikeys", name="web_create_apikey")
@self_action
def create_apikey(ctx: Ctx, data: dict[str, str], lists: dict[str, list[str]], request: Request) -> Response:
    """The new key is on the page this post answers, once: no redirect would carry it, nothing stores it."""
    created = apikey_routes.create_key(ApiKeyCreate.model_validate({"name": data.get("name", "").strip()}), ctx)
    return settings_response(request, created)


@router.post("/settings/apikeys/{key_id}/revoke", name="web_revoke_apikey")
@self_action
def revoke_apikey(ctx: Ctx, data: dict[str, str], lists: dict[str, list[str]], key_id: Id) -> str:
    apikey_routes.revoke_key(key_id, ctx)
    return "/settings"


@router.post("/workspace", name="web_switch_workspace")
@self_action
def switch_workspace(ctx: Ctx, data: dict[str, str], lists: dict[str, list[str]], request: Request) -> Response:
    """Remember the workspace this browser session shows (any role may look at a workspace it belongs to).

    A workspace the person is not a member of is "not found", as in the API; the page they were on is kept when
    it is a section of the dashboard (a task of the old workspace would not exist in the new one).
    """
    slug = data.get("workspace", "").strip()
    if not slug:
        raise Invalid("choose a workspace", field="workspace")
    with ctx.db.read() as session:
        ws, _role = users.workspace_for(session, ctx.user_id or 0, slug)
    section = data.get("next", "/").split("?", 1)[0].split("/")[1:2]
    target = f"/{section[0]}" if section and section[0] in SECTIONS else "/"
    response = RedirectResponse(target, status_code=303)
    token = request.cookies.get(SESSION_COOKIE) or ""
    response.set_cookie(WORKSPACE_COOKIE, workspace_choice_cookie(ctx.optio, token, ws.slug), httponly=True,
                        secure=secure_cookies(request), samesite="lax", path="/")
    return response
