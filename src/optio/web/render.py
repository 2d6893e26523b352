"""Jinja2 rendering for the dashboard: the environment, its filters, and whole pages or one live block.

A page template marks each region that live updates refresh as a `{% block %}`; asked with `?part=NAME`, the same
route renders only that block, so a fragment can never drift from the page it is part of.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape

from optio import __version__
from optio.web.assets import TEMPLATES_DIR
from optio.web.session import Viewer

templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
# htmx sets inline styles for its indicators; everything else is this server's own files.
CSP = ("default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; script-src 'self'; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
PAGE_HEADERS = {"Cache-Control": "no-store", "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "same-origin", "Content-Security-Policy": CSP}

PIPELINE = ("queued", "provisioning", "running", "PR", "CI", "review", "merged")
TERMINAL_BAD = frozenset({"failed", "cancelled", "needs_attention"})


def when(value: datetime | None) -> Markup:
    """A UTC time that `app.js` rewrites in the viewer's own timezone (readable as UTC without JS)."""
    if value is None:
        return Markup("<span class='muted'>—</span>")
    iso = value.isoformat()
    return Markup(f"<time datetime='{escape(iso)}'>{escape(value.strftime('%Y-%m-%d %H:%M:%S'))} UTC</time>")


def usd(value: float | None, imputed: bool = False) -> Markup:
    text = f"${(value or 0):.4f}"
    if imputed:
        return Markup(f"{escape(text)} <abbr title='imputed from Optio&#39;s price table'>(imputed)</abbr>")
    return Markup(escape(text))


def state_badge(state: str | None) -> Markup:
    state = state or "—"
    return Markup(f"<span class='badge state-{escape(state)}' data-state='{escape(state)}'>"
                  f"{escape(state.replace('_', ' '))}</span>")


def pipeline(task: Any, pr: Any, ci_status: str | None, review_status: str | None,
             ci_runs: list[Any] | None = None) -> list[dict[str, str]]:
    """The pipeline strip: each stage `done`, `current` (lit) or `todo`; a current stage may be `bad` (red).

    Stages also carry what already happened there (each CI run's result, how often the agent was resumed), so a
    red CI that resumed the agent at once still shows on the strip.
    """
    state = task.state
    if state == "completed":
        current = "merged"
    elif state in ("pending", "waiting_on_deps", "queued"):
        current = "queued"
    elif state in ("provisioning", "running"):
        current = state
    elif pr is None:
        current = "running" if state in TERMINAL_BAD else "PR"
    elif ci_status in ("pending", "failing", "error"):
        current = "CI"
    elif ci_status in ("passing", None) and pr.state == "open":
        current = "review"
    else:
        current = "PR"
    marks = {"failing": "✗", "error": "✗", "passing": "✓"}
    resumes = (task.resume_count or 0) + (task.human_resumes or 0)
    notes = {"CI": " ".join(marks.get(c.status, "…") for c in ci_runs or []),
             "running": f"resumed {resumes}x" if resumes else "",
             "review": (review_status or "").replace("_", " ") if pr is not None else ""}
    out = []
    reached = True
    for stage in PIPELINE:
        note = notes.get(stage, "")
        if stage == current:
            bad = state in TERMINAL_BAD or (stage == "CI" and ci_status in ("failing", "error"))
            out.append({"name": stage, "status": "current bad" if bad else "current", "note": note})
            reached = False
        else:
            out.append({"name": stage, "status": "done" if reached else "todo", "note": note})
    return out


templates.env.filters["when"] = when
templates.env.filters["usd"] = usd
templates.env.filters["state"] = state_badge
templates.env.globals["version"] = __version__
# The shared macros are globals, so a block rendered alone (`?part=`) has them as the whole page does.
_macros = templates.env.get_template("_macros.html").module
templates.env.globals.update(action=_macros.action, pr_link=_macros.pr_link,  # type: ignore[attr-defined]
                             log_viewer=_macros.log_viewer)  # type: ignore[attr-defined]


def page(request: Request, name: str, viewer: Viewer, context: Mapping[str, Any], *, status: int = 200,
         part: str | None = None) -> HTMLResponse:
    """The whole page, or just block `part` of it (the live-update fragment)."""
    ctx = {"request": request, "viewer": viewer, "csrf": viewer.csrf, **context}
    if part:
        template = templates.get_template(name)
        block = template.blocks.get(part)
        if block is None:
            return HTMLResponse("unknown part", status_code=404, headers=PAGE_HEADERS)
        html = "".join(block(template.new_context(ctx)))
        return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)
    return templates.TemplateResponse(request, name, ctx, status_code=status, headers=PAGE_HEADERS)
