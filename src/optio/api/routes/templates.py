"""The prompt template library: each kind's effective template, workspace defaults, repo overrides, previews."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Response

from optio.api.deps import Ctx, get_ctx
from optio.api.errors import ERROR_RESPONSES
from optio.api.template_schemas import (
    TemplateEffectiveOut,
    TemplateOut,
    TemplatePreview,
    TemplatePreviewOut,
    TemplateSet,
)
from optio.domain.template_library import VARIABLES
from optio.services import templates as template_service
from optio.services.templates import TemplateView

router = APIRouter(prefix="/api/templates", tags=["templates"], responses=ERROR_RESPONSES)
REPO = Query(default=None, min_length=1, max_length=200, description="Repo name or id")


def template_out(view: TemplateView) -> TemplateOut:
    return TemplateOut(kind=view.kind, repo=view.repo, source=view.source, body=view.body, version=view.version,
                       updated_at=view.updated_at)


@router.get("", response_model=list[TemplateOut])
def list_templates(ctx: Ctx = Depends(get_ctx)) -> list[TemplateOut]:
    return [template_out(v) for v in template_service.list_templates(ctx.db, ctx.workspace_id)]


@router.get("/{kind}", response_model=TemplateEffectiveOut)
def show_template(kind: str, repo: str | None = REPO, ctx: Ctx = Depends(get_ctx)) -> TemplateEffectiveOut:
    """The template the kind's prompts use (for the repo), and where it comes from."""
    view = template_service.show(ctx.db, ctx.workspace_id, kind, repo)
    return TemplateEffectiveOut(**template_out(view).model_dump(), variables=VARIABLES[view.kind])


@router.put("/{kind}", response_model=TemplateOut)
def set_template(kind: str, body: TemplateSet, ctx: Ctx = Depends(get_ctx)) -> TemplateOut:
    return template_out(template_service.save(ctx.db, ctx.workspace_id, kind, body.body, repo=body.repo,
                                              version=body.version))


@router.delete("/{kind}", status_code=204)
def delete_template(kind: str, repo: str | None = REPO, ctx: Ctx = Depends(get_ctx)) -> Response:
    """Remove the repo's override (or the workspace default): the next level applies again."""
    template_service.delete(ctx.db, ctx.workspace_id, kind, repo)
    return Response(status_code=204)


@router.post("/{kind}/preview", response_model=TemplatePreviewOut)
def preview_template(kind: str, body: TemplatePreview, ctx: Ctx = Depends(get_ctx)) -> TemplatePreviewOut:
    rendered, source = template_service.preview(ctx.db, ctx.workspace_id, kind, repo=body.repo, body=body.body,
                                                values=dict(body.values))
    return TemplatePreviewOut(kind=kind, source=source, rendered=rendered)
