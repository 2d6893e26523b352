"""Repos: where repo tasks take their code from and send their pull requests to."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from optio.control.ports import WorktreeProvider
from optio.domain.states import TERMINAL, RunKind
from optio.errors import Conflict, Invalid
from optio.forge import hosted
from optio.forge.gitcmd import GitError, remote_access
from optio.forge.remote_refs import RemoteRefs, is_valid_branch_name, ls_remote
from optio.security.ssrf import Allowlist, UnsafeURLError, check_url
from optio.services import remotes
from optio.services.jobs import validate_agent
from optio.services.secret_refs import require_visible
from optio.store import repos as repo_store
from optio.store.db import Database
from optio.store.models import Repo
from optio.store.session import Session

CredentialOf = Callable[[str], "str | None"]

# Settings a repo keeps after it is registered and that `update_repo` may change.
NULLABLE = frozenset({"ci_command", "max_concurrent", "review_agent_type", "webhook_secret"})
UPDATABLE = NULLABLE | {"default_branch", "require_approval", "auto_merge", "agent_type", "agent_config",
                        "review_agent_config", "review_prompt", "secret_names"}


def normalise_remote(remote: str, policy: remotes.LocalRemotePolicy) -> str:
    """Local paths become resolved absolute paths (if the policy allows them); URLs are kept."""
    return remotes.check_remote(remote, policy)


def remote_refs(remote: str, *, credential: str | None = None, allowlist: Sequence[str] | Allowlist = (),
                forge: str | None = None) -> RemoteRefs:
    """What the remote offers, asked under its access rules (transport, SSRF pin, credential, and the user
    name the repo's hosted forge wants beside a token)."""
    kind = hosted.KINDS.get(forge or "")
    try:
        access = remote_access(remote, credential=credential, allowlist=allowlist,
                               username=kind.token_username if kind is not None else None)
    except UnsafeURLError as exc:
        raise Invalid(str(exc), field="remote_url") from None
    try:
        return ls_remote(remote, config=access.config, env=access.env)
    except GitError as exc:
        detail = exc.stderr_tail.strip()[:300] or str(exc)[:300]
        raise Invalid(f"{remote!r} is not a reachable git repository: {detail}", field="remote_url") from None


def check_branch(refs: RemoteRefs, branch: str, *, chosen: bool) -> None:
    """A default branch must be a branch name git accepts and must exist on the remote, or no task can start."""
    if not is_valid_branch_name(branch):
        raise Invalid(f"{branch!r} is not a valid branch name", field="default_branch")
    if branch in refs.branches:
        return
    if not refs.branches:
        raise Invalid("the remote has no branches yet; push one first", field="default_branch")
    known = ", ".join(sorted(refs.branches)[:10]) + (", ..." if len(refs.branches) > 10 else "")
    hint = "" if chosen else "; pass default_branch"
    raise Invalid(f"branch {branch!r} does not exist on the remote (it has: {known}){hint}", field="default_branch")


def refuse_if_registered_elsewhere(session: Session, workspace_id: int, remote: str) -> None:
    key = remotes.identity(remote)
    others = repo_store.remotes_outside(session, workspace_id)
    if any(remotes.identity(other) == key for other in others):
        raise Conflict("this remote is registered by another workspace and cannot be added here",
                       field="remote_url")


def hosted_settings(data: dict[str, Any], remote: str, *, allowlist: Sequence[str] | Allowlist = ()
                    ) -> dict[str, Any]:
    """The forge columns of a new repo: its kind (given, or detected from the URL), API root and options.

    A hosted forge needs an http(s) URL naming OWNER/REPO and an API root Optio may call (the SSRF guard).
    """
    kind = hosted.detect_forge(remote, data.get("forge"))
    options = {k: v for k, v in dict(data.get("forge_options") or {}).items()
               if v is not None and (v is not False or k == "ci_required") and not (k == "ci_required" and v)}
    if kind == hosted.LOCAL:
        if data.get("api_url") or data.get("webhook_secret") or options:
            field = "api_url" if data.get("api_url") else "webhook_secret" if data.get("webhook_secret") \
                else "forge_options"
            raise Invalid(f"{field} is for a repo on a hosted forge; this remote is on the local forge "
                          "(pass --forge github|gitlab)", field=field)
        return {"forge": kind, "api_url": None, "webhook_secret": None, "forge_options": {}}
    if not hosted.is_network_url(remote):
        raise Invalid(f"a {kind} repo is registered by its https URL (https://HOST/OWNER/REPO)", field="remote_url")
    try:
        hosted.project_path(remote)
    except ValueError as exc:
        raise Invalid(str(exc), field="remote_url") from None
    api_url = data.get("api_url") or hosted.default_api_url(kind, remote)
    if not api_url or not hosted.is_network_url(api_url):
        raise Invalid(f"{api_url!r} is not an http(s) API root", field="api_url")
    try:
        check_url(api_url, allowlist=allowlist)
    except UnsafeURLError as exc:
        raise Invalid(str(exc), field="api_url") from None
    app_keys = ("app_id", "installation_id", "private_key_secret")
    given = [key for key in app_keys if options.get(key)]
    if given and kind != "github":
        raise Invalid("a GitHub App (app id, installation id, key) is only for GitHub repos", field="forge_options")
    if given and len(given) != len(app_keys):
        missing = next(key for key in app_keys if key not in given)
        raise Invalid(f"a GitHub App needs app_id, installation_id and private_key_secret; {missing} is missing",
                      field=f"forge_options.{missing}")
    if not given and not data.get("credential_secret"):
        raise Invalid(f"a {kind} repo needs a token to push and call the API: name the secret holding it "
                      "(--token-secret NAME)" + (" or a GitHub App (--app-id, --installation-id, --app-key-secret)"
                                                 if kind == "github" else ""), field="credential_secret")
    return {"forge": kind, "api_url": api_url.rstrip("/"), "webhook_secret": data.get("webhook_secret") or None,
            "forge_options": options}


def check_forge_access(checker: hosted.AccessChecker | None, forge: dict[str, Any], remote: str,
                       token: str | None, secret_of: CredentialOf) -> None:
    """Ask the forge once whether Optio can read the repo and push to it; 422 naming exactly what is missing."""
    if checker is None:
        return
    missing = checker.check_access(api_url=forge["api_url"], remote_url=remote, token=token,
                                   options=forge["forge_options"], secret=secret_of)
    if missing:
        field = "forge_options" if forge["forge_options"].get("app_id") else "credential_secret"
        raise Invalid("the forge does not give Optio what it needs: " + "; ".join(missing), field=field)


def add_repo(db: Database, workspace_id: int, data: dict[str, Any], policy: remotes.LocalRemotePolicy, *,
             credential: str | None = None, allowlist: Sequence[str] | Allowlist = (),
             access_checker: Callable[[str], hosted.AccessChecker | None] = lambda _kind: None,
             secret_of: CredentialOf = lambda _name: None) -> Repo:
    """``credential`` is the value of ``data["credential_secret"]``, for reaching a private remote now.

    A repo on a hosted forge (``access_checker(kind)`` gives its adapter) is checked once through the
    forge's API: the repo readable, pushing allowed; ``secret_of`` reads other named secrets (an App's key).
    """
    remote = normalise_remote(data["remote_url"], policy)
    with db.read() as session:
        refuse_if_registered_elsewhere(session, workspace_id, remote)
        for name, field in ((data.get("webhook_secret"), "webhook_secret"),
                            ((data.get("forge_options") or {}).get("private_key_secret"),
                             "forge_options.private_key_secret")):
            if name:
                require_visible(session, workspace_id, [name], field=field)
    forge = hosted_settings(data, remote, allowlist=allowlist)
    if forge["forge"] != hosted.LOCAL:
        check_forge_access(access_checker(forge["forge"]), forge, remote, credential, secret_of)
        if credential is None and forge["forge_options"].get("app_id"):
            checker = access_checker(forge["forge"])
            minted = getattr(checker, "git_token", None)
            credential = minted(forge["api_url"], forge["forge_options"], secret_of) if minted else None
    refs = remote_refs(remote, credential=credential, allowlist=allowlist, forge=forge["forge"])
    branch = data.get("default_branch") or refs.head or "main"
    check_branch(refs, branch, chosen=bool(data.get("default_branch")))
    name = data.get("name") or Path(urlparse(remote).path).name.removesuffix(".git") or "repo"
    validate_agent(data.get("agent_type") or "script", data.get("agent_config") or {"command": "true"})
    if data.get("review_agent_type"):
        validate_agent(data["review_agent_type"], data.get("review_agent_config") or {}, prefix="review_")
    secret_names = list(data.get("secret_names") or [])
    with db.read() as session:
        # A repo's own secrets cannot exist before it does: at registration only workspace secrets qualify.
        require_visible(session, workspace_id, secret_names)
    return repo_store.insert_repo(db, workspace_id, dict(
        name=name, remote_url=remote, default_branch=branch,
        ci_command=data.get("ci_command") or None, require_approval=bool(data.get("require_approval", False)),
        auto_merge=bool(data.get("auto_merge", True)), max_concurrent=data.get("max_concurrent"),
        agent_type=data.get("agent_type") or "script", agent_config=data.get("agent_config") or {},
        review_agent_type=data.get("review_agent_type") or None,
        review_agent_config=data.get("review_agent_config") or {}, review_prompt=data.get("review_prompt") or "",
        secret_names=secret_names, credential_secret=data.get("credential_secret") or None, **forge,
    ))


def update_repo(db: Database, workspace_id: int, ref: str | int, changes: dict[str, Any], *,
                credential_of: CredentialOf = lambda _name: None, allowlist: Sequence[str] | Allowlist = ()) -> Repo:
    """Change the settings given in `changes` (None clears the nullable ones, leaves the others as they are).

    A new default branch is checked against the remote like at registration; secret names may name the
    workspace's secrets or this repo's own.
    """
    unknown = set(changes) - UPDATABLE
    if unknown:
        raise Invalid(f"cannot change {sorted(unknown)[0]}", field=sorted(unknown)[0])
    changes = {k: v for k, v in changes.items() if v is not None or k in NULLABLE}
    for key in ("ci_command", "review_agent_type", "webhook_secret"):
        if key in changes and not changes[key]:
            changes[key] = None
    with db.read() as session:
        repo = find_repo(session, workspace_id, ref)
        current = {key: getattr(repo, key) for key in UPDATABLE}
        repo_id, remote, credential_secret, kind = repo.id, repo.remote_url, repo.credential_secret, repo.forge
    merged = {**current, **changes}
    if "default_branch" in changes and changes["default_branch"] != current["default_branch"]:
        credential = credential_of(credential_secret) if credential_secret else None
        check_branch(remote_refs(remote, credential=credential, allowlist=allowlist, forge=kind),
                     changes["default_branch"], chosen=True)
    if {"agent_type", "agent_config"} & set(changes):
        validate_agent(merged["agent_type"], merged["agent_config"] or {"command": "true"})
    if merged["review_agent_type"] and {"review_agent_type", "review_agent_config"} & set(changes):
        validate_agent(merged["review_agent_type"], merged["review_agent_config"] or {}, prefix="review_")
    with db.write() as session:
        if "secret_names" in changes:
            require_visible(session, workspace_id, changes["secret_names"], repo_id=repo_id)
        if changes.get("webhook_secret"):
            require_visible(session, workspace_id, [changes["webhook_secret"]], repo_id=repo_id, field="webhook_secret")
        return repo_store.update_repo(session, workspace_id, repo_id, {
            key: list(value) if key == "secret_names" else value for key, value in changes.items()})


def remove_repo(db: Database, workspace_id: int, ref: str | int, worktrees: WorktreeProvider) -> None:
    """Remove a repo and its history; refused (409) while a task of it is not finished, so no agent, CI or
    merge is left working on a repo that no longer exists. Its git cache goes too."""
    with db.write() as session:
        repo = find_repo(session, workspace_id, ref)
        unfinished = repo_store.unfinished_tasks(session, repo.id, TERMINAL[RunKind.REPO_TASK])
        if unfinished:
            raise Conflict(f"repo {repo.name} has {unfinished} unfinished task(s); cancel them first "
                           "(`optio task cancel ID`)", field="repo")
        repo_id = repo.id
        repo_store.delete_repo(session, repo_id)
    worktrees.forget(repo_id)


def find_repo(session: Session, workspace_id: int, ref: str | int) -> Repo:
    return repo_store.find_repo(session, workspace_id, ref)


def list_repos(db: Database, workspace_id: int) -> list[Repo]:
    with db.read() as session:
        return repo_store.list_repos(session, workspace_id)
