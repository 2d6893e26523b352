"""MCP servers and skills (workspace or repo scope): members read them, admins change them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Response

from optio.agents import models as vendor_models
from optio.api.agent_tool_schemas import (
    McpServerCreate,
    McpServerOut,
    ModelPriceOut,
    SkillCreate,
    SkillOut,
    VendorModelsOut,
)
from optio.api.deps import Ctx, get_admin_ctx, get_ctx
from optio.api.errors import ERROR_RESPONSES
from optio.errors import NotFound
from optio.services import agent_tools as service

router = APIRouter(tags=["mcp servers and skills"], responses=ERROR_RESPONSES)
Name = Path(max_length=48)
RepoRef = Query(default=None, min_length=1, max_length=200, description="Repo name or id (repo scope)")


def mcp_out(r: Any) -> McpServerOut:
    return McpServerOut(
        name=r.name, scope="repo" if r.repo_id is not None else "workspace", repo_id=r.repo_id,
        transport="http" if r.url else "stdio", command=r.command, args=list(r.args or []),
        url=r.url, env={k: f"{service.SECRET_PREFIX}{v}" for k, v in (r.env or {}).items()},
        created_at=r.created_at,
    )


def skill_out(r: Any, source_repo: str | None) -> SkillOut:
    repo_path = f"{source_repo}:{r.source_path}" if r.source_path else None
    return SkillOut(
        name=r.name, scope="repo" if r.repo_id is not None else "workspace", repo_id=r.repo_id,
        description=r.description or "", source="repo" if r.source_path else "text",
        text=r.text, repo_path=repo_path, created_at=r.created_at,
    )


@router.get("/api/mcp-servers", response_model=list[McpServerOut])
def list_mcp_servers(repo: str | None = RepoRef, ctx: Ctx = Depends(get_ctx)) -> list[McpServerOut]:
    """The workspace's MCP servers (only one repo's, with ``repo``); env shows secret names, never values."""
    return [mcp_out(r) for r in service.list_mcp_servers(ctx.db, ctx.workspace_id, repo=repo)]


@router.post("/api/mcp-servers", response_model=McpServerOut, status_code=201)
def add_mcp_server(body: McpServerCreate, ctx: Ctx = Depends(get_admin_ctx)) -> McpServerOut:
    row = service.add_mcp_server(ctx.db, ctx.workspace_id, name=body.name, command=body.command, args=body.args,
                                 url=body.url, env=body.env, repo=body.repo, user_id=ctx.user_id)
    return mcp_out(row)


@router.delete("/api/mcp-servers/{name}", status_code=204, response_class=Response)
def remove_mcp_server(name: str = Name, repo: str | None = RepoRef, ctx: Ctx = Depends(get_admin_ctx)) -> Response:
    service.remove_mcp_server(ctx.db, ctx.workspace_id, name, repo=repo)
    return Response(status_code=204)


@router.get("/api/skills", response_model=list[SkillOut])
def list_skills(repo: str | None = RepoRef, ctx: Ctx = Depends(get_ctx)) -> list[SkillOut]:
    return [skill_out(r, source) for r, source in service.list_skills(ctx.db, ctx.workspace_id, repo=repo)]


@router.post("/api/skills", response_model=SkillOut, status_code=201)
def add_skill(body: SkillCreate, ctx: Ctx = Depends(get_admin_ctx)) -> SkillOut:
    row = service.add_skill(ctx.db, ctx.workspace_id, name=body.name, text=body.text, repo_path=body.repo_path,
                            description=body.description, repo=body.repo, user_id=ctx.user_id)
    source = body.repo_path.partition(":")[0] if body.repo_path else None
    return skill_out(row, source)


@router.delete("/api/skills/{name}", status_code=204, response_class=Response)
def remove_skill(name: str = Name, repo: str | None = RepoRef, ctx: Ctx = Depends(get_admin_ctx)) -> Response:
    service.remove_skill(ctx.db, ctx.workspace_id, name, repo=repo)
    return Response(status_code=204)



@router.get("/api/agents/models", response_model=VendorModelsOut, tags=["agents"])
def vendor_models_list(vendor: str = Query(max_length=64, description="Agent type, e.g. codex"),
                       ctx: Ctx = Depends(get_ctx)) -> VendorModelsOut:
    """A vendor's known models with list prices (USD per million tokens) and its reasoning effort levels."""
    try:
        known = vendor_models.known_models(vendor)
    except vendor_models.VendorOptionError as exc:
        raise NotFound(str(exc), field="vendor") from None
    return VendorModelsOut(
        vendor=vendor, reasoning_efforts=list(vendor_models.REASONING_EFFORTS.get(vendor, ())),
        models=[ModelPriceOut(model=m.name, input_per_mtok=m.price.input, output_per_mtok=m.price.output,
                              cache_read_per_mtok=m.price.cache_read, cache_write_per_mtok=m.price.cache_write)
                for m in known],
    )
