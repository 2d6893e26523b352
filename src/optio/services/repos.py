"""Repos: where repo tasks take their code from and send their pull requests to."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from sqlalchemy import select
from sqlalchemy.orm import Session

from optio.errors import Invalid
from optio.forge.gitcmd import GitError, RemoteAccess, remote_access, run_git
from optio.security.ssrf import Allowlist, UnsafeURLError
from optio.services.jobs import validate_agent
from optio.services.named import find_by_ref, insert_unique
from optio.store.db import Database
from optio.store.models import Repo


def normalise_remote(remote: str) -> str:
    """Local paths become absolute `file://`-free paths; URLs are kept. Unreachable remotes are refused now."""
    if not remote.isprintable() or not _utf8(remote):
        raise Invalid("remote must be printable text", field="remote_url")
    parsed = urlparse(remote)
    if parsed.scheme in ("", "file"):
        path = Path(parsed.path if parsed.scheme == "file" else remote).expanduser().resolve()
        if not path.exists():
            raise Invalid(f"remote {remote!r} does not exist", field="remote_url")
        return str(path)
    if parsed.scheme not in ("http", "https", "ssh", "git"):
        raise Invalid(f"unsupported remote scheme {parsed.scheme!r}", field="remote_url")
    return remote


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from a JSON body
        return False
    return True


def detect_default_branch(remote: str, access: RemoteAccess | None = None) -> str | None:
    access = access or remote_access(remote)
    try:
        out = run_git(["ls-remote", "--symref", remote, "HEAD"], cwd=Path("/"), timeout=30, check=False,
                      config=access.config, env=access.env)
    except (OSError, GitError):
        return None
    if out.returncode != 0:
        raise Invalid(f"{remote!r} is not a reachable git repository: {out.stderr.strip()[:300]}",
                      field="remote_url")
    for line in out.stdout.splitlines():
        if line.startswith("ref: refs/heads/") and line.endswith("HEAD"):
            return line.split()[1].removeprefix("refs/heads/")
    return None


def add_repo(db: Database, workspace_id: int, data: dict[str, Any], *, credential: str | None = None,
             allowlist: Sequence[str] | Allowlist = ()) -> Repo:
    """``credential`` is the value of ``data["credential_secret"]``, for reaching a private remote now."""
    remote = normalise_remote(data["remote_url"])
    try:
        access = remote_access(remote, credential=credential, allowlist=allowlist)
    except UnsafeURLError as exc:
        raise Invalid(str(exc), field="remote_url") from None
    detected = detect_default_branch(remote, access)
    branch = data.get("default_branch") or detected or "main"
    name = data.get("name") or Path(urlparse(remote).path).name.removesuffix(".git") or "repo"
    validate_agent(data.get("agent_type") or "script", data.get("agent_config") or {"command": "true"})
    if data.get("review_agent_type"):
        validate_agent(data["review_agent_type"], data.get("review_agent_config") or {})
    repo = Repo(
        workspace_id=workspace_id, name=name, remote_url=remote, default_branch=branch,
        ci_command=data.get("ci_command") or None, require_approval=bool(data.get("require_approval", False)),
        auto_merge=bool(data.get("auto_merge", True)), max_concurrent=data.get("max_concurrent"),
        agent_type=data.get("agent_type") or "script", agent_config=data.get("agent_config") or {},
        review_agent_type=data.get("review_agent_type") or None,
        review_agent_config=data.get("review_agent_config") or {}, review_prompt=data.get("review_prompt") or "",
        secret_names=list(data.get("secret_names") or []), credential_secret=data.get("credential_secret") or None,
    )
    return insert_unique(db, repo, "repo")


def find_repo(session: Session, workspace_id: int, ref: str | int) -> Repo:
    return find_by_ref(session, Repo, workspace_id, ref, "repo")


def list_repos(db: Database, workspace_id: int) -> list[Repo]:
    with db.read() as session:
        return list(session.scalars(select(Repo).where(Repo.workspace_id == workspace_id).order_by(Repo.id)))
