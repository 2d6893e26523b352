"""The dashboard's persistent-agent pages: the list, one agent (its inbox, turns and a turn's log), a chat box.

Read through the same service the API uses, and the chat box posts through the API's own send route, so a
person's message from the page is exactly a `POST /api/agents/{slug}/messages` (sender `user:<id>`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from optio.api.agent_schemas import MessageIn
from optio.api.deps import Ctx
from optio.api.routes import persistent_agents as agent_routes
from optio.services import events
from optio.services import persistent_agents as agents
from optio.web.actions import form_action
from optio.web.pages import PART, html_page
from optio.web.render import page
from optio.web.session import Viewer, viewer_of

router = APIRouter(include_in_schema=False)
SLUG = r"^[a-z0-9][a-z0-9-]{0,62}$"
IN_TURN = ("provisioning", "running")


def _base(viewer: Viewer, title: str) -> dict[str, Any]:
    return {"title": title, "nav": "agents", "events_after": events.current_position(viewer.workspace().db)}


@router.get("/agents")
@html_page
def agent_list(request: Request) -> Response:
    viewer = viewer_of(request)
    ctx = viewer.workspace()
    return page(request, "agents.html", viewer, {**_base(viewer, "Agents"),
                                                 "agents": agents.list_agents(ctx.db, ctx.workspace_id)})


@router.get("/agents/{slug}")
@html_page
def agent_detail(request: Request, slug: str, part: PART = None,
                 turn: Annotated[int | None, Query(ge=1)] = None) -> Response:
    viewer = viewer_of(request)
    ctx = viewer.workspace()
    info = agents.get_agent(ctx.db, ctx.workspace_id, slug)
    turns = agents.list_turns(ctx.db, ctx.workspace_id, slug, limit=30)
    inbox = agents.read_inbox(ctx.db, ctx.workspace_id, slug, limit=100)
    shown = turns[0] if turns else None  # the latest turn's log, unless ?turn=N asks for another
    if turn is not None:
        _agent, shown = agents.get_turn(ctx.db, ctx.workspace_id, slug, turn)  # 404 for a turn that is not there
    return page(request, "agent.html", viewer, {
        **_base(viewer, f"Agent {info.agent.slug}"), "a": info.agent, "pending": info.pending_messages,
        "turns": turns, "inbox": inbox[::-1], "shown": shown,
        "log_url": f"/api/agents/{slug}/turns/{shown.number}/logs" if shown else None,
        "done": shown is None or shown.state not in IN_TURN,
        "live_key": f"agent:{info.agent.id}"}, part=part)


@router.post("/agents/{slug}/messages", name="web_agent_message")
@form_action
def send_message(ctx: Ctx, data: dict[str, str], lists: dict[str, list[str]], slug: str) -> str:
    agents.get_agent(ctx.db, ctx.workspace_id, slug)  # not found here before the body is judged
    agent_routes.send_agent_message(slug, MessageIn.model_validate({"body": data.get("body", "")}), ctx)
    return f"/agents/{slug}"
