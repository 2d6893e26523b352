"""MCP servers and skills, defined per workspace or repo and given to every run of that scope.

An MCP server is a stdio command (run by the agent CLI inside the run's sandbox, so it must be a program
the sandbox shows) or an HTTP URL. Its environment names secrets, never values: each run resolves them
through the secrets provider (audited, and masked in logs like every secret). A skill is a named
instruction text, given inline or read at run time from a path in a repo.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from optio.errors import Invalid, NotFound
from optio.services.repos import find_repo
from optio.store import agent_tools as store
from optio.store.db import Database
from optio.store.models import McpServerDef, SkillDef

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,47}$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
SECRET_PREFIX = "secret:"
MAX_ARGS = 64
MAX_ARG_CHARS = 4096
MAX_SKILL_BYTES = 64 * 1024
MAX_DESCRIPTION_CHARS = 1024


def _check_name(name: str, noun: str) -> str:
    if not NAME_RE.match(name or ""):
        raise Invalid(f"{noun} names are 1-48 lowercase letters, digits, '-' or '_', starting with a letter or digit",
                      field="name")
    return name


def _repo_id(db: Database, workspace_id: int, repo: str | None) -> int | None:
    if repo is None:
        return None
    with db.read() as session:
        return find_repo(session, workspace_id, repo).id


def parse_env(pairs: Any) -> dict[str, str]:
    """``{NAME: "secret:SECRET"}`` checked, as ``{NAME: "SECRET"}``: a definition holds secret names, never values."""
    if pairs is None:
        return {}
    if not isinstance(pairs, dict):
        raise Invalid("env maps variable names to 'secret:SECRET_NAME'", field="env")
    env: dict[str, str] = {}
    for name, ref in pairs.items():
        if not isinstance(name, str) or not ENV_NAME_RE.match(name):
            raise Invalid(f"env: {name!r} is not an environment variable name", field="env")
        secret = ref[len(SECRET_PREFIX):] if isinstance(ref, str) and ref.startswith(SECRET_PREFIX) else ref
        if not isinstance(ref, str) or not ref.startswith(SECRET_PREFIX) or not ENV_NAME_RE.match(secret):
            raise Invalid(f"env {name}: values come from secrets only, written 'secret:SECRET_NAME' (got {ref!r});"
                          " set the value with `optio secret set` first", field="env")
        env[name] = secret
    return env


def _check_mcp(command: str | None, args: list[str], url: str | None) -> None:
    if bool(command) == bool(url):
        raise Invalid("an MCP server is either a stdio command or an HTTP url: give exactly one", field="command")
    if url:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise Invalid("url must be an http:// or https:// URL", field="url")
        if args:
            raise Invalid("args belong to a stdio command, not a url server", field="args")
    if command is not None and (not command.strip() or "\n" in command or len(command) > MAX_ARG_CHARS):
        raise Invalid("command must be a program name or path on one line", field="command")
    if len(args) > MAX_ARGS or any(not isinstance(a, str) or len(a) > MAX_ARG_CHARS or "\x00" in a for a in args):
        raise Invalid(f"args are at most {MAX_ARGS} strings of at most {MAX_ARG_CHARS} characters", field="args")


def add_mcp_server(db: Database, workspace_id: int, *, name: str, command: str | None = None,
                   args: list[str] | None = None, url: str | None = None, env: Any = None, repo: str | None = None,
                   user_id: int | None = None) -> McpServerDef:
    _check_name(name, "MCP server")
    args = list(args or [])
    _check_mcp(command, args, url)
    secret_env = parse_env(env)
    repo_id = _repo_id(db, workspace_id, repo)
    row = McpServerDef(workspace_id=workspace_id, repo_id=repo_id, scope_key=store.scope_key(repo_id), name=name,
                       command=command, args=args, url=url, env=secret_env, created_by=user_id)
    return store.insert(db, row, "MCP server")


def list_mcp_servers(db: Database, workspace_id: int, *, repo: str | None = None) -> list[McpServerDef]:
    repo_id = _repo_id(db, workspace_id, repo)
    with db.read() as session:
        return store.listed(session, McpServerDef, workspace_id, repo_id=repo_id)


def remove_mcp_server(db: Database, workspace_id: int, name: str, *, repo: str | None = None) -> None:
    repo_id = _repo_id(db, workspace_id, repo)
    with db.write() as session:
        row = store.find(session, McpServerDef, workspace_id, repo_id, name)
        if row is None:
            raise NotFound(f"MCP server {name!r} not found" + (f" in repo {repo!r}" if repo else ""), field="name")
        store.delete(session, row)


def parse_repo_path(db: Database, workspace_id: int, ref: str) -> tuple[int, str]:
    """``REPO:PATH`` to (repo id, relative path); the path must stay inside the repo."""
    repo, sep, path = (ref or "").partition(":")
    if not sep or not repo or not path:
        raise Invalid("repo_path is REPO:PATH, e.g. myrepo:docs/skills/review.md", field="repo_path")
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts or "\x00" in path:
        raise Invalid("repo_path's PATH is relative to the repo root and stays inside it", field="repo_path")
    try:
        repo_id = _repo_id(db, workspace_id, repo)
    except NotFound:
        raise Invalid(f"repo_path names repo {repo!r}, which does not exist", field="repo_path") from None
    assert repo_id is not None
    return repo_id, str(pure)


def add_skill(db: Database, workspace_id: int, *, name: str, text: str | None = None, repo_path: str | None = None,
              description: str = "", repo: str | None = None, user_id: int | None = None) -> SkillDef:
    _check_name(name, "skill")
    if (text is None or not text.strip()) == (repo_path is None):
        raise Invalid("a skill is either a text or a repo path (REPO:PATH): give exactly one", field="text")
    if text is not None and len(text.encode("utf-8")) > MAX_SKILL_BYTES:
        raise Invalid(f"a skill's text is limited to {MAX_SKILL_BYTES} bytes", field="text")
    if len(description) > MAX_DESCRIPTION_CHARS or "\n" in description:
        raise Invalid(f"description is one line of at most {MAX_DESCRIPTION_CHARS} characters", field="description")
    source: tuple[int | None, str | None] = (None, None)
    if repo_path is not None:
        source = parse_repo_path(db, workspace_id, repo_path)
    repo_id = _repo_id(db, workspace_id, repo)
    row = SkillDef(workspace_id=workspace_id, repo_id=repo_id, scope_key=store.scope_key(repo_id), name=name,
                   description=description, text=text, source_repo_id=source[0], source_path=source[1],
                   created_by=user_id)
    return store.insert(db, row, "skill")


def list_skills(db: Database, workspace_id: int, *, repo: str | None = None) -> list[tuple[SkillDef, str | None]]:
    """Skills with the name of their source repo (for repo-path skills)."""
    repo_id = _repo_id(db, workspace_id, repo)
    with db.read() as session:
        rows = store.listed(session, SkillDef, workspace_id, repo_id=repo_id)
        names = store.repos_named(session, workspace_id, sorted({r.source_repo_id for r in rows if r.source_repo_id}))
    return [(r, names.get(r.source_repo_id) if r.source_repo_id else None) for r in rows]


def remove_skill(db: Database, workspace_id: int, name: str, *, repo: str | None = None) -> None:
    repo_id = _repo_id(db, workspace_id, repo)
    with db.write() as session:
        row = store.find(session, SkillDef, workspace_id, repo_id, name)
        if row is None:
            raise NotFound(f"skill {name!r} not found" + (f" in repo {repo!r}" if repo else ""), field="name")
        store.delete(session, row)
