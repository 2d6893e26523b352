"""The MCP servers and skills a run gets: its workspace's and its repo's, resolved when the agent starts.

Server env values are secrets named by the definition, read through the secrets provider at this moment
(each injection audited, each value masked in the run's logs like any secret). A skill read from a repo
path comes from the run's own checkout of that repo, so it is the version the run works on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from optio.agents.base import AgentConfigError
from optio.control.context import ControlContext
from optio.store import agent_tools as store
from optio.store.models import McpServerDef, SkillDef

log = structlog.get_logger("optio.agent_tools")

MAX_SKILL_BYTES = 64 * 1024


@dataclass(frozen=True)
class RunTools:
    mcp_servers: dict[str, Any] = field(default_factory=dict)
    skills: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def for_run(ctx: ControlContext, *, workspace_id: int, repo_id: int | None, kind: str, run_id: int,
            checkout: Path | None) -> RunTools:
    with ctx.db.read() as session:
        servers = store.for_run(session, McpServerDef, workspace_id, repo_id)
        skill_rows = store.for_run(session, SkillDef, workspace_id, repo_id)
        server_specs = [(s.name, s.command, list(s.args or []), s.url, dict(s.env or {})) for s in servers]
        skill_specs = [(s.name, s.description or "", s.text, s.source_repo_id, s.source_path) for s in skill_rows]
    wanted = sorted({secret for *_, env in server_specs for secret in env.values()})
    values = ctx.secret_env(workspace_id, wanted, repo_id=repo_id, run=(kind, run_id)) if wanted else {}
    mcp: dict[str, Any] = {}
    for name, command, args, url, env in server_specs:
        missing = sorted(secret for secret in env.values() if secret not in values)
        if missing:
            raise AgentConfigError(f"MCP server {name!r} needs the secret(s) {', '.join(missing)}, which are not set; "
                                   "add them with `optio secret set`")
        if url:
            mcp[name] = {"url": url}
        else:
            mcp[name] = {"command": command, "args": args}
            if env:
                mcp[name]["env"] = {var: values[secret] for var, secret in env.items()}
    skills: dict[str, str] = {}
    notes: list[str] = []
    for name, description, text, source_repo_id, source_path in skill_specs:
        if text is None:
            text, note = _read_from_checkout(name, source_repo_id, source_path, repo_id, checkout)
            if text is None:
                notes.append(note)
                log.warning("skill_not_read", skill=name, reason=note, kind=kind, run_id=run_id)
                continue
        skills[name] = _with_description(name, description, text)
    return RunTools(mcp_servers=mcp, skills=skills, notes=tuple(notes))


def _read_from_checkout(name: str, source_repo_id: int | None, path: str | None, repo_id: int | None,
                        checkout: Path | None) -> tuple[str | None, str]:
    if source_repo_id is None or path is None:
        return None, f"skill {name!r} has neither text nor a repo path"
    if checkout is None or source_repo_id != repo_id:
        return None, f"skill {name!r} is read from another repo's checkout; this run has none of it"
    root = checkout.resolve()
    target = (root / path).resolve()
    if root not in target.parents or not target.is_file():
        return None, f"skill {name!r}: {path} is not a file in the run's checkout"
    data = target.read_bytes()[:MAX_SKILL_BYTES]
    return data.decode("utf-8", "replace"), ""


def _with_description(name: str, description: str, text: str) -> str:
    if not description or text.startswith("---\n"):
        return text
    safe = description.replace('"', "'")
    return f'---\nname: {name}\ndescription: "{safe}"\n---\n\n{text}'
