"""The dashboard's intake pages: triggers (fire, pause, resume, delete), blueprints (definition and a run-now
form from its params schema) and the prompt template library (the effective template per kind, and where it
comes from).

Each reads through the services the API uses, and each form calls the API's own route code, so a button here is
exactly the matching `POST /api/triggers/...` or `/api/blueprints/.../run`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from optio.api.deps import Ctx
from optio.api.routes import blueprints as blueprint_routes
from optio.api.routes import templates as template_routes
from optio.api.routes import triggers as trigger_routes
from optio.api.schemas import Id
from optio.api.template_schemas import TemplateSet
from optio.api.trigger_schemas import BlueprintRun, TriggerFireIn
from optio.errors import Invalid
from optio.services import blueprints, triggers
from optio.services import templates as template_library
from optio.web.actions import form_action
from optio.web.pages import html_page, param_fields, workspace_page

router = APIRouter(include_in_schema=False)
TRIGGER_INTENTS = ("fire", "pause", "resume", "delete")
TEMPLATE_KINDS = ("task", "review", "job")


def _run_href(kind: str, run_id: int) -> str:
    return f"/tasks/{run_id}" if kind == "repo_task" else f"/runs/{run_id}" if kind == "job_run" else ""


def _target_href(kind: str, target_id: int, name: str) -> str:
    return {"job": f"/jobs/{target_id}", "blueprint": f"/blueprints/{target_id}",
            "persistent_agent": f"/agents/{name}"}.get(kind, "")


@router.get("/triggers")
@html_page
def trigger_list(request: Request) -> Response:
    base_url = str(request.base_url)

    def load(ctx: Ctx) -> tuple[str, dict[str, Any]]:
        rows = []
        for row, name in triggers.list_triggers(ctx.db, ctx.workspace_id):
            out = trigger_routes.trigger_out(row, name, base_url)
            last = next(iter(triggers.fires(ctx.db, ctx.workspace_id, row.id)[-1:]), None)
            rows.append({"t": out, "target_href": _target_href(out.target_type, out.target_id, name),
                         "last": last, "last_href": _run_href(last.run_kind, last.run_id) if last else "",
                         "can_fire": out.type != "ticket" and not out.paused})
        return "Triggers", {"rows": rows}

    return workspace_page(request, "triggers.html", "intake", load)


@router.post("/triggers/{trigger_id}/{intent}", name="web_trigger_intent")
@form_action
def trigger_intent(ctx: Ctx, data: dict[str, str], lists: dict[str, list[str]], trigger_id: Id,
                   intent: str) -> str:
    triggers.get(ctx.db, ctx.workspace_id, trigger_id)  # another workspace's trigger is not found here
    if intent not in TRIGGER_INTENTS:
        raise Invalid(f"unknown action {intent!r}", field="intent")
    if intent == "fire":
        fired = trigger_routes.fire_trigger(trigger_id, TriggerFireIn(), ctx)
        return _run_href(fired.run_kind, fired.run_id) or "/triggers"
    if intent == "delete":
        trigger_routes.delete_trigger(trigger_id, ctx)
    else:
        triggers.set_paused(ctx.db, ctx.workspace_id, trigger_id, intent == "pause")
    return "/triggers"


@router.get("/blueprints")
@html_page
def blueprint_list(request: Request) -> Response:
    return workspace_page(request, "blueprints.html", "intake", lambda ctx: ("Blueprints", {
        "blueprints": blueprints.list_blueprints(ctx.db, ctx.workspace_id)}))


@router.get("/blueprints/{blueprint_ref}")
@html_page
def blueprint_detail(request: Request, blueprint_ref: str) -> Response:
    def load(ctx: Ctx) -> tuple[str, dict[str, Any]]:
        row, repo = blueprints.get(ctx.db, ctx.workspace_id, blueprint_ref)
        mine = [t for t, _name in triggers.list_triggers(ctx.db, ctx.workspace_id)
                if t.target_type == "blueprint" and t.target_id == row.id]
        spawned = sorted((f for t in mine for f in triggers.fires(ctx.db, ctx.workspace_id, t.id)
                          if f.run_kind == "repo_task"), key=lambda f: f.id, reverse=True)
        return f"Blueprint {row.name}", {"bp": blueprint_routes.blueprint_out(row, repo),
                                         "fields": param_fields(row.params_schema), "triggers": mine,
                                         "spawned": spawned[:50]}

    return workspace_page(request, "blueprint.html", "intake", load)


@router.post("/blueprints/{blueprint_ref}/run", name="web_run_blueprint")
@form_action
def run_blueprint(ctx: Ctx, data: dict[str, str], lists: dict[str, list[str]], blueprint_ref: str) -> str:
    params = {k[6:]: v for k, v in data.items() if k.startswith("param.") and v != ""}
    task = blueprint_routes.run_blueprint(blueprint_ref, BlueprintRun.model_validate({"params": params}), ctx)
    return f"/tasks/{task.id}"


@router.get("/templates")
@html_page
def template_list(request: Request) -> Response:
    def load(ctx: Ctx) -> tuple[str, dict[str, Any]]:
        effective = [template_library.show(ctx.db, ctx.workspace_id, kind) for kind in TEMPLATE_KINDS]
        overrides = [v for v in template_library.list_templates(ctx.db, ctx.workspace_id) if v.source == "repo"]
        return "Templates", {"effective": effective, "overrides": overrides}

    return workspace_page(request, "templates.html", "intake", load)


@router.post("/templates/{kind}", name="web_set_template")
@form_action
def set_template(ctx: Ctx, data: dict[str, str], lists: dict[str, list[str]], kind: str) -> str:
    """Set the workspace default for a kind (an empty body removes it: the built-in text applies again)."""
    if kind not in TEMPLATE_KINDS:
        raise Invalid(f"unknown kind {kind!r}", field="kind")
    body = data.get("body", "")
    if not body.strip():
        template_routes.delete_template(kind, None, ctx)
    else:
        version = data.get("version", "")
        template_routes.set_template(kind, TemplateSet.model_validate(
            {"body": body, "version": int(version) if version.isdigit() else 0}), ctx)
    return "/templates"
